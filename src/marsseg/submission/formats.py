"""Submission files, the dispatch layer: detect a CSV's layout (`rle`, see rle.py; `pixels`, see pixels.py),
encode, decode, read, write, convert exactly between layouts and validate strictly. The layouts' encoders and
decoders are re-exported here, so callers import everything from this module.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from marsseg.competition import MARS, Competition
from marsseg.errors import SubmissionError
from marsseg.files import atomic_write_bytes
from marsseg.submission._common import _check_masks as _check_masks
from marsseg.submission._common import _lines as _lines
from marsseg.submission._common import _show
from marsseg.submission.pixels import decode_pixels, encode_pixels
from marsseg.submission.pixels import pixels_header as pixels_header
from marsseg.submission.rle import RLE_HEADER, decode_rle, encode_rle
from marsseg.submission.rle import rle_runs as rle_runs


@dataclass(frozen=True)
class SubmissionInfo:
    layout: str
    n_images: int
    masks: np.ndarray


def detect_layout(first_line: str) -> str:
    head = first_line.strip()
    if head == RLE_HEADER:
        return "rle"
    if head.startswith("id,0,1,"):
        return "pixels"
    raise SubmissionError(f"line 1: header {_show(head)} is neither {RLE_HEADER!r} nor 'id,0,1,…'")


def encode(masks: np.ndarray, layout: str = "rle", competition: Competition = MARS) -> bytes:
    if layout == "rle":
        return encode_rle(masks, competition)
    if layout == "pixels":
        return encode_pixels(masks, competition)
    raise SubmissionError(f"unknown submission layout {layout!r}; choose rle or pixels")


def decode(data: bytes, n_images: int | None = None, competition: Competition = MARS) -> SubmissionInfo:
    first = data[:200].split(b"\n", 1)[0].decode("ascii", "replace")
    layout = detect_layout(first)
    decoder = decode_rle if layout == "rle" else decode_pixels
    masks = decoder(data, n_images, competition)
    return SubmissionInfo(layout, len(masks), masks)


def read_submission(
    path: str | os.PathLike, n_images: int | None = None, competition: Competition = MARS
) -> SubmissionInfo:
    """Read and validate a submission CSV of either layout."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SubmissionError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SubmissionError(f"{path}: is a directory, not a CSV file") from None
    if not data.strip():
        raise SubmissionError(f"{path}: the file is empty")
    try:
        return decode(data, n_images, competition)
    except SubmissionError as exc:
        raise SubmissionError(f"{path}: {exc}") from None


def write_submission(
    path: str | os.PathLike, masks: np.ndarray, layout: str = "rle", competition: Competition = MARS
) -> Path:
    return atomic_write_bytes(path, encode(masks, layout, competition))


def convert(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    layout: str,
    n_images: int | None = None,
    competition: Competition = MARS,
) -> SubmissionInfo:
    """Exact conversion between layouts (decode, validate, encode)."""
    info = read_submission(src, n_images, competition)
    write_submission(dst, info.masks, layout, competition)
    return info
