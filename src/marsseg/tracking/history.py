"""Leaderboard history: snapshots of the public leaderboard and the team's own submissions, kept as CSV.

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
import io
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from marsseg.errors import UserError
from marsseg.files import atomic_write_text

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
LINK_FIELDS = ("preset", "git_commit", "val_miou_stage1", "val_miou_stage2", "val_miou_final", "local_file")
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


class TrackingError(UserError):
    """The history files are unreadable, or a snapshot cannot be taken."""


# ----------------------------------------------------------------------------------------- values
def parse_score(value) -> float | None:
    """Kaggle sends scores as strings; '' / None / 'nan' mean no score yet."""
    if value is None:
        return None
    try:
        score = float(str(value).strip())
    except ValueError:
        return None
    return score if math.isfinite(score) else None


def format_score(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def parse_time(value: str) -> datetime | None:
    """ISO 8601 from Kaggle ('2025-01-02T03:04:05.123Z') or from this module, as an aware UTC datetime."""
    if not value:
        return None
    text = str(value).strip().replace("Z", "+00:00")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_interval(text: str) -> float:
    """'90', '90s', '15m', '2h', '1d' -> seconds (at least 1)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    raw = str(text).strip().lower()
    factor = units.get(raw[-1:], None)
    number = raw[:-1] if factor else raw
    try:
        seconds = float(number) * (factor or 1)
    except ValueError:
        raise TrackingError(f"interval {text!r} is not a duration; use seconds or e.g. 30m, 2h") from None
    if not math.isfinite(seconds) or seconds < 1:
        raise TrackingError(f"interval {text!r} is too short; use at least 1 second (e.g. 30m)")
    return seconds


# ----------------------------------------------------------------------------------------- records
@dataclass(frozen=True)
class BoardEntry:
    team_id: str
    team_name: str
    submission_date: str
    score: float | None

    def identity(self) -> tuple:
        return (self.team_id, self.team_name, self.submission_date, format_score(self.score, 6))


@dataclass(frozen=True)
class Submission:
    ref: str
    date: str
    file_name: str
    description: str
    status: str
    public_score: float | None
    private_score: float | None
    error: str = ""
    link: dict = field(default_factory=dict, compare=False, hash=False)

    def identity(self) -> tuple:
        return (
            self.ref,
            self.status,
            format_score(self.public_score, 6),
            format_score(self.private_score, 6),
            self.error,
        )

    @property
    def val_miou_final(self) -> float | None:
        return parse_score(self.link.get("val_miou_final"))


@dataclass(frozen=True)
class SnapshotInfo:
    id: int
    taken_at: str
    competition: str
    source: str
    team: str
    team_id: str
    rank: int | None
    teams: int
    best_score: float | None
    leaderboard_changes: int
    submission_changes: int


def board_entry_from_api(row: dict) -> BoardEntry:
    """One GetLeaderboard row: {teamId, teamName, submissionDate, score}."""
    return BoardEntry(
        team_id=str(row.get("teamId", "")),
        team_name=str(row.get("teamName", "") or ""),
        submission_date=str(row.get("submissionDate", "") or ""),
        score=parse_score(row.get("score")),
    )


def submission_from_api(row: dict) -> Submission:
    """One ListSubmissions row: {ref, fileName, date, description, status, publicScore, privateScore, ...}."""
    status = str(row.get("status", "") or "PENDING").upper()
    if "." in status:  # an enum's repr such as SubmissionStatus.COMPLETE
        status = status.rsplit(".", 1)[1]
    return Submission(
        ref=str(row.get("ref", "")),
        date=str(row.get("date", "") or ""),
        file_name=str(row.get("fileName", "") or ""),
        description=str(row.get("description", "") or ""),
        status=status,
        public_score=parse_score(row.get("publicScore")),
        private_score=parse_score(row.get("privateScore")),
        error=str(row.get("errorDescription", "") or ""),
    )


def ranked(entries) -> list[BoardEntry]:
    """Kaggle's order for a higher-is-better score: best score first, earlier submission wins a tie."""
    return sorted(entries, key=lambda e: (e.score is None, -(e.score or 0.0), e.submission_date, e.team_id))


# ------------------------------------------------------------------------------ submit-time records
RECORDS = "records.csv"  # written by `marsseg submit` (marsseg.kaggle.records): one row per event


