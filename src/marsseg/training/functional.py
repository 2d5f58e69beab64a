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


# --- Loss math -------------------------------------------------------------------------------------------------
# Conventions shared by every loss below:
# - y_true: integer labels (B, H, W) or (B, H, W, 1); y_pred: probabilities (B, H, W, K), any float dtype
#   (cast to float32 and clipped to [EPSILON, 1 - EPSILON], so log and powers stay finite under mixed precision).
# - ignore_background: pixels labelled `background` contribute nothing, and region losses (dice, Tversky)
#   average over the other classes only; the leaderboard ignores those pixels too.
# - class_weights: (K,) multipliers on each class's term. Averages divide by counts (pixels or classes), not
#   by the weights, so weights with mean 1 over the counted classes keep the loss's scale, and multiplying all
#   weights by c multiplies the loss by c.

EPSILON = 1e-7
REGION_SMOOTH = 1.0  # added to numerator and denominator of dice/Tversky: absent-and-unpredicted classes score 1


def _prepare(y_true, y_pred, num_classes: int, ignore_background: bool, background: int = 0):
    """float32 clipped probabilities, one-hot truth (B, H, W, K) and a (B, H, W, 1) mask of counted pixels."""
    probs = ops.clip(ops.cast(y_pred, "float32"), EPSILON, 1.0 - EPSILON)
    labels = labels_from(y_true)
    truth = ops.one_hot(labels, num_classes, dtype="float32")
    if ignore_background:
        valid = ops.cast(ops.not_equal(labels, background), "float32")
    else:
        valid = ops.ones_like(labels, dtype="float32")
    return probs, truth, ops.expand_dims(valid, -1)


def _weights(class_weights, num_classes: int):
    if class_weights is None:
        return ops.ones((num_classes,), "float32")
    weights = ops.cast(ops.convert_to_tensor(class_weights), "float32")
    if weights.shape != (num_classes,):
        raise ValueError(f"class_weights must have shape ({num_classes},), got {tuple(weights.shape)}")
    return weights


def _pixel_mean(per_pixel, valid):
    """Mean of a (B, H, W, 1) map over the counted pixels (0 when none counts)."""
    return ops.sum(per_pixel * valid) / ops.maximum(ops.sum(valid), 1.0)


def focal_loss(
    y_true, y_pred, num_classes: int = 5, gamma: float = 2.0, class_weights=None, ignore_background: bool = False
):
    """Focal loss (Lin et al. 2017): mean over counted pixels of `-alpha_y * (1 - p_y)**gamma * log p_y`.

    `class_weights` are the per-class alphas (ones when None). With gamma 0 this is weighted cross-entropy.
    """
    probs, truth, valid = _prepare(y_true, y_pred, num_classes, ignore_background)
    alpha = _weights(class_weights, num_classes)
    p_true = ops.sum(probs * truth, axis=-1, keepdims=True)
    alpha_true = ops.sum(truth * alpha, axis=-1, keepdims=True)
    modulator = ops.power(1.0 - p_true, gamma) if gamma else ops.ones_like(p_true)
    return _pixel_mean(-alpha_true * modulator * ops.log(p_true), valid)


def cross_entropy_loss(y_true, y_pred, num_classes: int = 5, class_weights=None, ignore_background: bool = False):
    """Sparse categorical cross-entropy: mean over counted pixels of `-w_y * log p_y`."""
    return focal_loss(
        y_true, y_pred, num_classes, gamma=0.0, class_weights=class_weights, ignore_background=ignore_background
    )


def _region_terms(y_true, y_pred, num_classes: int, ignore_background: bool):
    """Per-class soft TP, FP, FN (K,) summed over the batch and counted pixels, and a (K,) mask of counted classes."""
    probs, truth, valid = _prepare(y_true, y_pred, num_classes, ignore_background)
    probs, truth = probs * valid, truth * valid
    axes = (0, 1, 2)
    tp = ops.sum(probs * truth, axis=axes)
    fp = ops.sum(probs * (1.0 - truth), axis=axes)
    fn = ops.sum((1.0 - probs) * truth, axis=axes)
    counted = ops.ones((num_classes,), "float32")
    if ignore_background:
        counted = ops.cast(ops.not_equal(ops.arange(num_classes), 0), "float32")
    return tp, fp, fn, counted


