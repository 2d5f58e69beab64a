"""A configuration as a dict and as the config.json every run saves."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

from marsseg.config.schema import Config
from marsseg.errors import ConfigError
from marsseg.files import atomic_write_json


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


def save_config(cfg: Config, path, **extra) -> Path:
    return atomic_write_json(path, {**to_dict(cfg), **({"_run": extra} if extra else {})})


def load_config(path) -> Config:
    data = json.loads(Path(path).read_text())
    data.pop("_run", None)
    return from_dict(data)
