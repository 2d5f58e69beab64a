"""Data commands: `synth`, `inspect`, `clean`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from marsseg.cli.options import add_set_option
from marsseg.config import override, preset
from marsseg.data.load import find_data, load_dataset
from marsseg.data.synth import STAND_INS, make_synthetic, save_synthetic
from marsseg.errors import UserError
from marsseg.prep.analysis import class_stats, format_table, write_class_report
from marsseg.prep.clean import run_clean


def add_synth(sub):
    p = sub.add_parser("synth", help="write synthetic Mars data with the real file's schema")
    p.add_argument("out", type=Path, help="output .npz (training_set, test_set)")
    p.add_argument("--train", type=int, default=2615, help="training images (default 2615, as the real set)")
    p.add_argument("--test", type=int, default=10022, help="test images (default 10022)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--stand-in",
        choices=list(STAND_INS),
        default="procedural",
        help="procedural: textures from smooth random fields (the demo's); photo: textures cut from real photographs",
    )
    p.add_argument("--truth", type=Path, help="also write test_labels and outlier_indices here")
    p.set_defaults(func=cmd_synth)


def cmd_synth(args) -> int:

    if args.train < 1 or args.test < 1:
        raise UserError("--train and --test must be at least 1")
    synthetic = make_synthetic(args.train, args.test, args.seed, stand_in=args.stand_in)
    save_synthetic(synthetic, args.out, args.truth)
    print(
        f"wrote {args.out} ({args.stand_in} stand-in, version {STAND_INS[args.stand_in]}): {args.train} train, "
        f"{args.test} test, {len(synthetic.outlier_indices)} planted outliers"
        + (f"; truth in {args.truth}" if args.truth else "")
    )
    return 0


def add_inspect(sub):
    p = sub.add_parser("inspect", help="schema and class distribution of a dataset npz")
    p.add_argument("data", type=Path, nargs="?", help="dataset .npz (default: found in data/ or /kaggle/input)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--plot", type=Path, metavar="DIR", help="also write class_stats.json and class_stats.png to DIR")
    p.set_defaults(func=cmd_inspect)


def cmd_inspect(args) -> int:

    dataset = load_dataset(find_data(args.data))
    stats = class_stats(dataset.images, dataset.masks)
    if getattr(args, "plot", None):
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


def add_clean(sub):
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
    add_set_option(p, "clean.template_threshold=0.85")
    p.set_defaults(func=cmd_clean)


def cmd_clean(args) -> int:

    cfg = override(preset(args.preset), args.overrides)
    if args.out.resolve() == args.data.resolve():
        raise UserError(f"--out {args.out} is the input file; write the cleaned data to a new file")
    if args.out.is_dir():
        raise UserError(f"--out {args.out}: is a directory; pass a file name such as {args.out / 'clean.npz'}")
    if args.report and args.report.exists() and not args.report.is_dir():
        raise UserError(f"--report {args.report}: is a file; pass a directory")
    run_clean(args.data, args.out, cfg, args.report, args.truth, args.augment_bigrock)
    return 0
