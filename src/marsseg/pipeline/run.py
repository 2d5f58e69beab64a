"""The whole run under one wall-clock budget, written to one run folder.

    load -> clean -> hold-out split + K folds -> stage 1 per fold (out-of-fold probabilities) -> stage-1
    submission (the fallback, written first) -> stage 2 on image + probabilities -> post-processing and TTA
    (each kept only if it raises hold-out mIoU under "auto") -> final submission, validated.

The hold-out images are never trained on or used for early stopping by either stage, so `val_miou_stage1`
and `val_miou_stage2` compare the two stages on the same unseen images. The signature of `run` is the
contract the Kaggle kernel and the emulator call.
"""

from __future__ import annotations

import functools
import shutil
import traceback
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from marsseg.competition import MARS
from marsseg.config import Config, git_commit, save_config
from marsseg.errors import ConfigError
from marsseg.files import atomic_write_json
from marsseg.pipeline.postprocess import SETTINGS as POST_SETTINGS
from marsseg.pipeline.postprocess import labels_from_probs

TEST_CHUNK = 1024
RESIDUAL_MIN_EPOCH = 0.4  # of an epoch: the least a residual stage 2 is started with
SAFETY_FRACTION = 0.04  # of the budget, kept back for what no estimate covers (writing, plots, jitter)


def run(cfg: Config, data_path, out_dir, log=print, submissions_dir="submissions", verbose=2) -> dict:
    """Train on `data_path` under `cfg`; write config.json, metrics.json, submission.csv and figures to `out_dir`;
    copy the submission to `submissions_dir` (None: no copy). Returns the metrics."""
    from marsseg.pipeline.budget import Budget

    if not 0.05 <= cfg.stage1_share <= 0.95:
        raise ConfigError(f"stage1_share {cfg.stage1_share} is outside 0.05..0.95 (e.g. --set stage1_share=0.6)")
    for stage in ("stage1", "stage2"):
        power = getattr(cfg, stage).loss.class_weight_power
        if not 0.0 <= power <= 2.0:
            raise ConfigError(
                f"{stage}.loss.class_weight_power {power} is outside 0..2 "
                f"(0.5: square-root inverse frequency; e.g. --set {stage}.loss.class_weight_power=0.25)"
            )
    for name in ("tta", "morphology", "class_bias"):
        if getattr(cfg.post, name) not in POST_SETTINGS:
            raise ConfigError(
                f"post.{name} is {getattr(cfg.post, name)!r}; use {', '.join(POST_SETTINGS)} "
                f"(e.g. --set post.{name}=off)"
            )
    if log is print:  # a Kaggle log is a pipe: flush each line so the log shows progress as it happens
        log = functools.partial(print, flush=True)
    budget = Budget(cfg.budget_seconds, log)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started_at = datetime.now(timezone.utc)
    save_config(
        cfg,
        out_dir / "config.json",
        git_commit=git_commit(),
        data=str(data_path),
        started=started_at.isoformat(timespec="seconds"),
    )
    return _Run(cfg, Path(data_path), out_dir, budget, log, submissions_dir, verbose, started_at).execute()


