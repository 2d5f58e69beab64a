"""The quality benchmark's references, its results store and block, and `--repeat` (no network is trained here
except in the slow test)."""

import dataclasses
import json

import numpy as np
import pytest

import marsseg_bench.runner as bench
from marsseg.config import preset
from marsseg_bench import reference_models as refs
from marsseg_bench.quality_report import render_quality
from marsseg_bench.quality_store import matching, read_results, store_result, summarise

DATA = {"kind": "synthetic", "n_train": 10, "n_test": 4, "seed": 5}


def masks_with_counts(counts):
    """One (1, 1, N) mask with `counts[c]` pixels of class c."""
    return np.concatenate([np.full(n, c, np.uint8) for c, n in enumerate(counts)]).reshape(1, 1, -1)


def test_best_practice_weights_ignore_background_and_cap_the_ratio_at_10():
    # Inverse frequency: soil 1000 px, bedrock 500, sand 250, big rock 10 -> big rock would be 100x soil.
    w = refs.capped_inverse_frequency(masks_with_counts([5000, 1000, 500, 250, 10]))
    assert w[0] == 0.0 and w.shape == (5,)
    assert w[1:].max() / w[1:].min() == pytest.approx(10.0)
    assert w[4] == w[1:].max() and w[1] == w[1:].min()
    assert w[2] / w[1] == pytest.approx(2.0) and w[3] / w[1] == pytest.approx(4.0)  # uncapped: 1 / share
    assert w[1:].mean() == pytest.approx(1.0)
    # Within the cap nothing is clipped; a class absent from the masks gets the cap.
    w = refs.capped_inverse_frequency(masks_with_counts([7, 100, 100, 50, 0]))
    assert w[2] / w[1] == pytest.approx(1.0) and w[3] / w[1] == pytest.approx(2.0)
    assert w[4] / w[1] == pytest.approx(10.0)


def test_best_practice_stage_is_the_notebook_network_with_the_notebook_loss():
    cfg = preset("cpu")
    naive, best = refs.naive_stage(cfg), refs.best_practice_stage(cfg)
    assert (best.model.base_filters, best.model.depth) == (16, 4)
    assert best.model == dataclasses.replace(naive.model, base_filters=16, depth=4)
    assert not best.model.attention and not best.model.deep_supervision and best.model.input_stride == 1
    assert (naive.loss.name, naive.loss.ignore_background, naive.loss.class_weights) == ("ce", False, "none")
    assert (best.loss.name, best.loss.ignore_background, best.loss.class_weights) == ("ce", True, "auto")
    assert best.train.optimizer == "adamw" and best.train.schedule == naive.train.schedule == "plateau"
    assert best.train.batch_size == naive.train.batch_size and best.train.learning_rate == naive.train.learning_rate


def test_best_practice_loss_ignores_background_pixels():
    from marsseg.training.losses import build_loss

    cfg = preset("cpu")
    truth = np.array([[[0, 0, 1, 4]]], np.int32)  # two background pixels, soil, big rock
    weights = refs.capped_inverse_frequency(masks_with_counts([0, 1000, 500, 250, 10]))
    loss = build_loss(refs.best_practice_stage(cfg).loss, class_weights=weights)
    naive = build_loss(refs.naive_stage(cfg).loss)
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(5), size=(1, 1, 4)).astype(np.float32)
    changed = probs.copy()
    changed[0, 0, :2] = [[0.96, 0.01, 0.01, 0.01, 0.01], [0.01, 0.01, 0.01, 0.01, 0.96]]
    assert float(loss(truth, probs)) == pytest.approx(float(loss(truth, changed)), rel=1e-6)
    assert float(naive(truth, probs)) != pytest.approx(float(naive(truth, changed)), rel=1e-3)
    # Big rock's miss costs 10x soil's (capped), not the 100x its pixel share would give.
    right = np.full((1, 1, 4, 5), 0.01, np.float32)
    right[0, 0, :, 0], right[0, 0, 2, 1], right[0, 0, 3, 4] = 0.96, 0.96, 0.96
    right[0, 0, 2, 0] = right[0, 0, 3, 0] = 0.01
    miss_soil, miss_rock = right.copy(), right.copy()
    miss_soil[0, 0, 2] = [0.01, 0.01, 0.01, 0.96, 0.01]  # soil pixel called sand
    miss_rock[0, 0, 3] = [0.01, 0.01, 0.01, 0.96, 0.01]  # big-rock pixel called sand
    base = float(loss(truth, right))
    ratio = (float(loss(truth, miss_rock)) - base) / (float(loss(truth, miss_soil)) - base)
    assert ratio == pytest.approx(10.0, rel=1e-3)


