"""The run's first two phases: load and clean the data, then the hold-out and the K folds of the rest.

    loaded = load_and_clean(cfg, data_path, budget)  # cleaned training images and masks, every test image
    split = split_data(cfg, loaded.images, loaded.masks, budget, loaded.source)  # hold-out, development rows, folds
    metrics["holdout_identity"] = holdout_identity(cfg, split, loaded.counts["train_sha256"])

The hold-out is never trained on or early-stopped on by either stage (`holdout` splits it once more into a
tuning and a reporting part). Each big-rock copy lands in its source image's fold. `holdout_identity` records
which training images the hold-out is, so runs can be compared on one (`marsseg ensemble` refuses runs whose
identities differ).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from marsseg.config import Config
from marsseg.data.load import load_dataset, train_sha256
from marsseg.pipeline.holdout import Holdout
from marsseg.prep.analysis import class_weights
from marsseg.prep.bigrock import bigrock_copies, with_copies
from marsseg.prep.clean import clean_dataset
from marsseg.prep.folds import fold_ids, holdout_split


@dataclass
class Loaded:
    """The data a run trains on and predicts: cleaned training images and masks, every test image."""

    images: np.ndarray  # cleaned training images
    masks: np.ndarray
    test_images: np.ndarray  # every test image, whatever data.max_test says
    counts: dict  # for metrics.json "data"
    source: np.ndarray  # each cleaned image's row in the data file's training set


@dataclass
class Split:
    """The hold-out (tuning and reporting parts) and the development rows in K folds."""

    holdout: Holdout
    dev_images: np.ndarray  # development images (the rest after the hold-out) and their big-rock copies
    dev_masks: np.ndarray
    dev_groups: np.ndarray  # an original's own index, a copy's source index
    fold_of: np.ndarray  # fold of each development row
    class_weights: dict  # stage name -> loss weights
    counts: dict  # for metrics.json "data"
    holdout_rows: np.ndarray  # each hold-out image's row in the data file's training set, in the hold-out's order


def load_and_clean(cfg: Config, data_path, budget) -> Loaded:
    """The data file's training images (the first `data.max_train`) cleaned, and every test image."""
    budget.phase("load", note=str(data_path))
    dataset = load_dataset(data_path)
    images, masks = dataset.images, dataset.masks
    if cfg.data.max_train:
        images, masks = images[: cfg.data.max_train], masks[: cfg.data.max_train]
    # Every test image is predicted whatever data.max_test says: Kaggle rejects a partial submission.
    test_images = dataset.test_images
    budget.phase("clean", note=f"{len(images)} training images")
    clean_images, clean_masks, cleaning = clean_dataset(images, masks, cfg.clean)
    counts = {
        "n_train": int(len(images)),
        "n_removed": int(len(cleaning.removed)),
        "n_clean": int(len(clean_images)),
        "n_test": int(len(test_images)),
        "train_sha256": train_sha256(dataset.images, dataset.masks),
    }
    budget.note(f"cleaning removed {len(cleaning.removed)} of {len(images)} training images")
    return Loaded(clean_images, clean_masks, test_images, counts, cleaning.kept)


def split_data(cfg: Config, images: np.ndarray, masks: np.ndarray, budget, source=None) -> Split:
    """The stratified hold-out, and K stratified folds of the rest with its big-rock copies. `source`: each row's
    index in the data file's training set (`load_and_clean`; None: the rows are the file's)."""
    budget.phase("folds")
    dev, val = holdout_split(masks, cfg.data.val_fraction, cfg.seed)
    hold = Holdout.split(images[val], masks[val], cfg.data.report_fraction, cfg.seed)
    dev_images, dev_masks = images[dev], masks[dev]
    copies = bigrock_copies(
        dev_images,
        dev_masks,
        cfg.augment.bigrock_offline_copies,
        seed=cfg.seed,
        strength=cfg.augment.strength if cfg.augment.strength != "none" else "medium",
    )
    # Each copy lands in its source image's fold, so no fold model sees a copy of an image it predicts.
    dev_images, dev_masks, dev_groups = with_copies(dev_images, dev_masks, copies)
    k = max(2, cfg.data.folds)  # stage 1 is a K-fold ensemble even when stage 2 is off
    fold_of = fold_ids(dev_masks, k, cfg.seed, groups=dev_groups)
    weights = {
        stage: class_weights(
            dev_masks,
            power=getattr(cfg, stage).loss.class_weight_power,
            max_ratio=getattr(cfg, stage).loss.max_weight_ratio or None,
        )
        for stage in ("stage1", "stage2")
    }
    counts = {"n_val": int(len(val)), "n_dev": int(len(dev)), "n_bigrock_copies": int(len(copies.images)), "folds": k}
    rows = val if source is None else np.asarray(source)[val]
    return Split(hold, dev_images, dev_masks, dev_groups, fold_of, weights, counts, rows)


def holdout_identity(cfg: Config, split: Split, data_sha256: str) -> dict:
    """What makes two runs' hold-outs the same images split the same way: the training set's fingerprint, the
    settings that pick and split the hold-out, and its rows of the file's training set in the hold-out's order with
    the positions among them that tune and that report (their order matters too: the bootstrap resamples by it)."""
    data = cfg.data
    return {
        "train_sha256": data_sha256,
        "settings": {
            "seed": cfg.seed,
            "val_fraction": data.val_fraction,
            "report_fraction": data.report_fraction,
            "max_train": data.max_train,
            "clean": asdict(cfg.clean),
        },
        "rows": [int(i) for i in split.holdout_rows],
        "tune": [int(i) for i in split.holdout.tune],
        "report": [int(i) for i in split.holdout.report],
    }
