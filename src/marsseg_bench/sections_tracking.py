"""The `tracking` section of `make bench`: snapshot, read and plot a leaderboard history against a moving fake
leaderboard."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from marsseg.tracking.plots import plot_history
from marsseg.tracking.snapshot import snapshot
from marsseg.tracking.store import LEADERBOARD, SNAPSHOTS, SUBMISSIONS, read_history
from marsseg_bench.timing import median_seconds


class _MovingLeaderboard:
    """A fetcher for `tracking.snapshot`: `teams` teams; each snapshot a few of them improve, and every fifth
    snapshot the team submits once (scored one snapshot later)."""

    def __init__(self, teams: int, movers: int, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.scores = {f"team {i:03d}": 0.35 + 0.3 * self.rng.random() for i in range(teams - 1)} | {"us": 0.4}
        self.dates = {name: "2025-01-01T00:00:00Z" for name in self.scores}
        self.movers, self.tick, self.subs = movers, 0, []

    def step(self):
        self.tick += 1
        for name in self.rng.choice(sorted(self.scores), self.movers, replace=False):
            self.scores[name] += 0.01 * self.rng.random()
        for sub in self.subs:
            if sub["status"] == "PENDING":
                sub.update(status="COMPLETE", publicScore=f"{0.4 + 0.002 * self.tick + 0.01 * self.rng.random():.5f}")
                if float(sub["publicScore"]) > self.scores["us"]:
                    self.scores["us"], self.dates["us"] = float(sub["publicScore"]), sub["date"]
        if self.tick % 5 == 0:
            self.subs.append(
                {
                    "ref": 1000 + self.tick,
                    "fileName": "submission.csv",
                    "date": f"2025-02-{1 + self.tick // 24:02d}T{self.tick % 24:02d}:00:00Z",
                    "description": f"run {self.tick}",
                    "status": "PENDING",
                    "publicScore": "",
                    "privateScore": "",
                    "teamName": "us",
                }
            )

    def leaderboard(self, competition):
        return [
            {"teamId": i, "teamName": name, "submissionDate": self.dates[name], "score": f"{score:.5f}"}
            for i, (name, score) in enumerate(self.scores.items())
        ]

    def submissions(self, competition):
        return [dict(sub) for sub in reversed(self.subs)]


def section_tracking(repeats: int, log) -> str:
    """300 hourly snapshots of 200 teams (10 improving each time), then the history read back and plotted."""
    teams, movers, count = 200, 10, 300
    tmp = Path(tempfile.mkdtemp(prefix="marsseg-bench-"))
    fake = _MovingLeaderboard(teams, movers)
    log(f"tracking: {count} snapshots of {teams} teams, {movers} moving per snapshot")
    times = []
    started = time.perf_counter()
    for i in range(count):
        fake.step()
        t0 = time.perf_counter()
        snapshot(fake, "bench", tmp, now=f"2025-02-{1 + i // 24:02d}T{i % 24:02d}:00:00Z")
        times.append(time.perf_counter() - t0)
    total = time.perf_counter() - started
    log("tracking: read and plot")
    read_t, _ = median_seconds(lambda: read_history(tmp), repeats)
    history = read_history(tmp)
    plot_t, _ = median_seconds(lambda: plot_history(tmp), max(1, repeats // 2))
    sizes = {name: (tmp / name).stat().st_size for name in (SNAPSHOTS, LEADERBOARD, SUBMISSIONS)}
    lines = {name: len((tmp / name).read_text().splitlines()) - 1 for name in sizes}
    full = teams * count
    for path in sorted(tmp.iterdir(), reverse=True):
        path.unlink()
    tmp.rmdir()
    return "\n".join(
        [
            f"## Leaderboard tracking ({count} hourly snapshots, {teams} teams, {movers} improving per snapshot)",
            "",
            "Every snapshot rewrites each history file whole and atomically. "
            f"{len(history.submissions())} own submissions.",
            "",
            "| what | time |",
            "|---|---:|",
            f"| one snapshot, history of 10 snapshots (median of the first 10) "
            f"| {statistics.median(times[:10]) * 1e3:.0f} ms |",
            f"| one snapshot, history of {count} snapshots (median of the last 10) "
            f"| {statistics.median(times[-10:]) * 1e3:.0f} ms |",
            f"| all {count} snapshots | {total:.1f} s |",
            f"| read the history (replay every snapshot; median of {repeats}) | {read_t * 1e3:.0f} ms |",
            f"| draw the four plots (median of {max(1, repeats // 2)}) | {plot_t:.2f} s |",
            "",
            f"Sizes: `{LEADERBOARD}` {lines[LEADERBOARD]} rows, {sizes[LEADERBOARD] / 1e3:.0f} kB "
            f"(a full copy per snapshot would be {full} rows, {full / max(1, lines[LEADERBOARD]):.0f}× more); "
            f"`{SUBMISSIONS}` {lines[SUBMISSIONS]} rows, {sizes[SUBMISSIONS] / 1e3:.0f} kB; "
            f"`{SNAPSHOTS}` {lines[SNAPSHOTS]} rows, {sizes[SNAPSHOTS] / 1e3:.0f} kB.",
        ]
    )
