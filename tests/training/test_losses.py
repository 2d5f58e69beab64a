"""Loss math against hand-computed values, wrappers, build_loss, and a loss that actually trains."""

import math

import numpy as np
import pytest

from marsseg.config import LossConfig
from marsseg.errors import ConfigError

keras = pytest.importorskip("keras")
from marsseg.training import functional as F  # noqa: E402
from marsseg.training.losses import (  # noqa: E402
    CrossEntropyLoss,
    DiceLoss,
    FocalLoss,
    FocalTverskyLoss,
    LovaszSoftmaxLoss,
    SumLoss,
    build_loss,
    parse_loss_name,
)

# Two labelled pixels, three classes: truth [1, 2]; probabilities per pixel.
LABELS = np.array([[[1, 2]]])  # (B=1, H=1, W=2)
PROBS = np.array([[[[0.2, 0.7, 0.1], [0.1, 0.3, 0.6]]]], dtype=np.float32)
LN7, LN6 = math.log(0.7), math.log(0.6)


def value(fn, *args, **kwargs):
    return float(keras.ops.convert_to_numpy(fn(*args, **kwargs)))


def one_hot(labels, k):
    return np.eye(k, dtype=np.float32)[labels]


# --- hand-computed values --------------------------------------------------------------------------------------


def test_cross_entropy_by_hand():
    assert value(F.cross_entropy_loss, LABELS, PROBS, 3) == pytest.approx(-(LN7 + LN6) / 2, rel=1e-5)
    # class weights multiply each pixel's term; the mean still divides by the pixel count
    weighted = value(F.cross_entropy_loss, LABELS, PROBS, 3, class_weights=[0.0, 2.0, 1.0])
    assert weighted == pytest.approx(-(2 * LN7 + LN6) / 2, rel=1e-5)


def test_focal_by_hand():
    expected = -(0.3**2 * LN7 + 0.4**2 * LN6) / 2
    assert value(F.focal_loss, LABELS, PROBS, 3, gamma=2.0) == pytest.approx(expected, rel=1e-5)
    alpha = [0.0, 0.25, 4.0]
    expected = -(0.25 * 0.3**2 * LN7 + 4.0 * 0.4**2 * LN6) / 2
    assert value(F.focal_loss, LABELS, PROBS, 3, gamma=2.0, class_weights=alpha) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("smooth", [0.0, 1.0])
def test_dice_by_hand(smooth):
    s = smooth
    # soft counts per class: class 0 (absent): tp 0, fp .3, fn 0; class 1: tp .7, fp .3, fn .3;
    # class 2: tp .6, fp .1, fn .4
    dice = [(0 + s) / (0.3 + s), (1.4 + s) / (1.4 + 0.6 + s), (1.2 + s) / (1.2 + 0.5 + s)]
    expected = np.mean([1 - d for d in dice])
    assert value(F.dice_loss, LABELS, PROBS, 3, smooth=smooth) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("alpha,beta,gamma", [(0.7, 0.3, 1.0), (0.7, 0.3, 0.75), (0.5, 0.5, 2.0)])
def test_focal_tversky_by_hand(alpha, beta, gamma):
    tp, fp, fn = [0.0, 0.7, 0.6], [0.3, 0.3, 0.1], [0.0, 0.3, 0.4]
    ti = [(tp[k] + 1) / (tp[k] + alpha * fn[k] + beta * fp[k] + 1) for k in range(3)]
    expected = np.mean([(1 - t) ** gamma for t in ti])
    got = value(F.focal_tversky_loss, LABELS, PROBS, 3, alpha=alpha, beta=beta, gamma=gamma)
    assert got == pytest.approx(expected, rel=1e-5)


def test_lovasz_by_hand():
    # Two pixels, two classes: truth [1, 0]. Class 1: fg [1, 0], p [0.6, 0.3] -> errors 0.4, 0.3 in that order;
    # the Jaccard loss's increments at that order are 1 and 0, so 0.4. Class 0: fg [0, 1], p [0.4, 0.7] ->
    # errors 0.4 (not fg), 0.3 (fg); increments 0.5, 0.5, so 0.35. Mean 0.375.
    labels = np.array([[[1, 0]]])
    probs = np.array([[[[0.4, 0.6], [0.7, 0.3]]]], dtype=np.float32)
    assert value(F.lovasz_softmax_loss, labels, probs, 2) == pytest.approx(0.375, abs=1e-6)
    assert value(F.lovasz_softmax_loss, labels, probs, 2, class_weights=[0.0, 2.0]) == pytest.approx(0.4, abs=1e-6)
    # Truth [1, 0] with p1 [0.9, 0.5]: class 1's errors 0.5 (not fg) then 0.1 (fg): 0.5 * 0.5 + 0.1 * 0.5 = 0.3.
    probs = np.array([[[[0.1, 0.9], [0.5, 0.5]]]], dtype=np.float32)
    assert value(F.lovasz_softmax_loss, labels, probs, 2, class_weights=[0.0, 2.0]) == pytest.approx(0.3, abs=1e-6)


