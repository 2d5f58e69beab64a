import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marsseg.kaggle.records import append_record
from marsseg.tracking.parse import TrackingError, parse_interval
from marsseg.tracking.snapshot import snapshot
from marsseg.tracking.store import LEADERBOARD, SNAPSHOTS, SUBMISSIONS, read_history
from marsseg.tracking.track import track
from marsseg.tracking.views import format_leaderboard
from tests.conftest import one_line_error, run_cli
from tests.helpers.tracking_fakes import (
    COMP,
    ScriptedKaggle,
    board,
    board_state,
    rows,
    take,
    three_steps,
)


# -------------------------------------------------------------------------------- history content
def test_history_replays_the_leaderboard_at_every_snapshot(three_snapshots):
    directory, results = three_snapshots
    history = read_history(directory, COMP)
    assert [s.id for s in history.snapshots] == [1, 2, 3]
    assert board_state(history.boards[0]) == [("alpha", 0.71), ("beta", 0.66), ("us", 0.62), ("gamma", 0.55)]
    assert board_state(history.boards[1]) == board_state(history.boards[0])
    assert board_state(history.boards[2]) == [("us", 0.74), ("alpha", 0.71), ("beta", 0.69), ("delta", 0.60)]
    assert [history.team_entry(i)[0] for i in range(3)] == [3, 3, 1]
    assert [(r.snapshot.rank, r.snapshot.teams, r.snapshot.team) for r in results] == [
        (3, 4, "us"),
        (3, 4, "us"),
        (1, 4, "us"),
    ]
    assert results[2].snapshot.best_score == pytest.approx(0.74)


def test_only_changes_are_stored(three_snapshots):
    directory, results = three_snapshots
    changes = [(r["snapshot"], r["change"], r["team_name"]) for r in rows(directory / LEADERBOARD)]
    assert changes[:4] == [("1", "entered", n) for n in ("alpha", "beta", "us", "gamma")]
    # snapshot 2 saw the same leaderboard: no rows; snapshot 3: us and beta improved, delta entered, gamma left
    assert sorted(changes[4:]) == [
        ("3", "entered", "delta"),
        ("3", "left", "gamma"),
        ("3", "updated", "beta"),
        ("3", "updated", "us"),
    ]
    assert [(r.leaderboard_rows, r.submission_rows) for r in results] == [(4, 2), (0, 0), (4, 2)]
    subs = [(r["snapshot"], r["ref"], r["status"], r["public_score"]) for r in rows(directory / SUBMISSIONS)]
    assert subs == [
        ("1", "101", "COMPLETE", "0.620000"),
        ("1", "102", "PENDING", ""),
        ("3", "102", "COMPLETE", "0.740000"),
        ("3", "103", "ERROR", ""),
    ]
    assert [r["snapshot"] for r in rows(directory / SNAPSHOTS)] == ["1", "2", "3"]


def test_rerunning_a_snapshot_adds_no_duplicates(tmp_path):
    fake = ScriptedKaggle(three_steps())
    take(fake, tmp_path, 1)
    before = {name: (tmp_path / name).read_text() for name in (LEADERBOARD, SUBMISSIONS)}
    again = [take(fake, tmp_path, 1) for _ in range(3)]
    assert [(r.leaderboard_rows, r.submission_rows) for r in again] == [(0, 0)] * 3
    assert {name: (tmp_path / name).read_text() for name in before} == before
    assert len(rows(tmp_path / SNAPSHOTS)) == 4  # every look is logged once, for the rank timeline
    history = read_history(tmp_path)
    assert len(history.submissions()) == 2
    assert len({e.team_id for e in history.boards[-1]}) == len(history.boards[-1]) == 4


def test_a_pending_submission_that_scores_is_one_submission_with_two_rows(three_snapshots):
    directory, _ = three_snapshots
    subs = {s.ref: s for s in read_history(directory).submissions()}
    assert sorted(subs) == ["101", "102", "103"]
    assert (subs["102"].status, subs["102"].public_score) == ("COMPLETE", pytest.approx(0.74))
    assert (subs["103"].status, subs["103"].public_score) == ("ERROR", None)


