"""The named presets as data: each one a description and its settings, each setting with a one-line reason.

cfg = preset("cpu")                 # a Config: the schema's defaults with the preset's settings applied
PRESET_SPECS["cpu"].settings        # dotted key -> (value, reason)

The measurements behind the choices are told in docs/presets.md, with the BENCHMARKS.md blocks that hold them.
"""

from __future__ import annotations

from dataclasses import dataclass

from marsseg.config.keys import assign, key
from marsseg.config.schema import Config
from marsseg.errors import ConfigError


@dataclass(frozen=True)
class Preset:
    name: str
    description: str  # one line: what it is for
    device: str  # what it runs on
    settings: dict[str, tuple[object, str]]  # dotted key -> (value, one-line reason)

    def config(self) -> Config:
        cfg = assign(Config(), "preset", self.name)
        for name, (value, _) in self.settings.items():
            kind = key(name).kind
            if kind is float and type(value) is int:
                value = float(value)
            if type(value) is not kind:
                raise TypeError(f"preset {self.name}: {name} wants a {kind.__name__}, got {value!r}")
            cfg = assign(cfg, name, value)
        return cfg

    @property
    def budget(self) -> str:
        seconds = self.config().budget_seconds
        return f"{seconds:g} s" if seconds < 3600 else f"{seconds / 3600:g} h"


def _both(settings: dict[str, tuple[object, str]]) -> dict[str, tuple[object, str]]:
    """The same settings for stage 1 and stage 2 (keys without the stage prefix)."""
    return {f"{stage}.{name}": setting for stage in ("stage1", "stage2") for name, setting in settings.items()}


TINY = "the smallest network: the tests check code paths, not scores"
ONE_EPOCH = "one epoch: seconds on a CPU"
EAGER = "three batches run sooner than a traced graph compiles"
STAGE2_ATTENTION_DS_CPU = (
    "off: both on scored +0.001 on procedural and -0.001 on photo (medians, seeds 42-44), so they do not help on "
    "both, and stage 2 trained at 73-77 against 96-104 samples/s (BENCHMARKS paired)"
)
ATTENTION_DS_CPU = (
    "off: both on lost on both stand-ins (BENCHMARKS paired: -0.016 procedural, -0.020 photo, seeds 42-44); "
    "their extra cost per sample leaves fewer samples in the same minutes"
)
CAPPED = "inverse-frequency weights over classes 1-4 capped at 10x, as the public write-ups (background weight 0)"
CAPPED_CPU = CAPPED + (
    "; weights alike lost 0.03 and 0.05 (medians) on the two stand-ins, behind at each of seeds 42-44, big rock "
    "-0.13 and -0.18 (BENCHMARKS paired)"
)
COSINE = "warm-up + cosine decay to the deadline: a model gets only a few epochs here"
RESIDUAL = "stage 2 refines stage 1's probabilities: it starts where stage 1 ended"

SMOKE = Preset(
    "smoke",
    "the tests: seconds on a CPU, through every code path",
    "CPU",
    {
        "budget_seconds": (300.0, "a safety net: the epoch caps end the run in seconds"),
        "data.max_train": (64, "a few batches of training images"),
        "data.max_test": (16, "a few test images"),
        "data.val_fraction": (0.25, "a hold-out big enough to tune on from 64 images"),
        "data.folds": (2, "two fold models, the fewest that exercise out-of-fold prediction"),
        "augment.bigrock_offline_copies": (1, "one copy still covers the offline-copy path"),
        "augment.workers": (0, "augment in the calling thread: no pool to start"),
        **_both(
            {
                "model.depth": (2, TINY),
                "model.base_filters": (8, TINY),
                "model.dropout": (0.0, TINY),
                "train.epochs": (1, ONE_EPOCH),
                "train.batch_size": (16, ONE_EPOCH),
                "train.patience": (1, ONE_EPOCH),
                "train.run_eagerly": (True, EAGER),
            }
        ),
        "stage1.model.input_stride": (2, "half resolution as in cpu, full in stage 2: the tests cover both"),
        "stage2.model.deep_supervision": (False, "a single head in stage 2: the tests cover single and multi-head"),
        "stage2.model.residual": (True, RESIDUAL + ", as in every preset"),
    },
)

