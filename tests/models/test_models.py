"""The gated U-Net: shapes, names, softmax outputs, depths, save/reload, random init only."""

import re
from pathlib import Path

import numpy as np
import pytest

from marsseg.config import PRESETS, ModelConfig
from marsseg.errors import ConfigError
from tests.helpers.models import TINY, forward, images

keras = pytest.importorskip("keras")
from marsseg.models.unet import (  # noqa: E402
    aux_loss_weights,
    build_unet,
    main_head,
    main_output,
    num_aux_heads,
    predict_main,
)

SRC = Path(__file__).resolve().parents[2] / "src" / "marsseg"

VARIANTS = (
    [
        pytest.param(
            channels,
            attention,
            deep,
            False,
            1,
            id=f"{channels}ch-{'att' if attention else 'noatt'}-{'ds' if deep else 'nods'}",
        )
        for channels in (1, 6)
        for attention in (True, False)
        for deep in (True, False)
    ]
    + [
        pytest.param(6, True, deep, True, 1, id=f"6ch-att-{'ds' if deep else 'nods'}-residual")
        for deep in (True, False)
    ]
    + [
        pytest.param(1, True, True, False, 2, id="1ch-att-ds-stride2"),
        pytest.param(6, False, False, True, 2, id="6ch-noatt-nods-residual-stride2"),
    ]
)


@pytest.mark.parametrize("channels,attention,deep,residual,stride", VARIANTS)
def test_keras_file_round_trip_gives_identical_predictions(tmp_path, channels, attention, deep, residual, stride):
    cfg = ModelConfig(
        **TINY, attention=attention, deep_supervision=deep, dropout=0.2, residual=residual, input_stride=stride
    )
    model = build_unet(cfg, input_channels=channels, name=f"stage{1 if channels == 1 else 2}")
    x = images(channels=channels)
    # Every weight (batch-norm statistics included) moved off its initial value, so reload is tested on weights
    # that the initialiser could not reproduce.
    rng = np.random.default_rng(1)
    model.set_weights([w + rng.uniform(0.1, 0.2, w.shape).astype(w.dtype) for w in model.get_weights()])
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path, compile=False)
    before, after = forward(model, x), forward(reloaded, x)
    if deep:
        assert isinstance(after, list) and len(after) == len(before) == num_aux_heads(cfg) + 1
        for a, b in zip(before, after):
            np.testing.assert_array_equal(a, b)
    else:
        np.testing.assert_array_equal(before, after)
    assert reloaded.output_names == model.output_names
    assert reloaded.count_params() == model.count_params()


@pytest.mark.parametrize("deep", [True, False])
def test_outputs_are_named_softmax_maps_of_full_size(deep):
    cfg = ModelConfig(depth=3, base_filters=4, deep_supervision=deep)
    model = build_unet(cfg, input_channels=1, num_classes=5)
    assert model.inputs[0].shape == (None, 64, 128, 1)
    assert model.output_names == (["main", "aux1", "aux2"] if deep else ["main"])
    outputs = forward(model, images(2))
    outputs = outputs if deep else [outputs]
    for probs in outputs:
        assert probs.shape == (2, 64, 128, 5) and probs.dtype == np.float32
        assert (probs >= 0).all()
        np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(main_output(outputs if deep else outputs[0]), outputs[0])


def test_main_head_and_predict_main_share_weights_with_the_training_model():
    model = build_unet(ModelConfig(**TINY), input_channels=6, num_classes=5)
    x = images(2, channels=6)
    full = forward(model, x)
    single = main_head(model)
    assert len(single.outputs) == 1 and single.count_params() < model.count_params()
    np.testing.assert_allclose(forward(single, x), full[0], atol=1e-6)
    np.testing.assert_allclose(predict_main(model, x, batch_size=1), full[0], atol=1e-6)
    plain = build_unet(ModelConfig(**TINY, deep_supervision=False), input_channels=1)
    assert main_head(plain) is plain


