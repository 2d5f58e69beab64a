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
    from marsseg.data.synth import make_synthetic, save_synthetic

    if args.train < 1 or args.test < 1:
        raise UserError("--train and --test must be at least 1")
    synthetic = make_synthetic(args.train, args.test, args.seed)
    save_synthetic(synthetic, args.out, args.truth)
    print(
        f"wrote {args.out}: {args.train} train, {args.test} test, {len(synthetic.outlier_indices)} planted outliers"
        + (f"; truth in {args.truth}" if args.truth else "")
    )
    return 0


def _add_inspect(sub):
    p = sub.add_parser("inspect", help="schema and class distribution of a dataset npz")
    p.add_argument("data", type=Path, nargs="?", help="dataset .npz (default: found in data/ or /kaggle/input)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--plot", type=Path, metavar="DIR", help="also write class_stats.json and class_stats.png to DIR")
    p.set_defaults(func=cmd_inspect)


def cmd_inspect(args) -> int:
    from marsseg.data.load import find_data, load_dataset
    from marsseg.prep.analysis import class_stats, format_table

    dataset = load_dataset(find_data(args.data))
    stats = class_stats(dataset.images, dataset.masks)
    if getattr(args, "plot", None):
        from marsseg.prep.analysis import write_class_report

        if args.plot.exists() and not args.plot.is_dir():
            raise UserError(f"--plot {args.plot}: is a file; pass a directory")
        written = write_class_report(stats, args.plot, f"{dataset.source.name}: {dataset.n_train} training images")
        print("wrote " + ", ".join(map(str, written)), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(
            json.dumps(
                {"file": str(dataset.source), "n_train": dataset.n_train, "n_test": dataset.n_test, **stats}, indent=2
            )
        )
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
    from marsseg.data.load import load_masks
    from marsseg.submission.formats import write_submission

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
    from marsseg.submission.formats import read_submission

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
    from marsseg.submission.formats import convert

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
    from marsseg.data.load import load_masks
    from marsseg.submission.formats import read_submission
    from marsseg.submission.scoring import score_masks

    truth = load_masks(args.truth, key="test_labels")
    info = read_submission(args.submission, len(truth))
    score = score_masks(truth, info.masks)
    if args.json:
        print(json.dumps({"miou": score["miou"], "iou": {str(k): v for k, v in score["iou"].items()}}))
    else:
        from marsseg.competition import MARS

        print(
            f"mIoU {score['miou']:.4f}  " + "  ".join(f"{MARS.class_names[c]} {v:.4f}" for c, v in score["iou"].items())
        )
    return 0


def _add_demo(sub):
    p = sub.add_parser("demo", help="the whole two-stage pipeline on synthetic data, scored against its truth")
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    p.add_argument("--preset", default="cpu", help="configuration preset (default cpu: under 10 minutes on 2 cores)")
    p.add_argument("--train", type=int, default=DEMO_TRAIN, help=f"synthetic training images (default {DEMO_TRAIN})")
    p.add_argument("--test", type=int, default=DEMO_TEST, help=f"synthetic test images (default {DEMO_TEST})")
    p.add_argument(
        "--budget", type=float, help="wall-clock seconds for training and prediction (default: the preset's)"
    )
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--baseline", action="store_true", help="the network-free nearest-centroid reference instead")
    p.set_defaults(func=cmd_demo)


DEMO_TRAIN, DEMO_TEST = 1600, 1000


def cmd_demo(args) -> int:
    if args.train < 8 or args.test < 1:
        raise UserError("--train must be at least 8 and --test at least 1")
    if args.baseline:
        from marsseg.pipeline.demo import run_baseline_demo

        run_baseline_demo(args.out, args.train, args.test)
        return 0
    from marsseg.config import override, preset, replace
    from marsseg.pipeline.demo import run_pipeline_demo

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
    p.add_argument(
        "--only",
        action="append",
        metavar="SECTION",
        help="run only this section (repeatable); the others already in --out stay",
    )
    p.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    from marsseg_bench.runner import run_benchmarks

    run_benchmarks(args.out, repeats=args.repeats, only=args.only)
    return 0


def _add_history_dir(p):
    p.add_argument(
        "--history-dir",
        type=Path,
        default=Path("submissions"),
        help="where the leaderboard history lives (default submissions/)",
    )
    p.add_argument("--competition", default=None, help="competition slug (default: the profile's)")


def _competition(args) -> str:
    from marsseg.competition import MARS

    return args.competition or MARS.slug


def _add_track(sub):
    p = sub.add_parser("track", help="snapshot the public leaderboard and own submissions into the history")
    _add_history_dir(p)
    p.add_argument("--team", help="the team's name on the leaderboard (default: from the own submissions)")
    p.add_argument("--watch", metavar="INTERVAL", help="repeat every INTERVAL (e.g. 900, 15m, 1h) until stopped")
    p.add_argument("--count", type=int, help="with --watch: stop after this many snapshots")
    p.set_defaults(func=cmd_track)


def cmd_track(args) -> int:
    from marsseg.tracking.history import parse_interval, track

    watch = parse_interval(args.watch) if args.watch else None
    if args.count is not None and args.count < 1:
        raise UserError("--count must be at least 1")
    track(_competition(args), args.history_dir, team=args.team, watch=watch, count=args.count)
    return 0


def _add_leaderboard(sub):
    p = sub.add_parser("leaderboard", help="the top N of the latest snapshot, the team's rank and best score")
    _add_history_dir(p)
    p.add_argument("--top", type=int, default=10, help="how many teams to list (default 10)")
    p.add_argument("--fetch", action="store_true", help="take a snapshot first (`marsseg track`)")
    p.set_defaults(func=cmd_leaderboard)


def cmd_leaderboard(args) -> int:
    from marsseg.tracking.history import format_leaderboard, read_history, track

    if args.fetch:
        track(_competition(args), args.history_dir)
    print(format_leaderboard(read_history(args.history_dir, _competition(args)), args.top))
    return 0


def _add_history(sub):
    p = sub.add_parser("history", help="the team's submissions with local and public scores")
    _add_history_dir(p)
    p.set_defaults(func=cmd_history)


def cmd_history(args) -> int:
    from marsseg.tracking.history import format_history, read_history

    print(format_history(read_history(args.history_dir, _competition(args))))
    return 0


def _add_plot(sub):
    p = sub.add_parser("plot", help="PNG plots of the leaderboard history under submissions/")
    _add_history_dir(p)
    p.add_argument("--out", type=Path, help="folder for the PNGs (default: the history folder)")
    p.set_defaults(func=cmd_plot)


def cmd_plot(args) -> int:
    from marsseg.tracking.plots import plot_history

    for path in plot_history(args.history_dir, args.out, _competition(args)):
        print(f"wrote {path}")
    return 0


def _add_bundle(sub):
    p = sub.add_parser("bundle", help="bundle src/marsseg into the one Kaggle kernel script kernels/marsseg_kernel.py")
    p.add_argument("--out", type=Path, default=Path("kernels/marsseg_kernel.py"))
    p.add_argument("--check", action="store_true", help="only check that the file is up to date (exit 2 if stale)")
    p.set_defaults(func=cmd_bundle)


def cmd_bundle(args) -> int:
    from marsseg.kaggle.bundle import stale_reason, write_kernel

    if args.check:
        reason = stale_reason(args.out)
        if reason:
            raise UserError(reason)
        print(f"{args.out}: up to date")
        return 0
    write_kernel(args.out)
    return 0


def _add_check_rules(sub):
    p = sub.add_parser("check-rules", help="check the kernel and kernel-metadata.json against the competition rules")
    p.add_argument("--kernel", type=Path, default=Path("kernels/marsseg_kernel.py"))
    p.add_argument("--metadata", type=Path, default=Path("kernel-metadata.json"))
    p.add_argument(
        "--allow-source",
        action="append",
        default=[],
        metavar="SLUG",
        help="a data source besides the competition that the rules allow (repeatable)",
    )
    p.set_defaults(func=cmd_check_rules)


def cmd_check_rules(args) -> int:
    from marsseg.kaggle.rules import RulesError, check_rules

    found = check_rules(args.kernel, args.metadata, tuple(args.allow_source))
    for violation in found:
        print(f"  {violation}")
    if found:
        raise RulesError(f"{len(found)} rule violation(s), listed above; fix them before pushing or submitting")
    print("rules check passed: no pretrained weights or downloads, internet off, competition data only, no credentials")
    return 0


def _add_submit(sub):
    p = sub.add_parser(
        "submit", help="bundle, rules check, push the kernel, wait, fetch, validate, convert, submit, record"
    )
    p.add_argument("--file", type=Path, help="submit this local CSV instead of running the kernel (make submit-csv)")
    p.add_argument("--preset", help="with --file: the preset that made it (default: from its config.json)")
    p.add_argument("--images", type=int, help="expected number of test images (checked before submitting)")
    p.add_argument("--allow-source", action="append", default=[], metavar="SLUG")
    p.add_argument("--skip-push", action="store_true", help="use the kernel's latest run instead of pushing again")
    p.add_argument("--poll", type=float, help="first status poll interval in seconds (then backs off; default 10)")
    p.set_defaults(func=cmd_submit)


def cmd_submit(args) -> int:
    from marsseg.kaggle.flow import submit_csv, submit_kernel

    if args.file:
        submit_csv(args.file, preset=args.preset, allowed_sources=tuple(args.allow_source), images=args.images)
    else:
        submit_kernel(
            allowed_sources=tuple(args.allow_source), images=args.images, poll=args.poll, skip_push=args.skip_push
        )
    return 0


def _add_status(sub):
    p = sub.add_parser("status", help="the latest Kaggle kernel run and the latest recorded submission")
    p.set_defaults(func=cmd_status)


def cmd_status(args) -> int:
    from marsseg.kaggle.flow import show_status

    show_status()
    return 0


def _add_data(sub):
    p = sub.add_parser("data", help="download the competition data (Kaggle credentials), else write synthetic data")
    p.add_argument("--dir", type=Path, default=Path("data"))
    p.add_argument("--train", type=int, default=2615, help="synthetic training images when there are no credentials")
    p.add_argument("--test", type=int, default=10022, help="synthetic test images when there are no credentials")
    p.set_defaults(func=cmd_data)


def cmd_data(args) -> int:
    from marsseg.kaggle.flow import fetch_data

    fetch_data(args.dir, synthetic_train=args.train, synthetic_test=args.test)
    return 0


def _add_emulator(sub):
    p = sub.add_parser("emulator", help="a loopback Kaggle for dry runs (the real kaggle client talks to it)")
    p.add_argument("--port", type=int, default=7777)
    p.add_argument(
        "--print-env", action="store_true", help="print the lines that route the kit and `kaggle` here, and exit"
    )
    p.add_argument("--data", type=Path, help="competition data to serve and run kernels on (default: small synthetic)")
    p.add_argument("--truth", type=Path, help="test labels to score submissions with (synthetic truth by default)")
    p.add_argument("--kernel-preset", default="smoke", help="preset the pushed kernel runs with (default smoke)")
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="inject a fault: METHOD:STATUS[:TIMES], METHOD:slow=SECONDS[:TIMES], kernel-error[:TIMES]",
    )
    p.add_argument("--root", type=Path, help="folder for kernel runs and synthetic data (default: a temporary one)")
    p.set_defaults(func=cmd_emulator)


