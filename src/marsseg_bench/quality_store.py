"""Stored quality results: one JSON line per run, and the statistics the quality blocks show.

    path = results_path()                               # .bench/quality.jsonl (MARSSEG_BENCH_RESULTS: the folder)
    records = store_result(path, record)                # appends; replaces an earlier run at the same seed
    runs = matching(records, "quality", 600.0, data)    # this section's runs at this budget on this data
    stats = summarise(runs)                             # medians, min-max and paired differences, with n

A record is a dict with at least `section`, `seed`, `budget`, `data` (what the models were trained and scored
on), `commit`, `machine` and `scores`: per model ("kit", "best", "naive") `miou_keras`, `miou_scored` and `iou`
(class label as a string -> IoU). A run is identified by section, budget, data, the kit's settings
(`kit_config`, a hash) and seed: a rerun at the same
seed replaces the stored one whatever the commit or machine, which the record keeps.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from pathlib import Path

from marsseg.files import atomic_write_text

MODELS = ("kit", "best", "naive")
PAIRS = (("kit", "best"), ("kit", "naive"))
CLASSES = ("1", "2", "3", "4")
METRICS = ("miou_keras", "miou_scored", *(f"iou.{c}" for c in CLASSES))


def results_path(directory=None, name: str = "quality.jsonl") -> Path:
    """A results file (`name`, the quality section's by default): in `directory`, else $MARSSEG_BENCH_RESULTS,
    else `.bench` in the working directory (the repository root under `make bench`)."""
    return Path(directory or os.environ.get("MARSSEG_BENCH_RESULTS") or ".bench") / name


def run_key(record: dict) -> tuple:
    """(section, budget, data, kit settings, seed): a change of the kit's preset starts a new series."""
    return (
        record["section"],
        float(record["budget"]),
        _canonical(record["data"]),
        record.get("kit_config", ""),
        int(record["seed"]),
    )


# Opt-in configuration sections added after stored series began; `enabled` false changes nothing in a run.
OFF_BY_DEFAULT = ("self_training", "stage2_focus")


def config_fingerprint(settings: dict) -> str:
    """A short hash of the kit's settings (seed and budget left out: those vary within a series). An opt-in
    section that is off (OFF_BY_DEFAULT) is left out too: adding one to the configuration changes no run, so it
    must not start every series anew."""
    import hashlib

    kept = {k: v for k, v in settings.items() if k not in ("seed", "budget_seconds")}
    kept = {k: v for k, v in kept.items() if not (k in OFF_BY_DEFAULT and not (v or {}).get("enabled"))}
    return hashlib.sha256(_canonical(kept).encode()).hexdigest()[:12]


def read_results(path) -> list[dict]:
    """Every stored record, in file order; a line that does not parse (a run killed mid-write) is skipped."""
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        return []
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def store_result(path, record: dict, key=run_key) -> list[dict]:
    """Append `record` as one JSON line; an earlier record with the same `key` (by default `run_key`) is dropped
    (the file is then rewritten atomically). Returns every record now stored."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    records = read_results(path)
    wanted = key(record)
    kept = [r for r in records if key(r) != wanted]
    line = json.dumps(record, sort_keys=True, default=_plain)
    if len(kept) == len(records) and _ends_cleanly(path):
        with path.open("a") as handle:
            handle.write(line + "\n")
    else:
        atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept) + line + "\n")
    return kept + [json.loads(line)]


def matching(records: list[dict], section: str, budget: float, data: dict, kit_config: str | None = None) -> list[dict]:
    """The records of `section` at `budget` on `data` (and, if given, with the kit's settings `kit_config`), by seed."""
    want = (section, float(budget), _canonical(data))
    chosen = [r for r in records if run_key(r)[:3] == want]
    if kit_config is not None:
        chosen = [r for r in chosen if r.get("kit_config", "") == kit_config]
    return sorted(chosen, key=lambda r: int(r["seed"]))


def value(record: dict, model: str, metric: str) -> float | None:
    """One score of one model in one record (`metric` is "miou_keras", "miou_scored" or "iou.C"); None if absent."""
    scores = record.get("scores", {}).get(model)
    if scores is None:
        return None
    if metric.startswith("iou."):
        found = scores.get("iou", {}).get(metric.removeprefix("iou."))
    else:
        found = scores.get(metric)
    return None if found is None or not math.isfinite(found) else float(found)


def spread(values) -> dict | None:
    """{"median", "min", "max", "n"} of the values that are numbers; None when there are none."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def summarise(records: list[dict]) -> dict:
    """Per model and metric, the spread over records; per pair (a, b), the spread of a - b within each record
    (the same seed), with `ahead`: in how many of those a scored higher."""
    models = {m: {k: spread(value(r, m, k) for r in records) for k in METRICS} for m in MODELS}
    pairs = {}
    for a, b in PAIRS:
        pairs[f"{a}-{b}"] = {}
        for k in METRICS:
            diffs = [
                value(r, a, k) - value(r, b, k)
                for r in records
                if value(r, a, k) is not None and value(r, b, k) is not None
            ]
            stats = spread(diffs)
            if stats is not None:
                stats["ahead"] = sum(d > 0 for d in diffs)
            pairs[f"{a}-{b}"][k] = stats
    return {"n": len(records), "seeds": [int(r["seed"]) for r in records], "models": models, "pairs": pairs}


def _canonical(data) -> str:
    return json.dumps(data, sort_keys=True, default=_plain)


def _plain(obj):
    """NumPy scalars and arrays as JSON numbers and lists."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _ends_cleanly(path: Path) -> bool:
    """True for a missing or empty file, or one whose last byte is a newline (safe to append a line to)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return True
    if size == 0:
        return True
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"
