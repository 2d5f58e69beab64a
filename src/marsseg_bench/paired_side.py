"""One side of a `paired` benchmark pair, run as its own process on one core with one thread pool.

    python -m marsseg_bench.paired_side --side 'kit[stage1.loss.name=lovasz]' --data data.npz --truth truth.npz \
        --budget 600 --seed 42 --core 0 --out side.json [--preset cpu] [--work DIR]

It pins itself to `--core` and sets one TensorFlow/OpenMP thread each way before TensorFlow is imported, imports
what it runs, then starts its clock: the kit (`pipeline.run`, the preset with the side's overrides, the budget and
the seed) or a reference (`reference_models.reference_run`, given what is left of the budget after loading the
arrays). It scores the test labels against `--truth` and writes one JSON result to `--out` (`paired` stores it).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from marsseg.config import Config, override, preset, validate
from marsseg.errors import ConfigError

# Within this share of the budget a side counts as having used the time it was given.
BUDGET_TOLERANCE = 0.05
SINGLE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": "1"}

SIDE_KINDS = ("kit", "best", "naive")
_SPEC = re.compile(r"^(?P<kind>[A-Za-z_]+)\s*(?:\[(?P<overrides>[^\[\]]*)\])?$")


@dataclass(frozen=True)
class Side:
    kind: str  # "kit", "best" or "naive"
    overrides: tuple[str, ...] = ()  # `--set`-style KEY=VALUE, the kit's only

    @property
    def spec(self) -> str:
        """The canonical spec (what records store): `kit`, `kit[a=1,b=2]`, `best`."""
        return self.kind + (f"[{','.join(self.overrides)}]" if self.overrides else "")


def parse_side(spec: str) -> Side:
    """A side spec (`kit`, `kit[KEY=VALUE,...]`, `best`, `naive`) as a Side; ConfigError naming the fault."""
    text = spec.strip()
    match = _SPEC.match(text)
    if not match:
        raise ConfigError(f"side {spec!r} is not kit, kit[KEY=VALUE,...], best or naive")
    kind, inside = match["kind"], match["overrides"]
    if kind not in SIDE_KINDS:
        raise ConfigError(f"side {spec!r}: unknown kind {kind!r}; choose from {', '.join(SIDE_KINDS)}")
    overrides = tuple(part.strip() for part in (inside or "").split(",") if part.strip())
    if overrides and kind != "kit":
        raise ConfigError(f"side {spec!r}: only the kit takes overrides (kit[KEY=VALUE,...])")
    for part in overrides:
        key, sep, _ = part.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"side {spec!r}: {part!r} is not KEY=VALUE (e.g. kit[stage1.loss.name=lovasz])")
        if key.strip() in ("seed", "budget_seconds"):
            raise ConfigError(f"side {spec!r}: the pair sets {key.strip()}, not a side")
    keys = [part.partition("=")[0].strip() for part in overrides]
    if len(set(keys)) < len(keys):
        raise ConfigError(f"side {spec!r}: a setting is given twice")
    return Side(kind, tuple(sorted(overrides)))  # sorted: the same settings in any order are one side


def side_config(side: Side, preset_name: str, budget: float, seed: int) -> Config:
    """The side's settings: the preset at `budget` and `seed`, the kit's overrides applied and checked
    (references build their networks from it too)."""
    cfg = replace(preset(preset_name), budget_seconds=float(budget), seed=int(seed))
    try:
        return validate(override(cfg, side.overrides))
    except ConfigError as error:
        raise ConfigError(f"side {side.spec!r}: {error}") from None


def pin(core: int | None) -> bool:
    """One thread pool (the environment, before TensorFlow loads) and, where `core` is given and the platform
    allows, this process on that core only. Returns whether the process is pinned."""
    os.environ.update(SINGLE_THREAD)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if core is None:
        return False
    try:
        os.sched_setaffinity(0, {int(core)})
    except (AttributeError, OSError):
        return False
    return True


def within_budget(seconds: float, budget: float) -> bool:
    return abs(seconds - budget) / budget <= BUDGET_TOLERANCE


def samples_seen(rate, epoch_seconds) -> float | None:
    """Training samples ≈ the steady rate × the seconds of the epochs run (a cut last epoch counts its part)."""
    return None if not rate else float(rate) * float(sum(epoch_seconds))


def _kit_samples(metrics: dict) -> tuple[float | None, float | None]:
    s1, s2 = metrics["stage1"], metrics.get("stage2") or {}
    stage1 = samples_seen(s1.get("train_samples_per_s"), [t for fold in s1.get("fold_epoch_seconds", []) for t in fold])
    return stage1, samples_seen(s2.get("train_samples_per_s"), s2.get("epoch_seconds", []))


def run_side(spec: str, preset_name: str, data: Path, truth: Path, budget: float, seed: int, work: Path, log) -> dict:
    """Run one side and return its result (scores, seconds, samples, details). Heavy imports happen here,
    before the side's clock starts."""
    import keras  # noqa: F401  (TensorFlow loads here, before the clock, on both kinds of side)
    import numpy as np

    import marsseg.training.fit  # noqa: F401  (what reference_run imports when called)
    from marsseg.config import to_dict
    from marsseg.data.load import load_dataset
    from marsseg_bench.quality import _kit_summary, _scores, scored_run
    from marsseg_bench.quality_store import config_fingerprint
    from marsseg_bench.reference_models import reference_run

    side = parse_side(spec)
    cfg = side_config(side, preset_name, budget, seed)
    labels_truth = np.load(truth)["test_labels"]
    started = time.monotonic()
    if side.kind == "kit":
        scored = scored_run(cfg, data, work / "kit", labels_truth)
        seconds = time.monotonic() - started
        stage1, stage2 = _kit_samples(scored["metrics"])
        details = _kit_summary(scored["metrics"], seconds) | {"stage2_train_samples": stage2}
        scores, rate = scored["scores"], scored["metrics"]["stage1"].get("train_samples_per_s")
    else:
        dataset = load_dataset(data)
        left = budget - (time.monotonic() - started)
        details = reference_run(side.kind, cfg, dataset.images, dataset.masks, dataset.test_images, left, log)
        scores = _scores(labels_truth, details.pop("labels"))
        seconds = time.monotonic() - started
        rate = details.get("train_samples_per_s")
        stage1 = samples_seen(rate, details.get("epoch_seconds", []))
    return {
        "side": spec,
        "kind": side.kind,
        "overrides": list(side.overrides),
        "config": config_fingerprint(to_dict(cfg)),
        "scores": scores,
        "seconds": seconds,
        "budget": float(budget),
        "within_budget": within_budget(seconds, budget),
        "train_samples": stage1,
        "train_samples_per_s": rate,
        "details": details,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m marsseg_bench.paired_side", description=__doc__.split("\n")[0])
    parser.add_argument("--side", required=True, help="kit, kit[key=value,...], best or naive")
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--truth", required=True, type=Path, help="npz with the test set's test_labels")
    parser.add_argument("--budget", required=True, type=float)
    parser.add_argument("--seed", required=True, type=int)
    parser.add_argument("--core", type=int, default=None, help="the core to pin to (none: not pinned)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--work", type=Path, default=None, help="the kit's run folder (default: beside --out)")
    args = parser.parse_args(argv)
    pinned = pin(args.core)  # first: before anything imports TensorFlow
    from marsseg_bench.quality_store import _plain

    def log(message):
        print(f"[{args.side}] {message}", file=sys.stderr, flush=True)

    work = args.work or args.out.parent / f"{args.out.stem}-work"
    result = run_side(args.side, args.preset, args.data, args.truth, args.budget, args.seed, work, log)
    result |= {"core": args.core, "pinned": pinned, "affinity": sorted(os.sched_getaffinity(0)) if pinned else None}
    args.out.write_text(json.dumps(result, sort_keys=True, default=_plain))
    log(f"done in {result['seconds']:.0f}s: mIoU (Keras rule) {result['scores']['miou_keras']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