def test_submissions_are_linked_to_their_run_record(tmp_path):
    records = tmp_path / "records.csv"
    append_record(
        {
            "id": "20250101-a",
            "file": "submissions/20250101-a/submission.csv",
            "preset": "gpu",
            "git_commit": "abc1234def",
            "status": "started",
            "message": "run 101",
        },
        records,
    )
    append_record(
        {
            "id": "20250101-a",
            "file": "submissions/20250101-a/submission.csv",
            "preset": "gpu",
            "git_commit": "abc1234def",
            "val_miou_stage1": 0.58,
            "val_miou_stage2": 0.61,
            "val_miou_final": 0.63,
            "kaggle_ref": "101",
            "status": "complete",
            "message": "x",
        },
        records,
    )
    # no Kaggle ref (the submit was not confirmed): found through the record id its message names
    append_record(
        {
            "id": "20250102-b",
            "preset": "kaggle",
            "git_commit": "fff0000",
            "val_miou_final": 0.70,
            "status": "submit_failed",
            "message": "marsseg 20250102-b preset=kaggle",
        },
        records,
    )
    steps = three_steps()
    for step in steps:
        step["submissions"][1]["description"] = "marsseg 20250102-b preset=kaggle val=0.70"
    fake = ScriptedKaggle(steps)
    take(fake, tmp_path, 1)
    take(fake.advance().advance(), tmp_path, 3)
    subs = {s.ref: s for s in read_history(tmp_path).submissions()}
    assert subs["101"].link["preset"] == "gpu" and subs["101"].link["git_commit"] == "abc1234def"
    assert subs["101"].link["local_file"] == "submissions/20250101-a/submission.csv"
    assert [float(subs["101"].link[k]) for k in ("val_miou_stage1", "val_miou_stage2", "val_miou_final")] == [
        0.58,
        0.61,
        0.63,
    ]
    assert subs["102"].link["preset"] == "kaggle" and subs["102"].val_miou_final == pytest.approx(0.70)
    assert subs["103"].link["preset"] == ""
    stored = {r["ref"]: r for r in rows(tmp_path / SUBMISSIONS) if r["snapshot"] == "1"}
    assert stored["101"]["git_commit"] == "abc1234def"  # the link is kept in the history itself
    records.unlink()  # ... so it outlives the record
    assert {s.ref: s for s in read_history(tmp_path).submissions()}["101"].link["preset"] == "gpu"


def test_a_damaged_record_file_leaves_links_empty_but_tracks(tmp_path):
    (tmp_path / "records.csv").write_bytes(b"\xff\xfe garbage\n")
    result = take(ScriptedKaggle(three_steps()), tmp_path, 1)
    assert result.submission_rows == 2


def test_finding_the_team_when_submissions_do_not_name_it(tmp_path):
    """The 2.2.4 CLI's submission listing has no teamName: option, then the leaderboard entry that shows an
    own submission's score and date, then the last snapshot's team, then the username."""
    steps = three_steps()
    for row in steps[0]["submissions"]:
        del row["teamName"]
    result = snapshot(ScriptedKaggle(steps), COMP, tmp_path / "a", team="beta")
    assert (result.snapshot.team, result.snapshot.rank) == ("beta", 2)
    result = snapshot(ScriptedKaggle(steps), COMP, tmp_path / "a")
    assert (result.snapshot.team, result.snapshot.rank) == ("beta", 2)  # sticks to the last snapshot's team

    result = snapshot(ScriptedKaggle(steps), COMP, tmp_path / "b")  # no date matches: nothing to go on
    assert (result.snapshot.team, result.snapshot.rank) == ("", None)
    assert "not on the leaderboard" in format_leaderboard(read_history(tmp_path / "b"))

    steps[0]["submissions"][0]["date"] = "2025-01-01T10:00:00Z"  # the entry of 'us' shows submission 101
    result = snapshot(ScriptedKaggle(steps), COMP, tmp_path / "c")
    assert (result.snapshot.team, result.snapshot.rank) == ("us", 3)

    steps[0]["submissions"][0]["date"] = "2025-01-01T11:00:00Z"
    named = ScriptedKaggle(steps)
    named.username = lambda: "gamma"
    result = snapshot(named, COMP, tmp_path / "d")
    assert (result.snapshot.team, result.snapshot.rank) == ("gamma", 4)


def test_an_emulator_snapshot_does_not_land_in_a_real_history(tmp_path):
    take(ScriptedKaggle(three_steps()), tmp_path, 1)
    dry_run = ScriptedKaggle(three_steps())
    dry_run.endpoint = "http://127.0.0.1:7777"
    with pytest.raises(TrackingError, match="--history-dir"):
        take(dry_run, tmp_path, 2)
    assert [s.source for s in read_history(tmp_path).snapshots] == ["kaggle"]
    assert take(dry_run, tmp_path / "emulator", 2).snapshot.source == "emulator"


