"""Links own Kaggle submissions to the runs behind them, through the records `marsseg submit` writes."""

from __future__ import annotations

import csv
from pathlib import Path

from marsseg.kaggle.records import latest_records
from marsseg.tracking.parse import Submission, format_score, parse_score

RECORDS = "records.csv"  # written by `marsseg submit` (marsseg.kaggle.records): one row per event

# The run's columns, copied into each submission row so the history stands on its own.
LINK_FIELDS = ("preset", "git_commit", "val_miou_stage1", "val_miou_stage2", "val_miou_final", "local_file")


def load_submit_records(history_dir) -> list[dict]:
    """The latest row of each submission recorded at submit time (`records.csv` under `history_dir`),
    as {id, ref, file_name, description, preset, git_commit, val_miou_stage1/2/final, local_file}."""
    path = Path(history_dir) / RECORDS
    try:
        latest = latest_records(path)
    except (OSError, csv.Error, KeyError, UnicodeDecodeError):
        return []  # a damaged record file must not stop tracking; the links just stay empty
    return [normalise_record(row) for row in latest.values()]


def normalise_record(row: dict) -> dict:
    local_file = str(row.get("file") or "")
    out = {
        "id": str(row.get("id") or ""),
        "ref": str(row.get("kaggle_ref") or ""),
        "file_name": Path(local_file).name if local_file else "",
        "description": str(row.get("message") or ""),
        "preset": str(row.get("preset") or ""),
        "git_commit": str(row.get("git_commit") or ""),
        "local_file": local_file,
    }
    for key in ("val_miou_stage1", "val_miou_stage2", "val_miou_final"):
        out[key] = format_score(parse_score(row.get(key)), 6)
    return out


def link_submission(sub: Submission, records: list[dict]) -> dict:
    """The run behind a Kaggle submission: by Kaggle ref, else by the exact message, else by the record id the
    message names, else by a file name that only one record has."""

    def pick(matches):
        return {k: matches[-1].get(k, "") for k in LINK_FIELDS} if len(matches) >= 1 else None

    candidates = []
    if sub.ref:
        candidates.append([r for r in records if r.get("ref") == sub.ref])
    if sub.description:
        candidates.append([r for r in records if r.get("description") == sub.description])
        candidates.append([r for r in records if r.get("id") and r["id"] in sub.description])
    for matches in candidates:
        if matches:
            return pick(matches)
    if sub.file_name:
        by_name = [r for r in records if r.get("file_name") == sub.file_name]
        if len(by_name) == 1:
            return pick(by_name)
    return {k: "" for k in LINK_FIELDS}