@pytest.mark.parametrize("ignore_background", [False, True])
def test_lovasz_on_hard_predictions_is_one_minus_the_iou_of_each_present_class(ignore_background):
    rng = np.random.default_rng(11)
    labels = rng.integers(0, 4, (2, 8, 16))  # class 4 absent from the truth: not counted
    predicted = np.where(rng.random(labels.shape) < 0.7, labels, rng.integers(0, 5, labels.shape))
    counted = labels != 0 if ignore_background else np.ones(labels.shape, bool)
    ious = []
    for c in range(1 if ignore_background else 0, 4):
        t, p = (labels == c) & counted, (predicted == c) & counted
        ious.append((t & p).sum() / (t | p).sum())
    loss = value(F.lovasz_softmax_loss, labels, one_hot(predicted, 5), 5, ignore_background=ignore_background)
    assert loss == pytest.approx(1.0 - float(np.mean(ious)), abs=1e-5)


def test_tversky_with_half_weights_and_gamma_one_is_dice():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, (2, 6, 5))
    probs = rng.dirichlet(np.ones(4), (2, 6, 5)).astype(np.float32)
    dice = value(F.dice_loss, labels, probs, 4, smooth=0.0)
    tversky = value(F.focal_tversky_loss, labels, probs, 4, alpha=0.5, beta=0.5, gamma=1.0, smooth=0.0)
    assert tversky == pytest.approx(dice, rel=1e-5)


# --- limiting cases ---------------------------------------------------------------------------------------------

ALL = {
    "ce": lambda y, p, k, **kw: F.cross_entropy_loss(y, p, k, **kw),
    "focal": lambda y, p, k, **kw: F.focal_loss(y, p, k, gamma=2.0, **kw),
    "dice": lambda y, p, k, **kw: F.dice_loss(y, p, k, **kw),
    "focal_tversky": lambda y, p, k, **kw: F.focal_tversky_loss(y, p, k, **kw),
    "lovasz": lambda y, p, k, **kw: F.lovasz_softmax_loss(y, p, k, **kw),
}


def _random_batch(k=5, seed=0, shape=(2, 8, 16)):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, shape)
    probs = rng.dirichlet(np.ones(k), shape).astype(np.float32)
    return labels, probs


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("ignore_background", [False, True])
def test_perfect_prediction_costs_nothing(name, ignore_background):
    labels, _ = _random_batch()
    probs = one_hot(labels, 5)
    assert value(ALL[name], labels, probs, 5, ignore_background=ignore_background) == pytest.approx(0.0, abs=1e-4)
    wrong = one_hot((labels + 1) % 5, 5)
    assert value(ALL[name], labels, wrong, 5, ignore_background=ignore_background) > 0.5


@pytest.mark.parametrize("k", [2, 5])
def test_uniform_prediction_costs_log_k_in_cross_entropy(k):
    labels, _ = _random_batch(k)
    uniform = np.full(labels.shape + (k,), 1.0 / k, np.float32)
    assert value(F.cross_entropy_loss, labels, uniform, k) == pytest.approx(math.log(k), rel=1e-5)
    assert value(F.focal_loss, labels, uniform, k, gamma=2.0) == pytest.approx((1 - 1 / k) ** 2 * math.log(k), rel=1e-5)


def test_focal_with_gamma_zero_is_cross_entropy():
    labels, probs = _random_batch()
    weights = [0.0, 1.0, 2.0, 0.5, 3.0]
    for kw in ({}, {"class_weights": weights}, {"ignore_background": True}):
        assert value(F.focal_loss, labels, probs, 5, gamma=0.0, **kw) == pytest.approx(
            value(F.cross_entropy_loss, labels, probs, 5, **kw), rel=1e-6
        )
    # and gamma > 0 only ever shrinks each term
    assert value(F.focal_loss, labels, probs, 5, gamma=2.0) < value(F.cross_entropy_loss, labels, probs, 5)


