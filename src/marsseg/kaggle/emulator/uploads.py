"""Uploaded submission files as the emulator's scorer sees them: a plain CSV or a zip holding one CSV, validated
against the competition profile (row count, ids, layout, class range) and scored against truth of its size."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

import numpy as np

from marsseg.competition import Competition
from marsseg.errors import SubmissionError
from marsseg.submission.formats import decode
from marsseg.submission.scoring import score_masks


@dataclass(frozen=True)
class Outcome:
    status: str  # COMPLETE or ERROR, as ListSubmissions spells them
    public: str = ""  # the public score as a string, '' when not scored
    note: str = ""  # why it failed, or why it was not scored ('' when scored): ListSubmissions' errorDescription


def unpack(data: bytes) -> bytes:
    """The CSV bytes of an upload: the file itself, or the one CSV inside a zip (Kaggle takes compressed files)."""
    if not data.startswith(b"PK\x03\x04"):
        return data
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = [i.filename for i in archive.infolist() if not i.is_dir()]
            if len(names) != 1 or not names[0].lower().endswith(".csv"):
                raise SubmissionError(f"the zip holds {names or 'no files'}; it must hold exactly one .csv file")
            return archive.read(names[0])
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise SubmissionError(f"the upload looks like a zip but cannot be read ({exc})") from None


def score_upload(
    data: bytes, competition: Competition, truth: np.ndarray | None, public: np.ndarray | None, unscored: str
) -> Outcome:
    """Validate DATA against COMPETITION; score it on the PUBLIC rows of TRUTH, or say UNSCORED when there is none."""
    try:
        csv = unpack(data)
        if not csv.strip():
            raise SubmissionError("the file is empty")
        info = decode(csv, competition.test_images, competition)
    except SubmissionError as exc:
        return Outcome("ERROR", note=f"invalid submission: {exc}")
    except Exception as exc:  # noqa: BLE001 - Kaggle answers ERROR for any file it cannot read, never a crash
        return Outcome("ERROR", note=f"invalid submission: unreadable ({type(exc).__name__}: {exc})"[:500])
    if info.layout != competition.submission_layout:
        return Outcome(
            "ERROR",
            note=f"invalid submission: the scorer takes the {competition.submission_layout} layout, got {info.layout}",
        )
    if truth is None:
        return Outcome("COMPLETE", note=f"not scored: {unscored}")
    score = score_masks(truth[public], info.masks[public], competition)["miou"]
    return Outcome("COMPLETE", f"{score:.5f}")
