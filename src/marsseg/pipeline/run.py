"""The whole run under one wall-clock budget, written to one run folder.

    load -> clean -> hold-out split (tuning + reporting parts) + K folds -> stage 1 per fold (out-of-fold
    probabilities) -> stage-1 submission (the fallback, written first) -> stage 2 on image + probabilities ->
    post-processing and TTA (each kept only if it raises the tuning part's mIoU under "auto") -> final
    submission, validated. If stage 1 itself crashes, a network-free submission is written instead and
    `outputs.Stage1Failed` is raised.

The hold-out images are never trained on or used for early stopping by either stage. Its tuning part makes every
decision (TTA, class biases, morphology, which stage is submitted); its reporting part makes none, and
`val_miou_stage1`, `val_miou_stage2` and `val_miou_final` are its scores (both stages under flip TTA unless
post.tta is off), so they do not flatter. Stage 2's input is stage 1's flip-TTA'd probabilities everywhere
(see `stages`). The signature of `run` is the contract the Kaggle kernel and the emulator call. Loading,
cleaning and the folds live in `prepare`, the post-processing choice in `choice`, the tuning/reporting split in
`holdout`, the input calibration in `calibration`, the time arithmetic in `budget`, test-set prediction in
`testset`, the metrics report in `report`, the run folder's files (and nothing else) in `outputs`.
"""

from __future__ import annotations

import functools
import traceback
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from marsseg.config import Config, save_config
from marsseg.files import atomic_write_json
from marsseg.pipeline import outputs, prepare, report, testset
from marsseg.pipeline.budget import Budget, fits, safety_seconds, stage2_reserve, test_seconds
from marsseg.pipeline.calibration import InputGap, fit_temperature
from marsseg.pipeline.canary import canary_metrics, preflight, result_timing, stage1_timings
from marsseg.pipeline.figures import plot_curves, plot_samples
from marsseg.pipeline.plan import Stage1Plan
from marsseg.pipeline.selftrain import pseudo_rows
from marsseg.pipeline.stages import check_out_of_fold, member_probs, stage1_folds, stage2_fit, stage2_probs
from marsseg.stamps import git_commit


def run(cfg: Config, data_path, out_dir, log=print, submissions_dir="submissions", verbose=2) -> dict:
    """Train on `data_path` under `cfg`; write the files `outputs` lists to `out_dir`; copy the submission in
    `submission.format` to `submissions_dir` (None: no copy). Returns the metrics. Raises `outputs.Stage1Failed`
    (after writing the fallback submission and metrics.json) if stage 1 crashed, `runtime.GpuMissing` (before any
    data is read or anything written) if `cfg.require_gpu` and the backend sees no GPU. With `cfg.canary.enabled`
    the run is `canary.canary_config(cfg)`, and metrics.json's `canary` projects `cfg`'s full run."""
    if log is print:  # a Kaggle log is a pipe: flush each line so the log shows progress as it happens
        log = functools.partial(print, flush=True)
    cfg, full_cfg, facts = preflight(cfg, log)
    budget = Budget(cfg.budget_seconds, log)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started_at = datetime.now(timezone.utc)
    started = started_at.isoformat(timespec="seconds")
    save_config(cfg, out_dir / "config.json", git_commit=git_commit(), data=str(data_path), started=started)
    run = _Run(cfg, Path(data_path), out_dir, budget, log, submissions_dir, verbose, started_at)
    run.metrics["runtime"] = facts
    run.full_cfg = full_cfg if full_cfg.canary.enabled else None
    return run.execute()


