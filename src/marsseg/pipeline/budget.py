"""One wall-clock budget for a whole run, and the one-line phase log readable in a Kaggle kernel log.

budget = Budget(cfg.budget_seconds, log)
budget.phase("stage1", fold=2, note="12 epochs")   # [marsseg] 00:01:23 stage1 fold 2 | 12 epochs | left 00:06:37
budget.remaining()                                    # seconds left

The plain functions below are the run's time arithmetic: what test prediction will take, what stage 2 must leave
for it, and the margin kept back for what no estimate covers.
"""

from __future__ import annotations

import time

RESIDUAL_MIN_EPOCH = 0.4  # of an epoch: the least a residual stage 2 is started with
# Of the budget, kept back for what no estimate covers (writing, plots, jitter). 0.04 and a 1.3x prediction slack
# ended a measured 900 s run at 717 s; every estimate is now a speed this run measured (`plan`).
SAFETY_FRACTION = 0.02
PREDICTION_SLACK = 1.1  # measured prediction rates, allowed this much over
# Of the budget: how far a run's last prediction (stage 2's test pass, or stage 1's flip TTA where stage 1 stands)
# may end past it rather than discard trained work. Without it a machine that slowed in the last minute dropped a
# trained stage 2 at test time in 3 of 26 paired kit runs at 600 s (e.g. 73 s needed with the margin, 57 s left).
LAST_PREDICTION_OVERRUN = 0.04
# A labelled test pass (prediction, storing the probabilities, post-processing) measured against its estimate at
# the hold-out's network rate; later test-time estimates are scaled by the ratio, at most this much (a stall is
# not a rate). Measured: stage 1's plain test pass took 45 s where 22 s were estimated, and the trained stage 2
# that its reserve had been planned for was dropped at test time.
MAX_TEST_SLOWDOWN = 3.0


