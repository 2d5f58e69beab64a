"""The `marsseg` command: argument parsing and one-line errors only.

Every command calls one function of the package; user errors (bad files, missing credentials,
unknown settings) print `marsseg: error: …` on one line and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from marsseg.errors import UserError


def _add_synth(sub):
    p = sub.add_parser("synth", help="write synthetic Mars data with the real file's schema")
    p.add_argument("out", type=Path, help="output .npz (training_set, test_set)")
    p.add_argument("--train", type=int, default=2615, help="training images (default 2615, as the real set)")
    p.add_argument("--test", type=int, default=10022, help="test images (default 10022)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--truth", type=Path, help="also write test_labels and outlier_indices here")
    p.set_defaults(func=cmd_synth)


def cmd_synth(args) -> int:
    from marsseg.synth import make_synthetic, save_synthetic

    if args.train < 1 or args.test < 1:
        raise UserError("--train and --test must be at least 1")
    synthetic = make_synthetic(args.train, args.test, args.seed)
    save_synthetic(synthetic, args.out, args.truth)
    print(f"wrote {args.out}: {args.train} train, {args.test} test, {len(synthetic.outlier_indices)} planted outliers"
          + (f"; truth in {args.truth}" if args.truth else ""))
    return 0


def _add_inspect(sub):
    p = sub.add_parser("inspect", help="schema and class distribution of a dataset npz")
    p.add_argument("data", type=Path, nargs="?", help="dataset .npz (default: found in data/ or /kaggle/input)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--plot", type=Path, metavar="DIR", help="also write class_stats.json and class_stats.png to DIR")
    p.set_defaults(func=cmd_inspect)


def cmd_inspect(args) -> int:
    from marsseg.analysis import class_stats, format_table
    from marsseg.data import find_data, load_dataset

    dataset = load_dataset(find_data(args.data))
    stats = class_stats(dataset.images, dataset.masks)
    if getattr(args, "plot", None):
        from marsseg.analysis import write_class_report

        if args.plot.exists() and not args.plot.is_dir():
            raise UserError(f"--plot {args.plot}: is a file; pass a directory")
        written = write_class_report(stats, args.plot, f"{dataset.source.name}: {dataset.n_train} training images")
        print("wrote " + ", ".join(map(str, written)), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps({"file": str(dataset.source), "n_train": dataset.n_train, "n_test": dataset.n_test, **stats}, indent=2))
        return 0
    print(f"{dataset.source}: training_set {dataset.n_train}×2×64×128 uint8, test_set {dataset.n_test}×64×128 uint8")
    print(format_table(stats))
    return 0


def _add_encode(sub):
    p = sub.add_parser("encode", help="write a submission CSV from an npz of label masks")
    p.add_argument("masks", type=Path, help=".npz with key 'masks': (N, 64, 128) integers 0-4")
    p.add_argument("out", type=Path, help="output CSV")
    p.add_argument("--format", choices=("rle", "pixels"), default="rle")
    p.set_defaults(func=cmd_encode)


def cmd_encode(args) -> int:
    from marsseg.data import load_masks
    from marsseg.submission import write_submission

    masks = load_masks(args.masks)
    write_submission(args.out, masks, args.format)
    print(f"wrote {args.out}: {len(masks)} images, {args.format}")
    return 0


def _add_validate(sub):
    p = sub.add_parser("validate", help="check a submission CSV of either layout")
    p.add_argument("submission", type=Path)
    p.add_argument("--images", type=int, help="expected number of test images (10022 for the competition)")
    p.set_defaults(func=cmd_validate)


def cmd_validate(args) -> int:
    from marsseg.submission import read_submission

    info = read_submission(args.submission, args.images)
    print(f"{args.submission}: valid {info.layout} submission, {info.n_images} images")
    return 0


def _add_convert(sub):
    p = sub.add_parser("convert", help="convert a submission between the rle and pixels layouts, exactly")
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    p.add_argument("--format", choices=("rle", "pixels"), required=True, help="layout to write")
    p.add_argument("--images", type=int, help="expected number of images")
    p.set_defaults(func=cmd_convert)


def cmd_convert(args) -> int:
    from marsseg.submission import convert

    info = convert(args.src, args.dst, args.format, args.images)
    print(f"wrote {args.dst}: {info.n_images} images, {info.layout} -> {args.format}")
    return 0


def _add_score(sub):
    p = sub.add_parser("score", help="score a submission against true test labels (mIoU over classes 1-4)")
    p.add_argument("submission", type=Path)
    p.add_argument("truth", type=Path, help=".npz with key 'test_labels' (as written by `marsseg synth --truth`)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_score)


def cmd_score(args) -> int:
    from marsseg.data import load_masks
    from marsseg.scoring import score_masks
    from marsseg.submission import read_submission

    truth = load_masks(args.truth, key="test_labels")
    info = read_submission(args.submission, len(truth))
    score = score_masks(truth, info.masks)
    if args.json:
        print(json.dumps({"miou": score["miou"], "iou": {str(k): v for k, v in score["iou"].items()}}))
    else:
        from marsseg.competition import MARS

        print(f"mIoU {score['miou']:.4f}  " + "  ".join(f"{MARS.class_names[c]} {v:.4f}" for c, v in score["iou"].items()))
    return 0


def _add_demo(sub):
    p = sub.add_parser("demo", help="the whole two-stage pipeline on synthetic data, scored against its truth")
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    p.add_argument("--preset", default="cpu", help="configuration preset (default cpu: under 10 minutes on 2 cores)")
    p.add_argument("--train", type=int, default=DEMO_TRAIN, help=f"synthetic training images (default {DEMO_TRAIN})")
    p.add_argument("--test", type=int, default=DEMO_TEST, help=f"synthetic test images (default {DEMO_TEST})")
    p.add_argument("--budget", type=float, help="wall-clock seconds for training and prediction (default: the preset's)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--baseline", action="store_true", help="the network-free nearest-centroid reference instead")
    p.set_defaults(func=cmd_demo)


DEMO_TRAIN, DEMO_TEST = 1600, 1000


def cmd_demo(args) -> int:
    if args.train < 8 or args.test < 1:
        raise UserError("--train must be at least 8 and --test at least 1")
    if args.baseline:
        from marsseg.demo import run_baseline_demo

        run_baseline_demo(args.out, args.train, args.test)
        return 0
    from marsseg.config import override, preset, replace
    from marsseg.demo import run_pipeline_demo

    cfg = override(preset(args.preset), args.overrides)
    if args.budget is not None:
        if args.budget <= 0:
            raise UserError(f"--budget must be a positive number of seconds, got {args.budget:g}")
        cfg = replace(cfg, budget_seconds=float(args.budget))
    run_pipeline_demo(args.out, cfg, args.train, args.test)
    return 0


def _add_bench(sub):
    p = sub.add_parser("bench", help="measure speed and quality; write BENCHMARKS.md")
    p.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    p.add_argument("--repeats", type=int, default=5)
    p.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    from marsseg.bench import run_benchmarks

    run_benchmarks(args.out, repeats=args.repeats)
    return 0


def _add_clean(sub):
    p = sub.add_parser("clean", help="remove outlier training images automatically; write the cleaned npz and a report")
    p.add_argument("data", type=Path, help="dataset .npz (training_set, test_set)")
    p.add_argument("--out", type=Path, required=True, help="cleaned dataset .npz (same schema; test set untouched)")
    p.add_argument("--report", type=Path, metavar="DIR", help="write outliers.json and removed.png here")
    p.add_argument("--truth", type=Path, help=".npz with outlier_indices (marsseg synth --truth): print precision/recall")
    p.add_argument("--augment-bigrock", action="store_true",
                   help="also write OUT.bigrock.npz: augment.bigrock_offline_copies augmented copies per big-rock image")
    p.add_argument("--preset", default="gpu", help="configuration preset (default gpu)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. clean.template_threshold=0.85 (repeatable)")
    p.set_defaults(func=cmd_clean)


def cmd_clean(args) -> int:
    from marsseg.clean import run_clean
    from marsseg.config import override, preset

    cfg = override(preset(args.preset), args.overrides)
    if args.out.resolve() == args.data.resolve():
        raise UserError(f"--out {args.out} is the input file; write the cleaned data to a new file")
    if args.out.is_dir():
        raise UserError(f"--out {args.out}: is a directory; pass a file name such as {args.out / 'clean.npz'}")
    if args.report and args.report.exists() and not args.report.is_dir():
        raise UserError(f"--report {args.report}: is a file; pass a directory")
    run_clean(args.data, args.out, cfg, args.report, args.truth, args.augment_bigrock)
    return 0


def _add_train(sub):
    p = sub.add_parser("train", help="the whole two-stage run: clean, folds, stage 1, stage 2, post-processing, submission")
    p.add_argument("--preset", default="gpu", help="smoke | cpu | gpu | kaggle (default gpu)")
    p.add_argument("--data", type=Path, help="dataset .npz (default: found in data/ or /kaggle/input)")
    p.add_argument("--out", type=Path, help="run folder (default runs/<preset>-<time>)")
    p.add_argument("--budget", type=float, help="wall-clock seconds for the whole run (default: the preset's)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. --set stage1.train.epochs=5 (repeatable)")
    p.add_argument("--submissions", type=Path, default=Path("submissions"),
                   help="folder that gets a copy of the submission named by run and time (default submissions/)")
    p.add_argument("--quiet", action="store_true", help="phase lines only, no per-epoch Keras lines")
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    from datetime import datetime

    from marsseg.config import override, preset, replace
    from marsseg.data import find_data

    cfg = override(preset(args.preset), args.overrides)
    if args.budget is not None:
        if args.budget <= 0:
            raise UserError(f"--budget must be a positive number of seconds, got {args.budget:g}")
        cfg = replace(cfg, budget_seconds=float(args.budget))
    data = find_data(args.data)
    out = args.out or Path("runs") / f"{cfg.preset}-{datetime.now():%Y%m%d-%H%M%S}"
    from marsseg.pipeline import run

    metrics = run(cfg, data, out, submissions_dir=args.submissions, verbose=0 if args.quiet else 2)
    print(f"run {out}: hold-out mIoU {metrics['val_miou_final']:.4f} (stage {metrics['final_stage']}); "
          f"submission {metrics['submission']}")
    return 0


COMMANDS = [_add_synth, _add_inspect, _add_encode, _add_validate, _add_convert, _add_score, _add_demo, _add_bench, _add_train]
COMMANDS.append(_add_clean)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="marsseg", description="Kaggle kit for Mars terrain segmentation.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__import__('marsseg').__version__}")
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


if __name__ == "__main__":
    raise SystemExit(main())
