"""A scripted stand-in for the Kaggle session, for the tracking and plot tests.

`ScriptedKaggle(steps)` answers `leaderboard()` and `submissions()` from `steps[i]` (the JSON fields of the
Kaggle API); `advance()` moves to the next step, so the leaderboard changes between snapshots. The
driver at the bottom runs one snapshot in a subprocess from a JSON file of steps (crash and concurrency
tests): `python tracking_fakes.py STEPS.json STEP HISTORY_DIR`.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

from tests.helpers.child_process import with_sources

COMP = "test-comp"


def board(scores: dict[str, float], day: int = 1) -> list[dict]:
    """Leaderboard rows for {team name: score}; team ids derive from the names."""
    rows = [
        {
            "teamId": _team_id(name),
            "teamName": name,
            "submissionDate": f"2025-01-{day:02d}T10:00:00.000Z",
            "score": f"{score:.5f}",
        }
        for name, score in scores.items()
    ]
    return sorted(rows, key=lambda r: -float(r["score"]))


def submission(
    ref: int,
    day: int,
    status: str = "COMPLETE",
    public: float | None = None,
    team: str = "us",
    file_name: str | None = None,
    description: str | None = None,
    hour: int = 12,
) -> dict:
    return {
        "ref": ref,
        "fileName": file_name or f"submission-{ref}.csv",
        "date": f"2025-01-{day:02d}T{hour:02d}:00:00.000Z",
        "description": description or f"run {ref}",
        "status": status,
        "publicScore": "" if public is None else f"{public:.5f}",
        "privateScore": "",
        "teamName": team,
    }


def subprocess_env(**extra) -> dict:
    """This environment plus `extra`, with the kit's sources and the tests importable in a child process."""
    return with_sources({**os.environ, **extra}, tests=True)


def rows(path: Path) -> list[dict]:
    """The rows of a history CSV file."""
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def take(fake, directory, day):
    """One snapshot of `fake` into `directory`, dated 2025-01-DAY."""
    from marsseg.tracking.snapshot import snapshot

    return snapshot(fake, COMP, directory, now=f"2025-01-{day:02d}T00:00:00Z")


def board_state(entries):
    """A read-back leaderboard as (team, score) pairs, for comparing boards."""
    return [(e.team_name, round(e.score, 5)) for e in entries]


def _team_id(name: str) -> int:
    return 1000 + sum(ord(c) * (i + 1) for i, c in enumerate(name))


class ScriptedKaggle:
    def __init__(self, steps: list[dict]):
        self.steps = steps
        self.index = 0
        self.calls = []

    def advance(self):
        self.index = min(self.index + 1, len(self.steps) - 1)
        return self

    def leaderboard(self, competition):
        self.calls.append(("leaderboard", competition))
        return [dict(row) for row in self.steps[self.index]["leaderboard"]]

    def submissions(self, competition):
        self.calls.append(("submissions", competition))
        return [dict(row) for row in self.steps[self.index]["submissions"]]


def three_steps() -> list[dict]:
    """A leaderboard that changes between snapshots: 'us' enters at rank 3 with a pending second
    submission, then that submission scores and takes rank 1 while 'delta' enters and 'gamma' leaves."""
    first = {
        "leaderboard": board({"alpha": 0.71, "beta": 0.66, "us": 0.62, "gamma": 0.55}),
        "submissions": [submission(101, 1, public=0.62), submission(102, 2, status="PENDING")],
    }
    second = {
        "leaderboard": board({"alpha": 0.71, "beta": 0.66, "us": 0.62, "gamma": 0.55}),
        "submissions": [submission(101, 1, public=0.62), submission(102, 2, status="PENDING")],
    }
    third = {
        "leaderboard": board({"us": 0.74, "alpha": 0.71, "beta": 0.69, "delta": 0.60}),
        "submissions": [
            submission(101, 1, public=0.62),
            submission(102, 2, public=0.74),
            submission(103, 3, status="ERROR"),
        ],
    }
    third["leaderboard"][0]["submissionDate"] = "2025-01-02T12:00:00.000Z"
    return [first, second, third]


if __name__ == "__main__":
    sys.path.insert(0, sys.argv[4]) if len(sys.argv) > 4 else None
    from marsseg.tracking.snapshot import describe_snapshot

    steps = json.loads(open(sys.argv[1]).read())
    fake = ScriptedKaggle(steps)
    fake.index = int(sys.argv[2])
    result = take(fake, sys.argv[3], fake.index + 1)
    print(describe_snapshot(result), flush=True)
