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
(see `stages`). The signature of `run` is the contract the Kaggle kernel and the emulator call; `Run` is the
declared state the benchmarks and tests read (each phase's result, None until it runs).

Here: `run` and `Run` (its state, the phases up to stage 1's hold-out validation, the report). Elsewhere: loading,
cleaning and the folds in `prepare`; the fold models and stage 2's training in `stages`; stage 1's submission,
its flip TTA and the crash fallback in `stage1_submission`; stage 2's phase in `stage2_phase`; the post-processing
choice in `choice`; the tuning/reporting split in `holdout`; the input calibration in `calibration`; the time
arithmetic in `budget` and `plan`; test-set prediction in `testset`; the metrics report in `report`; the run
folder's files (and nothing else) in `outputs`; what every stage shares in `training.context.StageContext`.
"""

from __future__ import annotations

import functools
import traceback
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from marsseg.config import Config, save_config
from marsseg.files import atomic_write_json
from marsseg.pipeline import outputs, prepare, report, stage1_submission, stage2_phase
from marsseg.pipeline.budget import Budget, safety_seconds
from marsseg.pipeline.calibration import InputGap, fit_temperature
from marsseg.pipeline.canary import canary_metrics, preflight, stage1_timings
from marsseg.pipeline.figures import plot_curves, plot_samples
from marsseg.pipeline.plan import Stage1Plan
from marsseg.pipeline.prepare import Loaded, Split
from marsseg.pipeline.stage2_phase import Stage2Outcome
from marsseg.pipeline.stages import Stage1Outcome, check_out_of_fold, member_probs, stage1_folds
from marsseg.stamps import git_commit
from marsseg.training.context import StageContext


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
    run = Run(
        cfg,
        data_path,
        out_dir,
        context=StageContext.for_budget(budget, log, verbose),
        submissions_dir=submissions_dir,
        started_at=started_at,
        full_cfg=full_cfg if full_cfg.canary.enabled else None,
    )
    run.metrics["runtime"] = facts
    return run.execute()


class Run:
    """One run's state; `execute` is the sequence of phases. Every attribute is set here: a phase's results are
    None until it runs. `context` is what every stage shares (`StageContext.for_budget`: log, verbosity, the
    budget and its clock)."""

    def __init__(
        self,
        cfg: Config,
        data_path,
        out_dir,
        *,
        context: StageContext,
        submissions_dir=None,
        started_at: datetime | None = None,
        full_cfg: Config | None = None,
    ):
        self.cfg, self.data_path, self.out_dir, self.context = cfg, Path(data_path), Path(out_dir), context
        self.submissions_dir = submissions_dir  # where the submission is copied (None: no copy)
        self.started_at = started_at or datetime.now(timezone.utc)  # names the copy
        self.full_cfg = full_cfg  # a canary's full configuration (`canary`); None for any other run
        self.metrics: dict = {"preset": cfg.preset, "budget_seconds": cfg.budget_seconds, "notes": []}
        self.safety = safety_seconds(cfg.budget_seconds)
        self.tta_on = cfg.post.tta != "off"
        self.measured: dict = {}  # the speeds and sizes a canary projects the full run from (`canary`)
        # load_and_clean, split_data
        self.loaded: Loaded | None = None
        self.split: Split | None = None
        # run_stage1: the fold models, then their hold-out validation and post-processing choice
        self.plan: Stage1Plan | None = None  # when stage-1 training ends
        self.stage1: Stage1Outcome | None = None
        self.temperature: float | None = None  # of stage 2's input probabilities (`calibration`)
        self.stage1_holdout_probs: tuple | None = None  # (plain, flip-TTA'd or None) on the hold-out
        self.stage1_infer_rate: float | None = None  # images/s per model pass
        self.stage1_choice: dict | None = None  # the post-processing the tuning part chose (`holdout.choose`)
        # stage1_submission
        self.stage1_test_probs: np.ndarray | None = None  # plain test probabilities, until the flipped pass
        self.stage1_test_tta: np.ndarray | None = None  # flip-TTA'd test probabilities, once the flipped pass ran
        self.stage1_tta_pending = False  # the stage-1 submission was written without the TTA the tuning part chose
        # How many times its hold-out-rate estimate stage 1's labelled test pass took (`budget.test_slowdown`);
        # every later test-time estimate is scaled by it (`test_rate`)
        self.test_slowdown = 1.0
        # stage2_phase
        self.stage2: Stage2Outcome | None = None
        # the submission that stands: its stage (1 or 2) and post-processing choice
        self.final_stage: int | None = None
        self.final_choice: dict | None = None

    @property
    def budget(self) -> Budget:
        return self.context.budget

    @property
    def log(self):
        return self.context.log

    def test_rate(self, rate: float | None = None) -> float:
        """A hold-out-measured prediction rate (stage 1's per model by default) as the test set will see it."""
        return (self.stage1_infer_rate if rate is None else rate) / self.test_slowdown

    def note(self, message: str) -> None:
        self.metrics["notes"].append(message)
        self.budget.note(message)

    # ------------------------------------------------------------------------------------------- phases
    def execute(self) -> dict:
        self.load_and_clean()
        self.split_data()
        try:
            self.run_stage1()
            stage1_submission.write_stage1_submission(self)
        except Exception as exc:  # noqa: BLE001 - any crash here still leaves a validated submission
            stage1_submission.stage1_crashed(self, exc)
        self.metrics["stage1_status"] = "ok"
        self.save_models({outputs.stage1_model_name(f.fold): f.result.model for f in self.stage1.folds}, "stage 1")
        if self.cfg.two_stage:
            stage2_phase.try_stage2(self)
            if self.stage2 is not None:
                self.save_models({outputs.STAGE2_MODEL: self.stage2.model}, "stage 2")
        else:
            self.metrics["stage2_status"] = "off (two_stage=false)"
        if self.final_stage == 1 and self.stage1_tta_pending:
            try:
                stage1_submission.add_stage1_tta(self)
            except Exception as exc:  # noqa: BLE001 - the written no-TTA submission stands; report it as such
                self.log("".join(traceback.format_exception(exc)).rstrip())
                stage1_submission.report_stage1_without_tta(
                    self, f"stage-1 flip TTA failed ({type(exc).__name__}: {exc})"
                )
        self.finish()
        return self.metrics

    def load_and_clean(self) -> None:
        self.loaded = prepare.load_and_clean(self.cfg, self.data_path, self.budget)
        self.metrics["data"] = self.loaded.counts

    def split_data(self) -> None:
        split = self.split = prepare.split_data(
            self.cfg, self.loaded.images, self.loaded.masks, self.budget, self.loaded.source
        )
        self.metrics["holdout"] = split.holdout.counts()
        # Which training images the hold-out is, so other runs can be checked against it (`marsseg ensemble`).
        self.metrics["holdout_identity"] = prepare.holdout_identity(
            self.cfg, split, self.metrics["data"]["train_sha256"]
        )
        self.metrics["data"].update(split.counts)

    def run_stage1(self) -> None:
        """The fold models, their hold-out probabilities and speed, the input temperature, the post-processing
        choice and the stage-1 scores."""
        from marsseg.training.feed import network_input
        from marsseg.training.runtime import peak_gpu_bytes, reset_peak_gpu_memory

        cfg, split, holdout, n_test = self.cfg, self.split, self.split.holdout, len(self.loaded.test_images)
        reset_peak_gpu_memory()
        self.plan = Stage1Plan.for_run(cfg, self.budget, self.safety, split.fold_of, n_test, len(holdout.images))
        stage1 = self.stage1 = stage1_folds(
            split.dev_images,
            split.dev_masks,
            split.fold_of,
            cfg,
            self.context,
            stage_end=self.plan.initial_end(),
            class_weights=split.class_weights["stage1"],
            replan_end=self.plan.replan_end,
        )
        check_out_of_fold(stage1)
        self.metrics["plan"] = self.plan.summary()
        self.metrics["notes"].extend(stage1.notes)
        rows = np.flatnonzero(stage1.covered)
        # Fitted on the out-of-fold rows alone, checked on the tuning part (see `calibration` for why this scheme).
        self.temperature = fit_temperature(stage1.oof[rows], split.dev_masks[rows]) if cfg.two_stage else 1.0
        self.budget.phase("stage1 validation")
        passes = 2 if self.tta_on else 1
        predicted = sum(len(f.val_index) for f in stage1.folds) * passes
        seconds = sum(f.predict_seconds for f in stage1.folds)
        x_val = network_input(holdout.images)
        gap = InputGap(holdout.masks, holdout.tune, holdout.report, self.temperature)
        started = self.budget.clock()
        probs = self.stage1_holdout_probs = member_probs(
            stage1.models, x_val, self.tta_on, each=gap.add if cfg.two_stage else None
        )
        # Per model pass. The out-of-fold passes also traced each model's predict function; this one did not.
        self.stage1_infer_rate = max(
            predicted / max(seconds, 1e-6),
            len(x_val) * len(stage1.models) * passes / max(self.budget.clock() - started, 1e-6),
        )
        self.metrics["stage1"] = report.stage1_metrics(stage1, self.stage1_infer_rate)
        self.metrics["stage1"]["peak_gpu_bytes"] = peak_gpu_bytes()
        self.measured.update(
            stage1=stage1_timings(stage1.folds),
            infer1=self.stage1_infer_rate,
            n_test=n_test,
            n_val=len(holdout.images),
            n_dev=len(split.dev_images),
        )
        if cfg.two_stage:
            self.temperature, self.metrics["stage2_input"] = gap.finish(probs[1] if self.tta_on else probs[0])
        self.stage1_choice = self.choose_post("stage1", probs)
        self.metrics["val_miou_stage1"], self.metrics["val_iou_stage1"] = holdout.bare(probs)
        plot_curves(
            {f"fold {f.fold + 1}": f.result.history for f in stage1.folds},
            self.out_dir / "curves_stage1.png",
            "stage 1",
        )

    def choose_post(self, stage: str, probs: tuple) -> dict:
        self.budget.phase(f"{stage} post-processing choice")
        return self.split.holdout.choose(self.cfg.post, probs, seed=self.cfg.seed)

    # ------------------------------------------------------------------------------------------- outputs
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

    def finish(self) -> None:
        """Score the final choice on the reporting part, draw the samples, copy the submission, write metrics.json."""
        self.budget.phase("report")
        holdout, post, stage2 = self.split.holdout, self.cfg.post, self.stage2
        choice2 = None if stage2 is None else stage2.choice
        probs2 = None if stage2 is None else stage2.holdout_probs
        stages = {1: (self.stage1_choice, self.stage1_holdout_probs), 2: (choice2, probs2)}
        probs = stages[self.final_stage][1]
        final = holdout.reported(self.final_choice, probs, post, seed=self.cfg.seed)
        columns = {f"stage {s}": holdout.labels(c, p, post) for s, (c, p) in stages.items() if c is not None}
        try:
            report_part = holdout.report
            plot_samples(holdout.images[report_part], holdout.masks[report_part], columns, self.out_dir / "samples.png")
        except Exception as exc:  # noqa: BLE001 - a figure is not worth losing the run's record
            self.note(f"sample figure not written: {exc}")
        self.metrics.update(
            report.final_metrics(self.metrics, self.final_stage, self.final_choice, self.stage1_choice, choice2, final)
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
