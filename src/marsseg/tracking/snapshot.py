"""Taking one snapshot: fetch the leaderboard and own submissions, find the team, append what changed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from marsseg.errors import UserError
from marsseg.files import atomic_write_text
from marsseg.stamps import utc_now
from marsseg.tracking.link import LINK_FIELDS, link_submission, load_submit_records
from marsseg.tracking.parse import (
    BoardEntry,
    SnapshotInfo,
    TrackingError,
    board_entry_from_api,
    format_score,
    parse_score,
    parse_time,
    ranked,
    submission_from_api,
)
from marsseg.tracking.store import (
    LEADERBOARD,
    LEADERBOARD_FIELDS,
    SNAPSHOT_FIELDS,
    SNAPSHOTS,
    SUBMISSION_FIELDS,
    SUBMISSIONS,
    _csv_text,
    _entry_from_row,
    _int,
    _Lock,
    _pause,
    _read_csv,
    _remove_stale_temporaries,
    _snapshot_from_row,
    _submission_from_row,
)


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
        taken_at = now or utc_now()
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
