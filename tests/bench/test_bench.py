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


def test_gpu_check_dry_mode_runs_the_canary_path_on_the_cpu_and_writes_the_gpu_block(tmp_path):
    """`make gpu-check`'s CPU dry mode: the same canary, report and block writer the GPU run uses."""
    from marsseg_bench.gpu_check import main

    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n\n<!-- bench:models -->\nkept\n<!-- /bench:models -->\n")
    assert main(["--dry", "--out", str(out)]) == 0
    text = out.read_text()
    assert "<!-- bench:models -->\nkept" in text  # the other blocks stay
    block = text[text.index("<!-- bench:gpu -->") :]
    assert "## Dry run of `make gpu-check`" in block and "canary of preset smoke on the CPU" in block
    assert "stage 1, network 1" in block and "projected full run" in block
    assert "(`make gpu-check (--dry)`)" in block and "Compilations are counted under JAX only" in block


def test_gpu_check_without_a_gpu_refuses_in_one_line(monkeypatch, tmp_path, capsys):
    import marsseg_bench.gpu as gpu_bench
    from marsseg_bench.gpu_check import main

    monkeypatch.setattr(gpu_bench, "accelerator_name", lambda: None)
    assert main(["--out", str(tmp_path / "B.md")]) == 2
    assert "sees no GPU" in capsys.readouterr().err and not (tmp_path / "B.md").exists()


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
