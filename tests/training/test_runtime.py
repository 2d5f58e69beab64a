"""What a run trains on, said first, and the GPU presets' refusal to train on a CPU."""

import re
import time

import numpy as np
import pytest

from marsseg.config import override, preset
from marsseg.errors import ConfigError
from marsseg.training.runtime import (
    GpuMissing,
    describe_devices,
    precision_choice,
    require_gpu,
    runtime_facts,
    runtime_line,
)
from tests.conftest import one_line_error, run_cli

T4S = {
    "keras": "3.13.2",
    "backend": "tensorflow",
    "backend_version": "2.20.0",
    "gpus": [{"device": f"/device:GPU:{i}", "name": "Tesla T4", "compute_capability": "7.5"} for i in range(2)],
    "replicas": 2,
    "precision": "mixed_float16",
    "precision_reason": "GPU compute capability 7.5 >= 7.0",
}


def test_the_runtime_line_names_devices_capability_replicas_and_precision():
    assert runtime_line(T4S) == (
        "Keras 3.13.2 on tensorflow 2.20.0; devices: 2 x Tesla T4 (compute capability 7.5); replicas 2; "
        "precision mixed_float16 (GPU compute capability 7.5 >= 7.0)"
    )
    facts = runtime_facts("auto")  # this machine: no GPU
    assert facts["gpus"] == [] and facts["replicas"] == 1 and facts["precision"] == "float32"
    assert describe_devices(facts) == "CPU only" and "devices: CPU only; replicas 1" in runtime_line(facts)


@pytest.mark.parametrize("name", ["gpu", "kaggle"])
def test_the_gpu_presets_refuse_a_cpu_and_the_setting_lets_one_through(name):
    cpu = {**T4S, "gpus": [], "replicas": 1}
    with pytest.raises(GpuMissing) as caught:
        require_gpu(preset(name), cpu)
    message = str(caught.value)
    assert f"preset {name} needs a GPU" in message and "sees none" in message and "\n" not in message
    assert "nvidia-smi" in message and "list_physical_devices('GPU')" in message
    assert "--set require_gpu=false" in message and 'OVERRIDES = ["require_gpu=false"]' in message
    require_gpu(override(preset(name), ["require_gpu=false"]), cpu)  # meant: no refusal
    require_gpu(preset(name), T4S)
    require_gpu(preset("cpu"), cpu)


def test_train_with_the_kaggle_preset_on_a_cpu_exits_2_in_seconds_and_trains_nothing(tmp_path):
    from marsseg.data.synth import make_synthetic, save_synthetic

    save_synthetic(make_synthetic(16, 4, seed=1), tmp_path / "data.npz")
    started = time.monotonic()
    result = run_cli("train", "--preset", "kaggle", "--data", tmp_path / "data.npz", "--out", tmp_path / "run")
    line = one_line_error(result)
    assert time.monotonic() - started < 60 and "preset kaggle needs a GPU" in line
    assert not (tmp_path / "run").exists() and "stage1" not in result.stdout


