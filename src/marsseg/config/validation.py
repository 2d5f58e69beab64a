"""`config.validate`: every setting checked once, before any data is found or loaded and before TensorFlow is
imported, each refusal one line naming the key, the problem, the allowed values and a `--set` that works.

The plain rules (choices, ranges) are the schema's field rules, checked generically; the rules that read a
syntax (loss terms, dilation rates, model variants) or join two settings are written out below. A bad `--set`
fails in well under a second instead of after stage 1.
"""

from __future__ import annotations

from dataclasses import replace

from marsseg.config.fields import as_set, shown
from marsseg.config.keys import keys, model_variants, value_at
from marsseg.config.schema import Config, ModelConfig, dilation_rates, loss_terms
from marsseg.errors import ConfigError

KEYS = {k.name: k for k in keys()}


class Refusal(ConfigError):
    """A setting no run can use: '{key} {problem} (e.g. --set {key}={example})', its parts kept so a model_cycle
    variant's refusal can name the variant instead."""

    def __init__(self, key: str, problem: str, example):
        super().__init__(f"{key} {problem} (e.g. --set {key}={as_set(example)})")
        self.key, self.problem, self.example = key, problem, example


def refuse(key: str, problem: str) -> None:
    """Raise the one-line refusal of `key`, its example the setting's schema default."""
    raise Refusal(key, problem, KEYS[key].default)


def check_plain_rules(cfg: Config, prefix: str = "") -> None:
    """Every setting under `prefix` against its field's choices or range."""
    for k in KEYS.values():
        if k.name.startswith(prefix) and k.rule.checked:
            value = value_at(cfg, k.name)
            if not k.rule.admits(value):
                name = k.name.rpartition(".")[2]
                refuse(k.name, f"is {shown(value)}; use {k.rule.allowed(name, integer=k.kind is int)}")


def _check_stage_forms(cfg: Config, stage: str) -> None:
    """The stage's settings with a syntax, and the residual head, which only stage 2 can have."""
    s = getattr(cfg, stage)
    key = f"{stage}.model.context_rates"
    try:
        rates = dilation_rates(s.model.context_rates)
    except ValueError:
        rates = ()
    if not rates or min(rates) < 1:
        refuse(key, f"is {s.model.context_rates!r}; use {KEYS[key].rule.allowed()}")
    if stage == "stage1" and s.model.residual:
        refuse(f"{stage}.model.residual", "is true; a residual head refines stage-1 probabilities, so stage 2 only")
    key = f"{stage}.loss.name"
    if loss_terms(s.loss.name) is None:
        refuse(key, f"is {s.loss.name!r}; use {KEYS[key].rule.allowed()}")


def _check_cycle(cfg: Config) -> None:
    """Every stage-1 model_cycle variant parses and passes the checks the stage's own model does; stage 2 is one
    network, so it has no cycle."""
    if cfg.stage2.model_cycle.strip():
        refuse(
            "stage2.model_cycle",
            f"is {cfg.stage2.model_cycle!r}; stage 2 is one network, so only stage 1 cycles models across folds",
        )
    texts = cfg.stage1.model_cycle.split("|")
    for i, variant in enumerate(model_variants(cfg.stage1)):
        try:
            _check_model(variant, cfg)
        except Refusal as refused:
            name = refused.key.removeprefix("stage1.model.")
            raise ConfigError(
                f"stage1.model_cycle variant {i} ({texts[i].strip()!r}): {name} {refused.problem} "
                f"(e.g. {name}={as_set(refused.example)} in that variant)"
            ) from None


def _check_model(model: ModelConfig, cfg: Config) -> None:
    """A stage-1 model's settings, as `check_plain_rules` and `_check_stage_forms` check stage 1's own."""
    probe = replace(cfg, stage1=replace(cfg.stage1, model=model))
    check_plain_rules(probe, "stage1.model.")
    _check_stage_forms(probe, "stage1")


def _check_across_settings(cfg: Config) -> None:
    """The rules that join two settings."""
    most = max(2, cfg.data.folds)
    if not 0 <= cfg.data.fold_models <= most:
        refuse("data.fold_models", f"is {cfg.data.fold_models}; use 0 (every fold) or 1..{most} (at most data.folds)")


def validate_config(cfg: Config) -> Config:
    """Refuse settings no run can use, before anything is written; returns `cfg`."""
    check_plain_rules(cfg)
    _check_across_settings(cfg)
    for stage in ("stage1", "stage2"):
        _check_stage_forms(cfg, stage)
    _check_cycle(cfg)
    return cfg
