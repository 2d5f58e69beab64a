"""One frozen dataclass tree: named presets, `--set key=value` overrides, saved with every run.

cfg = preset("cpu")
cfg = override(cfg, ["stage1.train.epochs=5", "post.tta=off"])
save_config(cfg, run_dir / "config.json")
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field, replace
from pathlib import Path

from marsseg.errors import ConfigError
from marsseg.files import atomic_write_json

POST_SETTINGS = ("auto", "on", "off")  # every post-processing step's choices (post.tta, .morphology, .class_bias)


@dataclass(frozen=True)
class DataConfig:
    competition: str = "an-2-dl-2024-2025-homework-2"
    max_train: int = 0  # 0 keeps every training image; presets for tests shrink it
    max_test: int = 0
    val_fraction: float = 0.15
    # Of the hold-out: the reporting part, which makes no decision (TTA, class biases, morphology and the stage
    # choice are made on the rest, the tuning part); val_miou_final is its score.
    report_fraction: float = 0.5
    folds: int = 5
    # How many of the K folds get a stage-1 model (0: all K). Fewer models see more seconds each: with folds=4 and
    # fold_models=1, one model trains on 3/4 of the development rows for all of stage 1's time and stage 2 learns
    # from the other quarter, which that model predicted out of fold.
    fold_models: int = 0


@dataclass(frozen=True)
class CleanConfig:
    enabled: bool = True
    min_duplicate_masks: int = 3  # a label mask shared by this many images marks them all
    pca_components: int = 16
    knn_neighbours: int = 5
    anomaly_quantile: float = 0.99  # image-space scores above this are only suspects
    template_threshold: float = 0.9  # normalised correlation with a found outlier
    template_support_margin: float = 0.15  # the template bar drops by this much for anomalous images


@dataclass(frozen=True)
class AugmentConfig:
    strength: str = "medium"  # none | flips | light | medium | strong
    elastic: bool = False
    bigrock_oversample: float = 2.0  # sampling weight of images that contain big rock
    bigrock_offline_copies: int = 2  # augmented copies of each big-rock image, made once
    # Per training image and batch: the chance that one big-rock component of another training image is pasted in
    # (prep/copypaste.py; stage 1 only, since stage 2's inputs carry stage-1 probabilities of the original).
    copy_paste_rate: float = 0.0
    workers: int = 2


@dataclass(frozen=True)
class ModelConfig:
    depth: int = 4
    base_filters: int = 32
    dropout: float = 0.1
    batch_norm: bool = True
    # Batch-norm moving statistics: 0.9 forgets the initial mean 0 / variance 1 within about 40 steps; Keras's 0.99
    # keeps 37% of them after 100 steps, and a CPU fold model takes only ~100 steps (its hold-out mIoU swung
    # 0.09-0.18 while its training loss fell smoothly, measured).
    norm_momentum: float = 0.9
    attention: bool = True
    deep_supervision: bool = True
    aux_loss_weight: float = 0.3
    # Stage 2 only: the main head refines the input's stage-1 probabilities (softmax(log p1 + learned correction),
    # the correction zero at the start), so stage 2 begins where stage 1 ended instead of from scratch.
    residual: bool = False
    # "aspp": a context block after the bottleneck (dilated 3x3 branches at `context_rates`, comma-separated, plus a
    # global-pooling branch, models/context.py); "none": the plain bottleneck.
    context: str = "none"
    context_rates: str = "2,4"
    # 2: a strided 3x3 stem convolution halves the resolution the U-Net works at and the heads upsample their
    # logits back (bilinear). About 3x the samples/s on a CPU (48 -> 152 img/s for the cpu stage 1, measured), for
    # coarse predictions that a full-resolution stage 2 refines. 1: every level at full resolution.
    input_stride: int = 1


@dataclass(frozen=True)
class LossConfig:
    name: str = "focal_tversky+focal"  # ce | focal | dice | focal_tversky | lovasz, summed with '+'
    ignore_background: bool = True
    class_weights: str = "auto"  # auto (from the class analysis) | none
    # auto weights are (1 / pixel share) ** power over the scored classes: 0.5 weights big rock (~1% of pixels)
    # about 5x a large class, 0.25 about 2.3x, 0 not at all.
    class_weight_power: float = 0.5
    # The largest auto weight at most this many times the smallest (the write-ups capped big rock at ~10x); 0: no cap.
    max_weight_ratio: float = 0.0
    focal_gamma: float = 2.0
    tversky_alpha: float = 0.7
    tversky_beta: float = 0.3
    tversky_gamma: float = 0.75


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 60
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"  # adam | adamw
    schedule: str = "plateau"  # plateau | cosine
    warmup_epochs: int = 2
    patience: int = 12
    mixed_precision: str = "auto"  # auto (on a GPU) | on | off
    run_eagerly: bool = False  # tiny runs (smoke) start faster without tracing the training graph
    # An exponential moving average of the weights (Keras's optimizer EMA; 0: off, e.g. 0.99): validation, the
    # best epoch and the saved model then use the averaged weights (issue 27's big-rock candidates; in no preset).
    ema_momentum: float = 0.0


@dataclass(frozen=True)
class StageConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # Stage 1 as an ensemble of different networks: `|`-separated variants, each space-separated `key=value`
    # model settings applied on top of `model` (an empty variant: `model` itself); fold f trains variant f mod n,
    # e.g. "attention=true context=none | attention=false context=aspp". "": every fold trains `model`.
    model_cycle: str = ""


@dataclass(frozen=True)
class PostConfig:
    morphology: str = "auto"  # auto (kept only if validation mIoU rises) | on | off
    min_component: int = 12  # connected components smaller than this many pixels are dropped
    max_hole: int = 12  # holes up to this many pixels are filled
    tta: str = "auto"  # auto | on | off: horizontal-flip test-time augmentation
    # auto | on | off: per-class log-probability shifts fitted on the hold-out to maximise mIoU (argmax maximises
    # pixel accuracy instead); auto keeps them only if shifts fitted on half the hold-out raise the other half's.
    class_bias: str = "auto"


@dataclass(frozen=True)
class SubmissionConfig:
    # rle | pixels: the layout of the copy a run keeps under submissions/ (RLE: a seventh of the pixels file's
    # 164 MB). The run folder always holds both layouts: submission.csv in the competition profile's (what Kaggle's
    # Submit button takes) and submission_rle.csv. (Before, this picked submission.csv's own layout.)
    format: str = "rle"


@dataclass(frozen=True)
class SelfTrainConfig:
    """Stage 2 also learns from stage 1's confident pixels on the test images (`pipeline.selftrain`). Off in every
    preset: it is transductive, so check the competition's rules first."""

    enabled: bool = False
    threshold: float = 0.9  # stage 1's probability of its class (1-4) for a pixel to be pseudo-labelled
    max_images: int = 2000  # the test images with the most confident pixels (0: all); each adds a stage-2 row


