"""Helpers shared by the submission layouts: checking a mask stack, splitting CSV text into lines, quoting a
snippet of bad input for an error message."""

from __future__ import annotations

import numpy as np

from marsseg.competition import Competition
from marsseg.errors import SubmissionError


def _check_masks(masks: np.ndarray, competition: Competition) -> np.ndarray:
    masks = np.asarray(masks)
    if masks.ndim != 3 or masks.shape[1:] != competition.shape:
        raise SubmissionError(
            f"masks have shape {masks.shape}, expected (N, {competition.height}, {competition.width})"
        )
    if masks.size and (masks.min() < 0 or masks.max() >= competition.num_classes):
        raise SubmissionError(
            f"masks hold labels {masks.min()}..{masks.max()}, expected 0–{competition.num_classes - 1}"
        )
    return masks.astype(np.uint8, copy=False)


def _lines(text: bytes | str) -> list[str]:
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError as exc:
            line = text[: exc.start].count(b"\n") + 1
            raise SubmissionError(f"line {line}: not plain ASCII text") from None
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _show(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")
