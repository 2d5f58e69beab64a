"""Metric and loss math on tensors, with `keras.ops` only, so it runs under any Keras 3 backend.

Pure functions; the serialisable classes in `metrics.py` and `losses.py` are thin wrappers.
"""

from __future__ import annotations

from keras import ops


def labels_from(y_true):
    """Integer labels of shape (B, H, W) from (B, H, W) or (B, H, W, 1)."""
    if len(y_true.shape) == 4:
        y_true = ops.squeeze(y_true, axis=-1)
    return ops.cast(y_true, "int32")


def confusion_matrix(y_true, y_pred_labels, num_classes: int):
    """(K, K) float32 counts, rows truth, columns prediction, by a one-hot product (jit-safe everywhere)."""
    truth = ops.one_hot(ops.reshape(labels_from(y_true), (-1,)), num_classes, dtype="float32")
    prediction = ops.one_hot(ops.reshape(ops.cast(y_pred_labels, "int32"), (-1,)), num_classes, dtype="float32")
    return ops.matmul(ops.transpose(truth), prediction)


def iou_from_confusion(confusion, ignored_class: int | None = 0):
    """Per-class IoU (K,) and a (K,) mask of classes that count: scored and present in truth or prediction.

    Rows of the ignored class are dropped first: unlabelled pixels are neither right nor wrong.
    """
    k = confusion.shape[0]
    if ignored_class is not None:
        keep_rows = ops.cast(ops.arange(k) != ignored_class, confusion.dtype)
        confusion = confusion * ops.expand_dims(keep_rows, 1)
    tp = ops.diagonal(confusion)
    union = ops.sum(confusion, axis=0) + ops.sum(confusion, axis=1) - tp
    scored = ops.ones((k,), "bool") if ignored_class is None else ops.arange(k) != ignored_class
    valid = ops.logical_and(scored, union > 0)
    iou = ops.where(valid, tp / ops.maximum(union, 1.0), 0.0)
    return iou, valid


def mean_iou_from_confusion(confusion, ignored_class: int | None = 0):
    iou, valid = iou_from_confusion(confusion, ignored_class)
    valid = ops.cast(valid, iou.dtype)
    return ops.sum(iou * valid) / ops.maximum(ops.sum(valid), 1.0)