def _class_mean(per_class, counted, class_weights, num_classes: int):
    weights = _weights(class_weights, num_classes) * counted
    return ops.sum(weights * per_class) / ops.maximum(ops.sum(counted), 1.0)


def dice_loss(
    y_true,
    y_pred,
    num_classes: int = 5,
    class_weights=None,
    ignore_background: bool = False,
    smooth: float = REGION_SMOOTH,
):
    """Soft dice loss: mean over counted classes of `w_k * (1 - (2 TP + s) / (2 TP + FP + FN + s))`.

    TP/FP/FN are soft counts over the whole batch (steadier than per image for rare classes).
    """
    tp, fp, fn, counted = _region_terms(y_true, y_pred, num_classes, ignore_background)
    dice = (2.0 * tp + smooth) / (2.0 * tp + fp + fn + smooth)
    return _class_mean(1.0 - dice, counted, class_weights, num_classes)


def focal_tversky_loss(
    y_true,
    y_pred,
    num_classes: int = 5,
    alpha: float = 0.7,
    beta: float = 0.3,
    gamma: float = 0.75,
    class_weights=None,
    ignore_background: bool = False,
    smooth: float = REGION_SMOOTH,
):
    """Focal Tversky loss (Abraham & Khan 2019): mean over counted classes of `w_k * (1 - TI_k)**gamma`,

    `TI_k = (TP + s) / (TP + alpha FN + beta FP + s)`. alpha > beta punishes missed pixels more than false alarms
    (recall for rare classes); alpha = beta = 0.5 with gamma 1 is the dice loss (without smoothing).
    """
    tp, fp, fn, counted = _region_terms(y_true, y_pred, num_classes, ignore_background)
    tversky = (tp + smooth) / (tp + alpha * fn + beta * fp + smooth)
    # The floor keeps the gradient of x**gamma (gamma < 1) finite at a perfect score.
    return _class_mean(ops.power(ops.maximum(1.0 - tversky, EPSILON), gamma), counted, class_weights, num_classes)


def lovasz_softmax_loss(
    y_true, y_pred, num_classes: int = 5, class_weights=None, ignore_background: bool = False, present: bool = True
):
    """Lovász-softmax loss (Berman et al. 2018): a convex surrogate of 1 - IoU, per class over the whole batch.

    For class k, the errors `|[y = k] - p_k|` of the counted pixels sorted in decreasing order are dotted with the
    gradient of the Lovász extension of the Jaccard loss at that order. On hard (0/1) predictions the term is
    exactly `1 - IoU_k`. Mean (weighted as the region losses) over the counted classes, of those present in the
    batch's truth when `present` (a class absent from a batch has no IoU to learn from). Uncounted pixels get
    error 0 and no truth, so they sort last and change nothing: no boolean indexing, any backend traces it.
    """
    probs, truth, valid = _prepare(y_true, y_pred, num_classes, ignore_background)
    n = probs.shape[0] * probs.shape[1] * probs.shape[2] if None not in probs.shape[:3] else None
    probs = ops.reshape(probs * valid, (-1, num_classes))
    truth = ops.reshape(truth * valid, (-1, num_classes))
    errors = ops.transpose(ops.abs(truth - probs))  # (K, N)
    fg = ops.transpose(truth)
    k = n if n is not None else ops.shape(errors)[1]
    sorted_errors, order = ops.top_k(errors, k=k, sorted=True)  # decreasing, per class
    fg_sorted = ops.take_along_axis(fg, order, axis=1)
    gts = ops.sum(fg_sorted, axis=1, keepdims=True)
    intersection = gts - ops.cumsum(fg_sorted, axis=1)
    union = gts + ops.cumsum(1.0 - fg_sorted, axis=1)
    jaccard = 1.0 - intersection / ops.maximum(union, EPSILON)
    gradient = ops.concatenate([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], axis=1)
    per_class = ops.sum(sorted_errors * gradient, axis=1)
    counted = ops.ones((num_classes,), "float32")
    if ignore_background:
        counted = ops.cast(ops.not_equal(ops.arange(num_classes), 0), "float32")
    if present:
        counted = counted * ops.cast(ops.greater(gts[:, 0], 0.0), "float32")
    return _class_mean(per_class, counted, class_weights, num_classes)