def load_submit_records(history_dir) -> list[dict]:
    """The latest row of each submission recorded at submit time (`records.csv` under `history_dir`),
    as {id, ref, file_name, description, preset, git_commit, val_miou_stage1/2/final, local_file}."""
    from marsseg.kaggle.records import latest_records

    path = Path(history_dir) / RECORDS
    try:
        latest = latest_records(path)
    except (OSError, csv.Error, KeyError, UnicodeDecodeError):
        return []  # a damaged record file must not stop tracking; the links just stay empty
    return [normalise_record(row) for row in latest.values()]


def normalise_record(row: dict) -> dict:
    local_file = str(row.get("file") or "")
    out = {
        "id": str(row.get("id") or ""),
        "ref": str(row.get("kaggle_ref") or ""),
        "file_name": Path(local_file).name if local_file else "",
        "description": str(row.get("message") or ""),
        "preset": str(row.get("preset") or ""),
        "git_commit": str(row.get("git_commit") or ""),
        "local_file": local_file,
    }
    for key in ("val_miou_stage1", "val_miou_stage2", "val_miou_final"):
        out[key] = format_score(parse_score(row.get(key)), 6)
    return out


def link_submission(sub: Submission, records: list[dict]) -> dict:
    """The run behind a Kaggle submission: by Kaggle ref, else by the exact message, else by the record id the
    message names, else by a file name that only one record has."""

    def pick(matches):
        return {k: matches[-1].get(k, "") for k in LINK_FIELDS} if len(matches) >= 1 else None

    candidates = []
    if sub.ref:
        candidates.append([r for r in records if r.get("ref") == sub.ref])
    if sub.description:
        candidates.append([r for r in records if r.get("description") == sub.description])
        candidates.append([r for r in records if r.get("id") and r["id"] in sub.description])
    for matches in candidates:
        if matches:
            return pick(matches)
    if sub.file_name:
        by_name = [r for r in records if r.get("file_name") == sub.file_name]
        if len(by_name) == 1:
            return pick(by_name)
    return {k: "" for k in LINK_FIELDS}


# ------------------------------------------------------------------------------------------ history
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


# ----------------------------------------------------------------------------------------- snapshot
class _Lock:
    """An exclusive flock on `.tracking.lock`, held from fetch to commit."""

    def __init__(self, directory: Path):
        self.path = directory / LOCK
        self.handle = None

    def __enter__(self):
        import fcntl

        self.handle = open(self.path, "a+")
        fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        import fcntl

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


def _find_team(
    team: str | None, subs_raw: list[dict], board: list[BoardEntry], previous: SnapshotInfo | None, session
) -> str:
    """The team's name on the leaderboard: the option; else a teamName in the own submissions; else the one
    leaderboard entry whose score and date are those of an own scored submission (a team's entry shows its
    best submission); else the last snapshot's team; else the Kaggle username."""
    if team:
        return team
    for row in subs_raw:
        if row.get("teamName"):
            return str(row["teamName"])
    own = {
        (format_score(parse_score(r.get("publicScore")), 5), _second(r.get("date")))
        for r in subs_raw
        if parse_score(r.get("publicScore")) is not None
    }
    matches = {e.team_name for e in board if (format_score(e.score, 5), _second(e.submission_date)) in own}
    if len(matches) == 1:
        return matches.pop()
    if previous is not None and previous.team:
        return previous.team
    username = getattr(session, "username", None)
    try:
        return str((username() if callable(username) else username) or "")
    except UserError:
        return ""


def _second(value) -> str:
    moment = parse_time(str(value or ""))
    return moment.strftime("%Y-%m-%dT%H:%M:%S") if moment else ""


def _source(session) -> str:
    """'emulator' or 'kaggle': a dry run against the emulator must not land in the real history."""
    return "emulator" if getattr(session, "endpoint", None) else "kaggle"


@dataclass(frozen=True)
class SnapshotResult:
    snapshot: SnapshotInfo
    leaderboard_rows: int
    submission_rows: int