def test_clipping_keeps_a_zero_probability_finite():
    labels = np.array([[[1]]])
    probs = np.array([[[[1.0, 0.0, 0.0]]]], np.float32)
    for name in ALL:
        got = value(ALL[name], labels, probs, 3)
        assert math.isfinite(got) and got > 0, name
    assert value(F.cross_entropy_loss, labels, probs, 3) == pytest.approx(-math.log(F.EPSILON), rel=1e-3)


# --- background ignoring ----------------------------------------------------------------------------------------


def test_ignoring_background_drops_those_pixels_from_cross_entropy():
    labels = np.array([[[0, 1, 2]]])
    probs = np.array([[[[0.01, 0.98, 0.01], [0.2, 0.7, 0.1], [0.1, 0.3, 0.6]]]], np.float32)
    everything = -(math.log(0.01) + LN7 + LN6) / 3
    assert value(F.cross_entropy_loss, labels, probs, 3) == pytest.approx(everything, rel=1e-5)
    assert value(F.cross_entropy_loss, labels, probs, 3, ignore_background=True) == pytest.approx(
        -(LN7 + LN6) / 2, rel=1e-5
    )


def test_ignoring_background_in_dice_drops_its_pixels_and_its_class():
    labels = np.array([[[0, 1, 2]]])
    probs = np.array([[[[0.01, 0.98, 0.01], [0.2, 0.7, 0.1], [0.1, 0.3, 0.6]]]], np.float32)
    # only pixels 2 and 3 count, and only classes 1 and 2: the same counts as the two-pixel case above
    expected = np.mean([1 - 2.4 / 3.0, 1 - 2.2 / 2.7])
    assert value(F.dice_loss, labels, probs, 3, ignore_background=True) == pytest.approx(expected, rel=1e-5)
    assert value(F.dice_loss, labels, probs, 3) != pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize("name", ALL)
def test_predictions_on_background_pixels_do_not_matter_when_ignored(name):
    labels, probs = _random_batch(seed=3)
    other = _random_batch(seed=4)[1]
    background = (labels == 0)[..., None]
    mixed = np.where(background, other, probs)
    ignored = lambda p: value(ALL[name], labels, p, 5, ignore_background=True)  # noqa: E731
    counted = lambda p: value(ALL[name], labels, p, 5)  # noqa: E731
    assert ignored(mixed) == pytest.approx(ignored(probs), rel=1e-6)
    assert counted(mixed) != pytest.approx(counted(probs), rel=1e-4)


def test_all_background_batch_gives_zero_pixel_loss_not_nan():
    labels = np.zeros((1, 4, 4), int)
    probs = _random_batch(shape=(1, 4, 4))[1]
    assert value(F.cross_entropy_loss, labels, probs, 5, ignore_background=True) == 0.0


# --- class weights ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_uniform_class_weights_scale_the_loss(name):
    labels, probs = _random_batch(seed=5)
    plain = value(ALL[name], labels, probs, 5)
    assert value(ALL[name], labels, probs, 5, class_weights=np.full(5, 2.5)) == pytest.approx(2.5 * plain, rel=1e-5)


@pytest.mark.parametrize("name", ["dice", "focal_tversky", "lovasz"])
def test_region_class_weights_weigh_each_class_term(name):
    labels, probs = _random_batch(seed=6)
    per_class = []
    for c in range(5):
        onehot = np.zeros(5)
        onehot[c] = 1.0
        per_class.append(value(ALL[name], labels, probs, 5, class_weights=onehot) * 5)  # undo the 1/K mean
    weights = np.array([0.0, 1.0, 2.0, 0.5, 3.0])
    expected = float(np.dot(weights, per_class)) / 5
    assert value(ALL[name], labels, probs, 5, class_weights=weights) == pytest.approx(expected, rel=1e-5)


def test_wrong_number_of_class_weights_is_refused():
    with pytest.raises(ValueError, match="shape"):
        F.cross_entropy_loss(LABELS, PROBS, 3, class_weights=[1.0, 1.0])
    with pytest.raises(ConfigError, match="2 values"):
        CrossEntropyLoss(num_classes=5, class_weights=[1.0, 1.0])


# --- input forms and precision ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_labels_with_a_channel_axis_and_float16_probabilities(name):
    labels, probs = _random_batch(seed=7)
    reference = value(ALL[name], labels, probs, 5)
    result = ALL[name](labels[..., None].astype(np.float32), probs.astype(np.float16), 5)
    assert keras.backend.standardize_dtype(result.dtype) == "float32"
    assert float(keras.ops.convert_to_numpy(result)) == pytest.approx(reference, rel=1e-2)


