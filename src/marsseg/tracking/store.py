"""The history store: the CSV files of leaderboard snapshots and own submissions, how they are read back,
and the lock and crash-safe rewrites that keep them whole.

Three plain CSV files under `submissions/` (they diff well in git):

- `snapshots.csv`: one row per finished snapshot (id, time, competition, team, rank, best score). A
  snapshot exists only once its row is here: it is the commit marker, written last.
- `leaderboard_history.csv`: leaderboard *changes* only: a row when a team enters, when its entry
  (submission date, score, name) changes, or when it leaves. Replaying the rows of snapshots 1..k gives
  the leaderboard at snapshot k. Identity of an entry: (team_id, team_name, submission_date, score).
- `submission_history.csv`: the team's own submissions, a row when one first appears or its status or
  scores change (identity: ref, status, public_score, private_score, error), each linked to the run that
  produced it (preset, git commit, local validation mIoU stage 1/2/final, file) through the record
  `marsseg submit` writes (`submissions/records.csv`, see `marsseg.kaggle.records`); the link is copied
  into the row, so the history stands on its own.

Crash safety: every file is rewritten whole to a temporary file and moved into place (`marsseg.files`),
data files first, `snapshots.csv` last. Rows whose snapshot id is not in `snapshots.csv` belong to an
interrupted snapshot: readers ignore them and the next snapshot drops them. Readers take no lock: they
read `snapshots.csv` first, so any snapshot they see committed has its rows already in place.
Concurrency: writers hold an exclusive `fcntl.flock` on `.tracking.lock` from fetch to commit, so two
snapshots run one after the other and the second diffs against the first.
"""

from __future__ import annotations

import csv
import fcntl
import io
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from marsseg.tracking.link import LINK_FIELDS, link_submission, load_submit_records
from marsseg.tracking.parse import BoardEntry, SnapshotInfo, Submission, TrackingError, parse_score, ranked

SNAPSHOTS = "snapshots.csv"
LEADERBOARD = "leaderboard_history.csv"
SUBMISSIONS = "submission_history.csv"
LOCK = ".tracking.lock"

SNAPSHOT_FIELDS = (
    "snapshot",
    "taken_at",
    "competition",
    "source",
    "team",
    "team_id",
    "rank",
    "teams",
    "best_score",
    "leaderboard_changes",
    "submission_changes",
)
LEADERBOARD_FIELDS = ("snapshot", "taken_at", "change", "team_id", "team_name", "submission_date", "score")
SUBMISSION_FIELDS = (
    "snapshot",
    "taken_at",
    "ref",
    "date",
    "file_name",
    "description",
    "status",
    "public_score",
    "private_score",
    "error",
) + LINK_FIELDS

# Test hook, "SECONDS" or "SECONDS:FILE": sleep after each file (or after FILE) is written, announced on
# stderr, so a test can kill a snapshot at a known point between writes.
PAUSE_ENV = "MARSSEG_TRACK_PAUSE"


@dataclass
class History:
    """The committed history of one competition: snapshots in order, the leaderboard and own submissions
    as they stood at each snapshot."""

    directory: Path
    snapshots: list[SnapshotInfo]
    boards: list[list[BoardEntry]]  # ranked leaderboard at each snapshot
    submission_rows: list[tuple[int, Submission]]  # (snapshot id, submission) change rows
    records: list[dict] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.snapshots

    @property
    def latest(self) -> SnapshotInfo:
        return self.snapshots[-1]

    def submissions(self) -> list[Submission]:
        """Each own submission as last seen, oldest first, linked to its run (current records fill gaps)."""
        latest: dict[str, Submission] = {}
        links: dict[str, dict] = {}
        for _, sub in self.submission_rows:
            latest[sub.ref] = sub
            known = links.setdefault(sub.ref, {})
            known.update({k: v for k, v in sub.link.items() if v})
        out = []
        for ref, sub in latest.items():
            link = {k: "" for k in LINK_FIELDS}
            link.update(link_submission(sub, self.records) if self.records else {})
            link.update(links.get(ref, {}))
            out.append(Submission(**{**sub.__dict__, "link": link}))
        return sorted(out, key=lambda s: (s.date, s.ref))

    def team_entry(self, index: int) -> tuple[int | None, BoardEntry | None]:
        """The team's (rank, entry) on the leaderboard of snapshot `index`, or (None, None)."""
        snap = self.snapshots[index]
        for rank, entry in enumerate(self.boards[index], start=1):
            if (snap.team_id and entry.team_id == snap.team_id) or (
                not snap.team_id and snap.team and entry.team_name == snap.team
            ):
                return rank, entry
        return None, None


