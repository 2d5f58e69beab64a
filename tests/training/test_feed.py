import os

import pytest


@pytest.mark.parametrize(
    "workers, cores, builders",
    [(2, {0}, 1), (2, {0, 1}, 2), (2, {0, 1, 2, 3}, 2), (4, {0, 1, 2}, 3), (0, {0, 1}, 1), (1, {0, 1}, 1)],
)
def test_no_more_batch_builders_than_the_process_has_cores(monkeypatch, workers, cores, builders):
    from marsseg.training import feed

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: cores, raising=False)
    assert feed.usable_cores() == len(cores)
    assert feed.batch_builders(workers) == builders


@pytest.mark.parametrize("platform", ["refuses", "lacks"])  # Linux without the call, or macOS and Windows
def test_without_an_affinity_the_machines_core_count_decides(monkeypatch, platform):
    from marsseg.training import feed

    def unsupported(pid):
        raise OSError("no affinity here")

    if platform == "refuses":
        monkeypatch.setattr(os, "sched_getaffinity", unsupported, raising=False)
    else:
        monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    assert feed.usable_cores() == 3 and feed.batch_builders(8) == 3


@pytest.mark.parametrize("cores, builders", [({0}, 1), ({0, 1}, 2)])
def test_fit_stage_feeds_with_the_capped_number_of_builders(monkeypatch, small_synthetic, cores, builders):
    from marsseg.config import override, preset
    from marsseg.training import fit
    from marsseg.training.context import StageContext, StageData
    from marsseg.training.feed import network_input, training_data

    seen = []

    def spy(source, names, workers=1, epochs=1):
        seen.append(workers)
        return training_data(source, names, workers, epochs)

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: cores, raising=False)
    monkeypatch.setattr(fit, "training_data", spy)
    cfg = override(preset("smoke"), ["augment.workers=2"])
    s = small_synthetic
    data = StageData(s.images[:32], s.masks[:32], network_input(s.images[32:48]), s.masks[32:48])
    fit.fit_stage(cfg.stage1, data, augment_cfg=cfg.augment, seed=3, context=StageContext(verbose=0))
    assert seen == [builders]
