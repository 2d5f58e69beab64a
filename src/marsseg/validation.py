"""`config.validate`: every setting checked once, before any data is found or loaded and before TensorFlow is
imported, each refusal one line naming the key, the allowed values and a `--set` that works.

Only the standard library and `config` here: the checks mirror what `models.unet.check_model_config` and
`training.losses.parse_loss_name` would refuse later (tests keep the lists in step), so a bad `--set` fails in
well under a second instead of after stage 1.
"""

from __future__ import annotations

from dataclasses import replace

from marsseg.config import POST_SETTINGS, Config, _get, model_variants
from marsseg.errors import ConfigError

LOSS_TERMS = ("ce", "focal", "dice", "focal_tversky", "lovasz")  # training/losses.py LOSSES
MIN_DEPTH, MAX_DEPTH = 2, 5  # models/unet.py
CONTEXTS = ("none", "aspp")  # models/unet.py


class _Refused(ConfigError):
    """A `_fail` refusal, its parts kept so a model_cycle variant's can be reworded."""

    def __init__(self, key: str, problem: str, example: str):
        super().__init__(f"{key} {problem} (e.g. --set {key}={example})")
        self.key, self.problem, self.example = key, problem, example


def _fail(key: str, problem: str, example: str) -> None:
    raise _Refused(key, problem, example)


def _loss_terms_ok(spec: str) -> bool:
    for part in str(spec).replace(" ", "").split("+"):
        weight, star, name = part.rpartition("*")
        if star:
            try:
                if float(weight) < 0:
                    return False
            except ValueError:
                return False
        else:
            name = part
        if name not in LOSS_TERMS:
            return False
    return True


def _check_stage(cfg: Config, stage: str) -> None:
    """Model, loss and training ranges of one stage."""
    s = getattr(cfg, stage)
    m, loss, t = s.model, s.loss, s.train
    key = f"{stage}.model"
    if not MIN_DEPTH <= m.depth <= MAX_DEPTH:
        _fail(f"{key}.depth", f"is {m.depth}; use {MIN_DEPTH}..{MAX_DEPTH}", "4")
    if not 1 <= m.base_filters <= 512:
        _fail(f"{key}.base_filters", f"is {m.base_filters}; use 1..512", "16")
    if not 0.0 <= m.dropout < 1.0:
        _fail(f"{key}.dropout", f"is {m.dropout}; use 0 <= dropout < 1", "0.1")
    if not 0.0 <= m.norm_momentum < 1.0:
        _fail(f"{key}.norm_momentum", f"is {m.norm_momentum}; use 0 <= momentum < 1", "0.9")
    if m.input_stride not in (1, 2):
        _fail(f"{key}.input_stride", f"is {m.input_stride}; use 1 or 2", "1")
    if m.aux_loss_weight < 0:
        _fail(f"{key}.aux_loss_weight", f"is {m.aux_loss_weight}; use a weight >= 0", "0.3")
    try:
        rates = [int(r) for r in str(m.context_rates).split(",") if r.strip()]
    except ValueError:
        rates = []
    if not rates or min(rates) < 1:
        _fail(f"{key}.context_rates", f"is {m.context_rates!r}; use comma-separated dilation rates >= 1", "2,4")
    if m.context not in CONTEXTS:
        _fail(f"{key}.context", f"is {m.context!r}; use one of {', '.join(CONTEXTS)}", CONTEXTS[0])
    if stage == "stage1" and m.residual:
        _fail(f"{key}.residual", "is true; a residual head refines stage-1 probabilities, so stage 2 only", "false")
    key = f"{stage}.loss"
    if not _loss_terms_ok(loss.name):
        _fail(
            f"{key}.name",
            f"is {loss.name!r}; join terms from {', '.join(LOSS_TERMS)} with '+', each optionally weighted "
            "like '0.5*focal'",
            "focal_tversky+focal",
        )
    if loss.class_weights not in ("auto", "none"):
        _fail(f"{key}.class_weights", f"is {loss.class_weights!r}; use auto or none", "auto")
    if loss.focal_gamma < 0:
        _fail(f"{key}.focal_gamma", f"is {loss.focal_gamma}; use a value >= 0", "2")
    for name in ("tversky_alpha", "tversky_beta"):
        if not 0.0 <= getattr(loss, name) <= 1.0:
            _fail(f"{key}.{name}", f"is {getattr(loss, name)}; use 0..1", "0.5")
    if not loss.tversky_gamma > 0:  # the exponent of (1 - TI): at 0 or below the loss no longer falls as TI rises
        _fail(f"{key}.tversky_gamma", f"is {loss.tversky_gamma}; use a value > 0", "0.75")
    key = f"{stage}.train"
    if t.epochs < 1:
        _fail(f"{key}.epochs", f"is {t.epochs}; train at least one epoch", "30")
    if not 1 <= t.batch_size <= 4096:
        _fail(f"{key}.batch_size", f"is {t.batch_size}; use 1..4096", "32")
    if not 0.0 < t.learning_rate < 1.0:
        _fail(f"{key}.learning_rate", f"is {t.learning_rate}; use 0 < rate < 1", "0.001")
    if t.weight_decay < 0:
        _fail(f"{key}.weight_decay", f"is {t.weight_decay}; use a value >= 0", "0.0001")
    if not 0.0 <= t.ema_momentum < 1.0:
        _fail(f"{key}.ema_momentum", f"is {t.ema_momentum}; use 0 (off) or a value in (0, 1)", "0.99")
    if t.patience < 0 or t.warmup_epochs < 0:
        _fail(f"{key}.patience", f"and warmup_epochs must be >= 0 (got {t.patience}, {t.warmup_epochs})", "10")


