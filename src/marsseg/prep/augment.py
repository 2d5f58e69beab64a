"""The training batch sequence: big-rock oversampling, per-epoch order and the Keras sequence.

Every random choice derives from (seed, epoch, batch), so a run is repeatable with any number of worker
threads. The albumentations pipelines themselves live in `prep.transforms` (re-exported here).
`SegmentationSequence` (a `keras.utils.PyDataset`) is built on first use, so importing this module
does not import Keras. The offline big-rock copies made with these pipelines live in `prep.bigrock`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from marsseg.config.fields import rule_of
from marsseg.config.schema import AugmentConfig
from marsseg.data.synth import make_synthetic
from marsseg.errors import ConfigError
from marsseg.prep.copypaste import bigrock_donors, paste_batch
from marsseg.prep.transforms import STRENGTHS as STRENGTHS
from marsseg.prep.transforms import Augmenter as Augmenter
from marsseg.prep.transforms import albumentations_version as albumentations_version
from marsseg.prep.transforms import build_transforms as build_transforms

BIG_ROCK = 4


def batch_seed(seed: int, epoch: int, batch: int, stream: int = 0) -> int:
    """An independent seed per (stream, seed, epoch, batch); stream 0 trains, 1 makes offline copies, 2 pastes."""
    parts = [int(stream), int(seed) % 2**32, int(epoch) % 2**32, int(batch) % 2**32]
    return int(np.random.SeedSequence(parts).generate_state(1)[0])


# ------------------------------------------------------------------------- minority class
def has_class(masks: np.ndarray, label: int = BIG_ROCK) -> np.ndarray:
    return (masks == label).reshape(len(masks), -1).any(axis=1)


def sampling_weights(masks: np.ndarray, bigrock_oversample: float = 2.0) -> np.ndarray:
    """Per image: `bigrock_oversample` if it contains big rock, else 1."""
    if bigrock_oversample <= 0:
        raise ValueError(f"bigrock_oversample must be positive, got {bigrock_oversample}")
    return np.where(has_class(masks), float(bigrock_oversample), 1.0)


def epoch_order(weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices for one epoch: image i appears floor(w_i) times plus once more with chance frac(w_i),
    the extras drawn without replacement so the epoch length is fixed: sum(floor) + round(sum(frac))."""
    weights = np.asarray(weights, float)
    whole = np.floor(weights).astype(np.int64)
    frac = weights - whole
    order = np.repeat(np.arange(len(weights)), whole)
    n_extra = int(round(frac.sum()))
    if n_extra:
        extra = rng.choice(len(weights), size=n_extra, replace=False, p=frac / frac.sum())
        order = np.concatenate([order, extra])
    return order[rng.permutation(len(order))]


def epoch_length(weights: np.ndarray) -> int:
    weights = np.asarray(weights, float)
    whole = np.floor(weights)
    return int(whole.sum() + round((weights - whole).sum()))


# ------------------------------------------------------------------------- the batch sequence
@dataclass(frozen=True)
class BatchAugmentation:
    """What the sequence does to each batch: the albumentations pipeline (`strength`, `elastic`; "none" for
    validation) and the chance per image that a big-rock component of another image is pasted in."""

    strength: str = "medium"
    elastic: bool = False
    copy_paste_rate: float = 0.0


