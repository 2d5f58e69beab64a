"""The durable, append-only record of every submission attempt: `submissions/records.csv`.

Format (for leaderboard tracking and people): a UTF-8 CSV with a header row and these columns, one row per
event; rows are only ever appended (never rewritten), so a crash loses at most the row being written. The
LATEST row for an `id` is that submission's current state.

    id               local submission id, e.g. 20261122-071503-3f9a1c (UTC time + 6 hex of the file's sha256)
    time             ISO-8601 UTC time of this event, e.g. 2026-11-22T07:15:03Z
    competition      competition slug, e.g. an-2-dl-2024-2025-homework-2
    file             the file submitted (or to be submitted), relative to the repository:
                     submissions/<id>/submission.csv
    sha256           sha256 of that file ('' when no file exists yet, e.g. a failed push)
    layout           its layout: rle | pixels
    preset           configuration preset that produced it (smoke | cpu | gpu | kaggle | …)
    git_commit       `git describe --always --dirty` of the kit when it was made
    val_miou_stage1  local validation mIoU of stage 1, stage 2 and the final prediction: the keys of the same
    val_miou_stage2  names in the run's metrics.json (written by `marsseg.pipeline.run.run`); '' when absent
    val_miou_final
    kernel_ref       'user/slug' and version of the Kaggle kernel that produced it, e.g. me/mars-segmentation-kit@3
                     ('' for a CSV submitted from a local run)
    kaggle_ref       Kaggle's submission ref once confirmed by listing ('' before)
    status           started | refused | push_failed | kernel_failed | output_invalid | submit_failed
                     | pending | complete | error   (the last three are Kaggle's scoring states; `refused`: the
                     file failed the check against the competition profile, so nothing was sent)
    public_score     Kaggle's public score as a string once scored ('' before)
    message          the submission description sent to Kaggle
    detail           the reason for a failure or Kaggle's error description ('' otherwise)
    csv_bytes        size of the CSV in bytes
    zip_bytes        size of what was uploaded: submissions/<id>/submission.zip, the CSV deflated (one member)

A file written before a column existed is upgraded once, atomically, to the current header (every row kept, the
new cells empty) before the next row is appended.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from marsseg.errors import UserError
from marsseg.files import atomic_write_text
from marsseg.stamps import utc_now

RECORDS_PATH = Path("submissions/records.csv")
FIELDS = (
    "id",
    "time",
    "competition",
    "file",
    "sha256",
    "layout",
    "preset",
    "git_commit",
    "val_miou_stage1",
    "val_miou_stage2",
    "val_miou_final",
    "kernel_ref",
    "kaggle_ref",
    "status",
    "public_score",
    "message",
    "detail",
    "csv_bytes",
    "zip_bytes",
)
FAILED = {"refused", "push_failed", "kernel_failed", "output_invalid", "submit_failed", "error"}


def append_record(row: dict, path: Path = RECORDS_PATH, fields: tuple[str, ...] = FIELDS) -> dict:
    """Append one event row (unknown keys are an error, missing ones are empty); fsync'ed before returning.
    `fields`: the file's columns (the canary history, `canaries.py`, has its own)."""
    unknown = set(row) - set(fields)
    if unknown:
        raise ValueError(f"unknown record fields: {', '.join(sorted(unknown))}")
    full = {name: _cell(row.get(name, "")) for name in fields}
    full["time"] = full["time"] or utc_now()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    new = not path.exists() or path.stat().st_size == 0
    if not new:
        _upgrade_header(path, fields)
    if new:
        writer.writeheader()
    writer.writerow(full)
    with open(path, "a", encoding="utf-8", newline="") as handle:
        handle.write(buffer.getvalue())
        handle.flush()
        os.fsync(handle.fileno())
    return full


def read_records(path: Path = RECORDS_PATH) -> list[dict]:
    """Every event row, oldest first."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def latest_records(path: Path = RECORDS_PATH) -> dict[str, dict]:
    """id -> that submission's latest row, in order of first appearance."""
    latest: dict[str, dict] = {}
    for row in read_records(path):
        latest[row["id"]] = row
    return latest


def _upgrade_header(path: Path, fields: tuple[str, ...] = FIELDS) -> None:
    """Rewrite a records file with an older header (a subset of `fields`) under the current one, atomically."""
    with open(path, encoding="utf-8", newline="") as handle:
        header = next(csv.reader(handle), [])
    if header == list(fields):
        return
    unknown = [name for name in header if name not in fields]
    if unknown or "id" not in header:
        raise UserError(f"{path}: unexpected columns {', '.join(unknown) or '(no id)'}; it is not a marsseg record")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in read_records(path):
        writer.writerow({name: row.get(name) or "" for name in fields})
    atomic_write_text(path, buffer.getvalue())


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if value != value else f"{value:.6f}"
    return str(value).replace("\r", " ").replace("\n", " ")
