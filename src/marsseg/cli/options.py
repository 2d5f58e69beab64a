"""Options several command groups share."""

from __future__ import annotations


def add_set_option(parser, example: str = "stage1.train.epochs=5") -> None:
    """`--set KEY=VALUE` (repeatable) into `args.overrides`, for `config.override`."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a setting, e.g. --set {example} (repeatable)",
    )
