"""When stage-1 training ends, planned from speeds this run measures and re-planned as they come in.

Fixed multiples of a guess leave minutes unused on a slow machine and skip stage 2 there (issue 27: a 900 s run
ended at 717 s, stage 2 skipped with "-101 s left after reserving 289 s", the test prediction then took 89 s). So:

    plan = Stage1Plan.for_run(cfg, budget, safety, n_test=..., n_val=..., fold_train=..., stage2_rows=..., models=1)
    stage_end = plan.initial_end()                  # before anything is measured: the share, as before
    stage_end = plan.replan(rate, epoch_train_s)    # each stage-1 validation pass: its images/s, its epoch's training

Everything after stage-1 training is priced at the measured prediction rate: the hold-out and test passes of stage
1, stage 2's reserve (`budget.stage2_reserve`) and the least stage-2 training worth starting
(`budget.stage2_needed`, from the stage-1 epoch scaled to stage 2's rows). Stage 2 then gets `1 - stage1_share`
of the training time, and at least that least amount; it is planned out only when it cannot have that while
stage 1 keeps as much, and then stage 1 takes the whole budget (its own flip-TTA pass kept back) and the log says
so with the figures. `fold_models` models each run once over the test set and the hold-out (twice with TTA).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from marsseg.pipeline.budget import stage2_epoch_seconds, stage2_needed, stage2_reserve, test_seconds


@dataclass
class Stage1Plan:
    budget: object  # budget.Budget
    safety: float
    share: float  # cfg.stage1_share (0.8 without stage 2, as before)
    two_stage: bool
    tta: bool
    residual: bool  # stage 2 is residual: part of an epoch can help (`stage2_needed`)
    n_test: int
    n_val: int
    fold_train: int  # training rows of a fold model
    stage2_rows: int  # the out-of-fold rows stage 2 learns from
    models: int  # stage-1 models that will predict the test set
    speedup2: float = 1.0  # how many times faster stage 2 runs than stage 1 (`relative_speed`)
    stage2_planned: bool = True
    measured: float | None = None  # the rate the last validation pass measured
    started: float | None = None  # when stage 1 started (`initial_end`)
    epoch: float = 0.0  # the last measured training part of a stage-1 epoch
    figures: dict = field(default_factory=dict)  # the last plan's seconds, for metrics.json and the log

    @classmethod
    def for_run(cls, cfg, budget, safety, fold_of: np.ndarray, n_test: int, n_val: int) -> Stage1Plan:
        """The plan of a run whose development rows fall in folds `fold_of`, of which the first
        `data.fold_models` (0: all) train a model."""
        k = int(fold_of.max()) + 1
        trained = min(k, cfg.data.fold_models or k)
        return cls(
            budget,
            safety,
            cfg.stage1_share if cfg.two_stage else 0.8,
            cfg.two_stage,
            cfg.post.tta != "off",
            cfg.stage2.model.residual,
            n_test,
            n_val,
            fold_train=max(int(np.sum(fold_of != f)) for f in range(trained)),
            stage2_rows=int(np.isin(fold_of, np.arange(trained)).sum()),
            models=trained,
            speedup2=relative_speed(cfg.stage1.model, cfg.stage2.model),
        )

    def initial_end(self) -> float:
        """Before any speed is measured: `share` of the time left after the safety margin. Stage 1 starts now."""
        self.started = self.budget.clock()
        return self.started + self.share * max(0.0, self.budget.remaining() - self.safety)

    def after_stage1(self, rate: float, alone: bool) -> float:
        """Seconds of stage 1's own passes after its training: the hold-out and the test set (with stage 2 to
        come, the test set's flipped pass is in stage 2's reserve: `stage2_reserve`)."""
        holdout = test_seconds(self.n_val, self.models, self.tta, rate)
        return holdout + test_seconds(self.n_test, self.models, self.tta and alone, rate)

    def stage2_costs(self, rate: float, epoch_train_seconds: float) -> tuple[float, float]:
        """(seconds stage 2 adds in predictions over stage 1 alone, the least training worth starting it for), at
        stage 1's prediction `rate` and epoch, stage 2 taken `speedup2` times faster."""
        rate2 = rate * self.speedup2
        reserve = stage2_reserve(self.n_test, self.n_val, self.tta, rate, 0.0, self.models, stage2_rate=rate2)
        extra = reserve + self.after_stage1(rate, alone=False) - self.after_stage1(rate, alone=True)
        epoch2 = stage2_epoch_seconds(epoch_train_seconds, self.fold_train, self.stage2_rows) / self.speedup2
        return extra, stage2_needed(epoch2, self.residual)

    def replan(self, rate: float, epoch_train_seconds: float | None) -> float:
        """The clock value by which stage-1 training must end, from a prediction `rate` (images/s per model pass)
        and the training part of a stage-1 epoch (None: not measured, and stage 2's least is 0).

        Stage 1 alone could train until its own passes must start; stage 2, its training and its extra
        predictions, takes `1 - share` of that, and at least its least useful training while stage 1 keeps half;
        otherwise it is planned out and stage 1 trains to the end."""
        now, remaining = self.budget.clock(), self.budget.remaining()
        alone_end = now + remaining - self.safety - self.after_stage1(rate, alone=True)
        if not self.two_stage:
            return alone_end
        alone = alone_end - (now if self.started is None else self.started)  # stage 1's time, were it alone
        self.epoch = epoch_train_seconds or self.epoch
        extra, least = self.stage2_costs(rate, self.epoch)
        train2 = max((1 - self.share) * alone - extra, least)
        planned = alone - extra - train2 >= 0.5 * alone
        self.figures = {
            "rate": round(rate, 1),
            "stage1_alone_s": round(alone, 1),
            "stage2_extra_s": round(extra, 1),
            "stage2_least_s": round(least, 1),
            "stage2_training_s": round(train2 if planned else 0.0, 1),
        }
        if planned != self.stage2_planned:
            self.stage2_planned = planned
            self.budget.note(self.describe())
        return alone_end - extra - train2 if planned else alone_end

    def describe(self) -> str:
        f = self.figures
        if not self.stage2_planned:
            return (
                f"plan: stage 2 cannot fit: its predictions ({f['stage2_extra_s']:.0f}s) and least useful training "
                f"({f['stage2_least_s']:.0f}s) would leave stage 1 under half of its {f['stage1_alone_s']:.0f}s "
                f"(measured {f['rate']:.0f} images/s): stage 1 takes the whole budget"
            )
        return (
            f"plan: stage 2 back in, {f['stage2_training_s']:.0f}s of training and {f['stage2_extra_s']:.0f}s "
            f"of predictions after stage 1 (measured {f['rate']:.0f} images/s)"
        )

    def replan_end(self, rate: float, epoch_train_seconds, steady: bool | None) -> float:
        """`stage1_folds`'s replan. A validation pass (steady or tracing: a slower one reserves more, never less)
        is a measured rate and stays the plan's until the next; a probe (`steady` None: a rate guessed from the
        first training batches, `callbacks.StageGuard.probe`) counts only while none is measured."""
        if steady is None and self.measured is not None:
            rate = self.measured
        elif steady is not None:
            self.measured = rate
        return self.replan(rate, epoch_train_seconds)

    def choice(self) -> float:
        """Seconds stage 2's post-processing choice on the hold-out will take: what stage 1's took (measured)."""
        return self.budget.phase_seconds.get("stage1 post-processing choice", 0.0)

    def summary(self) -> dict:
        """What metrics.json keeps of the plan: its last figures and whether stage 2 was planned."""
        return {**self.figures, "stage2_planned": self.stage2_planned}

    def stage2_time(self, stage1, rows: int, rate: float) -> tuple[float, str]:
        """After stage 1 (`stages.Stage1Outcome` stage1, `rows` out-of-fold rows, prediction at `rate`): the seconds
        stage 2 may train, and '' or why it is skipped (with the measured figures)."""
        fold_train = max(len(f.train_index) for f in stage1.folds)
        # The training part of the slowest fold's steady epochs (the first one traces the graph).
        epoch = max(_steady_epoch(f.result) for f in stage1.folds)
        epoch2 = stage2_epoch_seconds(epoch, fold_train, rows) / self.speedup2
        reserve = stage2_reserve(
            self.n_test, self.n_val, self.tta, rate, self.safety, len(stage1.folds), rate * self.speedup2, self.choice()
        )
        available = self.budget.remaining() - reserve
        needed = stage2_needed(epoch2, self.residual)
        if available >= needed:
            return available, ""
        return available, (
            f"skipped: {available:.0f}s left after reserving {reserve:.0f}s for prediction at a measured "
            f"{rate:.0f} images/s, stage 2 needs about {needed:.0f}s (one epoch: {epoch2:.0f}s)"
        )


def _steady_epoch(result) -> float:
    """Seconds of one full epoch of a fold's training, the tracing first epoch left out where later ones ran."""
    extra = getattr(result, "extra", {}) or {}
    epochs = extra.get("full_epoch_seconds") or extra.get("epoch_seconds") or [result.seconds]
    steady = epochs[1:] or epochs
    return float(np.median(steady))


MAX_SPEEDUP = 3.0  # stage 2's speed over stage 1's is estimated from shapes: capped, so the estimate stays cautious


def relative_speed(stage1_model, stage2_model) -> float:
    """How many times faster stage 2's network runs than stage 1's, from their convolution work: each U-Net level
    l costs about (H W / 4^l / stride^2) x (base 2^l)^2, the same at every level, so a network costs about
    (depth + 1) x base^2 / stride^2. At least 1, at most MAX_SPEEDUP; stage 2 measures its own speed once it runs."""

    def work(m) -> float:
        return (m.depth + 1) * m.base_filters**2 / m.input_stride**2

    return float(min(MAX_SPEEDUP, max(1.0, work(stage1_model) / work(stage2_model))))
