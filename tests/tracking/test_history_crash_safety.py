"""A snapshot killed mid-write, or two at once, leaves the history complete and readable."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from marsseg.tracking.store import LEADERBOARD, PAUSE_ENV, SNAPSHOTS, SUBMISSIONS, read_history
from tests.helpers.tracking_fakes import COMP, ScriptedKaggle, board_state, rows, subprocess_env, take, three_steps

FAKES = Path(__file__).parents[1] / "helpers" / "tracking_fakes.py"


def _start_snapshot(steps_file, step, directory, pause=None):
    env = subprocess_env(**({PAUSE_ENV: str(pause)} if pause else {}))
    return subprocess.Popen(
        [sys.executable, str(FAKES), str(steps_file), str(step), str(directory)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _wait_for_line(process, text, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if text in line:
            return line
        if not line and process.poll() is not None:
            break
    raise AssertionError(f"never saw {text!r}; rc={process.poll()} stderr={process.stderr.read()}")


@pytest.mark.parametrize("killed_after", [LEADERBOARD, SUBMISSIONS])
def test_a_snapshot_killed_mid_write_leaves_the_history_complete(tmp_path, killed_after):
    steps = tmp_path / "steps.json"
    steps.write_text(json.dumps(three_steps()))
    history_dir = tmp_path / "history"
    for step in (0, 1):
        process = _start_snapshot(steps, step, history_dir)
        assert process.wait(60) == 0, process.stderr.read()
    committed = read_history(history_dir, COMP)
    process = _start_snapshot(steps, 2, history_dir, pause=f"30:{killed_after}")
    _wait_for_line(process, f"paused after {killed_after}")
    os.kill(process.pid, signal.SIGKILL)
    process.wait(10)
    process.stdout.close(), process.stderr.close()

    # The killed snapshot's rows are on disk, but not committed: readers see exactly snapshots 1 and 2.
    assert any(r["snapshot"] == "3" for r in rows(history_dir / LEADERBOARD))
    after = read_history(history_dir, COMP)
    assert [s.id for s in after.snapshots] == [1, 2]
    assert [board_state(b) for b in after.boards] == [board_state(b) for b in committed.boards]
    assert [(s.ref, s.status) for s in after.submissions()] == [("101", "COMPLETE"), ("102", "PENDING")]

    # The next snapshot drops the orphans and records snapshot 3's changes once.
    process = _start_snapshot(steps, 2, history_dir)
    assert process.wait(60) == 0, process.stderr.read()
    process.stdout.close(), process.stderr.close()
    final = read_history(history_dir, COMP)
    assert [s.id for s in final.snapshots] == [1, 2, 3]
    assert board_state(final.boards[-1]) == [("us", 0.74), ("alpha", 0.71), ("beta", 0.69), ("delta", 0.60)]
    assert [r["snapshot"] for r in rows(history_dir / LEADERBOARD)].count("3") == 4
    assert [r["snapshot"] for r in rows(history_dir / SUBMISSIONS)].count("3") == 2


def test_a_temporary_file_left_by_a_kill_is_removed(tmp_path):
    take(ScriptedKaggle(three_steps()), tmp_path, 1)
    stale = tmp_path / f".{LEADERBOARD}.abc123.tmp"
    stale.write_text("snapshot,taken_at\n2,half")
    take(ScriptedKaggle(three_steps()), tmp_path, 2)
    assert not stale.exists()
    assert [s.id for s in read_history(tmp_path).snapshots] == [1, 2]


def test_two_snapshots_at_once_run_one_after_the_other(tmp_path):
    steps = tmp_path / "steps.json"
    steps.write_text(json.dumps(three_steps()))
    history_dir = tmp_path / "history"
    first = _start_snapshot(steps, 0, history_dir, pause=1)
    _wait_for_line(first, "paused after")  # the first holds the lock, mid-snapshot
    second = _start_snapshot(steps, 0, history_dir, pause=1)
    for process in (first, second):
        assert process.wait(60) == 0, process.stderr.read()
        process.stdout.close(), process.stderr.close()
    snaps = rows(history_dir / SNAPSHOTS)
    assert [r["snapshot"] for r in snaps] == ["1", "2"]
    assert [(r["leaderboard_changes"], r["submission_changes"]) for r in snaps] == [("4", "2"), ("0", "0")]
    assert len(rows(history_dir / LEADERBOARD)) == 4 and len(rows(history_dir / SUBMISSIONS)) == 2