def test_flips_triple_the_set_with_each_mask_on_its_image():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (3, 4, 6), dtype=np.uint8)
    masks = (images % 5).astype(np.uint8)  # a pixelwise function of the image: any misplacement shows
    big_images, big_masks = refs.flip_triple(images, masks)
    assert big_images.shape == (9, 4, 6) and big_masks.shape == (9, 4, 6)
    assert np.array_equal(big_masks, big_images % 5)
    assert np.array_equal(big_images[:3], images)
    assert np.array_equal(big_images[3:6], images[:, :, ::-1]) and np.array_equal(big_masks[3:6], masks[:, :, ::-1])
    assert np.array_equal(big_images[6:], images[:, ::-1, :]) and np.array_equal(big_masks[6:], masks[:, ::-1, :])
    assert not np.array_equal(big_images[3:6], big_images[6:])


def test_argmax_over_classes_1_to_4_never_says_background():
    rng = np.random.default_rng(2)
    probs = rng.dirichlet(np.ones(5), size=(4, 8, 8)).astype(np.float32)
    probs[0, :, :, 0] = 10.0  # background the likeliest everywhere in image 0
    labels = refs.labels_over_scored(probs)
    assert labels.dtype == np.uint8 and labels.min() >= 1
    assert np.array_equal(labels, np.argmax(probs[..., 1:], axis=-1) + 1)


def test_reference_runs_feed_fit_stage_what_each_recipe_says(monkeypatch):
    import marsseg.training.fit as fit

    seen = {}

    class Result:
        model, best_val_miou, epochs_run, train_samples_per_s, stop_reason = "model", 0.5, 3, 100.0, "patience"

    def fake_fit(stage, data, **kw):
        seen.update(stage=stage, n=len(data.train_images), masks=data.train_masks, **kw)
        return Result()

    def fake_predict(model, x):
        probs = np.full((len(x), *x.shape[1:3], 5), 0.1, np.float32)
        probs[..., 0] = 0.6  # background likeliest: only the naive reference may say it
        return probs

    monkeypatch.setattr(fit, "fit_stage", fake_fit)
    monkeypatch.setattr(fit, "predict_probs", fake_predict)
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (40, 8, 8), dtype=np.uint8)
    masks = rng.integers(0, 5, (40, 8, 8), dtype=np.uint8)
    cfg = preset("cpu")
    best = refs.reference_run("best", cfg, images, masks, images[:5], 100.0, log=lambda m: None)
    n_train = seen["n"] // 3
    assert seen["n"] == 3 * n_train and best["train_images"] == seen["n"]
    assert seen["stage"] == refs.best_practice_stage(cfg) and seen["augment_cfg"] is None
    assert seen["class_weights"][0] == 0.0 and max(seen["class_weights"]) / min(seen["class_weights"][1:]) <= 10
    assert best["labels"].min() >= 1 and best["stop_reason"] == "patience"  # what the converged horizon reads
    # Its deadline: 12% kept back until its own prediction rate is measured, then planned from that rate.
    deadline = seen["deadline"]
    assert isinstance(deadline.replan, refs.TestPassDeadline) and deadline.replan.n_test == 5
    naive = refs.reference_run("naive", cfg, images, masks, images[:5], 100.0, log=lambda m: None)
    assert seen["n"] == n_train and seen["class_weights"] is None and seen["stage"] == refs.naive_stage(cfg)
    assert (naive["labels"] == 0).all()


def test_reference_deadline_is_planned_from_its_measured_prediction_rate():
    plan = refs.TestPassDeadline(end=1000.0, n_test=2000, safety=12.0)
    # A guess from training batches counts while nothing is measured: 2000 images at 50/s, 10% slack.
    assert plan(50.0, 30.0, None) == pytest.approx(1000 - 12 - 44)
    assert plan(100.0, 30.0, False) == pytest.approx(1000 - 12 - 22)  # the tracing validation pass: measured
    assert plan(400.0, 30.0, None) is None  # a later guess does not override a measured rate
    assert plan(80.0, 30.0, True) == pytest.approx(1000 - 12 - 27.5)  # a slower pass reserves more