def _check_cycle(cfg: Config) -> None:
    """Every stage-1 model_cycle variant parses and passes the checks the stage's own model does; stage 2 is one
    network, so it has no cycle."""
    if cfg.stage2.model_cycle.strip():
        raise ConfigError(
            f"stage2.model_cycle is {cfg.stage2.model_cycle!r}; stage 2 is one network, so only stage 1 cycles "
            "models across folds (e.g. --set stage2.model_cycle=)"
        )
    texts = cfg.stage1.model_cycle.split("|")
    for i, variant in enumerate(model_variants(cfg.stage1)):
        try:
            _check_stage(replace(cfg, stage1=replace(cfg.stage1, model=variant)), "stage1")
        except _Refused as refused:
            name = refused.key.removeprefix("stage1.model.")
            raise ConfigError(
                f"stage1.model_cycle variant {i} ({texts[i].strip()!r}): {name} {refused.problem} "
                f"(e.g. {name}={refused.example} in that variant)"
            ) from None


def validate_config(cfg: Config) -> Config:
    """Refuse settings no run can use, before anything is written; returns `cfg`."""
    if not 0.05 <= cfg.stage1_share <= 0.95:
        raise ConfigError(f"stage1_share {cfg.stage1_share} is outside 0.05..0.95 (e.g. --set stage1_share=0.6)")
    if not 0.05 <= cfg.data.report_fraction <= 0.95:
        raise ConfigError(
            f"data.report_fraction {cfg.data.report_fraction} is outside 0.05..0.95 "
            "(the hold-out's reporting share; e.g. --set data.report_fraction=0.5)"
        )
    for stage in ("stage1", "stage2"):
        ratio = getattr(cfg, stage).loss.max_weight_ratio
        if ratio != 0 and ratio < 1:
            raise ConfigError(
                f"{stage}.loss.max_weight_ratio {ratio} must be 0 (no cap) or at least 1 "
                f"(e.g. --set {stage}.loss.max_weight_ratio=10)"
            )
        power = getattr(cfg, stage).loss.class_weight_power
        if not 0.0 <= power <= 2.0:
            raise ConfigError(
                f"{stage}.loss.class_weight_power {power} is outside 0..2 "
                f"(0.5: square-root inverse frequency; e.g. --set {stage}.loss.class_weight_power=0.25)"
            )
    choices = {
        "submission.format": ("rle", "pixels"),
        "augment.strength": ("none", "flips", "light", "medium", "strong"),
        **{f"{stage}.train.optimizer": ("adam", "adamw") for stage in ("stage1", "stage2")},
        **{f"{stage}.train.schedule": ("plateau", "cosine") for stage in ("stage1", "stage2")},
        **{f"{stage}.train.mixed_precision": ("auto", "on", "off") for stage in ("stage1", "stage2")},
    }
    for key, allowed in choices.items():
        value = _get(cfg, key)
        if value not in allowed:
            raise ConfigError(f"{key} is {value!r}; use one of {', '.join(allowed)} (e.g. --set {key}={allowed[0]})")
    if not 0.0 <= cfg.augment.copy_paste_rate <= 1.0:
        raise ConfigError(
            f"augment.copy_paste_rate {cfg.augment.copy_paste_rate} is outside 0..1 "
            "(e.g. --set augment.copy_paste_rate=0.3)"
        )
    if not 0.02 <= cfg.data.val_fraction <= 0.5:
        _fail("data.val_fraction", f"is {cfg.data.val_fraction}; hold out 0.02..0.5 of the training images", "0.15")
    if not 1 <= cfg.data.folds <= 20:
        _fail("data.folds", f"is {cfg.data.folds}; use 1..20 (stage 1 trains at least 2 fold models)", "5")
    if not 0 <= cfg.data.fold_models <= max(2, cfg.data.folds):
        _fail(
            "data.fold_models",
            f"is {cfg.data.fold_models}; use 0 (every fold) or 1..{max(2, cfg.data.folds)} (at most data.folds)",
            "0",
        )
    if cfg.budget_seconds <= 0:
        _fail("budget_seconds", f"is {cfg.budget_seconds}; give the run a positive number of seconds", "3600")
    if not 0.0 < cfg.self_training.threshold <= 1.0:
        _fail("self_training.threshold", f"is {cfg.self_training.threshold}; use a probability in (0, 1]", "0.9")
    if cfg.self_training.max_images < 0:
        _fail("self_training.max_images", f"is {cfg.self_training.max_images}; use 0 (all) or more", "2000")
    if cfg.canary.budget_seconds <= 0:
        _fail("canary.budget_seconds", f"is {cfg.canary.budget_seconds}; give the canary a positive budget", "600")
    if cfg.canary.epochs < 2:
        _fail("canary.epochs", f"is {cfg.canary.epochs}; use 2 or more (the first epoch compiles)", "3")
    for stage in ("stage1", "stage2"):
        _check_stage(cfg, stage)
    _check_cycle(cfg)
    for name in ("tta", "morphology", "class_bias"):
        if getattr(cfg.post, name) not in POST_SETTINGS:
            raise ConfigError(
                f"post.{name} is {getattr(cfg.post, name)!r}; use {', '.join(POST_SETTINGS)} "
                f"(e.g. --set post.{name}=off)"
            )
    return cfg
