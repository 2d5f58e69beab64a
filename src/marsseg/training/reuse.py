"""Fold models that share one built, compiled network, so its train, test and predict steps are traced once.

    models = ModelCache()                                   # one per run, passed to every stage-1 fold's fit
    result = fit_stage(..., seed=cfg.seed + f, context=StageContext(models=models))
    predict_probs(result.model, x)                          # a FoldModel: its weights go in first

Tracing is the cost: about 14 s per fit under TensorFlow on the 2-core CPU, about 165 s per model under JAX on an
H100 (BENCHMARKS.md). A fold that finds a network with its settings re-initialises it instead of building a new
one: weights and random-seed state from an uncompiled twin built at the fold's seed (building is not tracing),
the optimizer's variables (slots, iteration count, learning rate, loss scale) back to their values before the
first step, metrics reset. Each fold's trained weights stay in its `FoldModel`.

JAX compiles one program per input shape, TensorFlow traces with a free batch dimension; `FullBatches` and
`pad_rows` keep every step at a few fixed shapes, so a fold with other set sizes meets no new shape.
"""

from __future__ import annotations

import contextlib
import weakref

import keras
import numpy as np

# Which FoldModel's weights each shared network holds now (not an attribute: Keras would track it).
_ACTIVE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class FoldModel:
    """One fold's trained weights on a network other folds share; otherwise it reads as that Keras model."""

    def __init__(self, shared: keras.Model, name: str):
        self.shared, self.name = shared, name
        self.weights = shared.get_weights()
        _ACTIVE[shared] = self

    def activate(self) -> keras.Model:
        """The shared network holding this fold's weights."""
        if _ACTIVE.get(self.shared) is not self:
            self.shared.set_weights(self.weights)
            _ACTIVE[self.shared] = self
        return self.shared

    def __getattr__(self, attribute):  # input_shape, get_layer, output_names, ...: the fold's own network
        return getattr(self.activate(), attribute)


def keras_model(model) -> keras.Model:
    """The Keras model to predict with or save: a FoldModel's shared network with its weights in; else `model`."""
    return model.activate() if isinstance(model, FoldModel) else model


class ModelCache:
    """Compiled networks by setting, within one run; `reset` makes a reused one start as a fresh one would."""

    def __init__(self):
        self._entries: dict[str, tuple[keras.Model, str, list]] = {}
        self._replicas = None

    @contextlib.contextmanager
    def scope(self, open_scope):
        """`open_scope()` (`distribute.distribution_scope`) the first time; after that the same strategy again,
        as a network trains only under the strategy it was built under (one per run: the devices do not change)."""
        if self._replicas is None or self._replicas.kind == "single":
            with open_scope() as replicas:
                self._replicas = replicas
                yield replicas
            return
        with self._replicas.strategy.scope():  # a tf.distribute strategy or a keras Distribution
            yield self._replicas

    def get(self, key: str):
        """(model, monitored key) for `key`, or None."""
        entry = self._entries.get(key)
        return None if entry is None else entry[:2]

    def add(self, key: str, model: keras.Model, monitor: str) -> None:
        """Keep a freshly compiled `model`; its optimizer is built now so its starting state can be kept."""
        model.optimizer.build(model.trainable_variables)
        # Mostly zeros (Adam's slots): kept as None. The rest: iterations, learning rate, a loss scale.
        start = [None if not np.any(a) else a for a in (np.asarray(v.numpy()) for v in model.optimizer.variables)]
        self._entries[key] = (model, monitor, start)

    def reset(self, key: str, twin: keras.Model) -> None:
        """Re-initialise `key`'s network as `twin` (the same architecture, built at this fold's seed)."""
        model, _, start = self._entries[key]
        ours, theirs = model.variables, twin.variables  # weights and seed-generator states, in build order
        if len(ours) != len(theirs) or any(a.shape != b.shape for a, b in zip(ours, theirs)):
            raise AssertionError(f"{model.name}: the twin network does not match the shared one")
        for mine, fresh in zip(ours, theirs):
            mine.assign(fresh.numpy())
        for variable, value in zip(model.optimizer.variables, start):
            variable.assign(np.zeros(variable.shape, variable.dtype) if value is None else value)
        model.reset_metrics()
        _ACTIVE.pop(model, None)

    def __len__(self) -> int:
        return len(self._entries)


def setting_key(stage_cfg, channels: int, num_classes: int, class_weights, mixed: bool, replicas, jit) -> str:
    """What makes two fits' compiled networks interchangeable: architecture, inputs, classes, loss and class
    weights, optimizer, precision, replicas and compilation mode. The seed, data and deadline do not."""
    train = stage_cfg.train
    weights = None if class_weights is None else np.asarray(class_weights, float).round(12).tolist()
    optimizer = (train.optimizer, train.learning_rate, train.weight_decay, train.run_eagerly)
    parts = (stage_cfg.model, stage_cfg.loss, optimizer, channels, num_classes, weights, mixed, jit)
    return repr((*parts, replicas.kind, replicas.num_replicas, keras.backend.backend()))


class FullBatches:
    """A batch source without its last partial batch: every training step has one shape. The order reshuffles
    each epoch, so a different remainder of at most batch_size - 1 samples sits out each time. A source with
    fewer samples than one batch keeps its one batch."""

    def __init__(self, source):
        self.source = source
        self.batch_size = source.batch_size

    def __len__(self):
        return max(1, len(self.source.order) // self.batch_size)

    def __getitem__(self, index):
        return self.batch_at(self.source.epoch, index)

    def batch_at(self, epoch: int, index: int):
        """Batch `index` of `epoch` (`SegmentationSequence.batch_at`)."""
        if index >= len(self):
            raise IndexError(f"batch {index} out of range 0..{len(self) - 1}")
        return self.source.batch_at(epoch, index)

    def on_epoch_end(self):
        self.source.on_epoch_end()


def padded_length(n: int, batch_size: int) -> int:
    """`n` rounded up to whole batches, or below one batch to a power of two: a few shapes in a whole run."""
    if n <= 0 or n >= batch_size:
        return -(-max(n, 0) // batch_size) * batch_size
    return 1 << max(0, int(n - 1).bit_length())


def pad_rows(x: np.ndarray, length: int) -> np.ndarray:
    """`x` with zero rows appended up to `length` rows."""
    if len(x) >= length:
        return x
    return np.concatenate([x, np.zeros((length - len(x), *x.shape[1:]), x.dtype)])
