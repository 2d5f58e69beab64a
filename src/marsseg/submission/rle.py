"""The run-length (`rle`) layout: header `id,EncodedPixels`; one row per image and scored class, id
`<image>_<class>`, rows ordered by image then class; `start length` pairs, 1-indexed, pixels numbered top to
bottom then left to right (column-major); an absent class is an empty field. Encoder and decoder are vectorised
over the whole stack of masks (see BENCHMARKS.md).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np

from marsseg.competition import MARS, Competition
from marsseg.errors import SubmissionError
from marsseg.submission._common import _check_masks, _lines, _show

RLE_HEADER = "id,EncodedPixels"


def rle_runs(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every run of equal labels: (image index, label, 1-based start, length), in column-major order."""
    n = masks.shape[0]
    flat = np.ascontiguousarray(masks.transpose(0, 2, 1)).reshape(n, -1)
    pixels = flat.shape[1]
    change = np.ones((n, pixels), bool)  # column 0 always starts a run: runs never cross images
    np.not_equal(flat[:, 1:], flat[:, :-1], out=change[:, 1:])
    first = np.flatnonzero(change)
    lengths = np.diff(np.append(first, n * pixels))
    # A run never crosses an image: the next image's first pixel is a change too.
    image, start = np.divmod(first, pixels)
    return image, flat.reshape(-1)[first], start + 1, lengths


def encode_rle(masks: np.ndarray, competition: Competition = MARS) -> bytes:
    """The whole RLE CSV for a (N, H, W) stack of label masks."""
    masks = _check_masks(masks, competition)
    chunks = _chunks(len(masks))
    header = (RLE_HEADER + "\n").encode("ascii")
    if len(chunks) == 1:
        return header + _encode_rle_rows(masks, 0, competition)
    # NumPy releases the GIL in the heavy steps, so halves of the stack encode side by side.

    with ThreadPoolExecutor(len(chunks)) as pool:
        parts = pool.map(lambda c: _encode_rle_rows(masks[c[0] : c[1]], c[0], competition), chunks)
        return header + b"".join(parts)


