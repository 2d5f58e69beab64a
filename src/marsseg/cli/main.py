"""The `marsseg` command: argument parsing and one-line errors only.

Every command calls one function of the package; user errors (bad files, missing credentials,
unknown settings) print `marsseg: error: …` on one line and exit with status 2, without a traceback.
Each command group lives in its own module; COMMANDS below is the one table of them, in `--help` order.
"""

from __future__ import annotations

import argparse
import sys

import marsseg
from marsseg.cli import config, data, ensemble, kaggle, run, submission, tracking
from marsseg.errors import UserError

COMMANDS = (
    data.add_synth,
    data.add_inspect,
    submission.add_encode,
    submission.add_validate,
    submission.add_convert,
    submission.add_score,
    run.add_demo,
    run.add_bench,
    tracking.add_track,
    tracking.add_leaderboard,
    tracking.add_history,
    tracking.add_plot,
    kaggle.add_bundle,
    kaggle.add_check_rules,
    kaggle.add_submit,
    kaggle.add_status,
    kaggle.add_data,
    kaggle.add_emulator,
    run.add_train,
    config.add_config,
    ensemble.add_ensemble,
    data.add_clean,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="marsseg", description="Kaggle kit for Mars terrain segmentation.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {marsseg.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except UserError as exc:
        print(f"marsseg: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("marsseg: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`marsseg config show | head`): stop quietly, as Unix tools do
        sys.stderr.close()
        return 141


if __name__ == "__main__":
    raise SystemExit(main())