def record(seed, kit, best, naive, section="quality", budget=600.0, data=DATA, commit="abc1234"):
    """A hand-made stored run: (Keras-rule mIoU, classes-1-4 mIoU) per model, per-class IoUs from the latter."""

    def scores(pair):
        keras, scored = pair
        return {"miou_keras": keras, "miou_scored": scored, "iou": {c: scored for c in "1234"}}

    models = {"kit": kit, "best": best, "naive": naive}
    return {
        "section": section,
        "seed": seed,
        "budget": budget,
        "data": data,
        "preset": "cpu",
        "commit": commit,
        "machine": "test machine",
        "scores": {m: scores(v) for m, v in models.items() if v is not None},
    }


def test_store_appends_and_replaces_the_same_seed(tmp_path):
    path = tmp_path / ".bench" / "quality.jsonl"
    store_result(path, record(1, (0.6, 0.6), (0.5, 0.5), (0.4, 0.5)))
    store_result(path, record(2, (0.6, 0.6), (0.5, 0.5), (0.4, 0.5)))
    store_result(path, record(1, (0.6, 0.6), (0.5, 0.5), (0.4, 0.5), budget=1200.0))  # another budget: kept apart
    assert len(path.read_text().splitlines()) == 3
    other_preset = {**record(1, (0.6, 0.6), (0.5, 0.5), (0.4, 0.5)), "kit_config": "0123abcd"}
    store_result(path, other_preset)  # other kit settings at the same seed: a series of their own
    assert len(matching(read_results(path), "quality", 600.0, DATA, "0123abcd")) == 1
    assert len(matching(read_results(path), "quality", 600.0, DATA, "")) == 2
    lines = path.read_text().splitlines()
    path.write_text("".join(line + "\n" for line in lines[:3]))
    stored = store_result(path, record(1, (0.7, 0.7), (0.5, 0.5), (0.4, 0.5), commit="def5678"))
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and len(stored) == 3
    assert json.loads(lines[-1])["commit"] == "def5678"  # the rerun replaced seed 1 at 600 s
    runs = matching(read_results(path), "quality", 600.0, DATA)
    assert [(r["seed"], r["commit"]) for r in runs] == [(1, "def5678"), (2, "abc1234")]
    assert matching(read_results(path), "quality", 600.0, {**DATA, "n_train": 11}) == []
    assert len(matching(read_results(path), "quality", 1200.0, DATA)) == 1
    with path.open("a") as handle:
        handle.write('{"section": "quality", "se')  # a run killed while writing
    assert len(read_results(path)) == 3
    store_result(path, record(3, (0.6, 0.6), (0.5, 0.5), (0.4, 0.5)))
    assert len(read_results(path)) == 4 and path.read_text().endswith("\n")


RUNS = [
    record(1, (0.60, 0.61), (0.55, 0.58), (0.40, 0.57)),
    record(2, (0.62, 0.63), (0.60, 0.60), (0.45, 0.58)),
    record(3, (0.64, 0.65), (0.50, 0.62), (0.42, 0.59)),
]


def test_summary_gives_medians_spread_and_paired_differences():
    stats = summarise(RUNS)
    assert stats["n"] == 3 and stats["seeds"] == [1, 2, 3]
    kit = stats["models"]["kit"]["miou_keras"]
    assert (kit["median"], kit["min"], kit["max"], kit["n"]) == (0.62, 0.60, 0.64, 3)
    diff = stats["pairs"]["kit-best"]["miou_keras"]  # 0.05, 0.02, 0.14 at seeds 1, 2, 3
    assert diff["median"] == pytest.approx(0.05) and diff["min"] == pytest.approx(0.02)
    assert diff["max"] == pytest.approx(0.14) and (diff["n"], diff["ahead"]) == (3, 3)
    diff = stats["pairs"]["kit-best"]["miou_scored"]  # 0.03, 0.03, 0.03
    assert diff["median"] == pytest.approx(0.03) and diff["ahead"] == 3
    assert stats["pairs"]["kit-naive"]["iou.4"]["median"] == pytest.approx(0.05)
    # A run without one reference counts for the medians but not for that pair.
    stats = summarise([*RUNS, record(4, (0.9, 0.9), None, (0.1, 0.1))])
    assert stats["models"]["kit"]["miou_keras"]["n"] == 4 and stats["models"]["best"]["miou_keras"]["n"] == 3
    assert stats["pairs"]["kit-best"]["miou_keras"]["n"] == 3 and stats["pairs"]["kit-naive"]["miou_keras"]["n"] == 4


