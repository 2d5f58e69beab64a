"""Stage 1 over K folds with out-of-fold probabilities, and stage 2 trained on the inputs built from them.

Every development image is validated by exactly one fold model; its stage-2 input channels are that
model's probabilities, so stage 2 never learns from predictions on images stage 1 memorised. At test time
the stage-2 input is the mean of the fold models' probabilities. Unless post.tta is off, every stage-2 input is
flip-TTA'd (the mean of p(x) and flip(p(flip(x)))): out of fold, on the hold-out and on the test set alike.

Flip TTA over {identity, horizontal flip} is closed under the flip, so the TTA'd probabilities of a flipped image
are the flipped TTA'd probabilities: tta(flip x) = (p(flip x) + flip p(x)) / 2 = flip tta(x). Stage 2's own flip
TTA (and its training's horizontal flips) see stage 1's prediction of the flipped image by flipping every input
channel, with no second stage-1 pass.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field, replace

import numpy as np

from marsseg.config import Config, model_variants
from marsseg.pipeline.calibration import temper
from marsseg.pipeline.focus import focus_weights
from marsseg.pipeline.postprocess import predict_tta
from marsseg.prep.folds import holdout_split
from marsseg.training.context import Deadline, StageContext, StageData


@dataclass
class FoldRun:
    fold: int
    train_index: np.ndarray  # rows of the development set this fold model trained on
    val_index: np.ndarray  # rows it validated on and predicted out of fold
    result: object  # train.StageResult (or a stand-in with .model in tests)
    predict_seconds: float = 0.0
    variant: int = 0  # which of stage1.model_cycle's networks it trained (0 without a cycle)


@dataclass
class Stage1Outcome:
    folds: list[FoldRun]
    oof: np.ndarray  # (n_dev, H, W, K) float32 out-of-fold probabilities; zeros where no fold model ran
    oof_model: np.ndarray  # (n_dev,) index into `folds` of the model that predicted each row; -1 = none
    planned_folds: int
    notes: list[str] = field(default_factory=list)
    variants: list[str] = field(default_factory=lambda: [""])  # stage1.model_cycle's variants; "": stage1.model

    @property
    def covered(self) -> np.ndarray:
        return self.oof_model >= 0

    @property
    def models(self) -> list:
        return [f.result.model for f in self.folds]


def stage1_folds(
    images: np.ndarray,
    masks: np.ndarray,
    fold_of: np.ndarray,
    cfg: Config,
    context: StageContext,
    *,
    stage_end: float,
    class_weights=None,
    replan_end=None,
) -> Stage1Outcome:
    """Train one stage-1 model per fold (fold f trains on every row with fold_of != f), or for the first
    `data.fold_models` folds only, and predict its validation rows (with flip TTA unless post.tta is off). Fold f
    must end, its prediction included, by its share of the time up to `stage_end`; a fold that could not finish even
    one epoch in the time left is not started (its rows stay uncovered). Fold f trains variant f mod n of
    `stage1.model_cycle` (`config.model_variants`; `stage1.model` without a cycle). Folds of one setting share one
    compiled network (`context.models`, a `training.reuse.ModelCache`; a new one where None), re-initialised at each
    fold's seed: each fold model is a FoldModel holding its own weights. `replan_end(images/s, epoch training s,
    steady)`: a new `stage_end` from the speeds each validation pass measures (`plan.Stage1Plan.replan`); the
    folds' deadlines follow it. The context's budget (where set) gets a phase line per fold; its fit and predict
    seams train and predict."""
    from marsseg.training.feed import network_input
    from marsseg.training.fit import fit_stage, predict_probs
    from marsseg.training.reuse import ModelCache

    fit = context.fit or fit_stage
    predict = context.predict or predict_probs
    if context.models is None:
        context = replace(context, models=ModelCache())
    budget, clock, log = context.budget, context.clock, context.log
    tta = cfg.post.tta != "off"
    k = int(fold_of.max()) + 1
    trained = min(k, cfg.data.fold_models or k)  # the folds that get a model (data.fold_models; 0: all)
    variants = model_variants(cfg.stage1)
    h, w = images.shape[1:]
    oof = np.zeros((len(images), h, w, context.num_classes), np.float32)
    oof_model = np.full(len(images), -1, np.int64)
    runs: list[FoldRun] = []
    notes: list[str] = []
    started = clock()
    minimum = 0.0  # seconds the last fold needed for one epoch and its predictions
    end = [stage_end]  # re-planned as speeds are measured

    def fold_end(f: int) -> float:
        return started + (f + 1) * (end[0] - started) / trained

    def replan(f: int, rate: float, train_seconds, steady: bool) -> float:
        end[0] = replan_end(rate, train_seconds, steady)
        return fold_end(f)

    for f in range(trained):
        now, stage_end = clock(), end[0]
        fold_deadline = fold_end(f)
        if runs and now + minimum > stage_end:
            notes.append(f"stage 1: {f} of {trained} fold models trained; the budget leaves no time for fold {f + 1}")
            log(f"[marsseg] {notes[-1]}")
            break
        train_index, val_index = np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)
        if budget is not None:
            budget.phase(
                "stage1",
                fold=f + 1,
                note=f"{len(train_index)} train / {len(val_index)} out-of-fold images, "
                f"until {max(0.0, fold_deadline - now):.0f}s from now",
            )
        variant = f % len(variants)
        result = fit(
            replace(cfg.stage1, model=variants[variant]),
            StageData(images[train_index], masks[train_index], network_input(images[val_index]), masks[val_index]),
            augment_cfg=cfg.augment,
            seed=cfg.seed + f,
            name=f"stage1_fold{f + 1}",
            class_weights=class_weights,
            deadline=Deadline(
                fold_deadline,
                passes_after=2 if tta else 1,  # the out-of-fold prediction below
                replan=None if replan_end is None else functools.partial(replan, f),
            ),
            context=context,
        )
        predicted_at = clock()
        x = network_input(images[val_index])
        oof[val_index] = predict_tta(lambda b, m=result.model: predict(m, b), x) if tta else predict(result.model, x)
        oof_model[val_index] = len(runs)
        predict_seconds = clock() - predicted_at
        runs.append(FoldRun(f, train_index, val_index, result, predict_seconds, variant))
        extra = getattr(result, "extra", {})
        epochs = extra.get("full_epoch_seconds") or extra.get("epoch_seconds") or [result.seconds]
        minimum = max(epochs) + predict_seconds
    cycle = cfg.stage1.model_cycle
    texts = [" ".join(t.split()) for t in cycle.split("|")] if cycle.strip() else [""]
    return Stage1Outcome(runs, oof, oof_model, trained, notes, texts)


def check_out_of_fold(outcome: Stage1Outcome) -> None:
    """Raise if any covered row's probabilities came from a model that trained on it (a wiring bug)."""
    for i, run in enumerate(outcome.folds):
        rows = np.flatnonzero(outcome.oof_model == i)
        if np.isin(rows, run.train_index).any() or not np.isin(rows, run.val_index).all():
            bad = rows[np.isin(rows, run.train_index) | ~np.isin(rows, run.val_index)][0]
            raise AssertionError(f"row {bad}: out-of-fold probabilities from fold model {i + 1}, which trained on it")


@dataclass
class Stage2Data:
    """What stage 2 learns from: the development rows (`groups`: an image and its big-rock copies share one) with
    stage 1's out-of-fold probabilities (`stage1.oof`, tempered by `temperature`) as extra input channels, and
    `pseudo`: (images, labels, stage-1 probabilities) of pseudo-labelled test images (`selftrain`), which join the
    training rows only."""

    images: np.ndarray
    masks: np.ndarray
    groups: np.ndarray
    stage1: Stage1Outcome
    temperature: float = 1.0
    pseudo: tuple | None = None


def stage2_fit(
    data: Stage2Data,
    cfg: Config,
    context: StageContext,
    *,
    seconds: float,
    class_weights=None,
    reserve=None,
):
    """Train stage 2 on the development rows stage 1 predicted out of fold (image + those probabilities), for at
    most `seconds` from now; early stopping on a split of those rows that keeps each group on one side. With
    `cfg.stage2_focus` on, the training rows where stage 1 confuses big rock are sampled more often (`focus`).
    `reserve(images/s)`: the seconds to leave at the budget's end once stage 2's own inference speed is measured;
    training may then run later (or stop sooner) than `seconds`. `context.budget` (required) gets the phase line
    and the deadlines; `context.fit` trains. Returns the `fit.StageResult`."""
    from marsseg.training.feed import network_input
    from marsseg.training.fit import fit_stage

    fit = context.fit or fit_stage
    budget, images, masks, oof, temperature, pseudo = (
        context.budget,
        data.images,
        data.masks,
        data.stage1.oof,
        data.temperature,
        data.pseudo,
    )
    rows = np.flatnonzero(data.stage1.covered)
    deadline = budget.clock() + seconds
    train_rows, stop_rows = holdout_split(masks[rows], cfg.data.val_fraction, cfg.seed + 100, groups=data.groups[rows])
    train_rows, stop_rows = rows[train_rows], rows[stop_rows]
    train_images, train_masks, train_extras = (
        images[train_rows],
        masks[train_rows],
        temper(oof[train_rows], temperature),
    )
    weights = focus_weights(train_masks, oof[train_rows], cfg.stage2_focus)
    added = ""
    if pseudo is not None and len(pseudo[0]):
        train_images = np.concatenate([train_images, pseudo[0]])
        train_masks = np.concatenate([train_masks, pseudo[1]])
        train_extras = np.concatenate([train_extras, temper(pseudo[2], temperature)])
        weights = np.concatenate([weights, np.ones(len(pseudo[0]))])  # no truth to find stage 1's confusions in
        added = f" + {len(pseudo[0])} pseudo-labelled test images"
    focus = cfg.stage2_focus
    focused = f"; {np.count_nonzero(weights > 1)} where stage 1 confuses big rock sampled x{focus.oversample:g}"
    budget.phase(
        "stage2",
        note=f"{len(train_rows)} train{added} / {len(stop_rows)} early-stopping images (out-of-fold inputs), "
        f"{seconds:.0f}s{focused if focus.enabled else ''}",
    )
    stop_x = network_input(images[stop_rows], temper(oof[stop_rows], temperature))
    result = fit(
        cfg.stage2,
        StageData(
            train_images, train_masks, stop_x, masks[stop_rows], train_extras, weights if focus.enabled else None
        ),
        augment_cfg=cfg.augment,
        seed=cfg.seed + 1000,
        name="stage2",
        class_weights=class_weights,
        deadline=Deadline(
            deadline,
            replan=None
            if reserve is None
            else lambda rate, _train, steady: budget.deadline(reserve(rate)) if steady else None,
        ),
        context=context,
    )
    if result.extra.get("baseline_val_miou") is not None:
        kept = f"epoch {result.best_epoch}" if result.best_epoch else "the untrained head (stage 1 unchanged)"
        budget.note(
            f"stage 2 early-stopping mIoU {result.extra['baseline_val_miou']:.4f} before training, "
            f"{result.best_val_miou:.4f} kept ({kept})"
        )
    return result


def ensemble_probs(models: list, x: np.ndarray, predict=None) -> np.ndarray:
    """Mean main-head probabilities of `models` on network input `x`."""
    from marsseg.training.fit import predict_probs

    predict = predict or predict_probs
    total = None
    for model in models:
        p = predict(model, x)
        total = p if total is None else total + p
    return total / len(models)


def member_probs(models: list, x: np.ndarray, tta: bool, each=None, predict=None):
    """The mean of `models`' probabilities on network input `x`, plain and (where `tta`, else None) with flip TTA.
    `each(p)` sees every model's own probabilities (flip-TTA'd where `tta`): what stage 2 trains on out of fold."""
    from marsseg.training.fit import predict_probs

    predict = predict or predict_probs
    plain = tta_sum = None
    for model in models:
        p = predict(model, x)
        q = predict_tta(lambda b, m=model: predict(m, b), x, p) if tta else p
        plain = p.copy() if plain is None else plain + p
        if tta:
            tta_sum = q if tta_sum is None else tta_sum + q
        if each is not None:
            each(q)
    return plain / len(models), None if tta_sum is None else tta_sum / len(models)


def stage2_probs(model, x: np.ndarray, tta: bool, clock=time.monotonic, predict=None):
    """Stage 2's probabilities on network input `x` (image + stage 1's flip-TTA'd probabilities): plain, flip-TTA'd
    (None unless `tta`), and the images per second of its fastest pass. The flipped view's stage-1 channels are the
    flipped TTA'd ones: stage 1's TTA'd prediction of the flipped image (see above)."""
    from marsseg.training.fit import predict_probs

    predict = predict or predict_probs
    passes = []

    def timed(batch):
        started = clock()
        probs = predict(model, batch)
        passes.append(len(batch) / max(clock() - started, 1e-6))
        return probs

    plain = timed(x)
    # The first pass also traces the predict function (measured: a test-time estimate of 57 s for 26 s of
    # prediction); a later pass, the flipped one, is the better estimate.
    return plain, predict_tta(timed, x, plain) if tta else None, max(passes)
