"""The last leg of both submit flows: check, zip, send at most once, confirm by listing, wait for the score, record.

Never twice: `competitions submit` gets no blind transport retry (Kaggle may answer 5xx after creating the
submission, and a duplicate costs one of the day's slots). Every send, the first included, comes after a look at
the submissions list for this attempt's id (in its description); a try is sent again only when that look finds
it absent. Once the client has said "submitted", it is never sent again, only looked for.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from marsseg.competition import Competition
from marsseg.kaggle.client import KaggleError, KaggleSession
from marsseg.kaggle.guard import SubmissionRefused, check_submission, zip_submission
from marsseg.kaggle.records import RECORDS_PATH, append_record
from marsseg.kaggle.rules import enforce_rules

SCORED = {"complete", "error"}


@dataclass
class Attempt:
    """One submission attempt: what goes into each record row."""

    id: str
    competition: str
    fields: dict = field(default_factory=dict)
    records: Path = RECORDS_PATH

    def record(self, status: str, **changes) -> dict:
        self.fields.update(changes)
        return append_record(
            {"id": self.id, "competition": self.competition, **self.fields, "status": status}, self.records
        )

    def fail(self, status: str, exc: Exception):
        self.record(status, detail=str(exc))
        return exc


def describe(attempt: Attempt) -> str:
    f = attempt.fields
    miou = f.get("val_miou_final")
    score = f"{miou:.4f}" if isinstance(miou, float) else "n/a"
    return f"marsseg {attempt.id} preset={f.get('preset') or 'unknown'} commit={f.get('git_commit')} val_mIoU={score}"


def find_listed(session: KaggleSession, attempt: Attempt) -> dict | None:
    """This attempt's entry in the competition's submissions list (matched by its id in the description)."""
    for item in session.submissions(attempt.competition):
        if attempt.id in str(item.get("description", "")):
            return item
    return None


def submit_and_confirm(session: KaggleSession, attempt: Attempt, upload: Path, log=print) -> dict:
    """Send `upload` at most once per absent look, and return its listed entry."""
    message = describe(attempt)
    attempt.fields["message"] = message
    state = {"sent": False, "tries": 0}

    def once():
        existing = find_listed(session, attempt)  # a try that failed may still have created it
        if existing is None and not state["sent"]:
            if state["tries"]:
                log(f"[kaggle] {attempt.id} is not in the submissions list after the failed try; sending it again")
            state["tries"] += 1
            session.submit(attempt.competition, upload, message)
            state["sent"] = True  # the client said submitted: from now on only look for it
            existing = find_listed(session, attempt)
        if existing is None:
            raise KaggleError(f"submission {attempt.id} is not in the competition's list after submitting ({message})")
        return existing

    return session.retrying("competitions submit", once)


def _status(item: dict) -> str:
    return str(item.get("status", "")).rsplit(".", 1)[-1].lower() or "pending"


def await_score(session: KaggleSession, attempt: Attempt, item: dict, log=print) -> dict:
    """Look again while Kaggle is still scoring, up to MARSSEG_KAGGLE_SCORE_WAIT seconds (default 60)."""
    wait = float(session.env.get("MARSSEG_KAGGLE_SCORE_WAIT", 60))
    poll = float(session.env.get("MARSSEG_KAGGLE_POLL", 10))
    deadline = time.monotonic() + wait
    while _status(item) not in SCORED and time.monotonic() < deadline:
        session.sleep(poll)
        try:
            item = find_listed(session, attempt) or item
        except KaggleError as exc:
            log(f"[kaggle] could not look at the score yet ({exc}); `make status` shows it later")
            break
    return item


def finish(attempt: Attempt, item: dict, log=print) -> dict:
    status = _status(item)
    row = attempt.record(
        status if status in {"pending", "complete", "error"} else "pending",
        kaggle_ref=item.get("ref", ""),
        public_score=item.get("publicScore") or "",
        detail=item.get("errorDescription") or "",
    )
    if status == "error":
        raise KaggleError(
            f"Kaggle could not score submission {attempt.id}: {row['detail'] or 'no reason given'} "
            f"(recorded in {attempt.records})"
        )
    score = f", public score {row['public_score']}" if row["public_score"] else ""
    log(
        f"[kaggle] submitted {row['file']} as {attempt.id} (ref {row['kaggle_ref']}): {status}{score}; "
        f"recorded in {attempt.records}"
    )
    return row


def submit_staged(
    session: KaggleSession,
    attempt: Attempt,
    staged: Path,
    competition: Competition,
    images: int | None,
    allowed_sources: tuple[str, ...],
    kernel: Path | None,
    metadata_path: Path,
    log=print,
) -> dict:
    """Rules and the profile check again right before it leaves; zip; send once; confirm; record."""
    enforce_rules(kernel, metadata_path, allowed_sources, log=lambda *_: None)
    try:
        info = check_submission(staged, competition, images, layout=competition.submission_layout)
    except SubmissionRefused as exc:
        raise attempt.fail("refused", exc) from None
    upload = zip_submission(staged)
    csv_bytes, zip_bytes = staged.stat().st_size, upload.stat().st_size
    attempt.fields.update(csv_bytes=csv_bytes, zip_bytes=zip_bytes)
    log(
        f"[kaggle] {staged}: valid {info.layout} submission, {info.n_images} images; uploading {upload.name} "
        f"({zip_bytes / 1e6:.2f} MB deflated from {csv_bytes / 1e6:.2f} MB)"
    )
    try:
        item = submit_and_confirm(session, attempt, upload, log)
    except KaggleError as exc:
        attempt.fail("submit_failed", exc)
        raise KaggleError(
            f"{exc} — nothing is lost: {staged} and its record in {attempt.records} stay; check "
            f"`kaggle competitions submissions -c {attempt.competition}` for {attempt.id}, then retry with "
            f"`make submit-csv FILE={staged}`"
        ) from None
    return finish(attempt, await_score(session, attempt, item, log), log)
