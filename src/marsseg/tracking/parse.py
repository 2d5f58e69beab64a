"""Values of the leaderboard history: parsing and formatting scores, times and intervals, the record
types (BoardEntry, Submission, SnapshotInfo) and their constructors from Kaggle API rows."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone

from marsseg.errors import UserError


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
    """ISO 8601 from Kaggle ('2025-01-02T03:04:05.123Z') or from the history files, as an aware UTC datetime."""
    if not value:
        return None
    text = str(value).strip().replace("Z", "+00:00")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


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