def test_block_shows_both_readings_per_class_and_paired_rows():
    text = render_quality(RUNS, {**RUNS[-1], "budget": 600.0})
    assert text.startswith("## Quality at a fixed budget (600 s a side, synthetic data)")
    assert "3 run(s) at this budget, seeds 1, 2, 3; commit(s) abc1234." in text
    assert "| model | n | mIoU (Keras rule) | mIoU (classes 1-4) | soil | bedrock | sand | big rock |" in text
    assert "| kit (final) | 3 | 0.6200 (0.6000 – 0.6400) | 0.6300 (0.6100 – 0.6500) | 0.630 (0.610 – 0.650) |" in text
    assert "| best-practice U-Net | 3 | 0.5500 (0.5000 – 0.6000) | 0.6000 (0.5800 – 0.6200) |" in text
    assert "| naive U-Net | 3 | 0.4200 (0.4000 – 0.4500) |" in text
    assert "| kit − best-practice | 3 | +0.0500 (+0.0200 – +0.1400) | +0.0300 (+0.0300 – +0.0300) |" in text
    assert "| kit − naive | 3 | +0.2000 (+0.1700 – +0.2200) | +0.0500 (+0.0400 – +0.0600) |" in text
    assert "kit − best-practice: median +0.0500 (Keras rule), +0.0300 (classes 1-4)" in text
    assert "target ≥ +0.02 under the Keras rule over 3 seed(s): met." in text  # +0.05 median
    assert "target ≥ +0.08 under the Keras rule over 3 seed(s): met." in text  # +0.20 median
    behind = [{**r, "scores": {**r["scores"], "naive": r["scores"]["kit"]}} for r in RUNS]
    assert "kit − naive: median +0.0000" in render_quality(behind, {**behind[-1], "budget": 600.0})
    assert "target ≥ +0.08 under the Keras rule over 3 seed(s): NOT met." in render_quality(
        behind, {**behind[-1], "budget": 600.0}
    )
    assert "(the target asks for medians of 3)" in render_quality(RUNS[:1], {**RUNS[0], "budget": 600.0})
    assert "kit − naive: median +0.2000 (Keras rule), +0.0500 (classes 1-4); kit ahead in 3 and 3 of 3" in text
    assert "| 2 | abc1234 | 0.6200 | 0.6000 | 0.4500 | 0.6300 | 0.6000 | 0.5800 |" in text
    one = render_quality(RUNS[:1], {**RUNS[0], "budget": 600.0})
    assert "| kit (final) | 1 | 0.6000 | 0.6100 |" in one  # one run: no spread


def measured(kit):
    return {
        "scores": record(0, kit, (0.5, 0.5), (0.4, 0.5))["scores"],
        "kit_run": {
            "seconds": 20.0,
            "folds_trained": 2,
            "folds_planned": 2,
            "fold_epochs": [3, 3],
            "stage2_status": "ok",
            "final_stage": 2,
            "val_miou_stage1": 0.5,
            "val_miou_stage2": 0.52,
            "val_miou_final": 0.55,
            "stage1_train_samples_per_s": 100.0,
            "stage1_infer_samples_per_s": 400.0,
            "stage2": {"residual": True, "epochs": 2, "best_epoch": 2},
            "post": {"stage2": {"tta": {"without": 0.5, "with": 0.51, "used": True}}},
        },
        "references": {"naive": {"epochs": 4, "seconds": 19.0}, "best": {"epochs": 2, "seconds": 19.5}},
        "augment": {"strength": "light", "samples_per_s": 2000.0},
    }