# --- wrappers and build_loss ------------------------------------------------------------------------------------


def test_parse_loss_name():
    assert parse_loss_name("focal_tversky+focal") == [(1.0, "focal_tversky"), (1.0, "focal")]
    assert parse_loss_name(" 0.5*dice + ce ") == [(0.5, "dice"), (1.0, "ce")]
    for bad in ["", "tversky", "ce+", "x*ce", "-1*ce"]:
        with pytest.raises(ConfigError, match="not understood"):
            parse_loss_name(bad)


@pytest.mark.parametrize(
    "name,cls",
    [
        ("ce", CrossEntropyLoss),
        ("focal", FocalLoss),
        ("dice", DiceLoss),
        ("focal_tversky", FocalTverskyLoss),
        ("lovasz", LovaszSoftmaxLoss),
        ("lovasz+ce", SumLoss),
        ("focal_tversky+focal", SumLoss),
        ("0.5*dice+ce", SumLoss),
    ],
)
def test_build_loss_serialises_and_matches_the_functions(name, cls):
    labels, probs = _random_batch(seed=8)
    weights = np.array([0.0, 0.5, 1.0, 1.5, 2.0])
    cfg = LossConfig(
        name=name, ignore_background=True, focal_gamma=1.5, tversky_alpha=0.6, tversky_beta=0.4, tversky_gamma=0.8
    )
    loss = build_loss(cfg, class_weights=weights)
    assert type(loss) is cls
    kw = dict(ignore_background=True)
    parts = {
        "ce": value(F.cross_entropy_loss, labels, probs, 5, class_weights=weights, **kw),
        "focal": value(F.focal_loss, labels, probs, 5, gamma=1.5, class_weights=weights, **kw),
        # region losses are class-balanced already: build_loss gives them no class weights
        "dice": value(F.dice_loss, labels, probs, 5, **kw),
        "focal_tversky": value(F.focal_tversky_loss, labels, probs, 5, alpha=0.6, beta=0.4, gamma=0.8, **kw),
        "lovasz": value(F.lovasz_softmax_loss, labels, probs, 5, **kw),
    }
    expected = sum(w * parts[n] for w, n in parse_loss_name(name))
    assert float(loss(labels, probs)) == pytest.approx(expected, rel=1e-5)
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(clone) is cls and clone.get_config() == loss.get_config()
    assert float(clone(labels, probs)) == pytest.approx(expected, rel=1e-6)


def test_class_weights_none_switches_weights_off():
    labels, probs = _random_batch(seed=9)
    weights = np.array([0.0, 0.5, 1.0, 1.5, 2.0])
    off = build_loss(LossConfig(name="ce", class_weights="none"), class_weights=weights)
    assert off.class_weights is None
    assert float(off(labels, probs)) == pytest.approx(
        value(F.cross_entropy_loss, labels, probs, 5, ignore_background=True)
    )
    with pytest.raises(ConfigError, match="auto or none"):
        build_loss(LossConfig(class_weights="inverse"))


@pytest.mark.parametrize("name", ["ce", "focal", "dice", "focal_tversky", "lovasz", "focal_tversky+focal"])
def test_loss_decreases_when_fitting_a_tiny_model(name):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((4, 64, 128, 1), dtype=np.float32)
    labels = np.digitize(x[..., 0], [0.2, 0.4, 0.6, 0.8])  # class = intensity band: learnable per pixel
    model = keras.Sequential(
        [
            keras.Input((64, 128, 1)),
            keras.layers.Conv2D(8, 1, activation="relu"),
            keras.layers.Conv2D(5, 1, activation="softmax"),
        ]
    )
    loss = build_loss(LossConfig(name=name), class_weights=np.array([0.0, 1.0, 1.0, 1.0, 1.0]))
    model.compile(keras.optimizers.Adam(0.05), loss=loss)
    history = model.fit(x, labels, batch_size=4, epochs=30, verbose=0).history["loss"]
    assert all(math.isfinite(h) for h in history)
    assert history[-1] < 0.9 * history[0], history
    assert history[-1] == min(history), history


@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
def test_compiled_model_with_a_sum_loss_reloads(tmp_path):
    model = keras.Sequential([keras.Input((64, 128, 1)), keras.layers.Conv2D(5, 1, activation="softmax")])
    model.compile("adam", loss=build_loss(LossConfig(), class_weights=np.ones(5)))
    model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(reloaded.loss, SumLoss) and reloaded.loss.spec == "focal_tversky+focal"
