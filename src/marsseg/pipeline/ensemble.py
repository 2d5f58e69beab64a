"""`marsseg ensemble`: several runs' final stages averaged, decided on their shared tuning part, reported on its
reporting part, and the test set labelled for both submission layouts.

    summary = ensemble(["runs/a", "runs/b"], "runs/ab", data=None)   # writes submission.csv, submission_rle.csv,
                                                                      # ensemble.json; returns what ensemble.json holds

Runs save no probabilities (10022 test images are 0.8 GB of them a run), so each member predicts again with its
saved models, exactly as its run did (`Predictor`): stage 1 is the mean of its fold models; where stage 2 was the
run's final stage it runs on stage 1's flip-TTA'd probabilities (plain where the run's post.tta was off), the test
set's kept as float16 as `testset` keeps them. The members' probabilities, plain and flip-TTA'd, are averaged with
equal weights, given ones, or ones chosen on the tuning part (`weights`, `pipeline.weights`). That choice and the
post-processing choice are made, under the first run's `post` settings and seed, on the tuning part only; the
reporting part, which decides nothing, gives the figures. Each member is scored the same way (its own
settings), so the gain over the best member is read on the same images; a member's figure is its run's
`val_miou_final` again unless the run could not afford its flip TTA at test time. One run is allowed: it re-scores
that run from its saved models.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from marsseg.competition import active_competition
from marsseg.data.load import find_data, load_dataset, train_sha256
from marsseg.errors import DataError, EnsembleError
from marsseg.files import atomic_write_json
from marsseg.pipeline.holdout import Holdout
from marsseg.pipeline.members import Member, check_same_holdout, load_member
from marsseg.pipeline.outputs import SUBMISSION, SUBMISSION_RLE, write_submissions
from marsseg.pipeline.postprocess import predict_tta
from marsseg.pipeline.stages import ensemble_probs, member_probs, stage2_probs
from marsseg.pipeline.testset import label_test_set, stage1_flip
from marsseg.pipeline.weights import combine, parse_weights, rows_of, tuned_weights

SUMMARY = "ensemble.json"


class Predictor:
    """One member's final stage, predicting as its run did."""

    def __init__(self, member: Member):
        from marsseg.training.saved import load_run_model

        self.stage1 = [load_run_model(path) for path in member.stage1_files]
        self.stage2 = load_run_model(member.stage2_file) if member.stage2_file is not None else None
        self.flip_input = member.cfg.post.tta != "off"  # the run's stage-2 input: flip-TTA'd unless post.tta was off
        self.kept_float16 = member.cfg.two_stage  # a two-stage run keeps stage 1's test probabilities as float16

    def holdout(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(plain, flip-TTA'd) probabilities of the hold-out images, through the run's own functions."""
        from marsseg.training.feed import network_input

        val1 = member_probs(self.stage1, network_input(images), True)
        if self.stage2 is None:
            return val1
        plain, tta, _ = stage2_probs(self.stage2, network_input(images, val1[1] if self.flip_input else val1[0]), True)
        return plain, tta

    def test(self, images: np.ndarray, tta: bool) -> np.ndarray:
        """float32 probabilities of at most TEST_CHUNK test images (flip-TTA'd where `tta`)."""
        from marsseg.training.feed import network_input

        x = network_input(images)
        plain1 = ensemble_probs(self.stage1, x)
        if self.stage2 is None and not tta:
            return plain1
        if self.stage2 is None and not self.kept_float16:
            return predict_tta(lambda b: ensemble_probs(self.stage1, b), x, plain1)
        kept = plain1.astype(np.float16)  # as `testset.stage1_labels` keeps it
        if self.stage2 is None:  # flip-TTA'd as `testset.stage1_flip` makes it for the run's TTA labels
            return stage1_flip(self.stage1, images, kept).astype(np.float32)
        probs1 = stage1_flip(self.stage1, images, kept) if self.flip_input else kept
        plain2, tta2, _ = stage2_probs(self.stage2, network_input(images, probs1), tta)
        return tta2 if tta else plain2


def data_for(members: list[Member], data=None) -> tuple[Path, object]:
    """The data file (`data`, else the first run's recorded one where it exists, else the usual search) and its
    contents, refused unless its training set is the one the runs were validated on."""
    recorded = members[0].data
    path = find_data(data) if data else Path(recorded) if recorded and Path(recorded).is_file() else find_data(None)
    dataset = load_dataset(path)
    want = members[0].identity["train_sha256"]
    have = train_sha256(dataset.images, dataset.masks)
    if have != want:
        raise DataError(
            f"{path}: its training set is not the one {members[0].path} was trained on (sha256 {have[:12]}..., the "
            f"run's {want[:12]}...); pass that run's data file with --data"
        )
    rows = np.asarray(members[0].identity["rows"], np.int64)
    if len(rows) and rows.max() >= dataset.n_train:
        raise DataError(f"{path}: has {dataset.n_train} training images, the hold-out needs row {rows.max()}")
    return path, dataset


def holdout_of(member: Member, dataset) -> Holdout:
    """The member's hold-out rebuilt from the data file: its images in its order, its tuning and reporting rows."""
    identity = member.identity
    rows = np.asarray(identity["rows"], np.int64)
    tune, report = (np.asarray(identity[k], np.int64) for k in ("tune", "report"))
    return Holdout(dataset.images[rows], dataset.masks[rows], tune, report)


def _scores(hold: Holdout, probs: tuple, post, seed: int) -> tuple[dict, dict]:
    """(the tuning part's choice, the reporting part's figures) for hold-out probabilities (plain, flip-TTA'd)."""
    choice = hold.choose(post, probs, seed=seed)
    return choice, hold.reported(choice, probs, post, seed=seed)


def _figures(choice: dict, reported: dict) -> dict:
    return {
        "val_miou": reported["miou"],
        "val_iou": reported["iou"],
        "val_miou_ci95": reported["ci95"],
        "val_miou_tuned": choice["miou_final"],
        "tta": bool(choice["tta"]["used"]),
    }


def ensemble(run_dirs, out_dir, data=None, log=print, weights="equal") -> dict:
    """Combine the runs in `run_dirs` (see above) into `out_dir`; one log line per member; returns the summary.
    `weights`: "equal", "tuned" (`pipeline.weights`), or one non-negative number per run."""
    started = time.monotonic()
    members = [load_member(path) for path in run_dirs]
    if not members:
        raise EnsembleError("name at least one run folder")
    weights = parse_weights(weights if isinstance(weights, str) else ",".join(map(str, weights)))
    if not isinstance(weights, str) and len(weights) != len(members):
        raise EnsembleError(f"--weights gives {len(weights)} number(s) for {len(members)} runs: give one per run")
    out_dir = Path(out_dir)
    for member in members:
        if out_dir.resolve() == member.path.resolve():
            raise EnsembleError(f"--out {out_dir} is the run folder {member.path}: write the ensemble elsewhere")
    check_same_holdout(members)
    data_path, dataset = data_for(members, data)
    hold = holdout_of(members[0], dataset)
    first = members[0]
    post, seed = first.cfg.post, first.cfg.seed
    predictors, rows, probs_all = [], [], []
    for member in members:
        predictor = Predictor(member)
        probs = predictor.holdout(hold.images)
        choice, reported = _scores(hold, probs, member.cfg.post, member.cfg.seed)
        row = {"run": str(member.path), "final_stage": member.stage, "stage1_models": len(predictor.stage1)}
        row.update(_figures(choice, reported), val_miou_recorded=member.metrics.get("val_miou_final"))
        rows.append(row)
        lo, hi = reported["ci95"]
        recorded = row["val_miou_recorded"]
        log(
            f"member {member.path}: stage {member.stage}, reporting hold-out ({len(hold.report)} images) mIoU "
            f"{reported['miou']:.4f} [95% {lo:.4f}-{hi:.4f}]"
            + (f" (its run recorded {recorded:.4f})" if isinstance(recorded, (int, float)) else "")
        )
        probs_all.append(probs)
        predictors.append(predictor)
    search = None
    if weights == "tuned":
        values, search = tuned_weights(rows_of(probs_all, hold.tune), hold.masks[hold.tune])
        log(
            f"weights {', '.join(f'{w:.2f}' for w in values)}: chosen on the tuning part ({len(hold.tune)} images, "
            f"{search['candidates']} tried; mIoU {search['tuning_miou']:.4f}, equal weights "
            f"{search['tuning_miou_equal']:.4f})"
        )
    else:
        values = tuple([1.0 / len(members)] * len(members)) if weights == "equal" else weights
    combined = combine(probs_all, values)
    del probs_all
    choice, reported = _scores(hold, combined, post, seed)
    tta = bool(choice["tta"]["used"])

    def chunk_probs(start, stop):
        chunk = dataset.test_images[start:stop]
        used = [(w, p) for w, p in zip(values, predictors) if w > 0]  # a zero weight predicts nothing
        return combine([(p.test(chunk, tta), None) for _, p in used], [w for w, _ in used])[0]

    labels = label_test_set(dataset.test_images, chunk_probs, choice, post)
    best = max(rows, key=lambda r: r["val_miou"])
    summary = {
        "members": rows,
        "weights": [round(w, 6) for w in values],
        "weights_scheme": weights if isinstance(weights, str) else "given",
        "weights_search": search,
        "val_miou_final": reported["miou"],
        "val_iou_final": reported["iou"],
        "val_miou_final_ci95": reported["ci95"],
        "val_miou_final_tuned": choice["miou_final"],
        "gain_over_best_member": reported["miou"] - best["val_miou"],
        "best_member": best["run"],
        "confusion_report": reported["confusion"],
        "post": {
            "settings_from": str(first.path),
            **{k: choice[k] for k in ("tta", "class_bias", "morphology")},
        },
        "holdout": {**hold.counts(), "train_sha256": first.identity["train_sha256"], "seed": seed},
        "data": str(data_path),
        "n_test": int(len(labels)),
    }
    written = write_submissions(out_dir, labels, active_competition())
    summary["submission"], summary["submission_rle"] = str(out_dir / SUBMISSION), str(out_dir / SUBMISSION_RLE)
    summary["layouts"] = written
    summary["seconds"] = round(time.monotonic() - started, 2)
    atomic_write_json(out_dir / SUMMARY, summary)
    return summary


def result_line(summary: dict) -> str:
    """The command's closing line: the combination's reporting figure, its gain, the tuned figure, the files."""
    lo, hi = summary["val_miou_final_ci95"]
    n = len(summary["members"])
    scheme = summary.get("weights_scheme", "equal")
    weighted = ""
    if scheme != "equal":
        how = "chosen on the tuning part" if scheme == "tuned" else "given"
        weighted = f" (weights {', '.join(f'{w:.2f}' for w in summary['weights'])}, {how})"
    return (
        f"ensemble of {n} run{'s' * (n > 1)}{weighted}: reporting hold-out ({summary['holdout']['n_report']} "
        "images) mIoU "
        f"{summary['val_miou_final']:.4f} [95% {lo:.4f}-{hi:.4f}], {summary['gain_over_best_member']:+.4f} over "
        f"the best member; tuned {summary['val_miou_final_tuned']:.4f}; wrote {summary['submission']}, "
        f"{summary['submission_rle']}, {Path(summary['submission']).with_name(SUMMARY)}"
    )