def _sequence_class():
    import keras

    class SegmentationSequence(keras.utils.PyDataset):
        """Batches (x float32 (B,H,W,1+E) in [0,1], y int32 (B,H,W)) for `model.fit`, any Keras 3 backend.

        images (N,H,W) uint8, masks (N,H,W), extras (N,H,W,E) float32 or None; `augmentation` a BatchAugmentation;
        `weights` oversample (e.g. `sampling_weights`); `shuffle` reshuffles every epoch; `workers` threads build
        batches, and `dataset_options` (use_multiprocessing, max_queue_size) go to Keras's PyDataset as they are.
        Deterministic per seed and epoch.
        """

        def __init__(
            self,
            images,
            masks,
            extras=None,
            batch_size=32,
            augmentation: BatchAugmentation | None = None,
            weights=None,
            shuffle=True,
            seed=0,
            workers=1,
            **dataset_options,
        ):
            super().__init__(workers=workers, **dataset_options)
            if len(images) != len(masks) or any(a is not None and len(a) != len(images) for a in (extras, weights)):
                raise ValueError("images, masks, extras and weights must have the same length")
            augmentation = augmentation or BatchAugmentation()
            self.images, self.masks, self.extras = images, masks, extras
            self.batch_size = int(batch_size)
            self.strength, self.elastic = augmentation.strength, augmentation.elastic
            self.weights = None if weights is None else np.asarray(weights, float)
            self.shuffle, self.seed = shuffle, int(seed)
            self._local = threading.local()
            self._orders, self._orders_lock = {}, threading.Lock()  # other epochs' orders (`batch_at`)
            build_transforms(self.strength, self.elastic)  # fail early on a bad strength
            # Stage 2's extra channels are stage-1 probabilities of the original image: a pasted rock would have
            # none, so copy-paste is for inputs without extras only.
            self.copy_paste_rate = float(augmentation.copy_paste_rate) if extras is None else 0.0
            self.donors = bigrock_donors(images, masks) if self.copy_paste_rate > 0 else []
            self.set_epoch(0)

        def set_epoch(self, epoch: int):
            self.epoch = int(epoch)
            self.order = self._cached_order(self.epoch)  # the order `batch_at` uses for this epoch, computed once

        def order_of(self, epoch: int) -> np.ndarray:
            """The image indices of `epoch`, in its order: a function of (seed, epoch) alone."""
            rng = np.random.default_rng([self.seed, int(epoch)])
            if self.weights is not None:
                return epoch_order(self.weights, rng) if self.shuffle else np.sort(epoch_order(self.weights, rng))
            return rng.permutation(len(self.images)) if self.shuffle else np.arange(len(self.images))

        def __len__(self):
            return int(np.ceil(len(self.order) / self.batch_size))

        def _augmenter(self) -> Augmenter:
            augmenter = getattr(self._local, "augmenter", None)
            if augmenter is None:
                augmenter = self._local.augmenter = Augmenter(self.strength, self.elastic)
            return augmenter

        def __getitem__(self, index):
            return self.batch_at(self.epoch, index)

        def batch_at(self, epoch: int, index: int):
            """Batch `index` of `epoch`, whichever epoch the sequence is at: a feed that runs ahead into the next
            epoch (`feed.training_data`) gets that epoch's batches. Safe from several threads."""
            if index < 0 or index >= len(self):
                raise IndexError(f"batch {index} out of range 0..{len(self) - 1}")
            order = self._cached_order(int(epoch))  # not self.order: `set_epoch` may be replacing it meanwhile
            idx = order[index * self.batch_size : (index + 1) * self.batch_size]
            images, masks = paste_batch(
                self.images[idx],
                self.masks[idx],
                self.donors,
                self.copy_paste_rate,
                np.random.default_rng(batch_seed(self.seed, epoch, index, stream=2)),
            )
            x, y = self._augmenter().batch(
                images,
                masks,
                None if self.extras is None else self.extras[idx],
                seed=batch_seed(self.seed, epoch, index),
            )
            return x, y.astype(np.int32)

        def _cached_order(self, epoch: int) -> np.ndarray:
            with self._orders_lock:
                order = self._orders.get(epoch)
                if order is None:
                    # A feed is at most an epoch or two ahead of the oldest batch still being built.
                    for old in sorted(self._orders)[: max(0, len(self._orders) - 3)]:
                        del self._orders[old]
                    order = self._orders[epoch] = self.order_of(epoch)
                return order

        def on_epoch_end(self):
            self.set_epoch(self.epoch + 1)

        def __getstate__(self):  # thread-locals and locks do not pickle (multiprocessing workers)
            state = self.__dict__.copy()
            for name in ("_local", "_orders_lock"):
                state.pop(name, None)
            return state

        def __setstate__(self, state):
            self.__dict__.update(state)
            self._local, self._orders_lock = threading.local(), threading.Lock()

    SegmentationSequence.__qualname__ = "SegmentationSequence"  # picklable by name (spawned workers)
    SegmentationSequence.__module__ = __name__
    return SegmentationSequence


