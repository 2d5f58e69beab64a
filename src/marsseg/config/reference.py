"""What `marsseg config` prints and writes: every key with its value, type, allowed values and meaning, from the
schema's rules and the presets' reasons; and the generated blocks of README.md and docs/*.md.

    print(show_text(preset("kaggle"), PRESET_SPECS["kaggle"]))
    stale = write_blocks(Path("."), check=True)      # files whose <!-- config:NAME --> blocks are out of date

Imported by the CLI only: the kernel and the runs never need it.
"""

from __future__ import annotations

import re
from pathlib import Path

from marsseg.config.fields import as_set
from marsseg.config.keys import keys, value_at
from marsseg.config.presets import PRESET_SPECS, Preset
from marsseg.config.schema import Config
from marsseg.errors import UserError
from marsseg.files import atomic_write_text

BLOCK = re.compile(r"(<!-- config:(?P<name>[a-z_]+) -->\n)(?P<body>.*?)(<!-- /config:(?P=name) -->)", re.DOTALL)


def rows(cfg: Config, spec: Preset | None = None) -> list[dict]:
    """One dict a key: key, value, default, type, allowed, meaning, and the preset's reason where it sets the key."""
    out = []
    for k in keys():
        row = {
            "key": k.name,
            "value": value_at(cfg, k.name),
            "default": k.default,
            "type": k.kind.__name__,
            "allowed": k.rule.allowed(k.name.rpartition(".")[2], integer=k.kind is int),
            "meaning": k.rule.doc,
        }
        if spec is not None and k.name in spec.settings:
            row["reason"] = spec.settings[k.name][1]
        out.append(row)
    return out


def _plain(value) -> str:
    return '""' if value == "" else as_set(value)


def show_text(cfg: Config, spec: Preset | None = None) -> str:
    """Aligned lines: key = value, type, allowed, meaning; the preset's reason indented below where it sets one."""
    table = rows(cfg, spec)
    default = f"`preset = {cfg.preset}` is only that field's default; --preset {cfg.preset} shows the preset"
    title = (
        f"preset {spec.name}: {spec.description}" if spec else f"the schema's defaults, no preset applied ({default})"
    )
    width = min(44, max(len(r["key"]) + 3 + len(_plain(r["value"])) for r in table))  # a long value overflows
    lines = [title, ""]
    for r in table:
        head = f"{r['key']} = {_plain(r['value'])}".ljust(width)
        allowed = f"; {r['allowed']}" if r["allowed"] else ""
        lines.append(f"{head}  ({r['type']}{allowed})  {r['meaning']}")
        if "reason" in r:
            lines.append(f"{'':4}{spec.name}: {r['reason']}")
    return "\n".join(lines)


def show_json(cfg: Config, spec: Preset | None = None) -> dict:
    return {
        "preset": spec.name if spec else None,
        "description": spec.description if spec else None,
        "keys": rows(cfg, spec),
    }


def _cell(value) -> str:
    """A markdown table cell: code for values, pipes escaped."""
    text = _plain(value) if not isinstance(value, str) or value == "" else value
    return f"`{text}`".replace("|", "\\|")


def _text_cell(text: str) -> str:
    return text.replace("|", "\\|")


def presets_block() -> str:
    lines = ["| preset | budget | device | what it is for |", "|---|---|---|---|"]
    for spec in PRESET_SPECS.values():
        lines.append(f"| `{spec.name}` | {spec.budget} | {spec.device} | {_text_cell(spec.description)} |")
    return "\n".join(lines)


def keys_block() -> str:
    """Every key by section (default, type, allowed, meaning), then each preset's settings with their reasons."""
    lines, section = [], None
    for r in rows(Config()):
        if r["key"].startswith("stage2."):
            continue  # the stages share one schema: stage1's rows stand for both
        head = r["key"].rpartition(".")[0] or "top level"
        if head != section:
            section = head
            also = f" (and {head.replace('stage1', 'stage2', 1)})" if head.startswith("stage1") else ""
            lines += [
                "",
                f"### {head}{also}",
                "",
                "| key | default | type | allowed | meaning |",
                "|---|---|---|---|---|",
            ]
        allowed = _text_cell(r["allowed"]) if r["allowed"] else ""
        lines.append(f"| `{r['key']}` | {_cell(r['default'])} | {r['type']} | {allowed} | {_text_cell(r['meaning'])} |")
    defaults, order = Config(), [k.name for k in keys()]
    for spec in PRESET_SPECS.values():
        lines += ["", f"### Preset `{spec.name}`", "", f"{spec.device}, budget {spec.budget}: {spec.description}.", ""]
        lines += ["| key | value | default | why |", "|---|---|---|---|"]
        for name in sorted(spec.settings, key=order.index):
            (value, reason), default = spec.settings[name], value_at(defaults, name)
            lines.append(f"| `{name}` | {_cell(value)} | {_cell(default)} | {_text_cell(reason)} |")
    return "\n".join(lines).lstrip("\n")


RENDERERS = {"presets": presets_block, "keys": keys_block}


def rendered(text: str, where: str) -> str:
    """`text` with every config block's body replaced by what the generator writes now."""

    def body(match: re.Match) -> str:
        name = match["name"]
        if name not in RENDERERS:
            raise UserError(f"{where}: unknown block <!-- config:{name} -->; use one of {', '.join(RENDERERS)}")
        return f"{match[1]}{RENDERERS[name]()}\n{match[4]}"

    return BLOCK.sub(body, text)


def documents(root: Path) -> list[Path]:
    """README.md and docs/*.md under the repository root `root`."""
    if not (root / "README.md").is_file():
        raise UserError(f"{root}: no README.md; run from the repository root or pass --root")
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def write_blocks(root: Path, check: bool = False) -> list[Path]:
    """Rewrite every stale config block; with `check`, only list the files that have one. Returns those files."""
    stale = []
    for path in documents(root):
        text = path.read_text()
        new = rendered(text, str(path))
        if new != text:
            stale.append(path)
            if not check:
                atomic_write_text(path, new)
    return stale
