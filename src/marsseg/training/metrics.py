"""Keras metrics for the competition score, thin wrappers over `functional.py`."""

from __future__ import annotations

import inspect
import weakref

import keras
from keras import ops

from marsseg.training import functional as F
from marsseg.training.distribute import add_over_replicas


@keras.saving.register_keras_serializable(package="marsseg")
class MeanIoU(keras.metrics.Metric):
    """Mean IoU over the scored classes, accumulated over every pixel seen (the leaderboard's way).

    `y_pred` may be class probabilities (B, H, W, K) or labels (B, H, W). Probabilities are labelled by the argmax
    over the scored classes, as the submission is, so model selection (early stopping, the best epoch, the LR
    plateau) sees the number the submission would get; with no class-0 prediction the leaderboard's Keras rule and
    the mean over the scored classes agree.

    Under data parallelism the counts are every replica's together (`distribute.add_over_replicas`): Keras 3.5.0's
    TensorFlow variables do not sum over replicas themselves, and a read gave replica 0's share only.
    With `counting` False (see `callbacks.ValidationMetrics`) updates are skipped and the counts stay as they are.
    """

    def __init__(self, num_classes: int = 5, ignored_class: int | None = 0, name: str = "miou", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = num_classes
        self.ignored_class = ignored_class
        # "sum" is Keras's default for metric variables; said here where add_variable takes it. Keras 3.5.0 takes it
        # but its TensorFlow variables drop it, which `update_state` makes up for.
        summed = {"aggregation": "sum"} if "aggregation" in inspect.signature(self.add_variable).parameters else {}
        self.confusion = self.add_variable(
            shape=(num_classes, num_classes), initializer="zeros", name="confusion", dtype="float32", **summed
        )
        # Read when a step is traced: `callbacks.ValidationMetrics` clears it while `fit` traces its train step,
        # so the counts (an argmax and a one-hot product over every pixel) are made on validation batches only.
        self.counting = True

    def update_state(self, y_true, y_pred, sample_weight=None):
        if not self.counting:
            return
        if len(y_pred.shape) == 4:
            if self.ignored_class is not None:  # probabilities are >= 0: -1 keeps the ignored class out of the argmax
                y_pred = y_pred - 1.0 * ops.one_hot(self.ignored_class, self.num_classes, dtype=y_pred.dtype)
            labels = ops.argmax(y_pred, axis=-1)
        else:
            labels = y_pred
        add_over_replicas(self.confusion, F.confusion_matrix(y_true, labels, self.num_classes))

    def result(self):
        return F.mean_iou_from_confusion(self.confusion, self.ignored_class)

    def per_class(self):
        iou, _ = F.iou_from_confusion(self.confusion, self.ignored_class)
        return iou

    def reset_state(self):
        self.confusion.assign(ops.zeros((self.num_classes, self.num_classes), "float32"))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "ignored_class": self.ignored_class}


_VALIDATION_ONLY: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def validation_only(model: keras.Model, metrics: list) -> list:
    """`metrics`, noted as `model`'s for `callbacks.ValidationMetrics` (Keras builds its compiled metrics only when
    the first step is traced, too late for the callback to find them in `model.metrics`)."""
    _VALIDATION_ONLY[model] = list(metrics)
    return metrics


def switchable_metrics(model: keras.Model) -> list:
    """The metrics `validation_only` noted for `model`, and any others with a `counting` switch it has built."""
    found, stack = list(_VALIDATION_ONLY.get(model, [])), list(getattr(model, "metrics", []))
    while stack:  # Keras's CompileMetrics holds the compiled ones
        metric = stack.pop()
        stack.extend(getattr(metric, "metrics", []) or [])
        if hasattr(metric, "counting") and all(metric is not m for m in found):
            found.append(metric)
    return found