def snapshot(
    session,
    competition: str,
    history_dir="submissions",
    team: str | None = None,
    now: str | None = None,
    source: str | None = None,
) -> SnapshotResult:
    """Fetch the public leaderboard and the team's submissions through `session` and append what changed.

    `session` has `leaderboard(competition) -> [{teamId, teamName, submissionDate, score}]` and
    `submissions(competition) -> [{ref, fileName, date, description, status, publicScore, privateScore}]`.
    """
    directory = Path(history_dir)
    directory.mkdir(parents=True, exist_ok=True)
    with _Lock(directory):
        _remove_stale_temporaries(directory)
        taken_at = now or utc_now_iso()
        board_raw = list(session.leaderboard(competition))
        subs_raw = list(session.submissions(competition))
        source = source or _source(session)

        # Committed rows only: rows of an interrupted snapshot are dropped here.
        snap_rows = [r for r in _read_csv(directory / SNAPSHOTS, SNAPSHOT_FIELDS) if _int(r["snapshot"]) is not None]
        committed_ids = {_int(r["snapshot"]) for r in snap_rows}
        board_rows = [
            r for r in _read_csv(directory / LEADERBOARD, LEADERBOARD_FIELDS) if _int(r["snapshot"]) in committed_ids
        ]
        sub_rows = [
            r for r in _read_csv(directory / SUBMISSIONS, SUBMISSION_FIELDS) if _int(r["snapshot"]) in committed_ids
        ]
        snapshot_id = max(committed_ids, default=0) + 1
        sources = {r["source"] for r in snap_rows if r["source"]}
        if sources and source not in sources:
            raise TrackingError(
                f"{directory}/ holds a history taken from {', '.join(sorted(sources))}, and this "
                f"snapshot comes from {source}; keep them apart with --history-dir "
                f"(e.g. --history-dir {directory}/{source})"
            )
        # The last committed state of this competition (replayed here: read_history would rank every snapshot).
        mine = sorted((_snapshot_from_row(r) for r in snap_rows if r["competition"] == competition), key=lambda i: i.id)
        mine_ids = {i.id for i in mine}
        previous: dict[str, BoardEntry] = {}
        for row in sorted(
            (r for r in board_rows if _int(r["snapshot"]) in mine_ids), key=lambda r: _int(r["snapshot"])
        ):
            if row["change"] == "left":
                previous.pop(row["team_id"], None)
            else:
                previous[row["team_id"]] = _entry_from_row(row)
        last_seen = {
            row["ref"]: _submission_from_row(row)
            for row in sorted(
                (r for r in sub_rows if _int(r["snapshot"]) in mine_ids), key=lambda r: _int(r["snapshot"])
            )
        }

        # Leaderboard changes against the last committed state of this competition.
        current: dict[str, BoardEntry] = {}
        for entry in ranked(board_entry_from_api(r) for r in board_raw):
            current.setdefault(entry.team_id, entry)  # a team listed twice keeps its best entry
        new_board_rows = []
        for team_id, entry in current.items():
            old = previous.get(team_id)
            if old is None or old.identity() != entry.identity():
                new_board_rows.append(_board_row(snapshot_id, taken_at, "entered" if old is None else "updated", entry))
        for team_id, old in previous.items():
            if team_id not in current:
                new_board_rows.append(_board_row(snapshot_id, taken_at, "left", old))

        # Own submissions: a row when one is new or its status/scores changed.
        records = load_submit_records(directory)
        new_sub_rows = []
        for sub in sorted((submission_from_api(r) for r in subs_raw), key=lambda s: (s.date, s.ref)):
            old = last_seen.get(sub.ref)
            if old is not None and old.identity() == sub.identity():
                continue
            link = link_submission(sub, records)
            if old is not None:  # keep a link found earlier if the record has gone since
                link = {k: link.get(k) or old.link.get(k, "") for k in LINK_FIELDS}
            new_sub_rows.append(
                {
                    "snapshot": snapshot_id,
                    "taken_at": taken_at,
                    "ref": sub.ref,
                    "date": sub.date,
                    "file_name": sub.file_name,
                    "description": sub.description,
                    "status": sub.status,
                    "public_score": format_score(sub.public_score, 6),
                    "private_score": format_score(sub.private_score, 6),
                    "error": sub.error,
                    **link,
                }
            )

        board = ranked(current.values())
        team = _find_team(team, subs_raw, board, mine[-1] if mine else None, session)
        team_id, rank = "", None
        for position, entry in enumerate(board, start=1):
            if team and entry.team_name == team:
                team_id, rank = entry.team_id, position
                break
        info = SnapshotInfo(
            id=snapshot_id,
            taken_at=taken_at,
            competition=competition,
            source=source,
            team=team,
            team_id=team_id,
            rank=rank,
            teams=len(board),
            best_score=board[rank - 1].score if rank else None,
            leaderboard_changes=len(new_board_rows),
            submission_changes=len(new_sub_rows),
        )

        # Data files first, the commit marker last; each file replaced whole and atomically.
        atomic_write_text(directory / LEADERBOARD, _csv_text(LEADERBOARD_FIELDS, board_rows + new_board_rows))
        _pause(LEADERBOARD)
        atomic_write_text(directory / SUBMISSIONS, _csv_text(SUBMISSION_FIELDS, sub_rows + new_sub_rows))
        _pause(SUBMISSIONS)
        atomic_write_text(directory / SNAPSHOTS, _csv_text(SNAPSHOT_FIELDS, snap_rows + [_snapshot_row(info)]))
        return SnapshotResult(info, len(new_board_rows), len(new_sub_rows))