def _chunks(n: int, minimum: int = 2048) -> list[tuple[int, int]]:
    workers = max(1, min(os.cpu_count() or 1, 4, n // minimum))
    bounds = np.linspace(0, n, workers + 1).astype(int)
    return list(zip(bounds[:-1], bounds[1:]))


def _encode_rle_rows(masks: np.ndarray, first_image: int, competition: Competition) -> bytes:
    n = masks.shape[0]
    classes = competition.scored_classes
    image, label, starts, lengths = rle_runs(masks)
    slot = np.full(competition.num_classes, -1, np.int64)
    slot[list(classes)] = np.arange(len(classes))
    keep = slot[label] >= 0  # background (the ignored class) is whatever no run covers
    row_of_run = image[keep] * len(classes) + slot[label[keep]]
    # A stable radix sort on small integers puts the runs in row order (image, then class).
    order = np.argsort(row_of_run.astype(np.uint32), kind="stable")
    tokens = np.empty(2 * len(order), np.int64)
    tokens[0::2] = starts[keep][order]
    tokens[1::2] = lengths[keep][order]
    text, token_end = _ascii_numbers(tokens)
    runs_per_row = np.bincount(row_of_run, minlength=n * len(classes))
    # The text holds every token followed by a space; a row's last space becomes its newline, and each
    # row's id (plus a newline for a row without runs) is inserted in front of its text, all in NumPy.
    buffer = np.frombuffer(text, np.uint8).copy()
    tokens_before = np.concatenate([[0], np.cumsum(2 * runs_per_row)])
    has_runs = runs_per_row > 0
    buffer[token_end[tokens_before[1:][has_runs] - 1]] = ord("\n")
    row_text_start = np.append(0, token_end + 1)[tokens_before[:-1]]
    ids = [f"{i}_{c}," for i in range(first_image, first_image + n) for c in classes]
    inserted = "".join(ident if full else ident + "\n" for ident, full in zip(ids, has_runs.tolist()))
    sizes = np.array([len(ident) for ident in ids]) + ~has_runs
    at = np.repeat(row_text_start, sizes)
    return np.insert(buffer, at, np.frombuffer(inserted.encode("ascii"), np.uint8)).tobytes()


def _ascii_numbers(values: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Non-negative integers as space-separated ASCII in one vectorised pass, with each one's end offset."""
    if len(values) == 0:
        return b"", np.zeros(0, np.int64)
    columns, widths = _digit_table(len(str(int(values.max()))))
    width = widths[values]
    token_end = np.cumsum(width + 1) - 1  # offset of the space after each number
    start = token_end - width
    out = np.empty(int(token_end[-1]) + len(columns), np.uint8)
    # Every number writes a full fixed-width field (digits, space, padding). Going from the last column
    # to the first, a field's padding is always overwritten later by the next number's real bytes.
    for column in range(len(columns) - 1, -1, -1):
        out[start + column] = columns[column][values]
    return out[: int(token_end[-1]) + 1].tobytes(), token_end


@lru_cache(maxsize=4)
def _digit_table(width: int) -> tuple[np.ndarray, np.ndarray]:
    """For every number below 10**width, its field (digits left-aligned, a space, padding) by column; its width."""
    top = 10**width - 1
    text = "".join(f"{str(v) + ' ':<{width + 1}}" for v in range(top + 1)).encode("ascii")
    columns = np.ascontiguousarray(np.frombuffer(text, np.uint8).reshape(top + 1, width + 1).T)
    widths = np.array([len(str(v)) for v in range(top + 1)], np.int64)
    return columns, widths


def decode_rle(text: bytes | str, n_images: int | None = None, competition: Competition = MARS) -> np.ndarray:
    """Masks from an RLE CSV, validating every row; raises SubmissionError naming the first bad row."""
    lines = _lines(text)
    if not lines or lines[0].strip() != RLE_HEADER:
        raise SubmissionError(f"line 1: header is {_show(lines[0] if lines else '')}, expected {RLE_HEADER!r}")
    body = lines[1:]
    classes = competition.scored_classes
    if len(body) % len(classes):
        raise SubmissionError(
            f"{len(body)} rows is not a whole number of images ({len(classes)} rows each, one per class)"
        )
    n = len(body) // len(classes)
    if n_images is not None and n != n_images:
        raise SubmissionError(
            f"{len(body)} rows describe {n} images, expected {n_images} ({n_images * len(classes)} rows)"
        )
    pixels = competition.pixels
    fields = []
    for row, line in enumerate(body):
        ident, sep, field = line.partition(",")
        expected = f"{row // len(classes)}_{classes[row % len(classes)]}"
        if ident != expected:
            raise SubmissionError(
                f"line {row + 2}: id {_show(ident)}, expected {expected!r} "
                f"(rows go by image, then class {classes[0]}–{classes[-1]})"
            )
        if not sep:
            raise SubmissionError(f"line {row + 2}: no comma after the id")
        field = field.strip()
        if "," in field:
            raise SubmissionError(f"line {row + 2}: more than two columns")
        fields.append(field)
    tokens, counts = _parse_numbers(fields)
    odd = np.flatnonzero(counts % 2)
    if len(odd):
        raise SubmissionError(f"line {odd[0] + 2}: odd number of values; runs are 'start length' pairs")
    starts, lengths = tokens[0::2], tokens[1::2]
    run_row = np.repeat(np.arange(len(body)), counts // 2)
    _check_runs(starts, lengths, run_row, pixels)
    # Paint with difference arrays: +value at a run's first pixel, -value after its last, then cumsum.
    image_of_run = run_row // len(classes)
    label_of_run = np.asarray(classes, np.int8)[run_row % len(classes)]
    first = image_of_run * pixels + starts - 1
    after = first + lengths
    # Runs of one class are already checked in order; across classes, sort and compare neighbours.
    order = np.argsort(first, kind="stable")
    clash = np.flatnonzero(first[order][1:] < after[order][:-1])
    if len(clash):
        pixel = int(first[order][clash[0] + 1])
        image = pixel // pixels
        raise SubmissionError(
            f"image {image}: pixel {pixel % pixels + 1} is covered by runs of two classes "
            f"(lines {image * len(classes) + 2}–{image * len(classes) + len(classes) + 1})"
        )
    # Starts are now unique, and so are ends, so plain fancy assignment is exact.
    paint = np.zeros(n * pixels + 1, np.int8)
    paint[first] = label_of_run
    paint[after] -= label_of_run
    flat = np.cumsum(paint[:-1], dtype=np.int8).astype(np.uint8)
    return flat.reshape(n, competition.width, competition.height).transpose(0, 2, 1).copy()


def _parse_numbers(fields: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """All space-separated integers of all fields in one vectorised pass, and how many each field holds."""
    for row, field in enumerate(fields):
        # Cheap string checks catch every malformed field before the arithmetic below trusts the bytes.
        if field and (field[0] == " " or field[-1] == " " or "  " in field):
            raise SubmissionError(f"line {row + 2}: runs must be separated by single spaces: {_show(field)}")
    blob = np.frombuffer(" ".join(fields).encode("ascii") + b" ", np.uint8)
    is_space = blob == ord(" ")
    if not ((blob >= ord("0")) & (blob <= ord("9")) | is_space).all():
        row = next(r for r, f in enumerate(fields) if f and not f.replace(" ", "").isdigit())
        raise SubmissionError(f"line {row + 2}: runs must be whole numbers: {_show(fields[row])}")
    ends = np.flatnonzero(is_space)
    starts = np.concatenate([[0], ends[:-1] + 1])
    keep = ends > starts  # an empty field leaves a zero-length gap between two separators
    starts, widths = starts[keep], (ends - starts)[keep]
    if len(widths) and widths.max() > 9:
        row = next(r for r, f in enumerate(fields) if any(len(t) > 9 for t in f.split(" ")))
        raise SubmissionError(f"line {row + 2}: a run value is far too large: {_show(fields[row])}")
    values = np.zeros(len(starts), np.int64)
    for offset in range(int(widths.max()) if len(widths) else 0):
        # Horner's rule, one digit column at a time, only for numbers that still have digits.
        active = np.flatnonzero(widths > offset)
        values[active] = values[active] * 10 + (blob[starts[active] + offset] - ord("0"))
    counts = np.array([f.count(" ") + 1 if f else 0 for f in fields], np.int64)
    return values, counts


def _check_runs(starts, lengths, run_row, pixels):
    def fail(mask, why):
        bad = np.flatnonzero(mask)
        if len(bad):
            k = bad[0]
            raise SubmissionError(f"line {run_row[k] + 2}: run 'start {starts[k]} length {lengths[k]}' {why}")

    fail(starts < 1, "starts before pixel 1")
    fail(lengths < 1, "has a length below 1")
    fail(starts + lengths - 1 > pixels, f"runs past the last pixel ({pixels})")
    same_row = run_row[1:] == run_row[:-1]
    overlap = np.zeros(len(starts), bool)
    overlap[1:] = same_row & (starts[1:] < starts[:-1] + lengths[:-1])
    fail(overlap, "is out of order or overlaps the run before it")