_SEQUENCE = None


def __getattr__(name):
    global _SEQUENCE
    if name == "SegmentationSequence":
        if _SEQUENCE is None:
            _SEQUENCE = _sequence_class()
        return _SEQUENCE
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def sequence_from_config(
    images, masks, augment_cfg, batch_size: int, extras=None, seed: int = 0, train: bool = True, image_weights=None
):
    """A training sequence (cfg strength, big-rock oversampling, cfg.workers threads, shuffled) or, with
    train=False, a plain validation one (no augmentation, no oversampling, fixed order). `image_weights` (N,):
    per-image factors on the sampling weights (stage 2's focus on stage 1's big-rock confusions, `pipeline.focus`),
    rescaled so that an epoch draws as many images as without them."""
    cls = __getattr__("SegmentationSequence")
    rate = float(getattr(augment_cfg, "copy_paste_rate", 0.0)) if augment_cfg is not None else 0.0
    rule = rule_of(AugmentConfig, "copy_paste_rate")  # the schema's range; `validate` refuses it before any data
    if not rule.admits(rate):
        raise ConfigError(
            f"augment.copy_paste_rate {rate} is outside {rule.allowed()} (e.g. --set augment.copy_paste_rate=0.3)"
        )
    if image_weights is not None and len(image_weights) != len(images):
        raise ValueError(
            f"image_weights has {len(image_weights)} entries for {len(images)} images: not the same length"
        )
    if not train:
        plain = BatchAugmentation(strength="none")
        return cls(images, masks, extras, batch_size=batch_size, augmentation=plain, shuffle=False, seed=seed)
    weights = sampling_weights(masks, augment_cfg.bigrock_oversample)
    if image_weights is not None:
        # The factors reshape the draw, not the epoch: rescaled to the same total, an epoch keeps its length (a
        # stage with a deadline would otherwise fit fewer epochs, e.g. one three-times-longer epoch of stage 2).
        focused = weights * np.asarray(image_weights, float)
        weights = focused * (weights.sum() / focused.sum())
    return cls(
        images,
        masks,
        extras,
        batch_size=batch_size,
        augmentation=BatchAugmentation(augment_cfg.strength, augment_cfg.elastic, rate),
        weights=weights,
        shuffle=True,
        seed=seed,
        workers=max(1, int(augment_cfg.workers)),
    )


# ------------------------------------------------------------------------- throughput
def augmentation_throughput(
    n_batches: int = 30,
    strength: str = "medium",
    batch_size: int = 32,
    extra_channels: int = 0,
    elastic: bool = False,
    seed: int = 0,
    images=None,
    masks=None,
) -> float:
    """Augmented samples per second of the training sequence (one thread, batches built in order)."""
    if images is None or masks is None:
        synthetic = make_synthetic(n_train=max(256, batch_size * 4), n_test=1, seed=seed)
        images, masks = synthetic.images, synthetic.masks
    extras = None
    if extra_channels:
        rng = np.random.default_rng(seed)
        extras = rng.dirichlet(np.ones(extra_channels), size=images.shape[:3]).astype(np.float32)
    sequence = __getattr__("SegmentationSequence")(
        images,
        masks,
        extras,
        batch_size=batch_size,
        augmentation=BatchAugmentation(strength, elastic),
        weights=sampling_weights(masks),
        seed=seed,
        workers=1,
    )
    sequence[0]  # warm-up: builds the transforms
    started = time.perf_counter()
    samples = 0
    for b in range(n_batches):
        x, _ = sequence[b % len(sequence)]
        samples += len(x)
    return samples / (time.perf_counter() - started)
