"""`marsseg config`: every setting with its value, type, allowed values and meaning; the generated doc tables."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from marsseg.cli.options import add_set_option
from marsseg.config import PRESET_SPECS, Config, override, preset, validate


def add_config(sub):
    p = sub.add_parser("config", help="show every setting (value, type, allowed values, meaning); generate the docs")
    actions = p.add_subparsers(dest="config_command", metavar="ACTION")
    actions.required = True
    show = actions.add_parser("show", help="every key of a preset with --set applied, and the preset's reasons")
    show.add_argument("--preset", help=f"start from this preset: {' | '.join(PRESET_SPECS)} (default: the defaults)")
    add_set_option(show)
    show.add_argument("--json", action="store_true", help="one JSON object for machines")
    show.set_defaults(func=cmd_show)
    docs = actions.add_parser(
        "docs", help="rewrite the <!-- config:NAME --> blocks of README.md and docs/*.md from the schema"
    )
    docs.add_argument("--check", action="store_true", help="change nothing; exit 1 naming each stale file")
    docs.add_argument("--root", type=Path, default=Path("."), help="the repository root (default: here)")
    docs.set_defaults(func=cmd_docs)


def cmd_show(args) -> int:
    from marsseg.config.reference import show_json, show_text

    base = preset(args.preset) if args.preset else Config()  # an unknown preset: one line, exit 2
    spec = PRESET_SPECS[args.preset] if args.preset else None
    cfg = validate(override(base, args.overrides))
    if args.json:
        print(json.dumps(show_json(cfg, spec), indent=1))
    else:
        print(show_text(cfg, spec))
    return 0


def cmd_docs(args) -> int:
    from marsseg.config.reference import write_blocks

    stale = write_blocks(args.root, check=args.check)
    for path in stale:
        if args.check:
            print(f"marsseg: {path} has a stale config block; run `marsseg config docs`", file=sys.stderr)
        else:
            print(f"rewrote {path}")
    return 1 if args.check and stale else 0
