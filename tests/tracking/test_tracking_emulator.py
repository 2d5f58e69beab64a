"""Leaderboard tracking against the loopback emulator: the real `kaggle` 2.2.4 CLI, driven through the kit's
own commands (`submit --file`, `track`, `leaderboard`, `history`, `plot`), while the emulator's scripted
leaderboard moves on every call."""

import json
import time

import numpy as np
import pytest

from marsseg.kaggle.records import latest_records
from marsseg.tracking.plots import PLOTS
from marsseg.tracking.session import PagedKaggle
from marsseg.tracking.snapshot import snapshot
from marsseg.tracking.store import LEADERBOARD, read_history
from tests.conftest import run_cli
from tests.helpers.kaggle_support import endpoint_of, kit_env, make_project, running_emulator

COMPETITION = "an-2-dl-2024-2025-homework-2"


@pytest.fixture
def small_data_file(tmp_path):
    """Synthetic data with the mars-mini profile's 32 test images (what the emulator and kit_env play)."""
    from marsseg.data.synth import make_synthetic, save_synthetic

    data, truth = tmp_path / "data.npz", tmp_path / "truth.npz"
    save_synthetic(make_synthetic(n_train=96, n_test=32, seed=7), data, truth)
    return data, truth


@pytest.fixture
def scored_emulator(tmp_path, small_data_file):
    data, truth = small_data_file
    with running_emulator(tmp_path / "emulator", data_path=data, truth_path=truth) as server:
        yield server


def _runs(tmp_path, small_data_file):
    """Two local runs with their run folders (config.json, metrics.json): a trained one and an all-soil one."""
    from marsseg.config import preset
    from marsseg.pipeline.run import run
    from marsseg.submission.formats import write_submission

    data, truth = small_data_file
    run(preset("smoke"), data, tmp_path / "run-good", log=lambda *_: None)
    weak = tmp_path / "run-weak"
    weak.mkdir()
    n_test = len(np.load(truth)["test_labels"])
    write_submission(weak / "submission.csv", np.ones((n_test, 64, 128), np.uint8), "pixels")
    (weak / "config.json").write_text(json.dumps({"preset": "cpu"}))
    (weak / "metrics.json").write_text(
        json.dumps({"val_miou_stage1": 0.1, "val_miou_stage2": 0.12, "val_miou_final": 0.15})
    )
    return tmp_path / "run-good" / "submission.csv", weak / "submission.csv"


def _ok(result):
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.slow
def test_submissions_and_snapshots_against_the_emulator(tmp_path, small_data_file, scored_emulator):
    good, weak = _runs(tmp_path, small_data_file)
    project = make_project(tmp_path)
    env = kit_env(tmp_path, endpoint_of(scored_emulator))
    history_dir = project / "submissions"
    started = time.perf_counter()

    _ok(run_cli("track", cwd=project, env=env))  # before any submission: the team is not on the board
    _ok(run_cli("submit", "--file", weak, cwd=project, env=env))
    _ok(run_cli("track", cwd=project, env=env))
    _ok(run_cli("submit", "--file", good, cwd=project, env=env))
    _ok(run_cli("track", cwd=project, env=env))
    fetched = _ok(run_cli("leaderboard", "--fetch", "--top", "3", cwd=project, env=env))  # a snapshot, then the view
    assert "snapshot 4 at" in fetched and "0 submission change(s)" in fetched

    history = read_history(history_dir, COMPETITION)
    assert [s.id for s in history.snapshots] == [1, 2, 3, 4]
    assert {s.source for s in history.snapshots} == {"emulator"}
    assert [s.team for s in history.snapshots] == ["tester"] * 4  # the username, then found on the board
    assert [s.rank is None for s in history.snapshots] == [True, False, False, False]
    # The scripted rivals improve on every call, so every snapshot records leaderboard changes.
    assert all(s.leaderboard_changes > 0 for s in history.snapshots)
    assert "Late Rover" not in {e.team_name for e in history.boards[0]}
    assert "Late Rover" in {e.team_name for e in history.boards[-1]}
    assert [s.submission_changes for s in history.snapshots] == [0, 1, 1, 0]

    # Each Kaggle submission is linked to its run through the submit-time record.
    records = {r["kaggle_ref"]: r for r in latest_records(history_dir / "records.csv").values()}
    subs = history.submissions()
    assert len(subs) == 2 and all(s.status == "COMPLETE" and s.public_score is not None for s in subs)
    weak_sub, good_sub = subs
    assert weak_sub.link["preset"] == "cpu" and weak_sub.val_miou_final == pytest.approx(0.15)
    assert good_sub.link["preset"] == "smoke"
    assert good_sub.val_miou_final == pytest.approx(float(records[good_sub.ref]["val_miou_final"]))
    assert good_sub.link["git_commit"] == records[good_sub.ref]["git_commit"]
    assert good_sub.public_score > weak_sub.public_score
    for sub in subs:
        assert sub.public_score == pytest.approx(
            float(scored_emulator.state.submissions[int(sub.ref) - 50001]["publicScore"])
        )

    # The views agree with the history; the team's rank is where its best score sits on the board.
    rank, entry = history.team_entry(3)
    assert entry.score == pytest.approx(good_sub.public_score)
    assert rank == 1 + sum(e.score > entry.score for e in history.boards[3])
    out = _ok(run_cli("leaderboard", "--top", "3", cwd=project, env=env))
    assert out in fetched  # the offline view prints what --fetch printed after its snapshot
    assert f"team tester: rank {rank} of {len(history.boards[3])}" in out
    assert f"best public score {entry.score:.4f}" in out
    assert len([line for line in out.splitlines() if line[:1] in (" ", ">") and "." in line]) == 3
    out = _ok(run_cli("history", cwd=project, env=env))
    assert f"{good_sub.public_score:.4f}" in out and f"{good_sub.val_miou_final:.4f}" in out and "0.1500" in out
    out = _ok(run_cli("plot", cwd=project, env=env))
    for name in PLOTS:
        assert (history_dir / name).stat().st_size > 15_000
    print(f"emulator tracking round trip: {time.perf_counter() - started:.1f} s")


def test_snapshots_through_the_real_client_page_and_dedupe(tmp_path, scored_emulator):
    """Fast: two snapshots in-process through KaggleSession; the listing is paged (page size 4 here)."""
    from marsseg.kaggle.client import KaggleSession

    state = scored_emulator.state
    state.submissions.append(
        {
            "ref": 50001,
            "fileName": "submission.csv",
            "date": "2025-01-03T04:05:06.000Z",
            "description": "marsseg x",
            "status": "COMPLETE",
            "publicScore": "0.90000",
            "privateScore": "",
            "errorDescription": "",
            "totalBytes": 1,
            "teamName": "tester",
            "submittedBy": "tester",
            "url": "",
        }
    )
    fetcher = PagedKaggle(KaggleSession(env=kit_env(tmp_path, endpoint_of(scored_emulator))), page_size=4)
    first = snapshot(fetcher, COMPETITION, tmp_path / "h")
    second = snapshot(fetcher, COMPETITION, tmp_path / "h")
    # more than one page of 4 (the emulator moves its board on every call, so pages may overlap)
    assert first.snapshot.teams > 4 and first.snapshot.source == "emulator"
    assert (first.snapshot.team, first.snapshot.rank) == ("tester", 1)
    assert (first.submission_rows, second.submission_rows) == (1, 0)
    assert second.leaderboard_rows > 0  # the rivals moved between the snapshots
    assert sum(1 for line in (tmp_path / "h" / LEADERBOARD).read_text().splitlines() if ",tester," in line) == 1
