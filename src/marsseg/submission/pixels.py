"""The per-pixel (`pixels`) layout: header `id,0,1,…,H*W-1`; one row per image, labels flattened row-major
(the course's starter-notebook layout). Encoder and decoder work on whole byte rows with NumPy.
"""

from __future__ import annotations

import numpy as np

from marsseg.competition import MARS, Competition
from marsseg.errors import SubmissionError
from marsseg.submission._common import _check_masks


def pixels_header(competition: Competition = MARS) -> str:
    return "id," + ",".join(map(str, range(competition.pixels)))


def encode_pixels(masks: np.ndarray, competition: Competition = MARS) -> bytes:
    """`id,0,…` with one row per image, labels flattened row-major; one digit each, so built as bytes."""
    masks = _check_masks(masks, competition)
    if competition.num_classes > 10:
        raise ValueError("the byte-level pixels encoder needs single-digit labels")
    n, pixels = masks.shape[0], competition.pixels
    body = np.empty((n, 2 * pixels), np.uint8)
    body[:, 0::2] = masks.reshape(n, pixels) + ord("0")
    body[:, 1::2] = ord(",")
    body[:, -1] = ord("\n")
    rows = body.tobytes()
    width = 2 * pixels
    parts = [(pixels_header(competition) + "\n").encode("ascii")]
    parts.extend(f"{i},".encode("ascii") + rows[i * width : (i + 1) * width] for i in range(n))
    return b"".join(parts)


def decode_pixels(data: bytes | str, n_images: int | None = None, competition: Competition = MARS) -> np.ndarray:
    data = data.encode("ascii") if isinstance(data, str) else data
    lines = data.replace(b"\r\n", b"\n").split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    header = pixels_header(competition).encode("ascii")
    if not lines or lines[0].strip() != header:
        got = lines[0][:40].decode("ascii", "replace") if lines else ""
        raise SubmissionError(f"line 1: header starts {got!r}…, expected 'id,0,1,…,{competition.pixels - 1}'")
    body = lines[1:]
    if n_images is not None and len(body) != n_images:
        raise SubmissionError(f"{len(body)} rows, expected {n_images} (one per test image)")
    pixels = competition.pixels
    out = np.empty((len(body), pixels), np.uint8)
    top = ord("0") + competition.num_classes - 1
    for row, line in enumerate(body):
        ident, sep, rest = line.partition(b",")
        if ident.strip() != str(row).encode():
            raise SubmissionError(
                f"line {row + 2}: id {ident[:20].decode('ascii', 'replace')!r}, expected '{row}' (rows in image order)"
            )
        values = np.frombuffer(rest.rstrip(b"\r"), np.uint8)
        if len(values) == 2 * pixels - 1 and (values[1::2] == ord(",")).all():
            digits = values[0::2]
            if ((digits >= ord("0")) & (digits <= top)).all():
                out[row] = digits - ord("0")
                continue
        out[row] = _parse_pixel_row_slowly(rest, row, pixels, competition)
    return out.reshape(len(body), competition.height, competition.width)


def _parse_pixel_row_slowly(rest: bytes, row: int, pixels: int, competition: Competition) -> np.ndarray:
    """The careful path, taken only for rows the fast path rejects, so its message can be exact."""
    cells = rest.decode("ascii", "replace").strip().split(",")
    if len(cells) != pixels:
        raise SubmissionError(f"line {row + 2}: {len(cells)} labels, expected {pixels}")
    labels = np.empty(pixels, np.uint8)
    for column, cell in enumerate(cells):
        text = cell.strip()
        if not text.isdigit() or int(text) >= competition.num_classes:
            raise SubmissionError(
                f"line {row + 2}, column '{column}': {cell!r} is not a class 0–{competition.num_classes - 1}"
            )
        labels[column] = int(text)
    return labels