def test_the_kernel_with_the_kaggle_preset_on_a_cpu_exits_2_with_the_gpu_message(tmp_path):
    import subprocess
    import sys

    from marsseg.data.synth import make_synthetic, save_synthetic
    from marsseg.kaggle.bundle import build_kernel

    save_synthetic(make_synthetic(16, 4, seed=1), tmp_path / "data.npz")
    kernel = tmp_path / "kernel.py"
    kernel.write_text(build_kernel().text)
    assert re.search(r'^PRESET = "kaggle"', kernel.read_text(), re.M)
    result = subprocess.run(
        [sys.executable, str(kernel), "--data", str(tmp_path / "data.npz"), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "preset kaggle needs a GPU" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "metrics.json").exists() and "[marsseg] 00:" not in result.stdout


def _line(mixed_precision: str) -> str:
    return runtime_line(runtime_facts(mixed_precision))


def test_an_unknown_precision_setting_is_a_config_error():
    with pytest.raises(ConfigError):
        precision_choice("sometimes")
    assert precision_choice("off")[0] is False and precision_choice("on")[0] is True


def test_the_runtime_line_of_this_machine_names_backend_devices_and_precision():
    import keras

    line = _line("off")
    assert f"Keras {keras.__version__} on {keras.backend.backend()}" in line
    assert "devices: CPU only" in line and line.endswith("precision float32 (mixed_precision=off)")
    assert _line("on").endswith("precision mixed_float16 (mixed_precision=on)")
    assert _line("auto").endswith("precision float32 (no GPU)")


def _fake_gpus(monkeypatch, *capabilities):
    """GPUs with these compute capabilities, as the device queries would describe them."""
    from marsseg.training import distribute

    names = [f"/device:GPU:{i}" for i in range(len(capabilities))]
    monkeypatch.setattr(distribute, "accelerator_devices", lambda: names)
    monkeypatch.setattr(distribute, "gpu_compute_capabilities", lambda: list(capabilities))


@pytest.mark.parametrize(
    "capabilities, mixed, why",
    [
        ([(6, 0)], False, "mixed float16 off: GPU compute capability 6.0 < 7.0 (no tensor cores)"),  # a Pascal GPU
        ([(7, 5), (7, 5)], True, "GPU compute capability 7.5 >= 7.0"),  # Kaggle's two T4s
        ([(7, 0)], True, "GPU compute capability 7.0 >= 7.0"),
        ([(8, 0), (6, 1)], False, "mixed float16 off: GPU compute capability 6.1 < 7.0 (no tensor cores)"),
        ([None], True, "GPU compute capability unknown; assumed to have tensor cores"),
    ],
)
def test_auto_mixed_precision_follows_the_gpus_compute_capability(monkeypatch, capabilities, mixed, why):
    _fake_gpus(monkeypatch, *capabilities)
    assert precision_choice("auto") == (mixed, why)
    assert precision_choice("on") == (True, "mixed_precision=on")  # "on" forces it, even on a Pascal GPU
    assert precision_choice("off") == (False, "mixed_precision=off")
    assert _line("auto").endswith(f"precision {'mixed_float16' if mixed else 'float32'} ({why})")


@pytest.mark.parametrize("capability, policy", [((6, 0), "float32"), ((7, 5), "mixed_float16")])
def test_fit_stage_trains_in_the_precision_the_device_earns(monkeypatch, small_synthetic, capability, policy):
    import time

    import keras

    from marsseg.config import preset
    from marsseg.training.context import Deadline, StageContext, StageData
    from marsseg.training.feed import network_input
    from marsseg.training.fit import fit_stage

    _fake_gpus(monkeypatch, capability)
    cfg, s, lines = preset("smoke"), small_synthetic, []
    extras = np.full((20, 64, 128, 5), 0.2, np.float32)
    result = fit_stage(
        cfg.stage2,  # single head, full resolution
        StageData(
            s.images[:16], s.masks[:16], network_input(s.images[16:20], extras[16:]), s.masks[16:20], extras[:16]
        ),
        seed=2,
        deadline=Deadline(time.monotonic() - 1),  # one batch is enough to build and run the model
        context=StageContext(verbose=0, log=lines.append),
    )
    assert result.extra["mixed_precision"] is (policy == "mixed_float16")
    assert result.model.get_layer("enc0").dtype_policy.name == policy
    assert result.model.get_layer("main").compute_dtype == "float32"  # the heads stay float32 either way
    assert keras.config.dtype_policy().name == "float32", "the global policy is restored after the fit"
    said = [line for line in lines if "compute capability" in line]
    assert said == (
        ["[marsseg] stage: float32, mixed float16 off: GPU compute capability 6.0 < 7.0 (no tensor cores)"]
        if policy == "float32"
        else []
    )


@pytest.mark.parametrize(
    "reported, parsed", [((7, 5), (7, 5)), ("7.5", (7, 5)), ("8.0", (8, 0)), ("", None), (None, None), ("sm_90", None)]
)
def test_both_backends_spellings_of_a_compute_capability_parse(reported, parsed):
    from marsseg.training.distribute import parse_capability

    assert parse_capability(reported) == parsed
