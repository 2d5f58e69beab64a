"""What a run trains on, said first, and the GPU presets' refusal to train on a CPU."""

import re
import time

import pytest

from marsseg.config import override, preset
from marsseg.training.runtime import GpuMissing, describe_devices, require_gpu, runtime_facts, runtime_line
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
