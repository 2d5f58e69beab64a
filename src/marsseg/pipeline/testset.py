"""Test-set labels under a hold-out choice, predicted TEST_CHUNK images at a time.

    labels, probs1 = stage1_labels(models, test_images, choice1, cfg.post, tta=False, keep_probs=True)
    probs1 = stage1_flip(models, test_images, probs1)       # the flipped pass only: flip-TTA'd probabilities
    labels = stage1_tta_labels(test_images, probs1, choice1, cfg.post)
    labels = stage2_labels(model, test_images, probs1, choice2, cfg.post)

Each chunk's probabilities are turned into labels with the class biases the choice kept; the clean-up it kept
runs on the whole stack at the end. Keras is imported only when a prediction runs.
"""

from __future__ import annotations

import numpy as np

from marsseg.pipeline.choice import clean, labels_with_bias
from marsseg.pipeline.postprocess import predict_tta
from marsseg.pipeline.stages import ensemble_probs

TEST_CHUNK = 1024


def label_test_set(test_images: np.ndarray, chunk_probs, choice: dict, post) -> np.ndarray:
    """Labels of `test_images` from `chunk_probs(start, stop)` (class probabilities of those test images), taken
    TEST_CHUNK images at a time, with the class biases and clean-up the hold-out kept for `choice`."""
    n = len(test_images)
    labels = np.zeros(test_images.shape, np.uint8)
    for start in range(0, n, TEST_CHUNK):
        stop = min(start + TEST_CHUNK, n)
        labels[start:stop] = labels_with_bias(chunk_probs(start, stop), choice)
    return clean(labels, choice, post)


def stage1_labels(
    models: list, test_images: np.ndarray, choice: dict, post, tta: bool, keep_probs: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """The stage-1 ensemble's labels (with flip TTA if `tta`), and where `keep_probs` its plain probabilities as
    float16 (N, H, W, 5): stage 2's test input, and the unflipped half of a later TTA."""
    from marsseg.training.feed import network_input

    probs = np.zeros((*test_images.shape, 5), np.float16) if keep_probs else None
    predict = lambda x: ensemble_probs(models, x)  # noqa: E731

    def chunk_probs(start, stop):
        x = network_input(test_images[start:stop])
        plain = predict(x)
        if keep_probs:
            probs[start:stop] = plain
        return predict_tta(predict, x, plain) if tta else plain

    return label_test_set(test_images, chunk_probs, choice, post), probs


def stage1_flip(models: list, test_images: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """The stage-1 ensemble's flip-TTA'd probabilities (float16, a new array) from its kept plain `probs` and the
    flipped pass: stage 2's test input, and stage 1's TTA labels."""
    from marsseg.training.feed import network_input

    predict = lambda x: ensemble_probs(models, x)  # noqa: E731
    out = np.empty_like(probs)
    for start in range(0, len(test_images), TEST_CHUNK):
        stop = min(start + TEST_CHUNK, len(test_images))
        x = network_input(test_images[start:stop])
        out[start:stop] = predict_tta(predict, x, probs[start:stop].astype(np.float32))
    return out


def stage1_tta_labels(test_images: np.ndarray, tta_probs: np.ndarray, choice: dict, post) -> np.ndarray:
    """The stage-1 ensemble's labels with flip TTA, from its flip-TTA'd probabilities (`stage1_flip`)."""
    return label_test_set(test_images, lambda start, stop: tta_probs[start:stop].astype(np.float32), choice, post)


def stage2_labels(model, test_images: np.ndarray, probs1: np.ndarray, choice: dict, post) -> np.ndarray:
    """The stage-2 model's labels on image + stage-1 probabilities `probs1` (flip-TTA'd unless post.tta is off), with
    its own flip TTA where `choice` kept it. The flipped view's stage-1 channels are the flipped `probs1`: stage 1's
    TTA'd prediction of the flipped image (see `stages`), so flipping every input channel is exact."""
    from marsseg.training.feed import network_input
    from marsseg.training.fit import predict_probs

    predict = lambda x: predict_probs(model, x)  # noqa: E731

    def chunk_probs(start, stop):
        x = network_input(test_images[start:stop], probs1[start:stop])
        return predict_tta(predict, x) if choice["tta"]["used"] else predict(x)

    return label_test_set(test_images, chunk_probs, choice, post)
