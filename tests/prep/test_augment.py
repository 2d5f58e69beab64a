import concurrent.futures

import numpy as np
import pytest

from marsseg.config import preset
from marsseg.data.synth import make_synthetic
from marsseg.errors import ConfigError
from marsseg.prep.augment import (
    STRENGTHS,
    Augmenter,
    BatchAugmentation,
    augmentation_throughput,
    epoch_length,
    epoch_order,
    sampling_weights,
    sequence_from_config,
)


@pytest.fixture(scope="module")
def data():
    s = make_synthetic(n_train=96, n_test=1, seed=9)
    return s.images, s.masks


def _checkerboard(n=16, block=8):
    yy, xx = np.mgrid[0:64, 0:128]
    board = ((yy // block + xx // block) % 2).astype(np.uint8)
    images = np.repeat(np.where(board, 200, 50).astype(np.uint8)[None], n, axis=0)
    masks = np.repeat((board * 2 + 1)[None], n, axis=0).astype(np.uint8)  # labels 1 and 3 only
    return images, masks


@pytest.mark.parametrize("strength", STRENGTHS)
def test_masks_keep_their_labels_and_stay_aligned(strength):
    images, masks = _checkerboard()
    x, y = Augmenter(strength, elastic=True).batch(images, masks, seed=1)
    assert x.shape == (16, 64, 128, 1) and x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    # No interpolated label such as 2; albumentations 1.4's elastic/grid distortion may fill borders with the
    # ignored class 0, which trains nothing.
    assert set(np.unique(y)) <= {0, 1, 3} and (y != 0).mean() > 0.95
    bright = x[..., 0] > x[..., 0].mean(axis=(1, 2), keepdims=True)
    labelled = y != 0
    agreement = ((bright == (y == 3)) & labelled).sum(axis=(1, 2)) / labelled.sum(axis=(1, 2))
    assert agreement.min() > 0.9, agreement  # only block edges may disagree after interpolation
    if strength != "none":
        assert not np.array_equal(y, masks)  # something moved


def test_real_masks_stay_within_0_to_4(data):
    images, masks = data
    _, y = Augmenter("strong", elastic=True).batch(images, masks, seed=2)
    assert y.dtype == np.uint8 and y.max() <= 4


def test_extra_channels_move_with_the_mask_and_skip_photometric_changes(data):
    images, masks = data
    one_hot = np.eye(5, dtype=np.float32)[masks]  # (N, H, W, 5)
    x, y = Augmenter("strong").batch(images, masks, one_hot, seed=3)
    assert x.shape == (len(images), 64, 128, 6)
    assert (np.argmax(x[..., 1:], axis=-1) == y).mean() > 0.97
    constant = np.full(images.shape + (2,), 0.25, np.float32)
    x, _ = Augmenter("strong").batch(images, masks, constant, seed=4)
    assert np.allclose(x[..., 1:], 0.25, atol=1e-6)  # brightness, gamma and noise left them alone


def test_same_seed_same_batch_other_seed_other_batch(data):
    images, masks = data
    a = Augmenter("medium").batch(images[:8], masks[:8], seed=5)
    b = Augmenter("medium").batch(images[:8], masks[:8], seed=5)
    c = Augmenter("medium").batch(images[:8], masks[:8], seed=6)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_bad_strength_is_a_config_error():
    with pytest.raises(ConfigError, match="strength"):
        Augmenter("extreme")


def test_sampling_weights_and_epoch_order(data):
    _, masks = data
    weights = sampling_weights(masks, 2.0)
    rock = (masks == 4).any(axis=(1, 2))
    assert np.array_equal(weights, np.where(rock, 2.0, 1.0))
    order = epoch_order(weights, np.random.default_rng(0))
    counts = np.bincount(order, minlength=len(masks))
    assert np.array_equal(counts, np.where(rock, 2, 1))
    frac = np.where(rock, 1.5, 1.0)
    orders = [epoch_order(frac, np.random.default_rng(s)) for s in range(2)]
    assert len(orders[0]) == len(orders[1]) == epoch_length(frac)
    assert np.bincount(orders[0], minlength=len(masks))[~rock].max() == 1


def test_sequence_batches_shapes_epochs_and_determinism(data):
    from marsseg.prep.augment import SegmentationSequence  # builds the Keras class: kept out of collection

    images, masks = data
    weights = sampling_weights(masks, 2.0)
    seq = SegmentationSequence(images, masks, batch_size=32, weights=weights, seed=1, workers=2)
    assert len(seq) == int(np.ceil(epoch_length(weights) / 32))
    x, y = seq[0]
    assert x.shape == (32, 64, 128, 1) and x.dtype == np.float32 and y.shape == (32, 64, 128) and y.dtype == np.int32
    last_x, _ = seq[len(seq) - 1]
    assert 1 <= len(last_x) <= 32
    with pytest.raises(IndexError):
        seq[len(seq)]
    # Threads building batches out of order give the same batches as one thread in order.
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda i: seq[i], reversed(range(len(seq)))))[::-1]
    twin = SegmentationSequence(images, masks, batch_size=32, weights=weights, seed=1, workers=1)
    for i in range(len(seq)):
        assert np.array_equal(threaded[i][0], twin[i][0]) and np.array_equal(threaded[i][1], twin[i][1])
    first_epoch = seq.order.copy()
    seq.on_epoch_end()
    assert seq.epoch == 1 and not np.array_equal(seq.order, first_epoch)
    assert sorted(seq.order) == sorted(first_epoch)


