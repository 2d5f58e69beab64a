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


def test_compare_times_the_kit_against_a_plain_unet_on_a_tiny_network():
    from dataclasses import replace

    from marsseg.config import preset
    from marsseg_bench.throughput import compare, describe

    stage = preset("cpu").stage1
    stage = replace(stage, model=replace(stage.model, depth=2, base_filters=4))
    result = compare(stage, comparisons=("step", "metric", "workers"), bursts=2, steps=1, batch=2, warmup=1)
    pairs = {
        "step": ("kit", "plain"),
        "metric": ("kit_counting", "kit_no_metric"),
        "workers": ("fit_feed_workers", "fit_feed"),
    }
    for key, (a, b) in pairs.items():
        r = result[key]
        assert (r["a"], r["b"], r["pairs"]) == (a, b, 2)
        assert len(r["a_img_s"]) == len(r["b_img_s"]) == len(r["ratios"]) == 2
        assert r["min"] <= r["median"] <= r["max"] and all(v > 0 for v in r["ratios"])
    assert set(result["params"]) == {"kit", "plain", "kit_counting", "kit_no_metric", "fit_feed_workers", "fit_feed"}
    # Same depth and width: within a few percent (the plain net's biases, the kit's bias-free convolutions).
    assert abs(result["params"]["kit"] / result["params"]["plain"] - 1) < 0.1
    assert len(describe(result)) == 3