class _Run:
    """One run's state; `execute` is the sequence of phases."""

    def __init__(self, cfg, data_path, out_dir, budget, log, submissions_dir, verbose, started_at):
        self.cfg, self.data_path, self.out_dir, self.budget, self.log = cfg, data_path, out_dir, budget, log
        self.submissions_dir, self.verbose, self.started_at = submissions_dir, verbose, started_at
        self.metrics: dict = {"preset": cfg.preset, "budget_seconds": cfg.budget_seconds, "notes": []}
        self.safety = safety_seconds(cfg.budget_seconds)
        self.tta_on = cfg.post.tta != "off"
        self.test_tta1 = None  # stage 1's flip-TTA'd test probabilities, once the flipped pass has run
        self.full_cfg, self.measured = None, {}  # a canary's full configuration and its figures (`canary`)

    def note(self, message: str) -> None:
        self.metrics["notes"].append(message)
        self.budget.note(message)

    # ------------------------------------------------------------------------------------------- phases
    def execute(self) -> dict:
        self.load_and_clean()
        self.split()
        try:
            self.stage1()
            self.write_stage1_submission()
        except Exception as exc:  # noqa: BLE001 - any crash here still leaves a validated submission
            self.stage1_crashed(exc)
        self.metrics["stage1_status"] = "ok"
        self.save_models({outputs.stage1_model_name(f.fold): f.result.model for f in self.s1.folds}, "stage 1")
        if self.cfg.two_stage:
            self.try_stage2()
            if getattr(self, "s2", None) is not None:
                self.save_models({outputs.STAGE2_MODEL: self.s2.model}, "stage 2")
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
        self.images, self.masks, self.test_images, self.metrics["data"], self.source = prepare.load_and_clean(
            self.cfg, self.data_path, self.budget
        )

    def split(self) -> None:
        split = prepare.split_data(self.cfg, self.images, self.masks, self.budget, self.source)
        self.hold, self.fold_of, self.class_weights = split.hold, split.fold_of, split.class_weights
        self.dev_images, self.dev_masks, self.dev_groups = split.dev_images, split.dev_masks, split.dev_groups
        self.val_images, self.val_masks = self.hold.images, self.hold.masks  # both parts; marsseg_bench reads them
        self.metrics["holdout"] = self.hold.counts()
        # Which training images the hold-out is, so other runs can be checked against it (`marsseg ensemble`).
        self.metrics["holdout_identity"] = prepare.holdout_identity(
            self.cfg, split, self.metrics["data"]["train_sha256"]
        )
        self.metrics["data"].update(split.counts)

    def stage1(self) -> None:
        from marsseg.training.feed import network_input
        from marsseg.training.runtime import peak_gpu_bytes, reset_peak_gpu_memory

        cfg = self.cfg
        reset_peak_gpu_memory()
        n_test, n_val = len(self.test_images), len(self.hold.images)
        self.plan = Stage1Plan.for_run(cfg, self.budget, self.safety, self.fold_of, n_test, n_val)
        self.s1 = stage1_folds(
            self.dev_images,
            self.dev_masks,
            self.fold_of,
            cfg,
            stage_end=self.plan.initial_end(),
            replan_end=self.plan.replan_end,
            budget=self.budget,
            class_weights=self.class_weights["stage1"],
            verbose=self.verbose,
            log=self.log,
        )
        check_out_of_fold(self.s1)
        self.metrics["plan"] = self.plan.summary()
        for message in self.s1.notes:
            self.metrics["notes"].append(message)
        rows = np.flatnonzero(self.s1.covered)
        # Fitted on the out-of-fold rows alone, checked on the tuning part (see `calibration` for why this scheme).
        self.temperature = fit_temperature(self.s1.oof[rows], self.dev_masks[rows]) if cfg.two_stage else 1.0
        self.budget.phase("stage1 validation")
        passes = 2 if self.tta_on else 1
        predicted = sum(len(f.val_index) for f in self.s1.folds) * passes
        seconds = sum(f.predict_seconds for f in self.s1.folds)
        x_val = network_input(self.hold.images)
        gap = InputGap(self.hold.masks, self.hold.tune, self.hold.report, self.temperature)
        started = self.budget.clock()
        self.val1 = member_probs(self.s1.models, x_val, self.tta_on, each=gap.add if cfg.two_stage else None)
        # Per model pass. The out-of-fold passes also traced each model's predict function; this one did not.
        self.infer_rate1 = max(
            predicted / max(seconds, 1e-6),
            len(x_val) * len(self.s1.models) * passes / max(self.budget.clock() - started, 1e-6),
        )
        self.metrics["stage1"] = report.stage1_metrics(self.s1, self.infer_rate1)
        self.metrics["stage1"]["peak_gpu_bytes"] = peak_gpu_bytes()
        self.measured.update(
            stage1=stage1_timings(self.s1.folds),
            infer1=self.infer_rate1,
            n_test=len(self.test_images),
            n_val=len(self.hold.images),
            n_dev=len(self.dev_images),
        )
        if cfg.two_stage:
            self.temperature, self.metrics["stage2_input"] = gap.finish(self.val1[1] if self.tta_on else self.val1[0])
        self.choice1 = self.choose_post("stage1", self.val1)
        self.metrics["val_miou_stage1"], self.metrics["val_iou_stage1"] = self.hold.bare(self.val1)
        plot_curves(
            {f"fold {f.fold + 1}": f.result.history for f in self.s1.folds},
            self.out_dir / "curves_stage1.png",
            "stage 1",
        )

    def choose_post(self, stage: str, probs: tuple) -> dict:
        self.budget.phase(f"{stage} post-processing choice")
        return self.hold.choose(self.cfg.post, probs, seed=self.cfg.seed)

    # ------------------------------------------------------------------------------------- submissions
    def write_stage1_submission(self) -> None:
        n_models, tta = len(self.s1.models), self.choice1["tta"]["used"]
        # With stage 2 to come, the fallback is written without flip TTA: half the prediction time, which stage 2
        # gets instead. The flipped pass runs once, at the end: for stage 2's input if stage 2 is submitted, for
        # stage 1's TTA if stage 1 stays the final stage (`add_stage1_tta`).
        self.stage1_tta_pending = tta and self.cfg.two_stage
        tta = tta and not self.stage1_tta_pending
        estimate = test_seconds(len(self.test_images), n_models, tta, self.infer_rate1)
        self.budget.phase(
            "stage1 test prediction",
            note=f"{len(self.test_images)} images x {n_models} models"
            f"{' x 2 (flip TTA)' if tta else ''}, about {estimate:.0f}s",
        )
        self.test_labels1, self.test_probs1 = testset.stage1_labels(
            self.s1.models, self.test_images, self.choice1, self.cfg.post, tta=tta, keep_probs=self.cfg.two_stage
        )
        self.write_submission(
            self.test_labels1, "stage 1" + (" without TTA for now" if self.stage1_tta_pending else "")
        )
        self.final_stage, self.final_choice = 1, self.choice1

    def flip_estimate(self) -> float:
        """Seconds for stage 1's flipped test pass; 0 once it has run."""
        if self.test_tta1 is not None:
            return 0.0
        return test_seconds(len(self.test_images), len(self.s1.models), False, self.infer_rate1)

    def stage1_flip(self, why: str) -> None:
        """Stage 1's flipped test pass: its flip-TTA'd test probabilities (stage 2's input, stage 1's TTA)."""
        if self.test_tta1 is None:
            self.budget.phase(f"stage1 test prediction (flip TTA{why})", note=f"about {self.flip_estimate():.0f}s")
            self.test_tta1 = testset.stage1_flip(self.s1.models, self.test_images, self.test_probs1)
            self.test_probs1 = None  # the plain half is not read again: free it (0.8 GB for Kaggle's test set)

    def add_stage1_tta(self) -> None:
        """Rewrite the stage-1 submission with the flip TTA the tuning part chose, if the budget allows; otherwise
        report the hold-out score of what was written (no TTA)."""
        estimate = self.flip_estimate()
        if not fits(estimate, self.budget.remaining(), self.safety):
            self.report_stage1_without_tta(
                f"stage-1 flip TTA not added: it needs about {estimate:.0f}s, {self.budget.remaining():.0f}s left"
            )
            return
        self.stage1_flip("")
        self.test_labels1 = testset.stage1_tta_labels(self.test_images, self.test_tta1, self.choice1, self.cfg.post)
        self.write_submission(self.test_labels1, "stage 1 with flip TTA")

    def report_stage1_without_tta(self, why: str) -> None:
        """The final choice is the stage-1 submission as written, without TTA: rescore it on the tuning part (the
        reporting part is scored in `finish`)."""
        self.final_choice = self.hold.without_tta(self.choice1, self.val1, self.cfg.post)
        self.note(f"{why}; the submission has none")

    def write_submission(self, labels: np.ndarray, what: str) -> None:
        self.budget.phase(f"submission ({what})")
        written = outputs.write_submissions(self.out_dir, labels)
        self.budget.note(
            f"{what} submission written and validated: "
            + ", ".join(f"{self.out_dir / name} ({layout})" for name, layout in written.items())
            + f", {len(labels)} images"
        )

    def save_models(self, named: dict, what: str) -> None:
        """The trained networks as .keras files; a failed save costs the file, not the run."""
        self.budget.phase(f"save {what} models", note=", ".join(named))
        try:
            outputs.save_models(self.out_dir, named)
        except Exception as exc:  # noqa: BLE001 - the submission is what counts
            self.log("".join(traceback.format_exception(exc)).rstrip())
            self.note(f"{what} models not saved ({type(exc).__name__}: {exc})")

    def stage1_crashed(self, exc: Exception) -> None:
        """Write the network-free submission (both files, validated) and metrics.json, then raise Stage1Failed."""
        self.log("".join(traceback.format_exception(exc)).rstrip())
        crash = f"{type(exc).__name__}: {exc}"
        self.metrics.update(stage1_status=f"failed: {crash}", final_stage=0)
        self.budget.phase("fallback submission", note="stage 1 crashed: nearest-centroid model, no network")
        submission = None
        try:
            outputs.fallback_submission(self.images, self.masks, self.test_images, self.out_dir)
            submission = self.out_dir / outputs.SUBMISSION
            self.metrics.update(submission=str(submission), submission_rle=str(self.out_dir / outputs.SUBMISSION_RLE))
            what = f"the network-free fallback {submission} (nearest centroid, validated) was written instead"
        except Exception as fallback_exc:  # noqa: BLE001 - report both; the crash is what gets raised
            self.log("".join(traceback.format_exception(fallback_exc)).rstrip())
            what = f"the fallback submission failed too ({type(fallback_exc).__name__}: {fallback_exc})"
        self.metrics["fallback"] = "nearest-centroid" if submission else None
        self.note(f"stage 1 crashed ({crash}); {what}")
        self.budget.end_phase()
        self.metrics["seconds"] = report.phase_seconds(self.budget)
        self.metrics["outputs"] = outputs.output_files(self.out_dir)
        atomic_write_json(self.out_dir / "metrics.json", self.metrics)
        raise outputs.Stage1Failed(f"stage 1 crashed ({crash}); {what}", self.metrics, submission) from exc

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

    def pseudo_rows(self):
        """Stage 1's confident test pixels for stage 2 (`selftrain`); its test input is the TTA'd one where TTA is on,
        whose flipped pass stage 2's test prediction needs anyway."""
        if self.tta_on:
            self.stage1_flip(" for self-training")
        *rows, self.metrics["self_training"] = pseudo_rows(
            self.test_images, self.test_tta1 if self.tta_on else self.test_probs1, self.cfg
        )
        self.note(f"self-training: {self.metrics['self_training']['images']} pseudo-labelled test images join stage 2")
        return rows

    def stage2(self) -> str:
        from marsseg.training.feed import network_input
        from marsseg.training.runtime import peak_gpu_bytes, reset_peak_gpu_memory

        cfg = self.cfg
        reset_peak_gpu_memory()
        rows = np.flatnonzero(self.s1.covered)
        if len(rows) < 4:
            return "skipped: too few out-of-fold predictions"
        n_test, n_val, models = len(self.test_images), len(self.hold.images), len(self.s1.models)
        available, skip = self.plan.stage2_time(self.s1, len(rows), self.infer_rate1)
        if skip:
            return skip
        result = self.s2 = stage2_fit(
            self.dev_images,
            self.dev_masks,
            self.dev_groups,
            self.s1,
            cfg,
            seconds=available,
            budget=self.budget,
            class_weights=self.class_weights["stage2"],
            verbose=self.verbose,
            log=self.log,
            temperature=self.temperature,
            reserve=lambda rate2: stage2_reserve(
                n_test, n_val, self.plan.tta, self.infer_rate1, self.safety, models, rate2, self.plan.choice()
            ),
            pseudo=self.pseudo_rows() if cfg.self_training.enabled else None,
        )
        plot_curves({"stage 2": result.history}, self.out_dir / "curves_stage2.png", "stage 2")
        self.budget.phase("stage2 validation")
        x_val = network_input(self.hold.images, self.val1[1] if self.tta_on else self.val1[0])
        *self.val2, self.infer_rate2 = stage2_probs(result.model, x_val, self.tta_on, clock=self.budget.clock)
        self.choice2 = self.choose_post("stage2", self.val2)
        self.metrics["val_miou_stage2"], self.metrics["val_iou_stage2"] = self.hold.bare(self.val2)
        self.metrics["stage2"] = report.stage2_metrics(result, cfg.stage2.model.residual, self.infer_rate2)
        self.metrics["stage2"]["peak_gpu_bytes"] = peak_gpu_bytes()
        self.measured.update(
            stage2=result_timing(result, len(rows)), stage2_rows=len(rows), stage2_rows_full=len(self.dev_images)
        )
        self.measured["infer2"] = self.infer_rate2
        if self.choice2["miou_final"] < self.choice1["miou_final"] and self.full_cfg is None:  # a canary goes on
            return (
                f"not used: tuning hold-out mIoU {self.choice2['miou_final']:.4f} is below stage 1's "
                f"{self.choice1['miou_final']:.4f}"
            )
        tta2 = self.choice2["tta"]["used"]
        estimate = test_seconds(len(self.test_images), 1, tta2, self.infer_rate2)
        estimate += self.flip_estimate() if self.tta_on else 0.0
        if not fits(estimate, self.budget.remaining(), self.safety):
            return (
                f"skipped at test time: prediction needs about {1.2 * estimate:.0f}s, "
                f"{self.budget.remaining():.0f}s left"
            )
        if self.tta_on:
            self.stage1_flip(", stage 2's input")
        self.budget.phase("stage2 test prediction", note=f"{len(self.test_images)} images{' x 2 (flip TTA)' * tta2}")
        probs1 = self.test_tta1 if self.tta_on else self.test_probs1
        self.test_labels2 = testset.stage2_labels(result.model, self.test_images, probs1, self.choice2, self.cfg.post)
        self.write_submission(self.test_labels2, "stage 2")
        self.final_stage, self.final_choice = 2, self.choice2
        return "ok"

    # -------------------------------------------------------------------------------------------- finish
    def finish(self) -> None:
        self.budget.phase("report")
        choice2 = getattr(self, "choice2", None)
        stages = {1: (self.choice1, self.val1), 2: (choice2, getattr(self, "val2", None))}
        probs, post = stages[self.final_stage][1], self.cfg.post
        final = self.hold.reported(self.final_choice, probs, post, seed=self.cfg.seed)
        columns = {f"stage {s}": self.hold.labels(c, p, post) for s, (c, p) in stages.items() if c is not None}
        try:
            report_part = self.hold.report
            plot_samples(
                self.hold.images[report_part], self.hold.masks[report_part], columns, self.out_dir / "samples.png"
            )
        except Exception as exc:  # noqa: BLE001 - a figure is not worth losing the run's record
            self.note(f"sample figure not written: {exc}")
        self.metrics.update(
            report.final_metrics(self.metrics, self.final_stage, self.final_choice, self.choice1, choice2, final)
        )
        if self.submissions_dir is not None:
            stamp = self.started_at.strftime("%Y%m%d-%H%M%S")
            name = f"{self.out_dir.name}-stage{self.final_stage}-{stamp}.csv"
            copy = outputs.copy_submission(self.out_dir, self.submissions_dir, self.cfg.submission.format, name)
            self.metrics["submission_copy"] = str(copy)
        self.metrics["submission"] = str(self.out_dir / outputs.SUBMISSION)
        self.metrics["submission_rle"] = str(self.out_dir / outputs.SUBMISSION_RLE)
        self.budget.end_phase()
        self.metrics["seconds"] = report.phase_seconds(self.budget)
        if self.full_cfg is not None:
            self.metrics["canary"] = canary_metrics(
                self.full_cfg, self.cfg, self.measured, self.metrics["seconds"], self.metrics.get("runtime", {})
            )
        self.metrics["outputs"] = outputs.output_files(self.out_dir)
        atomic_write_json(self.out_dir / "metrics.json", self.metrics)
        self.budget.note(report.done_note(self.metrics, self.out_dir))
