import pytest


def test_interleaved_bursts_pair_each_burst_with_its_neighbour():
    from marsseg_bench.throughput import interleaved

    calls = []

    def burst(name, seconds):
        def run():
            calls.append(name)
            return seconds

        return run

    r = interleaved(burst("a", 1.0), burst("b", 2.0), bursts=3, samples=4)
    assert calls == ["a", "b", "b", "a", "a", "b"], "the order alternates, so a drift favours neither"
    assert r["a_img_s"] == [4.0] * 3 and r["b_img_s"] == [2.0] * 3
    assert r["ratios"] == [2.0] * 3 and r["median"] == r["min"] == r["max"] == 2.0 and r["pairs"] == 3


def test_every_variant_a_comparison_names_can_be_built_and_no_other():
    from marsseg_bench.throughput import COMPARISONS
    from marsseg_bench.throughput_variants import VARIANTS

    assert VARIANTS == {variant for a, b, _ in COMPARISONS.values() for variant in (a, b)}


@pytest.mark.slow  # trains tiny networks for the benchmark tool: `make test-all`
def test_compare_times_the_kit_against_a_plain_unet_on_a_tiny_network():
    from dataclasses import replace

    from marsseg.config import preset
    from marsseg_bench.throughput import compare, describe

    stage = preset("cpu").stage1
    stage = replace(stage, model=replace(stage.model, depth=2, base_filters=4))
    comparisons = ("step", "metric", "workers", "epochs", "validation")
    result = compare(stage, comparisons=comparisons, bursts=2, steps=3, batch=2, warmup=1, validation_rows=4)
    pairs = {
        "step": ("kit", "plain"),
        "metric": ("kit_counting", "kit_no_metric"),
        "workers": ("fit_feed_workers", "fit_feed"),
        "epochs": ("fit_epochs", "fit_feed"),
        "validation": ("fit_validated", "fit_epochs"),
    }
    for key, (a, b) in pairs.items():
        r = result[key]
        assert (r["a"], r["b"], r["pairs"]) == (a, b, 2)
        assert len(r["a_img_s"]) == len(r["b_img_s"]) == len(r["ratios"]) == 2
        assert r["min"] <= r["median"] <= r["max"] and all(v > 0 for v in r["ratios"])
    assert set(result["params"]) == {v for pair in pairs.values() for v in pair}
    # Same depth and width: within a few percent (the plain net's biases, the kit's bias-free convolutions).
    assert abs(result["params"]["kit"] / result["params"]["plain"] - 1) < 0.1
    assert len(describe(result)) == 5
    with pytest.raises(ValueError, match="split a burst in 3"):
        compare(stage, comparisons=("epochs",), bursts=1, steps=2, batch=2)


@pytest.mark.slow  # trains tiny networks for the benchmark tool: `make test-all`
def test_the_epoch_variants_train_as_many_batches_in_three_epochs_and_validate_only_where_asked():
    from dataclasses import replace

    import numpy as np

    from marsseg.config import preset
    from marsseg_bench.throughput_variants import StepRunner

    stage = preset("cpu").stage1
    stage = replace(stage, model=replace(stage.model, depth=2, base_filters=4))
    images, masks = np.zeros((6, 64, 128), np.uint8), np.ones((6, 64, 128), np.uint8)
    validation = (np.zeros((4, 64, 128), np.uint8), np.ones((4, 64, 128), np.uint8))
    one, three, validated = (
        StepRunner(name, stage, images, masks, None, 2, 3, validation)
        for name in ("fit_feed", "fit_epochs", "fit_validated")
    )
    # One pipeline over all of a fit's epochs (`feed.training_data`): 3 batches, in 1 epoch of 3 or 3 epochs of 1.
    assert (one.epochs, len(one.data), one.fit_options["steps_per_epoch"]) == (1, 3, 3)
    assert (three.epochs, len(three.data), three.fit_options["steps_per_epoch"]) == (3, 3, 1)
    assert "validation_data" not in three.fit_options and len(validated.fit_options["validation_data"][0]) == 4
    history = validated.model.fit(
        validated.data, epochs=validated.epochs, verbose=0, callbacks=validated.callbacks, **validated.fit_options
    ).history
    assert len(history["val_loss"]) == 3
    with pytest.raises(ValueError, match="not a multiple"):
        StepRunner("fit_epochs", stage, images, masks, None, 2, 2, validation)
    with pytest.raises(ValueError, match="unknown variant 'fit_typo'"):
        StepRunner("fit_typo", stage, images, masks, None, 2, 3, validation)


@pytest.mark.slow  # trains tiny networks for the benchmark tool: `make test-all`
@pytest.mark.parametrize("rate", [0.0, 0.2])
def test_the_dropout_variants_time_a_dropout_even_where_the_stage_has_none_and_train(rate):
    from dataclasses import replace

    import keras
    import numpy as np

    from marsseg.config import preset
    from marsseg.models import blocks
    from marsseg.models.dropout import ChannelDropout
    from marsseg_bench.throughput_variants import DROPOUT_PROBE, build_variant

    stage = preset("cpu").stage1
    stage = replace(stage, model=replace(stage.model, depth=2, base_filters=4, dropout=rate))
    drops, rates = {}, {}
    for name in ("kit_dropout", "kit_keras_dropout", "kit_no_dropout"):
        model = build_variant(name, stage)
        convs = [layer for layer in model._flatten_layers() if isinstance(layer, blocks.ConvBlock)]
        drops[name] = {type(b.drop) for b in convs if b.drop is not None}
        rates[name] = {b.drop.rate for b in convs if b.drop is not None}
        x = np.zeros((2, 64, 128, 1), np.float32)
        model.train_on_batch(x, [np.ones((2, 64, 128), np.int32)] * len(model.outputs))
    assert drops == {
        "kit_dropout": {ChannelDropout},
        "kit_keras_dropout": {keras.layers.SpatialDropout2D},
        "kit_no_dropout": set(),
    }
    expected = rate or DROPOUT_PROBE
    assert rates["kit_dropout"] == rates["kit_keras_dropout"] == {expected}
    assert blocks.ChannelDropout is ChannelDropout  # the kit's layer is back


@pytest.mark.parametrize(
    ("median", "verdict"),
    [(0.996, "**NOT met by 0.004**"), (0.9996, "**NOT met by <0.001**"), (1.0, "**met**"), (1.004, "**met**")],
)
def test_the_models_block_states_the_step_target_without_rounding_it_into_met(monkeypatch, median, verdict):
    from marsseg_bench import sections_models, throughput

    result = {"step": {"median": median, "min": 0.9, "max": 1.01, "pairs": 12}, "pinned": True}
    result["params"] = {"kit": 1966821, "plain": 1968293}
    monkeypatch.setattr(throughput, "run_pinned", lambda *args, **kwargs: result)
    (line,) = [line for line in sections_models._plain_unet_lines(lambda m: None) if "target" in line]
    assert f"**{median:.3f}x** (0.90-1.01), 12 pairs" in line and verdict in line