CPU = Preset(
    "cpu",
    "`make demo` and `make bench`: the whole pipeline on a 2-core CPU in under 10 minutes",
    "CPU (2 cores)",
    {
        "budget_seconds": (540.0, "`make demo` in under 10 minutes, with a margin"),
        "stage1_share": (
            0.8,
            "ahead of 0.65 on both stand-ins (BENCHMARKS paired: +0.021 on each, seeds 42-44)",
        ),
        "data.folds": (4, "the one stage-1 model trains on three quarters of the development rows"),
        "data.fold_models": (
            1,
            "one model with all of stage 1's time: two fold models lost 0.10 and 0.12 (medians) on the two "
            "stand-ins, behind at each of seeds 42-44 (BENCHMARKS paired)",
        ),
        "augment.strength": (
            "flips",
            "flips, as the public write-ups: medium lost 0.039 and 0.025 (medians) on the two stand-ins, behind at "
            "each of seeds 42-44 (BENCHMARKS paired)",
        ),
        "augment.bigrock_offline_copies": (0, "offline copies would lengthen every epoch; oversampling stays"),
        "augment.copy_paste_rate": (
            0.0,
            "off: rate 0.3 scored +0.010 on procedural (ahead at 3 of seeds 42-44) and -0.004 on photo (0 of 3), "
            "medians, so it does not help on both (BENCHMARKS paired)",
        ),
        "stage1.model.base_filters": (16, "the best-practice network's size (depth 4, base 16) at full resolution"),
        "stage1.model.dropout": (
            0.0,
            "no dropout: ahead of 0.05 on both stand-ins (BENCHMARKS paired: +0.021 on each, seeds 42-44); "
            "a model trains only a few epochs",
        ),
        "stage1.model.attention": (False, ATTENTION_DS_CPU),
        "stage1.model.deep_supervision": (False, ATTENTION_DS_CPU),
        "stage1.loss.name": (
            "ce",
            "cross-entropy, as the public write-ups: ce+lovasz lost 0.003 and 0.016 (medians) on the two stand-ins, "
            "ahead at 1 of seeds 42-44, at a fifth fewer training samples/s (BENCHMARKS paired)",
        ),
        "stage1.loss.class_weight_power": (1.0, CAPPED_CPU),
        "stage1.loss.max_weight_ratio": (10.0, CAPPED_CPU),
        "stage1.train.epochs": (40, "a cap above what the deadline allows; the cosine decay is sized to the deadline"),
        "stage1.train.learning_rate": (0.002, "the peak of a short warm-up + cosine schedule"),
        "stage1.train.warmup_epochs": (1, COSINE),
        "stage1.train.patience": (5, "stop a model that stalls: a run has few epochs"),
        **_both(
            {
                "train.batch_size": (16, "more steps in the few epochs a model gets"),
                "train.schedule": ("cosine", COSINE),
            }
        ),
        "stage1.train.batch_size": (
            16,
            "ahead of 32 on both stand-ins (BENCHMARKS paired: 32 lost 0.04 at seeds 42-44)",
        ),
        "stage2.model.depth": (2, "the stage-2 screen's design (depth 2, base 8, full resolution)"),
        "stage2.model.base_filters": (8, "the stage-2 screen's design (depth 2, base 8, full resolution)"),
        "stage2.model.dropout": (
            0.05,
            "light regularisation: none scored -0.000 on procedural (ahead at 1 of seeds 42-44) and +0.002 on "
            "photo (medians), so it does not help on both (BENCHMARKS paired)",
        ),
        "stage2.model.attention": (False, STAGE2_ATTENTION_DS_CPU),
        "stage2.model.deep_supervision": (False, STAGE2_ATTENTION_DS_CPU),
        "stage2.model.residual": (True, RESIDUAL),
        "stage2.loss.name": ("ce", "cross-entropy, as the public write-ups"),
        "stage2.loss.class_weight_power": (
            0.0,
            "classes 1-4 weighted alike, as in the screened stage-2 design: capped weights scored +0.000 and -0.002 "
            "(medians) on the two stand-ins, seeds 42-44 (BENCHMARKS paired)",
        ),
        "stage2.train.warmup_epochs": (0, "no warm-up: the residual head starts at stage 1's answer"),
        "stage2.train.patience": (60, "as long as the epoch cap: stage 2 follows its decay to the deadline"),
    },
)

GPU = Preset(
    "gpu",
    "`make train`: the full two-stage run on a local GPU in three hours",
    "GPU",
    {
        "budget_seconds": (10800.0, "three hours on one GPU"),
        "require_gpu": (True, "hours of CPU training are never what `make train` on a GPU box meant"),
        "data.folds": (5, "five fold models"),
        "stage1.train.epochs": (80, "a higher epoch cap for three hours on a GPU (not measured: no GPU lent)"),
        "stage2.model.residual": (True, RESIDUAL),
        "stage2.train.patience": (10, "a little less patience than stage 1: stage 2 starts from stage 1's answer"),
    },
)

KAGGLE = Preset(
    "kaggle",
    "the Kaggle kernel: the public write-ups' recipe on two T4 GPUs",
    "GPU (Kaggle, 2x T4)",
    {
        "budget_seconds": (9000.0, "the projected need (1.35 h on two T4s) with a ~1.9x margin, not the 12 h limit"),
        "require_gpu": (True, "a kernel on a CPU-only TensorFlow would spend its whole budget of GPU quota"),
        "data.folds": (5, "five fold models, alternating two networks"),
        "augment.strength": ("flips", "flips rather than heavy augmentation, as the public write-ups"),
        "augment.copy_paste_rate": (0.3, "big-rock copy-paste, as the public write-ups"),
        "stage1.model_cycle": (
            "attention=true context=none | attention=false context=aspp",
            "a mean of different networks gained the write-ups ~5 points over the best single one",
        ),
        "stage1.loss.name": ("focal", "focal loss with gamma 0.5, as the top public entry"),
        "stage1.loss.focal_gamma": (0.5, "focal loss with gamma 0.5, as the top public entry"),
        "stage1.loss.class_weight_power": (1.0, CAPPED),
        "stage1.loss.max_weight_ratio": (10.0, CAPPED),
        "stage1.train.epochs": (100, "more epochs and patience for the full data on two GPUs (not measured)"),
        "stage1.train.patience": (15, "more epochs and patience for the full data on two GPUs (not measured)"),
        "stage2.model.residual": (True, RESIDUAL),
        "stage2.train.epochs": (80, "more epochs for the full data on two GPUs (not measured)"),
    },
)

PRESET_SPECS: dict[str, Preset] = {spec.name: spec for spec in (SMOKE, CPU, GPU, KAGGLE)}
PRESETS: dict[str, Config] = {name: spec.config() for name, spec in PRESET_SPECS.items()}


def preset(name: str) -> Config:
    """The named preset's Config."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None
