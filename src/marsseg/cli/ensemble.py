"""`marsseg ensemble`: several runs' saved models averaged on their shared hold-out and the test set."""

from __future__ import annotations

from pathlib import Path


def add_ensemble(sub):
    p = sub.add_parser(
        "ensemble",
        help="average runs' final stages (from their saved models) on their shared hold-out and the test set; "
        "write both submissions and ensemble.json",
    )
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="run folders (one re-scores that run)")
    p.add_argument(
        "--out", type=Path, required=True, help="folder for submission.csv, submission_rle.csv and ensemble.json"
    )
    p.add_argument(
        "--data",
        type=Path,
        help="dataset .npz (default: the first run's recorded data where it exists, else data/ or /kaggle/input)",
    )
    p.add_argument(
        "--weights",
        default="equal",
        metavar="equal|tuned|W,W,...",
        help="how the runs are weighted: equal (default), tuned (the best on a 0.1 grid by the shared tuning part's "
        "mIoU; equal weights win ties), or one non-negative number per run, e.g. 0.6,0.4",
    )
    p.set_defaults(func=cmd_ensemble)


def cmd_ensemble(args) -> int:
    import logging

    from marsseg.pipeline.ensemble import ensemble, result_line
    from marsseg.pipeline.weights import parse_weights

    # Every loaded model traces its own predict function, which TensorFlow's retracing heuristic reports as a
    # warning per few models: noise here, where each model is traced once per input shape by design.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)

    weights = parse_weights(args.weights)  # before any model loads: a bad --weights costs nothing
    summary = ensemble(args.runs, args.out, data=args.data, log=print, weights=weights)
    print(result_line(summary))
    return 0
