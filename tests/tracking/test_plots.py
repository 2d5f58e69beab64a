import math
import random

import numpy as np
import pytest

from marsseg.kaggle.records import append_record
from marsseg.tracking.parse import TrackingError
from marsseg.tracking.plots import PLOTS, pearson, plot_history
from marsseg.tracking.snapshot import snapshot
from marsseg.tracking.store import read_history
from tests.conftest import run_cli
from tests.helpers.tracking_fakes import ScriptedKaggle, board, submission, three_steps

COMP = "test-comp"
MIN_BYTES = 15_000  # an empty 9x5 in figure with a title is about 10 kB; every plot here draws data


def assert_pngs(paths, directory):
    assert [p.name for p in paths] == list(PLOTS)
    for path in paths:
        assert path.parent == directory
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", path
        assert len(data) > MIN_BYTES, (path, len(data))


def test_plots_of_one_submission(tmp_path):
    append_record({"id": "a", "kaggle_ref": "101", "val_miou_final": 0.6}, tmp_path / "records.csv")
    steps = [{"leaderboard": board({"alpha": 0.7, "us": 0.62}), "submissions": [submission(101, 1, public=0.62)]}]
    snapshot(ScriptedKaggle(steps), COMP, tmp_path, now="2025-01-01T13:00:00Z")
    assert_pngs(plot_history(tmp_path), tmp_path)


def test_plots_of_a_hundred_submissions(tmp_path):
    rng = random.Random(0)
    teams = {f"team{i:02d}": 0.4 + 0.3 * rng.random() for i in range(40)}
    subs = []
    for ref in range(100):
        day, hour = 1 + ref // 4, 6 * (ref % 4)
        local = 0.45 + 0.3 * ref / 100 + rng.gauss(0, 0.01)
        status = "ERROR" if ref % 23 == 5 else "COMPLETE"
        public = None if status == "ERROR" else local - 0.02 + rng.gauss(0, 0.015)
        subs.append(submission(ref, day, status=status, public=public, hour=hour))
        append_record(
            {"id": f"r{ref}", "kaggle_ref": str(ref), "preset": "gpu", "val_miou_final": local},
            tmp_path / "records.csv",
        )
        if public is not None:
            teams["us"] = max(teams.get("us", 0.0), public)
        teams = {name: score + rng.random() * 0.002 for name, score in teams.items()}
        if ref % 4 == 3:  # a snapshot a day, while the leaderboard moves
            fake = ScriptedKaggle([{"leaderboard": board(teams, day), "submissions": subs}])
            snapshot(fake, COMP, tmp_path, now=f"2025-01-{day:02d}T23:00:00Z")
    history = read_history(tmp_path)
    assert len(history.snapshots) == 25 and len(history.submissions()) == 100
    assert_pngs(plot_history(tmp_path, competition=COMP), tmp_path)


def test_plots_with_pending_and_failed_submissions(tmp_path):
    fake = ScriptedKaggle(three_steps())
    snapshot(fake, COMP, tmp_path, now="2025-01-02T13:00:00Z")  # one scored, one pending
    out = tmp_path / "png"
    assert_pngs(plot_history(tmp_path, out), out)
    snapshot(fake.advance().advance(), COMP, tmp_path, now="2025-01-03T13:00:00Z")  # plus a failed one
    assert_pngs(plot_history(tmp_path, out), out)


def test_plots_when_nothing_is_scored_yet(tmp_path):
    steps = [{"leaderboard": board({"alpha": 0.7}), "submissions": [submission(1, 1, status="PENDING")]}]
    snapshot(ScriptedKaggle(steps), COMP, tmp_path, now="2025-01-01T13:00:00Z")
    paths = plot_history(tmp_path)
    assert all(p.stat().st_size > 5_000 for p in paths)


def test_plot_command_writes_the_pngs(tmp_path):
    fake = ScriptedKaggle(three_steps())
    for day in (1, 2, 3):
        snapshot(fake, COMP, tmp_path, now=f"2025-01-0{day}T20:00:00Z")
        fake.advance()
    result = run_cli("plot", "--history-dir", tmp_path, "--competition", COMP)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("wrote ") == 4
    assert_pngs([tmp_path / name for name in PLOTS], tmp_path)


def test_an_empty_history_cannot_be_plotted(tmp_path):
    with pytest.raises(TrackingError, match="marsseg track"):
        plot_history(tmp_path)


def test_pearson_matches_numpy():
    rng = np.random.default_rng(1)
    xs = rng.normal(size=30)
    ys = 0.5 * xs + rng.normal(size=30)
    assert pearson(list(xs), list(ys)) == pytest.approx(np.corrcoef(xs, ys)[0, 1])
    assert pearson([0.5], [0.6]) is None
    assert pearson([0.5, 0.5], [0.6, 0.7]) is None
    assert math.isclose(pearson([1, 2, 3], [3, 2, 1]), -1.0)