@pytest.mark.parametrize("depth", [2, 3, 4, 5])
def test_every_depth_from_2_to_5_builds_and_predicts(depth):
    model = build_unet(ModelConfig(depth=depth, base_filters=2), input_channels=1)
    assert model.output_names == ["main"] + [f"aux{i}" for i in range(1, depth)]
    # depth d pools d times: the bottleneck works at (64 / 2**d, 128 / 2**d).
    assert model.get_layer("bottleneck").output.shape[1:3] == (64 // 2**depth, 128 // 2**depth)
    assert model.get_layer(f"enc{depth - 1}").output.shape[-1] == 2 * 2 ** (depth - 1)
    assert all(o.shape == (1, 64, 128, 5) for o in forward(model, images(1)))


@pytest.mark.parametrize("deep", [True, False])
def test_a_strided_stem_halves_every_level_and_the_heads_return_full_size(deep):
    depth = 3
    model = build_unet(ModelConfig(depth=depth, base_filters=2, input_stride=2, deep_supervision=deep), 1)
    assert model.get_layer("stem").output.shape[1:3] == (32, 64)
    assert model.get_layer("enc0").output.shape[1:3] == (32, 64)
    assert model.get_layer("bottleneck").output.shape[1:3] == (64 // 2 ** (depth + 1), 128 // 2 ** (depth + 1))
    outputs = forward(model, images(2))
    for probs in outputs if deep else [outputs]:
        assert probs.shape == (2, 64, 128, 5)
        np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    full = build_unet(ModelConfig(depth=depth, base_filters=2, deep_supervision=deep), 1)
    assert "stem" not in {layer.name for layer in full.layers}
    assert full.get_layer("enc0").output.shape[1:3] == (64, 128)


def test_attention_adds_gates_and_batch_norm_switches_off():
    gated = build_unet(ModelConfig(**TINY, attention=True), 1)
    plain = build_unet(ModelConfig(**TINY, attention=False, batch_norm=False), 1)
    assert {"gate0", "gate1"} <= {layer.name for layer in gated.layers}
    assert not any(layer.name.startswith("gate") for layer in plain.layers)
    assert not any("batch_normalization" in w.path or "norm" in w.path.split("/")[-2] for w in plain.weights)
    assert any("norm" in w.path for w in gated.weights)


@pytest.mark.parametrize(
    "bad,message",
    [
        (dict(depth=1), "depth 1 is out of range"),
        (dict(depth=6), "depth 6 is out of range"),
        (dict(base_filters=0), "base_filters"),
        (dict(dropout=1.0), "dropout"),
        (dict(input_stride=3), "input_stride must be 1 or 2"),
        (dict(input_stride=0), "input_stride must be 1 or 2"),
        (dict(context="dense"), "context 'dense' is not a choice; context must be one of none, aspp"),
    ],
)
def test_impossible_settings_are_user_errors(bad, message):
    with pytest.raises(ConfigError, match=message):
        build_unet(ModelConfig(**{**TINY, **bad}), input_channels=1)


def test_aux_loss_weights_start_at_one_and_halve_with_depth():
    cfg = ModelConfig(depth=4, aux_loss_weight=0.4)
    assert aux_loss_weights(cfg) == [1.0, 0.4, 0.2, 0.1]
    assert aux_loss_weights(cfg, 1) == [1.0, 0.4]
    assert aux_loss_weights(ModelConfig(depth=4, deep_supervision=False)) == [1.0]


def test_weights_are_random_and_seeded():
    def first_kernel(seed):
        keras.utils.set_random_seed(seed)
        return build_unet(ModelConfig(**TINY), 1).get_layer("enc0").conv1.kernel.numpy()

    a, b, c = first_kernel(1), first_kernel(1), first_kernel(2)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert 0.05 < a.std() < 2.0  # he_normal on a 3×3×1 kernel, not zeros and not a loaded checkpoint


def test_heads_stay_float32_under_mixed_precision():
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        model = build_unet(ModelConfig(**TINY), 1)
        assert model.get_layer("enc0").compute_dtype == "float16"
        assert all(o.dtype == "float32" for o in model.outputs)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


def test_a_model_saved_under_mixed_precision_reloads_under_float32(tmp_path):
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        model = build_unet(ModelConfig(**TINY), input_channels=6)
        x = images(2, channels=6)
        before = forward(model, x)
        model.save(tmp_path / "mixed.keras")
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    reloaded = keras.models.load_model(tmp_path / "mixed.keras", compile=False)
    assert reloaded.get_layer("gate0").theta_x.compute_dtype == "float16"
    for a, b in zip(before, forward(reloaded, x)):
        np.testing.assert_array_equal(a, b)


PRETRAINED = re.compile(
    r"keras\.applications|applications\.|weights\s*=\s*['\"]imagenet|from_preset|load_weights|"
    r"keras_hub|tensorflow_hub|hf_hub|torch\.hub|pretrained\s*=\s*True"
)


def test_no_pretrained_weights_anywhere_in_the_package():
    # rules.py and loaders.py are the competition-rules checker: they name what they forbid (and `check-rules`
    # runs them on the bundle).
    offenders = [
        f"{path.relative_to(SRC)}:{n}"
        for path in SRC.rglob("*.py")
        if path.name not in ("rules.py", "loaders.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if PRETRAINED.search(line) and not line.lstrip().startswith("#")
    ]
    assert not offenders, offenders


@pytest.mark.parametrize("preset", ["cpu", "gpu"])
def test_preset_models_build_with_sane_sizes(preset):
    model = build_unet(PRESETS[preset].stage1.model, input_channels=1)
    assert 1e5 < model.count_params() < 5e7


def _stage2_input(n=3, seed=0):
    """Image plus stage-1-like probabilities, none below the head's 1e-4 floor."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(5, 0.7), size=(n, 64, 128)).astype(np.float32)
    probs = np.maximum(probs, 1e-3)
    probs /= probs.sum(-1, keepdims=True)
    return np.concatenate([images(n, 1, seed), probs], axis=-1), probs


@pytest.mark.parametrize("deep,stride", [(True, 1), (False, 1), (False, 2)])
def test_an_untrained_residual_stage_2_returns_the_stage_1_probabilities(deep, stride):
    cfg = ModelConfig(**TINY, deep_supervision=deep, residual=True, input_stride=stride)
    model = build_unet(cfg, input_channels=6)
    x, probs = _stage2_input()
    main = main_output(forward(model, x))
    np.testing.assert_allclose(main, probs, rtol=1e-4, atol=1e-6)


def test_a_trained_residual_head_moves_away_from_the_prior():
    from marsseg.models import ResidualRefinementHead

    head = ResidualRefinementHead(5)
    features = np.ones((1, 64, 128, 4), np.float32)
    x, probs = _stage2_input(1)
    head.build([features.shape, x.shape])
    kernel, bias = head.classifier.get_weights()
    bias[4] = 2.0  # a correction in favour of class 4 everywhere
    head.classifier.set_weights([kernel, bias])
    out = keras.ops.convert_to_numpy(head([features, x]))
    assert (out[..., 4] > probs[..., 4]).all()
    np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-5)


def test_a_residual_head_needs_the_probability_channels():
    with pytest.raises(ConfigError, match="stage 2 only"):
        build_unet(ModelConfig(**TINY, residual=True), input_channels=1)
