"""Training commands: `demo`, `train`, and `bench` (which loads the benchmarks lazily)."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

from marsseg.cli.options import add_set_option
from marsseg.config import override, preset, replace, validate
from marsseg.data.load import find_data
from marsseg.errors import UserError
from marsseg.pipeline.demo import run_baseline_demo, run_pipeline_demo
from marsseg.pipeline.outputs import Stage1Failed

# `make demo`: the full pipeline on synthetic data, sized so the cpu preset ends in under 10 minutes on 2 cores.
DEMO_TRAIN, DEMO_TEST = 1600, 1000
# Exit status of a run whose stage 1 crashed: its fallback submission is written, but it is not a finished run.
STAGE1_FAILED_EXIT = 3


def add_demo(sub):
    p = sub.add_parser("demo", help="the whole two-stage pipeline on synthetic data, scored against its truth")
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    p.add_argument("--preset", default="cpu", help="configuration preset (default cpu: under 10 minutes on 2 cores)")
    p.add_argument("--train", type=int, default=DEMO_TRAIN, help=f"synthetic training images (default {DEMO_TRAIN})")
    p.add_argument("--test", type=int, default=DEMO_TEST, help=f"synthetic test images (default {DEMO_TEST})")
    p.add_argument(
        "--budget", type=float, help="wall-clock seconds for training and prediction (default: the preset's)"
    )
    add_set_option(p)
    p.add_argument("--baseline", action="store_true", help="the network-free nearest-centroid reference instead")
    p.set_defaults(func=cmd_demo)


def _config(args):
    """The preset with --set and --budget applied, validated before any data is made or loaded."""
    cfg = override(preset(args.preset), args.overrides)
    if args.budget is not None:
        if args.budget <= 0:
            raise UserError(f"--budget must be a positive number of seconds, got {args.budget:g}")
        cfg = replace(cfg, budget_seconds=float(args.budget))
    return validate(cfg)


def cmd_demo(args) -> int:
    if args.train < 8 or args.test < 1:
        raise UserError("--train must be at least 8 and --test at least 1")
    if args.baseline:
        run_baseline_demo(args.out, args.train, args.test)
        return 0

    cfg = _config(args)
    try:
        run_pipeline_demo(args.out, cfg, args.train, args.test)
    except Stage1Failed as exc:
        return _stage1_failed(exc)
    return 0


def _stage1_failed(exc) -> int:
    print(f"marsseg: error: {exc}; exit status {STAGE1_FAILED_EXIT}", file=sys.stderr)
    return STAGE1_FAILED_EXIT


def add_train(sub):
    p = sub.add_parser(
        "train", help="the whole two-stage run: clean, folds, stage 1, stage 2, post-processing, submission"
    )
    p.add_argument("--preset", default="gpu", help="smoke | cpu | gpu | kaggle (default gpu)")
    p.add_argument("--data", type=Path, help="dataset .npz (default: found in data/ or /kaggle/input)")
    p.add_argument("--out", type=Path, help="run folder (default runs/<preset>-<time>)")
    p.add_argument("--budget", type=float, help="wall-clock seconds for the whole run (default: the preset's)")
    add_set_option(p)
    p.add_argument(
        "--submissions",
        type=Path,
        default=Path("submissions"),
        help="folder that gets a copy of the submission named by run and time, in submission.format's layout "
        "(default submissions/, rle)",
    )
    p.add_argument("--quiet", action="store_true", help="phase lines only, no per-epoch Keras lines")
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> int:

    cfg = _config(args)
    data = find_data(args.data)
    out = args.out or Path("runs") / f"{cfg.preset}-{datetime.now():%Y%m%d-%H%M%S}"
    from marsseg.pipeline.run import run

    try:
        metrics = run(cfg, data, out, submissions_dir=args.submissions, verbose=0 if args.quiet else 2)
    except Stage1Failed as exc:
        return _stage1_failed(exc)
    print(
        f"run {out}: hold-out mIoU {metrics['val_miou_final']:.4f} (stage {metrics['final_stage']}); "
        f"submission {metrics['submission']} ({metrics['outputs']['total_bytes'] / 1e6:.0f} MB of output)"
    )
    return 0


def add_bench(sub):
    p = sub.add_parser("bench", help="measure speed and quality; write BENCHMARKS.md")
    p.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument(
        "--only",
        action="append",
        metavar="SECTION",
        help="run only this section (repeatable); the others already in --out stay",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="K",
        help="run the seeded sections (quality*, stage2, recipe, ensemble) K times, at seeds --seed, --seed+1, "
        "...; each run is kept under .bench/ (quality, stage2, recipe, ensemble .jsonl) and the block shows all "
        "stored runs",
    )
    p.add_argument("--seed", type=int, default=None, help="first seed of the seeded sections (default: the preset's)")
    p.add_argument(
        "--render",
        action="store_true",
        help="measure nothing: rewrite the paired block from the records stored under .bench/",
    )
    p.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    from marsseg_bench.runner import run_benchmarks

    run_benchmarks(
        args.out, repeats=args.repeats, only=args.only, repeat=args.repeat, seed=args.seed, render=args.render
    )
    return 0