# ----------------------------------------------------------------------------------- track/watch
def test_parse_interval():
    assert [parse_interval(x) for x in ("90", "90s", "15m", "2h", "1d")] == [90, 90, 900, 7200, 86400]
    for bad in ("soon", "0", "-5m", "", "nan"):
        with pytest.raises(TrackingError):
            parse_interval(bad)


def test_watch_repeats_and_survives_a_failed_snapshot(tmp_path):
    fake = ScriptedKaggle(three_steps())
    original = fake.leaderboard
    calls = {"n": 0}

    def flaky(competition):
        calls["n"] += 1
        if calls["n"] == 2:
            raise TrackingError("HTTP 503 from Kaggle")
        fake.advance()
        return original(competition)

    fake.leaderboard = flaky
    slept, log = [], []
    results = track(COMP, tmp_path, watch=60, count=3, session=fake, log=log.append, sleep=slept.append)
    assert len(results) == 3 and slept == [60, 60, 60]
    assert any("snapshot failed" in line and "503" in line for line in log)
    assert [s.id for s in read_history(tmp_path).snapshots] == [1, 2, 3]
    with pytest.raises(TrackingError):  # the first snapshot failing stops the watch at once
        fake.leaderboard = lambda c: (_ for _ in ()).throw(TrackingError("no credentials"))
        track(COMP, tmp_path / "other", watch=60, session=fake, log=log.append, sleep=slept.append)


def test_track_command_rejects_a_bad_interval():
    assert "interval" in one_line_error(run_cli("track", "--watch", "soon"))


def test_track_without_credentials_is_one_line_saying_how(tmp_path):
    from tests.helpers.kaggle_support import kit_env

    result = run_cli("track", "--history-dir", tmp_path / "h", env=kit_env(tmp_path, None, credentials=False))
    assert "KAGGLE_KEY" in one_line_error(result)
    assert not (tmp_path / "h" / SNAPSHOTS).exists()


def test_competitions_are_kept_apart_in_one_history(tmp_path):
    fake = ScriptedKaggle(three_steps())
    take(fake, tmp_path, 1)
    other = ScriptedKaggle([{"leaderboard": board({"solo": 0.5}), "submissions": []}])
    result = snapshot(other, "other-comp", tmp_path, now="2025-01-02T00:00:00Z")
    assert (result.snapshot.id, result.leaderboard_rows) == (2, 1)
    take(fake.advance(), tmp_path, 3)  # diffs against test-comp's own last state, not other-comp's
    assert [s.id for s in read_history(tmp_path, COMP).snapshots] == [1, 3]
    assert board_state(read_history(tmp_path, "other-comp").boards[-1]) == [("solo", 0.5)]
    assert rows(tmp_path / SNAPSHOTS)[-1]["leaderboard_changes"] == "0"
    with pytest.raises(TrackingError, match="--competition"):
        from marsseg.tracking.plots import plot_history

        plot_history(tmp_path)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(["a", "b", "c", "d", "e", "f"]), st.sampled_from([0.1, 0.2, 0.30001, 0.4, 0.5]), max_size=6
        ),
        min_size=1,
        max_size=6,
    )
)
def test_replaying_the_changes_gives_back_every_fetched_leaderboard(boards):
    with tempfile.TemporaryDirectory() as directory:
        for day, scores in enumerate(boards, start=1):
            fake = ScriptedKaggle([{"leaderboard": board(scores, day=1 + day % 3), "submissions": []}])
            first = snapshot(fake, COMP, directory, now=f"2025-01-{day:02d}T00:00:00Z")
            again = snapshot(fake, COMP, directory, now=f"2025-01-{day:02d}T00:30:00Z")
            assert again.leaderboard_rows == 0 and first.snapshot.teams == len(scores)
        history = read_history(directory)
        replayed = [board_state(b) for b in history.boards[::2]]
        expected = [
            sorted(((n, round(s, 5)) for n, s in scores.items()), key=lambda p: (-p[1], p[0])) for scores in boards
        ]
        # equal scores tie-break by date then team id, so compare as sets per score
        assert [sorted(r) for r in replayed] == [sorted(e) for e in expected]
        assert [[s for _, s in r] for r in replayed] == [[s for _, s in e] for e in expected]