def hms(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Budget:
    """Seconds allowed for the run, counted from construction on a monotonic clock."""

    def __init__(self, seconds: float, log=print, clock=time.monotonic):
        self.seconds = float(seconds)
        self.log = log
        self.clock = clock
        self.started = clock()
        self.phase_seconds: dict[str, float] = {}
        self._current: tuple[str, float] | None = None

    def elapsed(self) -> float:
        return self.clock() - self.started

    def remaining(self) -> float:
        return self.seconds - self.elapsed()

    def deadline(self, reserve: float = 0.0) -> float:
        """The clock value by which work must end to leave `reserve` seconds."""
        return self.started + self.seconds - reserve

    def phase(self, name: str, fold: int | None = None, note: str = "") -> None:
        """Close the previous phase (its seconds go to `phase_seconds`) and log one line for this one."""
        self.end_phase()
        self._current = (name, self.clock())
        where = f"{name}" + (f" fold {fold}" if fold is not None else "")
        self.log(
            f"[marsseg] {hms(self.elapsed())} {where}"
            + (f" | {note}" if note else "")
            + f" | budget left {hms(self.remaining())}"
        )

    def end_phase(self) -> None:
        if self._current is not None:
            name, since = self._current
            self.phase_seconds[name] = self.phase_seconds.get(name, 0.0) + self.clock() - since
            self._current = None

    def note(self, message: str) -> None:
        """A log line in the same format, without starting a phase."""
        self.log(f"[marsseg] {hms(self.elapsed())} {message} | budget left {hms(self.remaining())}")


def safety_seconds(budget_seconds: float) -> float:
    """The margin a run keeps back: SAFETY_FRACTION of its budget, at least two seconds."""
    return max(2.0, SAFETY_FRACTION * budget_seconds)


def test_seconds(n_images: int, models: int, tta: bool, rate: float) -> float:
    """Seconds to predict `n_images` with `models` models (twice each with flip TTA) at `rate` images/s per pass."""
    return n_images * models * (2 if tta else 1) / max(rate, 1e-6)


def test_slowdown(estimate: float, seconds: float) -> float:
    """How many times its network-rate `estimate` a labelled test pass took (`seconds`), between 1 and
    MAX_TEST_SLOWDOWN: the factor for the run's later test-time estimates."""
    return min(MAX_TEST_SLOWDOWN, max(1.0, seconds / max(estimate, 1e-6)))


def needed_seconds(estimate: float, safety: float) -> float:
    """What a last prediction of about `estimate` seconds needs left: PREDICTION_SLACK over, and a quarter of the
    margin kept back for what follows it (the CSV and the report, about a second per 5000 images)."""
    return estimate * PREDICTION_SLACK + safety / 4


def fits(estimate: float, remaining: float, safety: float, overrun: float = 0.0) -> bool:
    """Whether a last prediction of about `estimate` seconds fits in `remaining` plus `overrun` seconds past the
    budget (`needed_seconds`). (A 1.2 here dropped a trained stage 2 at test time with its 46 s of prediction
    fitting in the 55 s left.)"""
    return needed_seconds(estimate, safety) <= remaining + overrun


def last_prediction(estimate: float, budget: Budget, safety: float) -> tuple[bool, str]:
    """(whether a run's last prediction of about `estimate` seconds runs, what to say): it runs if it ends within
    LAST_PREDICTION_OVERRUN of the budget past it; the text says how far past, or why it cannot run."""
    needed, remaining = needed_seconds(estimate, safety), budget.remaining()
    overrun = LAST_PREDICTION_OVERRUN * budget.seconds
    if not fits(estimate, remaining, safety, overrun):
        return False, (
            f"needs about {needed:.0f}s with its margin ({estimate:.0f}s of work), {remaining:.0f}s left and "
            f"{overrun:.0f}s allowed past the budget"
        )
    if needed <= remaining:
        return True, ""
    return True, (
        f"ends about {needed - remaining:.0f}s past the budget (up to {LAST_PREDICTION_OVERRUN:.0%}, {overrun:.0f}s, "
        "is allowed rather than discard trained work)"
    )


def stage2_epoch_seconds(first_epoch: float, fold_train: int, rows: int) -> float:
    """One stage-2 epoch over `rows` images, from the slowest stage-1 fold's first epoch over `fold_train`."""
    return first_epoch * rows / max(fold_train, 1)


def stage2_reserve(
    n_test: int,
    n_val: int,
    tta_possible: bool,
    rate: float,
    safety: float,
    stage1_models: int = 0,
    stage2_rate: float | None = None,
    choice_seconds: float = 0.0,
    own_tta: bool = False,
) -> float:
    """Seconds stage-2 training leaves for its test prediction (PREDICTION_SLACK over), its hold-out passes and the
    margin. Stage-2 inference runs at `stage2_rate` images/s once measured (its validation passes), else at about
    stage 1's per-model `rate` (a stage 2 no larger than stage 1 is at least as fast). With TTA possible its test
    input is stage 1's flip-TTA'd probabilities: the `stage1_models` flipped passes (at `rate`) come first.

    Stage 2's own flip TTA (a second pass) is reserved only with `own_tta`: the plan reserves the prediction
    without it, which is what its test pass falls back to where the TTA'd one would not end within the budget
    (`stage2_phase.prediction_that_fits`). Reserving the TTA (worth +0.0001 to +0.0007 on the tuning part in the
    paired runs) planned stage 2 out in runs that could have trained it and left 60-80 s of 600 unused."""
    rate2 = stage2_rate or rate
    flipped = test_seconds(n_test, stage1_models, False, rate) if tta_possible else 0.0
    passes = (test_seconds(n_test, 1, tta_possible and own_tta, rate2) + flipped) * PREDICTION_SLACK
    return passes + n_val * 2 / max(rate2, 1e-6) + choice_seconds + safety


def stage2_needed(epoch_seconds: float, residual: bool) -> float:
    """The least training time worth starting stage 2 for. A residual stage 2 is scored before training and kept
    only where it beats that, so even part of an epoch (stopped mid-way by the deadline) can only help; one from
    scratch needs a whole epoch."""
    return epoch_seconds * (RESIDUAL_MIN_EPOCH if residual else 1.0)
