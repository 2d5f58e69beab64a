"""What a training stage is given: the run's shared context, and per call its images and its deadline.

    context = StageContext(log=log, verbose=0, budget=budget, clock=budget.clock)   # once per run
    data = StageData(train_images, train_masks, network_input(val_images), val_masks)
    result = fit_stage(cfg.stage1, data, seed=42, deadline=Deadline(budget.deadline(300)), context=context)

`StageContext` carries what every stage of a run shares (where it logs, how loudly, its clock, the run's budget)
and the seams tests replace (the fit and predict functions); a call passes only what differs. The pipeline builds
it (`pipeline.run`); training reads only its log, verbosity, clock, compiled-network cache and class count.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # reuse imports Keras; this module stays light (the pipeline imports it at its top)
    from marsseg.training.reuse import ModelCache


@dataclass(frozen=True)
class StageContext:
    """What every stage of one run shares. `budget`: the run's `pipeline.budget.Budget` (phase lines, deadlines;
    None: no phase lines), whose clock is `clock`. `fit`, `predict`: the training and prediction functions (None:
    `fit.fit_stage` and `fit.predict_probs`, looked up at call time, so a test's monkeypatch of them holds).
    `models`: the `reuse.ModelCache` fold models share (None: each fit builds its own network)."""

    log: Callable[[str], None] = print
    verbose: int | str = 2
    clock: Callable[[], float] = time.monotonic
    budget: object | None = None  # pipeline.budget.Budget: training cannot import the pipeline
    models: ModelCache | None = None
    num_classes: int = 5
    fit: Callable | None = None
    predict: Callable | None = None

    @classmethod
    def for_budget(cls, budget, log=print, verbose: int | str = 2) -> StageContext:
        """The context of a run timed by `budget` (its clock is the run's clock)."""
        return cls(log=log, verbose=verbose, clock=budget.clock, budget=budget)


@dataclass(frozen=True)
class StageData:
    """One stage's images: uint8 training images and their masks, with optional float32 extra channels per
    training image (stage 2's probabilities) and optional per-image factors on their sampling weights (stage 2's
    focus); the float32 validation network input and its masks."""

    train_images: np.ndarray
    train_masks: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    train_extras: np.ndarray | None = None
    train_weights: np.ndarray | None = None


@dataclass(frozen=True)
class Deadline:
    """When a stage must end: `at` (a clock value; None: no deadline), with the time of `passes_after` more
    passes over the validation input (the caller's predictions after the fit) kept back, and `replan(images/s,
    epoch training s, steady)`: a new `at` from the network's measured speeds, or None (`callbacks.StageGuard`)."""

    at: float | None = None
    passes_after: int = 0
    replan: Callable | None = None
