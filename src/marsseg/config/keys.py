"""Dotted keys over the schema: list them, look up their rules, set them from `--set key=value` strings.

cfg = override(preset("cpu"), ["stage1.train.epochs=5", "post.tta=off"])
allowed("stage1.train.optimizer")      # ('adam', 'adamw'), from the field's rule
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, replace

from marsseg.config.fields import RULE, Rule
from marsseg.config.schema import Config, ModelConfig, StageConfig
from marsseg.errors import ConfigError


@dataclass(frozen=True)
class Key:
    """One leaf setting: its dotted name, type, rule and default."""

    name: str
    kind: type
    rule: Rule
    default: object


def keys(cls=Config, prefix: str = "") -> list[Key]:
    """Every leaf setting of `cls`, in field order (the order of config.json)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            out += keys(hints[f.name], f"{name}.")
        else:
            out.append(Key(name, hints[f.name], f.metadata[RULE], f.default))
    return out


def key(name: str) -> Key:
    """The leaf setting `name` ('stage1.train.optimizer'); ConfigError naming it when there is none."""
    return _walk(Config, name.split("."), name)


def allowed(name: str) -> tuple:
    """The choices of the setting `name`, e.g. allowed('augment.strength')."""
    return key(name).rule.choices


def _walk(cls, path: list[str], full_key: str) -> Key:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    name = path[0]
    if name not in fields:
        raise ConfigError(f"unknown setting {full_key!r}: {cls.__name__} has {', '.join(fields)}")
    kind = typing.get_type_hints(cls)[name]
    if len(path) > 1:
        if not dataclasses.is_dataclass(kind):
            raise ConfigError(f"unknown setting {full_key!r}: {name} is a value, not a section")
        return _walk(kind, path[1:], full_key)
    if dataclasses.is_dataclass(kind):
        first = dataclasses.fields(kind)[0].name
        raise ConfigError(f"setting {full_key!r} is a section; set one of its keys, e.g. {full_key}.{first}=…")
    return Key(full_key, kind, fields[name].metadata[RULE], fields[name].default)


def assign(cfg, name: str, value):
    """A copy of `cfg` with the setting `name` replaced by `value` (already of the setting's type)."""
    head, _, rest = name.partition(".")
    if rest:
        return replace(cfg, **{head: assign(getattr(cfg, head), rest, value)})
    return replace(cfg, **{head: value})


def value_at(cfg, name: str):
    for part in name.split("."):
        cfg = getattr(cfg, part)
    return cfg


def override(cfg: Config, assignments: typing.Iterable[str]) -> Config:
    """Apply `key=value` strings with dotted keys, e.g. `stage1.train.epochs=5`."""
    for assignment in assignments:
        name, sep, raw = assignment.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"override {assignment!r} is not key=value (example: --set stage1.train.epochs=5)")
        found = key(name.strip())
        cfg = assign(cfg, found.name, coerce(raw.strip(), found.kind, found.name))
    return cfg


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def coerce(raw: str, kind, name: str):
    """`raw` as a value of `kind` (bool, int, float or str); ConfigError naming the setting otherwise."""
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
        raise ConfigError(f"setting {name!r} wants a {kind.__name__}, got {raw!r}") from None


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
                changes[name] = coerce(raw, hints[name], name)
            except ConfigError as error:
                raise ConfigError(f"{where}: {error}") from None
        variants.append(replace(stage.model, **changes))
    return variants


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
