"""Text views of the history: the latest leaderboard (`marsseg leaderboard`) and own submissions
(`marsseg history`)."""

from __future__ import annotations

from marsseg.tracking.parse import TrackingError, format_score, parse_score
from marsseg.tracking.store import History


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