def _board_row(snapshot_id: int, taken_at: str, change: str, entry: BoardEntry) -> dict:
    return {
        "snapshot": snapshot_id,
        "taken_at": taken_at,
        "change": change,
        "team_id": entry.team_id,
        "team_name": entry.team_name,
        "submission_date": entry.submission_date,
        "score": format_score(entry.score, 6),
    }


def _snapshot_row(info: SnapshotInfo) -> dict:
    return {
        "snapshot": info.id,
        "taken_at": info.taken_at,
        "competition": info.competition,
        "source": info.source,
        "team": info.team,
        "team_id": info.team_id,
        "rank": "" if info.rank is None else info.rank,
        "teams": info.teams,
        "best_score": format_score(info.best_score, 6),
        "leaderboard_changes": info.leaderboard_changes,
        "submission_changes": info.submission_changes,
    }


def describe_snapshot(result: SnapshotResult) -> str:
    info = result.snapshot
    standing = (
        f"team {info.team!r} rank {info.rank} of {info.teams}, best {format_score(info.best_score)}"
        if info.rank
        else f"team {info.team or '?'} not on the leaderboard ({info.teams} teams)"
    )
    return (
        f"snapshot {info.id} at {info.taken_at}: {standing}; "
        f"{result.leaderboard_rows} leaderboard change(s), {result.submission_rows} submission change(s)"
    )