def _read_csv(path: Path, fields: tuple[str, ...]) -> list[dict]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise TrackingError(f"cannot read {path}: {exc.strerror}") from None
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None:
        return []
    missing = [f for f in ("snapshot",) if f not in reader.fieldnames]
    if missing:
        raise TrackingError(
            f"{path} is not a marsseg history file (no 'snapshot' column); move it aside and run `marsseg track`"
        )
    return [{f: (row.get(f) or "") for f in fields} for row in reader]


def _int(value, default=None):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _snapshot_from_row(row: dict) -> SnapshotInfo:
    return SnapshotInfo(
        id=_int(row["snapshot"]),
        taken_at=row["taken_at"],
        competition=row["competition"],
        source=row["source"],
        team=row["team"],
        team_id=row["team_id"],
        rank=_int(row["rank"]),
        teams=_int(row["teams"], 0),
        best_score=parse_score(row["best_score"]),
        leaderboard_changes=_int(row["leaderboard_changes"], 0),
        submission_changes=_int(row["submission_changes"], 0),
    )


def _entry_from_row(row: dict) -> BoardEntry:
    return BoardEntry(row["team_id"], row["team_name"], row["submission_date"], parse_score(row["score"]))


def _submission_from_row(row: dict) -> Submission:
    return Submission(
        ref=row["ref"],
        date=row["date"],
        file_name=row["file_name"],
        description=row["description"],
        status=row["status"],
        public_score=parse_score(row["public_score"]),
        private_score=parse_score(row["private_score"]),
        error=row["error"],
        link={k: row[k] for k in LINK_FIELDS},
    )


def read_history(history_dir="submissions", competition: str | None = None) -> History:
    """The committed snapshots (of `competition`, if given) with the leaderboard replayed at each one."""
    directory = Path(history_dir)
    # snapshots.csv first: the data files are replaced before it, so they hold every row it commits.
    snap_rows = _read_csv(directory / SNAPSHOTS, SNAPSHOT_FIELDS)
    board_rows = _read_csv(directory / LEADERBOARD, LEADERBOARD_FIELDS)
    sub_rows = _read_csv(directory / SUBMISSIONS, SUBMISSION_FIELDS)
    snapshots = []
    for row in snap_rows:
        sid = _int(row["snapshot"])
        if sid is None or (competition and row["competition"] != competition):
            continue
        snapshots.append(_snapshot_from_row(row))
    snapshots.sort(key=lambda s: s.id)
    committed = {s.id for s in snapshots}

    changes: dict[int, list[dict]] = {}
    for row in board_rows:
        sid = _int(row["snapshot"])
        if sid in committed:
            changes.setdefault(sid, []).append(row)
    boards, state = [], {}
    for snap in snapshots:
        for row in changes.get(snap.id, []):
            if row["change"] == "left":
                state.pop(row["team_id"], None)
            else:
                state[row["team_id"]] = _entry_from_row(row)
        boards.append(ranked(state.values()))

    submission_rows = []
    for row in sub_rows:
        sid = _int(row["snapshot"])
        if sid in committed:
            submission_rows.append((sid, _submission_from_row(row)))
    submission_rows.sort(key=lambda pair: pair[0])
    return History(directory, snapshots, boards, submission_rows, load_submit_records(directory))


# ------------------------------------------------------------------------------------------ writing


class _Lock:
    """An exclusive flock on `.tracking.lock`, held from fetch to commit."""

    def __init__(self, directory: Path):
        self.path = directory / LOCK
        self.handle = None

    def __enter__(self):
        self.handle = open(self.path, "a+")
        fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
        self.handle.close()


def _pause(step: str) -> None:
    seconds, _, only = (os.environ.get(PAUSE_ENV) or "0").partition(":")
    if float(seconds) > 0 and only in ("", step):
        print(f"[track] paused after {step}", file=sys.stderr, flush=True)
        time.sleep(float(seconds))


def _csv_text(fields: tuple[str, ...], rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _remove_stale_temporaries(directory: Path) -> None:
    """Temporary files left by a snapshot killed mid-write (we hold the lock, so none is live)."""
    for name in (SNAPSHOTS, LEADERBOARD, SUBMISSIONS):
        for tmp in directory.glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)