def cmd_emulator(args) -> int:
    from marsseg.kaggle.emulator import print_env, serve

    if args.print_env:
        print(print_env(args.port))
        return 0
    if args.data and not args.data.is_file():
        raise UserError(f"{args.data}: no such file; pass a competition .npz (or omit --data for synthetic data)")
    serve(
        args.port,
        args.root,
        tuple(args.fault),
        data_path=args.data,
        truth_path=args.truth,
        kernel_preset=args.kernel_preset,
    )
    return 0


def _add_clean(sub):
    p = sub.add_parser("clean", help="remove outlier training images automatically; write the cleaned npz and a report")
    p.add_argument("data", type=Path, help="dataset .npz (training_set, test_set)")
    p.add_argument("--out", type=Path, required=True, help="cleaned dataset .npz (same schema; test set untouched)")
    p.add_argument("--report", type=Path, metavar="DIR", help="write outliers.json and removed.png here")
    p.add_argument(
        "--truth", type=Path, help=".npz with outlier_indices (marsseg synth --truth): print precision/recall"
    )
    p.add_argument(
        "--augment-bigrock",
        action="store_true",
        help="also write OUT.bigrock.npz: augment.bigrock_offline_copies augmented copies per big-rock image",
    )
    p.add_argument("--preset", default="gpu", help="configuration preset (default gpu)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, e.g. clean.template_threshold=0.85 (repeatable)",
    )
    p.set_defaults(func=cmd_clean)


