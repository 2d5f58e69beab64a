"""Submission-file commands: `encode`, `validate`, `convert`, `score` (none loads a model)."""

from __future__ import annotations

import json
from pathlib import Path

from marsseg.competition import MARS
from marsseg.config import allowed
from marsseg.data.load import load_masks
from marsseg.submission.formats import convert, read_submission, write_submission
from marsseg.submission.scoring import score_masks


def add_encode(sub):
    p = sub.add_parser("encode", help="write a submission CSV from an npz of label masks")
    p.add_argument("masks", type=Path, help=".npz with key 'masks': (N, 64, 128) integers 0-4")
    p.add_argument("out", type=Path, help="output CSV")
    p.add_argument("--format", choices=allowed("submission.format"), default="rle")
    p.set_defaults(func=cmd_encode)


def cmd_encode(args) -> int:

    masks = load_masks(args.masks)
    write_submission(args.out, masks, args.format)
    print(f"wrote {args.out}: {len(masks)} images, {args.format}")
    return 0


def add_validate(sub):
    p = sub.add_parser("validate", help="check a submission CSV of either layout")
    p.add_argument("submission", type=Path)
    p.add_argument("--images", type=int, help="expected number of test images (10022 for the competition)")
    p.set_defaults(func=cmd_validate)


def cmd_validate(args) -> int:

    info = read_submission(args.submission, args.images)
    print(f"{args.submission}: valid {info.layout} submission, {info.n_images} images")
    return 0


def add_convert(sub):
    p = sub.add_parser("convert", help="convert a submission between the rle and pixels layouts, exactly")
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    p.add_argument("--format", choices=allowed("submission.format"), required=True, help="layout to write")
    p.add_argument("--images", type=int, help="expected number of images")
    p.set_defaults(func=cmd_convert)


def cmd_convert(args) -> int:

    info = convert(args.src, args.dst, args.format, args.images)
    print(f"wrote {args.dst}: {info.n_images} images, {info.layout} -> {args.format}")
    return 0


def add_score(sub):
    p = sub.add_parser("score", help="score a submission against true test labels (the leaderboard's mean IoU)")
    p.add_argument("submission", type=Path)
    p.add_argument("truth", type=Path, help=".npz with key 'test_labels' (as written by `marsseg synth --truth`)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_score)


def cmd_score(args) -> int:

    truth = load_masks(args.truth, key="test_labels")
    info = read_submission(args.submission, len(truth))
    score = score_masks(truth, info.masks)
    if args.json:
        readings = {key: score[key] for key in ("miou_keras", "miou_scored")}
        iou = {str(k): v for k, v in score["iou"].items()}
        print(json.dumps({"miou": score["miou"], "rule": MARS.scoring_rule, **readings, "iou": iou}))
    else:
        other = "scored" if MARS.scoring_rule == "keras" else "keras"
        print(
            f"mIoU {score['miou']:.4f} ({MARS.scoring_rule} rule; {other} {score['miou_' + other]:.4f})  "
            + "  ".join(f"{MARS.class_names[c]} {v:.4f}" for c, v in score["iou"].items())
        )
    return 0
