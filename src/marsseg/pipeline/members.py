"""The run folders an ensemble combines: each one's records and model files, and the check that they share a hold-out.

    members = [load_member(path) for path in run_dirs]   # config.json, metrics.json, the final stage's models
    check_same_holdout(members)                          # refuses runs whose hold-outs differ, naming them and why

A run's hold-out is what `prepare.holdout_identity` recorded in its metrics.json: the training set's fingerprint,
the settings that pick and split it, and its rows in order with which tune and which report. Two runs share a
hold-out when the fingerprint and the rows agree; the settings only name the reason when they do not. Nothing here
loads a model or the data, so a refusal costs no TensorFlow start.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from marsseg.config import Config, load_config
from marsseg.errors import EnsembleError, UserError
from marsseg.pipeline.outputs import STAGE2_MODEL, stage1_model_name

# How to get the models of a Kaggle kernel run: `make submit` fetches the submission and the reports only.
FETCH_MODELS = (
    "a kernel's output has them only when fetched with `marsseg submit --models` (or `make submit MODELS=1`), "
    "or fetch them into the folder with `kaggle kernels output USER/mars-segmentation-kit -p {path}`"
)


@dataclass
class Member:
    """One run folder: its configuration, its metrics, its final stage and that stage's model files."""

    path: Path
    cfg: Config
    metrics: dict
    data: str | None  # the data path the run recorded (config.json `_run.data`)
    stage1_files: list[Path]
    stage2_file: Path | None  # only where stage 2 was the run's final stage

    @property
    def stage(self) -> int:
        return 1 if self.stage2_file is None else 2

    @property
    def identity(self) -> dict:
        return self.metrics["holdout_identity"]


def _read_json(path: Path, run: Path) -> dict:
    if not path.is_file():
        raise EnsembleError(
            f"{run}: no {path.name}, so not a finished run folder; pass a folder `marsseg train` wrote "
            "(or a kernel's downloaded output)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise EnsembleError(f"{path}: not readable JSON ({type(exc).__name__}); download or rerun that run") from None
    if not isinstance(data, dict):
        raise EnsembleError(f"{path}: not a JSON object; download or rerun that run")
    return data


def load_member(path) -> Member:
    """The run folder at `path`, refused in one line if it is missing, unfinished, from before the kit recorded
    hold-outs, without a network (stage 1 crashed) or missing a model file its final stage needs."""
    path = Path(path)
    if not path.is_dir():
        raise EnsembleError(f"{path}: no such run folder; pass folders `marsseg train` wrote (or kernel outputs)")
    saved = _read_json(path / "config.json", path)
    metrics = _read_json(path / "metrics.json", path)
    try:
        cfg = load_config(path / "config.json")
    except (UserError, TypeError, AttributeError, KeyError) as exc:
        raise EnsembleError(f"{path}/config.json: {exc}; it was written by another version of the kit") from None
    stage = metrics.get("final_stage")
    if stage == 0:
        raise EnsembleError(f"{path}: stage 1 crashed in that run (a nearest-centroid fallback): no network to use")
    if stage not in (1, 2):
        raise EnsembleError(f"{path}/metrics.json: final_stage is {stage!r}, not 1 or 2; the run did not finish")
    if not isinstance(metrics.get("holdout_identity"), dict):
        raise EnsembleError(
            f"{path}/metrics.json records no holdout_identity (a run from before the kit recorded its hold-out), "
            "so it cannot be checked against the others; train it again with this version"
        )
    folds = int((metrics.get("stage1") or {}).get("folds_trained") or 0)
    stage1 = [path / stage1_model_name(f) for f in range(folds)]
    stage2 = path / STAGE2_MODEL if stage == 2 else None
    missing = [p.name for p in [*stage1, stage2] if p is not None and not p.is_file()]
    if not stage1 or missing:
        what = ", ".join(missing) if missing else "its stage-1 fold models (metrics.json lists none)"
        raise EnsembleError(
            f"{path}: missing {what}, which its final stage (stage {stage}) needs; {FETCH_MODELS.format(path=path)}"
        )
    data = (saved.get("_run") or {}).get("data")
    return Member(path, cfg, metrics, str(data) if data else None, stage1, stage2)


def holdout_difference(a: dict, b: dict) -> str | None:
    """Why hold-out identities `a` and `b` (as `prepare.holdout_identity` writes them) differ; None if they agree."""
    if a.get("train_sha256") != b.get("train_sha256"):
        return (
            f"different data (training-set sha256 {str(a.get('train_sha256'))[:12]}... "
            f"and {str(b.get('train_sha256'))[:12]}...)"
        )
    if all(a.get(key) == b.get(key) for key in ("rows", "tune", "report")):
        return None
    first, second = a.get("settings") or {}, b.get("settings") or {}
    for key in ("seed", "val_fraction", "report_fraction", "max_train", "clean"):
        if first.get(key) != second.get(key):
            name = "different seeds" if key == "seed" else f"different {key.replace('_', ' ')} settings"
            return f"{name} ({first.get(key)} and {second.get(key)})"
    return "different hold-out rows under the same settings (trained with another version of the kit?)"


def check_same_holdout(members: list[Member]) -> None:
    """Refuse, naming the two runs and the reason, when any run's hold-out differs from the first's."""
    first = members[0]
    for member in members[1:]:
        reason = holdout_difference(first.identity, member.identity)
        if reason:
            raise EnsembleError(
                f"{first.path} and {member.path} were validated on different hold-outs: {reason}; their scores "
                "cannot be compared or combined: ensemble runs trained at one seed on one data file"
            )