def cmd_clean(args) -> int:
    from marsseg.config import override, preset
    from marsseg.prep.clean import run_clean

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
    p = sub.add_parser(
        "train", help="the whole two-stage run: clean, folds, stage 1, stage 2, post-processing, submission"
    )
    p.add_argument("--preset", default="gpu", help="smoke | cpu | gpu | kaggle (default gpu)")
    p.add_argument("--data", type=Path, help="dataset .npz (default: found in data/ or /kaggle/input)")
    p.add_argument("--out", type=Path, help="run folder (default runs/<preset>-<time>)")
    p.add_argument("--budget", type=float, help="wall-clock seconds for the whole run (default: the preset's)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, e.g. --set stage1.train.epochs=5 (repeatable)",
    )
    p.add_argument(
        "--submissions",
        type=Path,
        default=Path("submissions"),
        help="folder that gets a copy of the submission named by run and time (default submissions/)",
    )
    p.add_argument("--quiet", action="store_true", help="phase lines only, no per-epoch Keras lines")
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    from datetime import datetime

    from marsseg.config import override, preset, replace
    from marsseg.data.load import find_data

    cfg = override(preset(args.preset), args.overrides)
    if args.budget is not None:
        if args.budget <= 0:
            raise UserError(f"--budget must be a positive number of seconds, got {args.budget:g}")
        cfg = replace(cfg, budget_seconds=float(args.budget))
    data = find_data(args.data)
    out = args.out or Path("runs") / f"{cfg.preset}-{datetime.now():%Y%m%d-%H%M%S}"
    from marsseg.pipeline.run import run

    metrics = run(cfg, data, out, submissions_dir=args.submissions, verbose=0 if args.quiet else 2)
    print(
        f"run {out}: hold-out mIoU {metrics['val_miou_final']:.4f} (stage {metrics['final_stage']}); "
        f"submission {metrics['submission']}"
    )
    return 0


COMMANDS = [_add_synth, _add_inspect, _add_encode, _add_validate, _add_convert, _add_score, _add_demo, _add_bench]
COMMANDS += [_add_track, _add_leaderboard, _add_history, _add_plot]  # leaderboard tracking
COMMANDS += [_add_bundle, _add_check_rules, _add_submit, _add_status, _add_data, _add_emulator]  # the Kaggle path
COMMANDS.append(_add_train)  # the two-stage run
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
