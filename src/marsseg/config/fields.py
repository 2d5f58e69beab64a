"""A setting's rule, declared beside its field in `schema`: one line of meaning and what values it may take.

    depth: int = setting(4, "U-Net levels: poolings down to the bottleneck", within="[2, 5]")
    optimizer: str = setting("adamw", "the optimizer", choices=("adam", "adamw"))

Validation (`validation`), the model builder, the losses, the trainer and `marsseg config` read the rule from the
field's metadata, so each list of allowed values and each range is written once. The standard library only.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

RULE = "rule"  # the metadata key that holds a field's Rule


@dataclass(frozen=True)
class Interval:
    """A numeric range; `low_open`/`high_open` exclude the end, an infinite end is open."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    @classmethod
    def parse(cls, text: str) -> Interval:
        """'[2, 5]', '[0, 1)', '(0, inf)': brackets include the end, parentheses exclude it."""
        text = text.strip()
        if text[:1] not in ("[", "(") or text[-1:] not in ("]", ")"):
            raise ValueError(f"interval {text!r} needs [ or ( and ] or )")
        low, high = (float(part) for part in text[1:-1].split(","))
        return cls(low, high, text[0] == "(", text[-1] == ")")

    def admits(self, value) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def text(self, name: str | None = None, integer: bool = False) -> str:
        """'2..5', '1 or 2', '0 <= dropout < 1' (or 'in [0, 1)' without a name), '>= 0' or 'a value >= 0'."""
        low, high = number(self.low), number(self.high)
        if math.isinf(self.high):
            bound = f"{'>' if self.low_open else '>='} {low}"
            return f"a value {bound}" if name else bound
        if not (self.low_open or self.high_open):
            return f"{low} or {high}" if integer and self.high == self.low + 1 else f"{low}..{high}"
        if name is None:
            return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        return f"{low} {'<' if self.low_open else '<='} {name} {'<' if self.high_open else '<='} {high}"


@dataclass(frozen=True)
class Rule:
    """What a setting means and may hold. A plain rule (choices or an interval) is checked generically; a `form`
    (a value with a syntax: loss terms, dilation rates, model variants) is checked by the code that parses it."""

    doc: str  # one line: what the setting does
    choices: tuple = ()
    interval: Interval | None = None
    also: tuple = ()  # values allowed outside the interval, e.g. 0 meaning "off"
    form: str = ""  # the allowed values in words, where a parser decides

    def admits(self, value) -> bool:
        """Whether a plain rule lets `value` through; a form rule always does (its parser decides)."""
        if value in self.also:
            return True
        if self.choices:
            return value in self.choices
        if self.interval is not None:
            return self.interval.admits(value)
        return True

    @property
    def checked(self) -> bool:
        """True when `admits` decides: the rule has choices or an interval."""
        return bool(self.choices) or self.interval is not None

    def allowed(self, name: str | None = None, integer: bool = False) -> str:
        """The allowed values in words: 'one of rle, pixels', '2..5', '0 <= dropout < 1', '0, or a value >= 1'."""
        if self.form:
            text = self.form
        elif self.choices:
            text = "one of " + ", ".join(as_set(c) for c in self.choices)
        elif self.interval is not None:
            text = self.interval.text(name, integer)
        else:
            return ""
        also = " or ".join(number(v) if isinstance(v, float) else as_set(v) for v in self.also)
        return f"{also}, or {text}" if self.also else text


def setting(default, doc: str, *, choices=(), within: str | None = None, also=(), form: str = ""):
    """A dataclass field with its rule: `within` an interval such as '[0, 1)', or one of `choices`."""
    rule = Rule(doc, tuple(choices), Interval.parse(within) if within else None, tuple(also), form)
    return field(default=default, metadata={RULE: rule})


def section(cls, doc: str):
    """A nested dataclass field (a section of dotted keys) with one line of meaning."""
    return field(default_factory=cls, metadata={RULE: Rule(doc)})


def rule_of(owner, name: str) -> Rule:
    """The Rule of field `name` of a dataclass (or instance)."""
    for f in dataclasses.fields(owner):
        if f.name == name:
            return f.metadata[RULE]
    raise KeyError(f"{owner.__name__ if isinstance(owner, type) else type(owner).__name__} has no field {name!r}")


def rules_of(owner) -> dict[str, Rule]:
    """Field name -> Rule, in field order."""
    return {f.name: f.metadata[RULE] for f in dataclasses.fields(owner)}


def either(values) -> str:
    """'auto, on or off'."""
    words = [as_set(v) for v in values]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def number(value: float) -> str:
    """2.0 -> '2', 0.05 -> '0.05', inf -> 'inf'."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def shown(value) -> str:
    """A value as a refusal quotes it: strings quoted, booleans as `--set` spells them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) else str(value)


def as_set(value) -> str:
    """A value as `--set key=VALUE` takes it."""
    return shown(value) if isinstance(value, bool) else str(value)