class _Run:
    """One run's state; `execute` is the sequence of phases."""

    def __init__(self, cfg, data_path, out_dir, budget, log, submissions_dir, verbose, started_at):
        self.cfg, self.data_path, self.out_dir, self.budget, self.log = cfg, data_path, out_dir, budget, log
        self.submissions_dir, self.verbose, self.started_at = submissions_dir, verbose, started_at
        self.metrics: dict = {"preset": cfg.preset, "budget_seconds": cfg.budget_seconds, "notes": []}
        self.safety = max(2.0, SAFETY_FRACTION * cfg.budget_seconds)

    def note(self, message: str) -> None:
        self.metrics["notes"].append(message)
        self.budget.note(message)

    # ------------------------------------------------------------------------------------------- phases
    def execute(self) -> dict:
        self.load_and_clean()
        self.split()
        self.stage1()
        self.write_stage1_submission()
        if self.cfg.two_stage:
            self.try_stage2()
        else:
            self.metrics["stage2_status"] = "off (two_stage=false)"
        if self.final_stage == 1 and self.stage1_tta_pending:
            try:
                self.add_stage1_tta()
            except Exception as exc:  # noqa: BLE001 - the written no-TTA submission stands; report it as such
                self.log("".join(traceback.format_exception(exc)).rstrip())
                self.report_stage1_without_tta(f"stage-1 flip TTA failed ({type(exc).__name__}: {exc})")
        self.finish()
        return self.metrics

    def load_and_clean(self) -> None:
        from marsseg.data.load import load_dataset
        from marsseg.prep.clean import clean_dataset

        cfg = self.cfg
        self.budget.phase("load", note=str(self.data_path))
        dataset = load_dataset(self.data_path)
        images, masks = dataset.images, dataset.masks
        if cfg.data.max_train:
            images, masks = images[: cfg.data.max_train], masks[: cfg.data.max_train]
        # Every test image is predicted whatever data.max_test says: Kaggle rejects a partial submission.
        self.test_images = dataset.test_images
        self.budget.phase("clean", note=f"{len(images)} training images")
        self.images, self.masks, report = clean_dataset(images, masks, cfg.clean)
        self.metrics["data"] = {
            "n_train": int(len(images)),
            "n_removed": int(len(report.removed)),
            "n_clean": int(len(self.images)),
            "n_test": int(len(self.test_images)),
        }
        self.budget.note(f"cleaning removed {len(report.removed)} of {len(images)} training images")

    def split(self) -> None:
        from marsseg.prep.analysis import class_weights
        from marsseg.prep.augment import bigrock_copies, with_copies
        from marsseg.prep.folds import fold_ids, holdout_split

        cfg = self.cfg
        self.budget.phase("folds")
        dev, val = holdout_split(self.masks, cfg.data.val_fraction, cfg.seed)
        self.val_images, self.val_masks = self.images[val], self.masks[val]
        dev_images, dev_masks = self.images[dev], self.masks[dev]
        copies = bigrock_copies(
            dev_images,
            dev_masks,
            cfg.augment.bigrock_offline_copies,
            seed=cfg.seed,
            strength=cfg.augment.strength if cfg.augment.strength != "none" else "medium",
        )
        # Each copy lands in its source image's fold, so no fold model sees a copy of an image it predicts.
        self.dev_images, self.dev_masks, self.dev_groups = with_copies(dev_images, dev_masks, copies)
        k = max(2, cfg.data.folds)  # stage 1 is a K-fold ensemble even when stage 2 is off
        self.fold_of = fold_ids(self.dev_masks, k, cfg.seed, groups=self.dev_groups)
        self.class_weights = {
            stage: class_weights(self.dev_masks, power=getattr(cfg, stage).loss.class_weight_power)
            for stage in ("stage1", "stage2")
        }
        self.metrics["data"].update(
            {
                "n_val": int(len(val)),
                "n_dev": int(len(dev)),
                "n_bigrock_copies": int(len(copies.images)),
                "folds": int(k),
            }
        )

    def stage1(self) -> None:
        from marsseg.pipeline.stages import check_out_of_fold, ensemble_probs, stage1_folds
        from marsseg.training.fit import network_input

        cfg = self.cfg
        share = cfg.stage1_share if cfg.two_stage else 0.8
        stage_end = self.budget.clock() + share * max(0.0, self.budget.remaining() - self.safety)
        self.s1 = stage1_folds(
            self.dev_images,
            self.dev_masks,
            self.fold_of,
            cfg,
            stage_end=stage_end,
            budget=self.budget,
            class_weights=self.class_weights["stage1"],
            verbose=self.verbose,
            log=self.log,
        )
        check_out_of_fold(self.s1)
        for message in self.s1.notes:
            self.metrics["notes"].append(message)
        self.budget.phase("stage1 validation")
        predicted = sum(len(f.val_index) for f in self.s1.folds)
        seconds = sum(f.predict_seconds for f in self.s1.folds)
        x_val = network_input(self.val_images)
        started = self.budget.clock()
        self.val_probs1 = ensemble_probs(self.s1.models, x_val)
        # Per model pass. The out-of-fold passes also traced each model's predict function; this one did not.
        self.infer_rate1 = max(
            predicted / max(seconds, 1e-6), len(x_val) * len(self.s1.models) / max(self.budget.clock() - started, 1e-6)
        )
        self.metrics["stage1"] = {
            "folds_planned": self.s1.planned_folds,
            "folds_trained": len(self.s1.folds),
            "oof_covered": int(self.s1.covered.sum()),
            "fold_best_val_miou": [f.result.best_val_miou for f in self.s1.folds],
            "fold_epochs": [f.result.epochs_run for f in self.s1.folds],
            "fold_epoch_seconds": [
                [round(t, 1) for t in f.result.extra.get("epoch_seconds", [])] for f in self.s1.folds
            ],
            "fold_stop_reason": [f.result.stop_reason for f in self.s1.folds],
            "train_samples_per_s": float(np.median([f.result.train_samples_per_s for f in self.s1.folds])),
            "infer_samples_per_s": float(self.infer_rate1),
        }
        self.choice1 = self.choose_post("stage1", lambda x: ensemble_probs(self.s1.models, x), x_val, self.val_probs1)
        self.metrics["val_miou_stage1"] = self.choice1["miou_plain"]
        self.metrics["val_iou_stage1"] = self.choice1["iou_plain"]
        from marsseg.pipeline.figures import plot_curves

        plot_curves(
            {f"fold {f.fold + 1}": f.result.history for f in self.s1.folds},
            self.out_dir / "curves_stage1.png",
            "stage 1",
        )

    def choose_post(self, stage: str, predict, x_val, val_probs) -> dict:
        """Hold-out mIoU without and with TTA, class biases and morphology, in that order; what the settings keep."""
        from marsseg.pipeline.postprocess import (
            clean_masks,
            cross_fitted_bias_score,
            decide,
            fit_class_bias,
            predict_tta,
        )
        from marsseg.submission.scoring import score_masks

        post = self.cfg.post
        self.budget.phase(f"{stage} post-processing choice")
        labels = labels_from_probs(val_probs)
        plain = before = score_masks(self.val_masks, labels)
        chosen_probs, tta = val_probs, {"setting": post.tta, "without": plain["miou"], "with": None, "used": False}
        if post.tta != "off":
            tta_probs = predict_tta(predict, x_val, val_probs)
            tta_labels = labels_from_probs(tta_probs)
            tta_score = score_masks(self.val_masks, tta_labels)
            tta["with"] = tta_score["miou"]
            tta["used"] = decide(post.tta, tta["without"], tta["with"])
            if tta["used"]:
                chosen_probs, labels, before = tta_probs, tta_labels, tta_score
        bias = {
            "setting": post.class_bias,
            "without": before["miou"],
            "with": None,
            "fitted": None,
            "used": False,
            "values": None,
        }
        values = None
        if post.class_bias != "off":
            fitted, bias["fitted"] = fit_class_bias(chosen_probs, self.val_masks)
            # "with" is honest: shifts fitted on one half of the hold-out, scored on the other (both ways round).
            bias["with"] = cross_fitted_bias_score(chosen_probs, self.val_masks, seed=self.cfg.seed)
            bias["values"] = {MARS.class_names[c]: float(fitted[c]) for c in MARS.scored_classes}
            bias["used"] = decide(post.class_bias, bias["without"], bias["with"])
            if bias["used"]:
                values = fitted
                labels = labels_from_probs(chosen_probs, class_bias=values)
                before = score_masks(self.val_masks, labels)
        morph = {"setting": post.morphology, "without": before["miou"], "with": None, "used": False}
        final = before
        if post.morphology != "off":
            cleaned = clean_masks(labels, post.min_component, post.max_hole)
            after = score_masks(self.val_masks, cleaned)
            morph["with"] = after["miou"]
            morph["used"] = decide(post.morphology, morph["without"], morph["with"])
            if morph["used"]:
                final, labels = after, cleaned
        return {
            "miou_plain": plain["miou"],
            "iou_plain": _named(plain["iou"]),
            "tta": tta,
            "class_bias": bias,
            "bias_values": values,
            "morphology": morph,
            "miou_final": final["miou"],
            "iou_final": _named(final["iou"]),
            "val_labels": labels,
        }

    # ------------------------------------------------------------------------------------- submissions
    def test_seconds(self, models: int, tta: bool, rate: float) -> float:
        return len(self.test_images) * models * (2 if tta else 1) / max(rate, 1e-6)

    @staticmethod
    def labels(probs: np.ndarray, choice: dict) -> np.ndarray:
        """Labels from probabilities with the class biases the hold-out kept for this choice (if any)."""
        return labels_from_probs(probs, class_bias=choice["bias_values"])

    def morphology(self, labels: np.ndarray, choice: dict) -> np.ndarray:
        """`labels` after the morphological clean-up, where the hold-out kept it for this choice."""
        from marsseg.pipeline.postprocess import clean_masks

        if not choice["morphology"]["used"]:
            return labels
        return clean_masks(labels, self.cfg.post.min_component, self.cfg.post.max_hole)

    def label_test_set(self, chunk_probs, choice: dict) -> np.ndarray:
        """Test-set labels from `chunk_probs(start, stop)` (class probabilities of those test images), taken
        TEST_CHUNK images at a time, with the class biases and clean-up the hold-out kept for `choice`."""
        n = len(self.test_images)
        labels = np.zeros(self.test_images.shape, np.uint8)
        for start in range(0, n, TEST_CHUNK):
            stop = min(start + TEST_CHUNK, n)
            labels[start:stop] = self.labels(chunk_probs(start, stop), choice)
        return self.morphology(labels, choice)

    def write_stage1_submission(self) -> None:
        from marsseg.pipeline.postprocess import predict_tta
        from marsseg.pipeline.stages import ensemble_probs
        from marsseg.training.fit import network_input

        n_models, tta = len(self.s1.models), self.choice1["tta"]["used"]
        # With stage 2 to come, the fallback is written without flip TTA: half the prediction time, which stage 2
        # gets instead. TTA is added at the end if stage 1 stays the final stage (`add_stage1_tta`).
        self.stage1_tta_pending = tta and self.cfg.two_stage
        tta = tta and not self.stage1_tta_pending
        estimate = self.test_seconds(n_models, tta, self.infer_rate1)
        self.budget.phase(
            "stage1 test prediction",
            note=f"{len(self.test_images)} images x {n_models} models"
            f"{' x 2 (flip TTA)' if tta else ''}, about {estimate:.0f}s",
        )
        keep_probs = self.cfg.two_stage
        self.test_probs1 = np.zeros((*self.test_images.shape, 5), np.float16) if keep_probs else None
        predict = lambda x: ensemble_probs(self.s1.models, x)  # noqa: E731

        def chunk_probs(start, stop):
            x = network_input(self.test_images[start:stop])
            plain = predict(x)
            if keep_probs:
                self.test_probs1[start:stop] = plain
            return predict_tta(predict, x, plain) if tta else plain

        labels = self.test_labels1 = self.label_test_set(chunk_probs, self.choice1)
        self.write_submission(labels, "stage 1" + (" without TTA for now" if self.stage1_tta_pending else ""))
        self.final_stage, self.final_choice = 1, self.choice1

    def add_stage1_tta(self) -> None:
        """Rewrite the stage-1 submission with the flip TTA the hold-out chose, if the budget allows; otherwise
        report the hold-out score of what was written (no TTA)."""
        from marsseg.pipeline.postprocess import predict_tta
        from marsseg.pipeline.stages import ensemble_probs
        from marsseg.training.fit import network_input

        n_models = len(self.s1.models)
        estimate = self.test_seconds(n_models, False, self.infer_rate1)
        if estimate * 1.2 > self.budget.remaining() - self.safety / 4:
            self.report_stage1_without_tta(
                f"stage-1 flip TTA not added: it needs about {estimate:.0f}s, {self.budget.remaining():.0f}s left"
            )
            return
        self.budget.phase("stage1 test prediction (flip TTA)", note=f"about {estimate:.0f}s")
        predict = lambda x: ensemble_probs(self.s1.models, x)  # noqa: E731
        labels = self.test_labels1 = self.label_test_set(
            lambda start, stop: predict_tta(
                predict, network_input(self.test_images[start:stop]), self.test_probs1[start:stop].astype(np.float32)
            ),
            self.choice1,
        )
        self.write_submission(labels, "stage 1 with flip TTA")

    def report_stage1_without_tta(self, why: str) -> None:
        """The final choice is the stage-1 submission as written, without TTA: score that on the hold-out."""
        from marsseg.submission.scoring import score_masks

        labels = self.morphology(self.labels(self.val_probs1, self.choice1), self.choice1)
        score = score_masks(self.val_masks, labels)
        self.final_choice = {
            **self.choice1,
            "tta": {**self.choice1["tta"], "used": False},
            "val_labels": labels,
            "miou_final": score["miou"],
            "iou_final": _named(score["iou"]),
        }
        self.note(f"{why}; the submission has none")

    def write_submission(self, labels: np.ndarray, what: str) -> Path:
        from marsseg.submission.formats import read_submission, write_submission

        self.budget.phase(f"submission ({what})")
        path = write_submission(self.out_dir / "submission.csv", labels, self.cfg.submission.format)
        read_submission(path, len(self.test_images))
        self.budget.note(
            f"{what} submission written and validated: {path} ({len(labels)} images, {self.cfg.submission.format})"
        )
        return path

    # ------------------------------------------------------------------------------------------ stage 2
    def try_stage2(self) -> None:
        """Stage 2 if the budget allows; on any failure keep the stage-1 submission and say why."""
        try:
            status = self.stage2()
        except Exception as exc:  # noqa: BLE001 - the stage-1 submission must survive anything stage 2 does
            status = f"failed: {type(exc).__name__}: {exc}"
            self.log("".join(traceback.format_exception(exc)).rstrip())
        self.metrics["stage2_status"] = status
        if status != "ok":
            self.note(f"stage 2 {status}; the stage-1 submission stands")

    def stage2(self) -> str:
        from marsseg.prep.folds import holdout_split
        from marsseg.training.fit import fit_stage, network_input, predict_probs

        cfg = self.cfg
        rows = np.flatnonzero(self.s1.covered)
        if len(rows) < 4:
            return "skipped: too few out-of-fold predictions"
        fold_train = max(len(f.train_index) for f in self.s1.folds)
        first_epoch = max(f.result.extra.get("epoch_seconds", [f.result.seconds])[0] for f in self.s1.folds)
        epoch_estimate = first_epoch * len(rows) / max(fold_train, 1)
        tta_possible = cfg.post.tta != "off"
        # Stage-2 inference runs at about stage 1's per-model rate (two more input channels).
        reserve = (
            self.test_seconds(1, tta_possible, self.infer_rate1) * 1.3
            + len(self.val_images) * 2 / max(self.infer_rate1, 1e-6)
            + self.safety
        )
        available = self.budget.remaining() - reserve
        # A residual stage 2 is scored before training and kept only where it beats that, so even part of an
        # epoch (stopped mid-way by the deadline) can only help; one from scratch needs a whole epoch.
        needed = epoch_estimate * (RESIDUAL_MIN_EPOCH if cfg.stage2.model.residual else 1.0)
        if available < needed:
            return (
                f"skipped: {available:.0f}s left after reserving {reserve:.0f}s for prediction, "
                f"stage 2 needs about {needed:.0f}s (one epoch: {epoch_estimate:.0f}s)"
            )
        deadline = self.budget.clock() + available
        train_rows, stop_rows = holdout_split(
            self.dev_masks[rows], cfg.data.val_fraction, cfg.seed + 100, groups=self.dev_groups[rows]
        )
        train_rows, stop_rows = rows[train_rows], rows[stop_rows]
        self.budget.phase(
            "stage2",
            note=f"{len(train_rows)} train / {len(stop_rows)} early-stopping images "
            f"(out-of-fold inputs), {available:.0f}s",
        )
        result = fit_stage(
            cfg.stage2,
            self.dev_images[train_rows],
            self.dev_masks[train_rows],
            network_input(self.dev_images[stop_rows], self.s1.oof[stop_rows]),
            self.dev_masks[stop_rows],
            train_extras=self.s1.oof[train_rows],
            augment_cfg=cfg.augment,
            seed=cfg.seed + 1000,
            deadline=deadline,
            name="stage2",
            class_weights=self.class_weights["stage2"],
            verbose=self.verbose,
            log=self.log,
        )
        self.s2 = result
        if result.extra.get("baseline_val_miou") is not None:
            kept = f"epoch {result.best_epoch}" if result.best_epoch else "the untrained head (stage 1 unchanged)"
            self.budget.note(
                f"stage 2 early-stopping mIoU {result.extra['baseline_val_miou']:.4f} before training, "
                f"{result.best_val_miou:.4f} kept ({kept})"
            )
        from marsseg.pipeline.figures import plot_curves

        plot_curves({"stage 2": result.history}, self.out_dir / "curves_stage2.png", "stage 2")
        self.budget.phase("stage2 validation")
        x_val = network_input(self.val_images, self.val_probs1)
        passes = []

        def timed_predict(x):
            started = self.budget.clock()
            probs = predict_probs(result.model, x)
            passes.append((len(x), self.budget.clock() - started))
            return probs

        val_probs2 = timed_predict(x_val)
        self.choice2 = self.choose_post("stage2", timed_predict, x_val, val_probs2)
        # The first pass also traces the predict function (measured: a test-time estimate of 57 s for 26 s of
        # prediction); later passes, the TTA choice's, are the better estimate.
        self.infer_rate2 = max(n / max(seconds, 1e-6) for n, seconds in passes)
        self.metrics["val_miou_stage2"] = self.choice2["miou_plain"]
        self.metrics["val_iou_stage2"] = self.choice2["iou_plain"]
        self.metrics["stage2"] = {
            "epochs": result.epochs_run,
            "best_epoch": result.best_epoch,
            "epoch_seconds": [round(t, 1) for t in result.extra.get("epoch_seconds", [])],
            "residual": cfg.stage2.model.residual,
            "before_training_val_miou": result.extra.get("baseline_val_miou"),
            "stop_reason": result.stop_reason,
            "early_stopping_val_miou": result.best_val_miou,
            "train_samples_per_s": result.train_samples_per_s,
            "infer_samples_per_s": float(self.infer_rate2),
        }
        if self.choice2["miou_final"] < self.choice1["miou_final"]:
            return (
                f"not used: hold-out mIoU {self.choice2['miou_final']:.4f} is below stage 1's "
                f"{self.choice1['miou_final']:.4f}"
            )
        estimate = 1.2 * self.test_seconds(1, self.choice2["tta"]["used"], self.infer_rate2)
        # Only writing the CSV and the report follow (about a second per 5000 images): a quarter of the margin.
        if estimate > self.budget.remaining() - self.safety / 4:
            return f"skipped at test time: prediction needs about {estimate:.0f}s, {self.budget.remaining():.0f}s left"
        self.test_labels2 = self.predict_stage2_test(result.model, self.choice2)
        self.write_submission(self.test_labels2, "stage 2")
        self.final_stage, self.final_choice = 2, self.choice2
        return "ok"

    def predict_stage2_test(self, model, choice) -> np.ndarray:
        from marsseg.pipeline.postprocess import predict_tta
        from marsseg.training.fit import network_input, predict_probs

        self.budget.phase(
            "stage2 test prediction",
            note=f"{len(self.test_images)} images{' x 2 (flip TTA)' if choice['tta']['used'] else ''}",
        )
        predict = lambda x: predict_probs(model, x)  # noqa: E731

        def chunk_probs(start, stop):
            x = network_input(self.test_images[start:stop], self.test_probs1[start:stop])
            return predict_tta(predict, x) if choice["tta"]["used"] else predict(x)

        return self.label_test_set(chunk_probs, choice)

    # -------------------------------------------------------------------------------------------- finish
    def finish(self) -> None:
        from marsseg.pipeline.figures import plot_samples

        self.budget.phase("report")
        choice = self.final_choice
        columns = {"stage 1": self.choice1["val_labels"]}
        if getattr(self, "choice2", None) is not None:
            columns["stage 2"] = self.choice2["val_labels"]
        try:
            plot_samples(self.val_images, self.val_masks, columns, self.out_dir / "samples.png")
        except Exception as exc:  # noqa: BLE001 - a figure is not worth losing the run's record
            self.note(f"sample figure not written: {exc}")
        self.metrics.update(
            {
                "final_stage": self.final_stage,
                "val_miou_final": choice["miou_final"],
                "val_iou_final": choice["iou_final"],
                "final_tta": bool(choice["tta"]["used"]),
                "val_miou_stage2": self.metrics.get("val_miou_stage2"),
                "post": {
                    f"stage{s}": {"tta": c["tta"], "class_bias": c["class_bias"], "morphology": c["morphology"]}
                    for s, c in ((1, self.choice1), (2, getattr(self, "choice2", None)))
                    if c is not None
                },
            }
        )
        path = self.out_dir / "submission.csv"
        if self.submissions_dir is not None:
            stamp = self.started_at.strftime("%Y%m%d-%H%M%S")
            copy = Path(self.submissions_dir) / f"{self.out_dir.name}-stage{self.final_stage}-{stamp}.csv"
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, copy)
            self.metrics["submission_copy"] = str(copy)
        self.metrics["submission"] = str(path)
        self.budget.end_phase()
        self.metrics["seconds"] = {
            **{k: round(v, 2) for k, v in self.budget.phase_seconds.items()},
            "total": round(self.budget.elapsed(), 2),
        }
        atomic_write_json(self.out_dir / "metrics.json", self.metrics)
        self.budget.note(
            f"done: final stage {self.final_stage}, hold-out mIoU {choice['miou_final']:.4f} "
            f"(stage 1 {self.metrics['val_miou_stage1']:.4f}"
            + (
                f", stage 2 {self.metrics['val_miou_stage2']:.4f}"
                if self.metrics.get("val_miou_stage2") is not None
                else ""
            )
            + f"); {self.out_dir}"
        )


def _named(iou: dict) -> dict:
    return {MARS.class_names[c]: (None if np.isnan(v) else float(v)) for c, v in iou.items()}