def test_quality_section_stores_each_run_and_renders_from_all(tmp_path, monkeypatch):
    import marsseg_bench.quality as quality

    monkeypatch.setenv("MARSSEG_BENCH_RESULTS", str(tmp_path / "store"))
    kits = iter([(0.6, 0.6), (0.7, 0.7), (0.8, 0.8)])
    monkeypatch.setattr(quality, "measure_quality", lambda cfg, log: measured(next(kits)))
    quality.section_quality(1, lambda m: None, budget=30.0, seed=1)
    quality.section_quality(1, lambda m: None, budget=30.0, seed=2)
    text = quality.section_quality(1, lambda m: None, budget=30.0, seed=1)  # seed 1 again: replaces its run
    stored = read_results(tmp_path / "store" / "quality.jsonl")
    assert [(r["seed"], r["scores"]["kit"]["miou_keras"]) for r in stored] == [(2, 0.7), (1, 0.8)]
    assert all(r["budget"] == 30.0 and r["section"] == "quality" and r["data"]["n_train"] == 2615 for r in stored)
    assert "2 run(s) at this budget, seeds 1, 2" in text and "| kit (final) | 2 | 0.7500 (0.7000 – 0.8000) |" in text
    assert "Latest run (seed 1," in text and "stage2 TTA 0.5000 → 0.5100 (kept)" in text


def test_repeat_runs_seeded_sections_at_consecutive_seeds(tmp_path, monkeypatch):
    from marsseg.cli.main import main

    seeds, plain = [], []

    def seeded(repeats, log, seed=None):
        seeds.append(seed)
        return f"## q\n\nruns {len(seeds)}"

    def unseeded(repeats, log):
        plain.append(repeats)
        return "## p"

    monkeypatch.setattr(bench, "SECTIONS", {"q": seeded, "p": unseeded})
    out = tmp_path / "B.md"
    assert main(["bench", "--only", "q", "--only", "p", "--repeat", "3", "--seed", "7", "--out", str(out)]) == 0
    assert seeds == [7, 8, 9] and plain == [5]
    text = out.read_text()
    assert "runs 3" in text and "(`marsseg bench --only q --seed 7 --repeat 3`)" in text
    bench.run_benchmarks(out, repeats=1, only=["q"], log=lambda m: None)  # no --seed: the presets' seed, once
    assert seeds[3:] == [preset("cpu").seed] and "(`marsseg bench --only q`)" in out.read_text()
    assert main(["bench", "--only", "q", "--repeat", "0", "--out", str(out)]) == 2


@pytest.mark.slow
def test_quality_section_end_to_end_on_tiny_data(tmp_path, monkeypatch):
    import marsseg_bench.quality as quality

    monkeypatch.setenv("MARSSEG_BENCH_RESULTS", str(tmp_path))
    monkeypatch.setattr(quality, "N_TRAIN", 48)
    monkeypatch.setattr(quality, "N_TEST", 16)
    text = quality.section_quality(1, lambda m: None, preset_name="smoke", budget=40, seed=3)
    assert "| kit (final) | 1 |" in text and "| best-practice U-Net | 1 |" in text and "| naive U-Net | 1 |" in text
    (run,) = read_results(tmp_path / "quality.jsonl")
    assert run["seed"] == 3 and set(run["scores"]) == {"kit", "best", "naive"}
    assert run["references"]["best"]["train_images"] == 3 * (48 - run["references"]["best"]["val_images"])


def test_runs_on_another_stand_in_version_do_not_count_with_todays():
    from marsseg_bench.quality import on_quality_data, quality_data

    today = quality_data()
    older = {k: v for k, v in today.items() if k != "version"}  # records from before the version key: version 1
    records = [{"seed": 1, "data": older}, {"seed": 2, "data": today}, {"seed": 3, "data": {**today, "version": 1}}]
    assert [r["seed"] for r in on_quality_data(records)] == [2]


@pytest.mark.parametrize("section", ["self_training", "stage2_focus"])
def test_an_opt_in_section_that_is_off_does_not_start_a_new_series(section):
    from marsseg.config import override, preset, to_dict
    from marsseg_bench.quality_store import config_fingerprint

    settings = to_dict(preset("cpu"))
    before = {k: v for k, v in settings.items() if k != section}  # a record from before the section existed
    assert config_fingerprint(settings) == config_fingerprint(before)
    on = to_dict(override(preset("cpu"), [f"{section}.enabled=true"]))
    assert config_fingerprint(on) != config_fingerprint(settings)