@dataclass(frozen=True)
class CanaryConfig:
    """A canary run (`make canary`): the full run's networks and code paths on the full data, cut to minutes, to
    learn whether the kernel runs on its machine and how fast, before hours of GPU quota go into it."""

    enabled: bool = False
    budget_seconds: float = 600.0  # the whole canary run, replacing `budget_seconds`
    epochs: int = 3  # per model: the first compiles, the later ones give the steady epoch time


@dataclass(frozen=True)
class Config:
    preset: str = "gpu"
    seed: int = 42
    budget_seconds: float = 3 * 3600.0
    # True: refuse to train when the Keras backend sees no GPU (the `gpu` and `kaggle` presets: a broken CUDA
    # install would otherwise spend the whole budget on the CPU). `--set require_gpu=false` trains on the CPU.
    require_gpu: bool = False
    two_stage: bool = True
    # Share of the budget (after loading and cleaning) for the K stage-1 fold models when two_stage is on; stage 2,
    # test prediction and post-processing get the rest. A residual stage 2 needs fewer epochs than one from scratch.
    stage1_share: float = 0.5
    data: DataConfig = field(default_factory=DataConfig)
    clean: CleanConfig = field(default_factory=CleanConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    stage1: StageConfig = field(default_factory=StageConfig)
    stage2: StageConfig = field(default_factory=StageConfig)
    post: PostConfig = field(default_factory=PostConfig)
    submission: SubmissionConfig = field(default_factory=SubmissionConfig)
    canary: CanaryConfig = field(default_factory=CanaryConfig)
    self_training: SelfTrainConfig = field(default_factory=SelfTrainConfig)


def preset(name: str) -> Config:
    """The named preset (`marsseg.presets`)."""
    from marsseg.presets import PRESETS

    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None


def override(cfg: Config, assignments: typing.Iterable[str]) -> Config:
    """Apply `key=value` strings with dotted keys, e.g. `stage1.train.epochs=5`."""
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {assignment!r} is not key=value (example: --set stage1.train.epochs=5)")
        cfg = _set(cfg, key.strip().split("."), raw.strip(), key.strip())
    return cfg


def _set(node, path: list[str], raw: str, full_key: str):
    name = path[0]
    fields = {f.name: f for f in dataclasses.fields(node)}
    if name not in fields:
        raise ConfigError(f"unknown setting {full_key!r}: {type(node).__name__} has {', '.join(fields)}")
    hints = typing.get_type_hints(type(node))
    current = getattr(node, name)
    if len(path) > 1:
        if not dataclasses.is_dataclass(current):
            raise ConfigError(f"unknown setting {full_key!r}: {name} is a value, not a section")
        return replace(node, **{name: _set(current, path[1:], raw, full_key)})
    if dataclasses.is_dataclass(current):
        first = dataclasses.fields(current)[0].name
        raise ConfigError(f"setting {full_key!r} is a section; set one of its keys, e.g. {full_key}.{first}=…")
    return replace(node, **{name: _coerce(raw, hints[name], full_key)})


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(raw: str, kind, key: str):
    try:
        if kind is bool:
            if raw.lower() in _TRUE:
                return True
            if raw.lower() in _FALSE:
                return False
            raise ValueError
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        return raw
    except ValueError:
        raise ConfigError(f"setting {key!r} wants a {kind.__name__}, got {raw!r}") from None


def model_variants(stage: StageConfig, key: str = "stage1.model_cycle") -> list[ModelConfig]:
    """The networks `stage.model_cycle` names, in order: each variant's settings on top of `stage.model`; just
    `[stage.model]` when the cycle is empty. `key` names the setting in errors."""
    if not stage.model_cycle.strip():
        return [stage.model]
    hints = typing.get_type_hints(ModelConfig)
    variants = []
    for i, text in enumerate(stage.model_cycle.split("|")):
        where = f"{key} variant {i} ({text.strip()!r})"
        changes = {}
        for pair in text.split():
            name, sep, raw = pair.partition("=")
            if not sep or not name:
                raise ConfigError(
                    f'{where}: {pair!r} is not key=value (e.g. --set "{key}=attention=false | context=aspp")'
                )
            if name not in hints:
                raise ConfigError(f"{where}: unknown model setting {name!r}; use {', '.join(hints)}")
            try:
                changes[name] = _coerce(raw, hints[name], name)
            except ConfigError as error:
                raise ConfigError(f"{where}: {error}") from None
        variants.append(replace(stage.model, **changes))
    return variants


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(data: dict, cls=Config):
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if dataclasses.is_dataclass(hints[f.name]):
            value = from_dict(value, hints[f.name])
        kwargs[f.name] = value
    unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ConfigError(f"unknown settings in saved config: {', '.join(sorted(unknown))}")
    return cls(**kwargs)


def _get(cfg, dotted: str):
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def validate(cfg: Config) -> Config:
    """Refuse settings no run can use, before anything is written or TensorFlow is imported; returns `cfg`.
    The checks live in `marsseg.validation`."""
    from marsseg.validation import validate_config

    return validate_config(cfg)


def save_config(cfg: Config, path, **extra) -> Path:
    return atomic_write_json(path, {**to_dict(cfg), **({"_run": extra} if extra else {})})


def load_config(path) -> Config:
    data = json.loads(Path(path).read_text())
    data.pop("_run", None)
    return from_dict(data)


def flatten(cfg) -> dict[str, object]:
    """Dotted key -> value, for printing and for `--set` discovery."""
    out = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out.update({f"{f.name}.{k}": v for k, v in flatten(value).items()})
        else:
            out[f.name] = value
    return out
