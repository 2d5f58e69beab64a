import pytest

import marsseg_bench.runner as bench
import marsseg_bench.timing as timing
from tests.conftest import one_line_error, run_cli


def recording_sections(calls: list, *names: str) -> dict:
    """Fake sections by name: each appends its name to `calls` and returns a block numbered by the call count."""

    def section(name):
        def run(repeats, log):
            calls.append(name)
            return f"## {name}\n\nvalue {len(calls)}"

        return run

    return {name: section(name) for name in names}


def test_only_reruns_one_section_and_keeps_the_others(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(bench, "SECTIONS", recording_sections(calls, "a", "b"))
    out = tmp_path / "B.md"
    bench.run_benchmarks(out, repeats=1, log=lambda m: None)
    bench.run_benchmarks(out, repeats=1, only=["b"], log=lambda m: None)
    text = out.read_text()
    assert calls == ["a", "b", "b"]
    assert "## a\n\nvalue 1" in text and "## b\n\nvalue 3" in text and "value 2" not in text
    assert text.index("## a") < text.index("## b")
    # Every block names the machine it was measured on (a GPU block and a CPU block can share the file).
    assert text.count(f"on {timing.machine_description()} (`marsseg bench --only") == 2


def test_a_section_that_measures_nothing_here_keeps_its_block(tmp_path, monkeypatch):
    state = {"gpu": True}

    def gpu_section(repeats, log):
        return "## gpu\n\nfast" if state["gpu"] else None

    monkeypatch.setattr(bench, "SECTIONS", {"cpu": lambda r, log: "## cpu\n\nslow", "gpu": gpu_section})
    out = tmp_path / "B.md"
    bench.run_benchmarks(out, repeats=1, log=lambda m: None)
    state["gpu"] = False
    bench.run_benchmarks(out, repeats=1, log=lambda m: None)  # all sections, on a machine without a GPU
    text = out.read_text()
    assert "## gpu\n\nfast" in text and "## cpu\n\nslow" in text
    assert text.count("<!-- bench:gpu -->") == 1


def test_unknown_section_is_a_one_line_error(tmp_path):
    line = one_line_error(run_cli("bench", "--only", "nope", "--out", tmp_path / "B.md"))
    assert "unknown benchmark section nope" in line
    assert not (tmp_path / "B.md").exists()


def test_a_bad_section_choice_stops_before_any_section_and_a_set_one_is_in_the_stamp(tmp_path, monkeypatch):
    from marsseg.errors import UserError

    calls = []
    monkeypatch.setattr(bench, "SECTIONS", recording_sections(calls, "a", "ensemble"))
    out = tmp_path / "B.md"
    monkeypatch.setenv("MARSSEG_BENCH_ENSEMBLE_B", "resnet")
    with pytest.raises(UserError, match="unknown ensemble member-b network 'resnet'"):
        bench.run_benchmarks(out, repeats=1, log=lambda m: None)
    assert calls == [] and not out.exists(), "a section ran before the bad choice was refused"
    monkeypatch.setenv("MARSSEG_BENCH_ENSEMBLE_B", "aspp")
    text = bench.run_benchmarks(out, repeats=1, log=lambda m: None).read_text()
    assert "(`MARSSEG_BENCH_ENSEMBLE_B=aspp marsseg bench --only ensemble`)" in text
    assert "(`marsseg bench --only a`)" in text


def test_a_bad_recipe_item_is_a_one_line_error_at_once(tmp_path):
    result = run_cli(
        "bench", "--only", "recipe", "--out", tmp_path / "B.md", env={"MARSSEG_BENCH_RECIPE_ITEMS": "nope"}
    )
    assert "unknown recipe item nope" in one_line_error(result)
    assert not (tmp_path / "B.md").exists()


def test_gpu_sections_measure_nothing_without_a_gpu(monkeypatch):
    import marsseg_bench.gpu as gpu_bench
    import marsseg_bench.quality as quality

    monkeypatch.setattr(gpu_bench, "accelerator_name", lambda: None)
    messages = []
    assert gpu_bench.section_gpu(1, messages.append) is None
    assert quality.section_quality_gpu(1, messages.append) is None
    assert all("no GPU" in m for m in messages) and len(messages) == 2


def test_the_dev_machine_has_no_gpu_for_the_gpu_sections():
    import marsseg_bench.gpu as gpu_bench

    if gpu_bench.nvidia_gpu_names():
        pytest.skip("this machine has a GPU: the GPU sections measure here")
    assert gpu_bench.accelerator_name() is None


def test_projection_counts_compilation_once_per_model_and_every_epoch():
    from marsseg.config import preset
    from marsseg_bench.gpu import epoch_times, projected_seconds

    cfg = preset("kaggle")  # 5 folds, 100 stage-1 epochs, 80 stage-2 epochs, flip TTA possible
    # The later half of the epochs after the first sets the pace; a second compiling epoch counts as compilation.
    assert epoch_times([30.0, 16.0, 7.0, 6.0, 6.0]) == (24.0 + 10.0 + 1.0, 6.0)
    assert epoch_times([30.0, 5.0]) == (25.0, 5.0)
    assert epoch_times([30.0]) == (None, None) and epoch_times([]) == (None, None)
    timings = {
        "k": 5,
        "test_first": 10.0,
        "test_again": 3.0,
        "stage1": {"compile": 25.0, "steady": 6.0},
        "stage2": {"compile": 20.0, "steady": 4.0},
    }
    p = projected_seconds(cfg, timings)
    assert p["compile1"] == 25.0 and p["compile2"] == 20.0
    assert p["stage1"] == 5 * (25.0 + 100 * 6.0)
    assert p["stage2"] == 20.0 + 80 * 4.0
    # every fold model and stage 2: compiled once (10 - 3 s), then the plain and the flipped pass
    assert p["test"] == (5 + 1) * (7.0 + 2 * 3.0)
    assert p["total"] == p["stage1"] + p["stage2"] + p["test"]
    assert projected_seconds(cfg, {**timings, "stage1": {"compile": None, "steady": None}}) is None


@pytest.mark.slow
def test_gpu_section_report_from_a_smoke_run():
    from marsseg_bench.gpu import section_gpu

    messages = []
    text = section_gpu(1, messages.append, "1 × Test GPU", preset_name="smoke", epochs=2, n_train=64, n_test=16)
    assert any(m.startswith("gpu: stage 1 epochs ") for m in messages)  # logged before the report is written
    assert text.startswith("## On a GPU: the `smoke` preset (1 × Test GPU")
    assert "| stage 1 (one fold model) |" in text and "| stage 2 |" in text
    assert "Test prediction, 16 images" in text and "**The full `smoke` preset, projected:**" in text


@pytest.mark.slow
def test_quality_section_on_a_gpu_names_the_preset_and_device(tmp_path, monkeypatch):
    import marsseg_bench.quality as quality

    monkeypatch.setenv("MARSSEG_BENCH_RESULTS", str(tmp_path))
    monkeypatch.setattr(quality, "N_TRAIN", 48)
    monkeypatch.setattr(quality, "N_TEST", 16)
    text = quality.section_quality(1, lambda m: None, preset_name="smoke", budget=60, device="1 × Test GPU")
    assert text.startswith("## Quality at a fixed budget (60 s a side, synthetic data, on a GPU: 1 × Test GPU")
    assert "the kit (`smoke` preset)" in text and "| kit (final) |" in text and "| naive U-Net |" in text


def test_gpu_names_come_from_nvidia_smi_one_per_line(monkeypatch):
    import shutil
    import subprocess

    from marsseg_bench.gpu import nvidia_gpu_names

    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    monkeypatch.setattr(
        subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, stdout="Tesla T4\nTesla T4\n")
    )
    assert nvidia_gpu_names() == ["Tesla T4", "Tesla T4"]
    assert ", GPU Tesla T4 + Tesla T4," in timing.machine_description()
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert nvidia_gpu_names() == [] and ", GPU" not in timing.machine_description()


def test_quality_long_is_the_quality_comparison_at_its_own_budget(monkeypatch):
    import marsseg_bench.quality as quality

    calls = []
    monkeypatch.setattr(quality, "section_quality", lambda repeats, log, **kw: calls.append(kw) or "## q")
    monkeypatch.setattr(quality, "QUALITY_LONG_BUDGET", 1200.0)
    assert bench.SECTIONS["quality_long"](1, lambda m: None) == "## q"
    assert bench.SECTIONS["quality_long"](1, lambda m: None, seed=43) == "## q"
    assert calls == [
        {"budget": 1200.0, "seed": None, "section": "quality_long"},
        {"budget": 1200.0, "seed": 43, "section": "quality_long"},
    ]
    assert all(bench.takes_seed(bench.SECTIONS[name]) for name in ("quality", "quality_long", "quality_gpu"))
    names = list(bench.SECTIONS)
    assert names.index("quality") + 1 == names.index("quality_long")