# -------------------------------------------------------------------------------------------- views
def _table(header: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)] if rows else [len(h) for h in header]

    def line(cells):
        return "  ".join(
            str(c).rjust(w) if i in right else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _require(history: History) -> None:
    if history.empty:
        raise TrackingError(
            f"no leaderboard snapshots in {history.directory}/; take one with `marsseg track` "
            "(Kaggle credentials, or MARSSEG_KAGGLE_ENDPOINT for the emulator)"
        )


def format_leaderboard(history: History, top: int = 10) -> str:
    """The top N of the latest snapshot, then the team's rank and best score (and the change since the
    previous snapshot). The team's row is marked with '>' when it is in the top N."""
    _require(history)
    if top < 1:
        raise TrackingError("--top must be at least 1")
    snap, board = history.latest, history.boards[-1]
    rank, entry = history.team_entry(len(history.snapshots) - 1)
    rows = []
    for position, item in enumerate(board[:top], start=1):
        mark = ">" if rank == position else ""
        rows.append(
            [mark, str(position), item.team_name, format_score(item.score), item.submission_date[:19].replace("T", " ")]
        )
    lines = [
        f"{snap.competition}: public leaderboard at {snap.taken_at} (snapshot {snap.id}, {len(board)} teams)",
        _table(["", "rank", "team", "score", "submitted"], rows, right={1, 3}),
    ]
    if rank is None:
        lines.append(
            f"team {snap.team or '?'}: not on the leaderboard"
            + ("" if snap.team else " (no own submission names the team; pass --team NAME to `marsseg track`)")
        )
    else:
        change = ""
        if len(history.snapshots) > 1:
            before, _ = history.team_entry(len(history.snapshots) - 2)
            if before is None:
                change = " (new)"
            elif before != rank:
                change = f" (was {before})"
        lines.append(
            f"team {snap.team}: rank {rank} of {len(board)}{change}, best public score {format_score(entry.score)}"
        )
    return "\n".join(lines)


def format_history(history: History) -> str:
    """The team's submissions, oldest first: Kaggle status and scores next to the run's local scores."""
    _require(history)
    subs = history.submissions()
    if not subs:
        return f"no own submissions seen in {len(history.snapshots)} snapshot(s) of {history.latest.competition}"
    best = max((s.public_score for s in subs if s.public_score is not None), default=None)
    rows = []
    for sub in subs:
        link = sub.link
        rows.append(
            [
                "*" if best is not None and sub.public_score == best else "",
                sub.date[:16].replace("T", " "),
                sub.status.lower(),
                format_score(sub.public_score),
                format_score(sub.private_score),
                format_score(parse_score(link.get("val_miou_stage1"))),
                format_score(parse_score(link.get("val_miou_stage2"))),
                format_score(parse_score(link.get("val_miou_final"))),
                link.get("preset", ""),
                (link.get("git_commit") or "")[:10],
                sub.file_name,
                sub.ref,
            ]
        )
    header = [
        "",
        "submitted",
        "status",
        "public",
        "private",
        "val s1",
        "val s2",
        "val",
        "preset",
        "commit",
        "file",
        "ref",
    ]
    scored = [s for s in subs if s.public_score is not None]
    summary = (
        f"{len(subs)} submission(s), {len(scored)} scored"
        + (f", best public {format_score(best)} (*)" if best is not None else "")
        + f"; as of snapshot {history.latest.id} at {history.latest.taken_at}"
    )
    return _table(header, rows, right={3, 4, 5, 6, 7}) + "\n" + summary


# ------------------------------------------------------------------------------------ the commands
class PagedKaggle:
    """The fetcher `snapshot` uses: a KaggleSession's leaderboard and submission listings with every page.
    The 2.2.4 CLI asks for 20 rows unless told otherwise, which would hide a team ranked below 20th; it
    prints 'Next Page Token = …' before the JSON when the leaderboard has more."""

    def __init__(self, session, page_size: int = 100, max_pages: int = 100):
        self.session, self.page_size, self.max_pages = session, page_size, max_pages

    @property
    def endpoint(self):
        return getattr(self.session, "endpoint", None)

    def username(self) -> str:
        return self.session.username()

    def leaderboard(self, competition: str) -> list[dict]:
        rows, token = [], ""
        for _ in range(self.max_pages):
            args = [
                "competitions",
                "leaderboard",
                "-c",
                competition,
                "--show",
                "--format",
                "json",
                "--page-size",
                str(self.page_size),
            ] + (["--page-token", token] if token else [])
            out = self.session.kaggle(*args, what="competitions leaderboard")
            rows += _json_rows(out, "competitions leaderboard")
            found = re.search(r"Next Page Token = (\S+)", out)
            if not found or found.group(1) == token:
                break
            token = found.group(1)
        return rows

    def submissions(self, competition: str) -> list[dict]:
        # Newest first; older ones are in the history already, and a scored submission does not change.
        out = self.session.kaggle(
            "competitions",
            "submissions",
            "-c",
            competition,
            "--format",
            "json",
            "--page-size",
            str(self.page_size),
            what="competitions submissions",
        )
        return _json_rows(out, "competitions submissions")


def _json_rows(out: str, what: str) -> list[dict]:
    start = out.find("[")
    if start < 0:
        if re.search(r"No \w+ found", out):
            return []
        raise TrackingError(f"kaggle {what}: unexpected answer: {out.strip()[-200:]!r}")
    try:
        value = json.loads(out[start:])
    except json.JSONDecodeError:
        raise TrackingError(f"kaggle {what}: unreadable JSON answer") from None
    return [row for row in value if isinstance(row, dict)] if isinstance(value, list) else []


def open_session() -> PagedKaggle:
    """The kit's Kaggle session (real Kaggle, or the emulator MARSSEG_KAGGLE_ENDPOINT names), paged."""
    from marsseg.kaggle.client import KaggleSession

    return PagedKaggle(KaggleSession(log=lambda line: print(line, file=sys.stderr)))


def track(
    competition: str,
    history_dir="submissions",
    team: str | None = None,
    watch: float | None = None,
    count: int | None = None,
    session=None,
    log=print,
    sleep=time.sleep,
) -> list[SnapshotResult]:
    """Take one snapshot, or with `watch` seconds one every interval until stopped (or `count` taken).
    In watch mode a failure after the first snapshot is reported and the next one tried."""
    session = session or open_session()
    results = []
    while True:
        try:
            result = snapshot(session, competition, history_dir, team=team)
        except UserError as exc:
            if not watch or not results:
                raise
            log(f"snapshot failed, trying again in {watch:.0f} s: {exc}")
        else:
            results.append(result)
            log(describe_snapshot(result))
        if not watch or (count and len(results) >= count):
            return results
        sleep(watch)