def test_sequence_takes_one_augmentation_and_hands_keras_its_options(data):
    from marsseg.prep.augment import SegmentationSequence

    images, masks = data
    plain = SegmentationSequence(images, masks)
    assert (plain.strength, plain.elastic, plain.copy_paste_rate) == ("medium", False, 0.0)
    assert (plain.workers, plain.use_multiprocessing, plain.max_queue_size) == (1, False, 10)
    augmentation = BatchAugmentation("strong", True, 0.5)
    seq = SegmentationSequence(images, masks, augmentation=augmentation, workers=3, max_queue_size=4)
    assert (seq.strength, seq.elastic, seq.copy_paste_rate) == ("strong", True, 0.5)
    assert (seq.workers, seq.max_queue_size) == (3, 4)
    extras = np.zeros(images.shape + (5,), np.float32)
    assert SegmentationSequence(images, masks, extras, augmentation=augmentation).copy_paste_rate == 0.0


def test_sequence_feeds_keras_fit(data):
    import keras

    from marsseg.prep.augment import SegmentationSequence

    images, masks = data
    extras = np.eye(5, dtype=np.float32)[masks]
    light = BatchAugmentation(strength="light")
    seq = SegmentationSequence(images[:32], masks[:32], extras[:32], batch_size=16, augmentation=light, seed=0)
    inputs = keras.Input((64, 128, 6))
    model = keras.Model(inputs, keras.layers.Conv2D(5, 1, activation="softmax")(inputs))
    model.compile("adam", "sparse_categorical_crossentropy")
    history = model.fit(seq, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2 and seq.epoch >= 1


def test_throughput_is_positive():
    assert augmentation_throughput(n_batches=2, strength="light", batch_size=8) > 0


def test_sequence_from_config(data):
    images, masks = data
    cfg = preset("smoke").augment
    train = sequence_from_config(images, masks, cfg, batch_size=16, seed=0)
    val = sequence_from_config(images, masks, cfg, batch_size=16, train=False)
    assert train.strength == cfg.strength and len(train.order) == epoch_length(sampling_weights(masks, 2.0))
    assert train.workers == max(1, cfg.workers) and (val.strength, val.shuffle, val.workers) == ("none", False, 1)
    x, y = val[0]
    assert np.allclose(x[..., 0], images[:16] / 255.0) and np.array_equal(y, masks[:16])
