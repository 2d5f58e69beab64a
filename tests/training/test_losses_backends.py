"""Model, loss and metric code is backend-free: it names no backend, and the losses give the same values (and
train) under JAX as under TensorFlow."""

import numpy as np
import pytest

from marsseg.config import LossConfig
from tests.helpers.child_process import with_sources

keras = pytest.importorskip("keras")
from marsseg.training.losses import build_loss  # noqa: E402

BACKEND_FREE = ["training/functional.py", "training/losses.py", "training/metrics.py", "models"]


def test_model_loss_and_metric_code_never_touches_tensorflow():
    import re
    from pathlib import Path

    src = Path(__file__).resolve().parents[2] / "src" / "marsseg"
    files = [
        p
        for name in BACKEND_FREE
        for p in ([src / name] if name.endswith(".py") else sorted((src / name).rglob("*.py")))
    ]
    assert len(files) >= 5
    pattern = re.compile(r"\btf\.|import\s+tensorflow|from\s+tensorflow|\btorch\b|\bjax\b")
    offenders = [
        f"{p.name}:{n}: {line.strip()}"
        for p in files
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not offenders, offenders


JAX_LOSSES = """
import json, numpy as np, keras
from marsseg.config import LossConfig, ModelConfig
from marsseg.training.losses import build_loss
from marsseg.models import build_unet, targets_for, aux_loss_weights
rng = np.random.default_rng(11)
labels = rng.integers(0, 5, (2, 64, 128)); probs = rng.dirichlet(np.ones(5), (2, 64, 128)).astype(np.float32)
weights = np.array([0.0, 0.5, 1.0, 1.5, 2.0])
values = {n: float(build_loss(LossConfig(name=n), class_weights=weights)(labels, probs))
          for n in ["ce", "focal", "dice", "focal_tversky", "lovasz", "ce+lovasz", "focal_tversky+focal"]}
cfg = ModelConfig(depth=2, base_filters=4)
model = build_unet(cfg, 1)
model.compile("adam", loss=[build_loss(LossConfig())] * 2, loss_weights=aux_loss_weights(cfg))
x = rng.random((4, 64, 128, 1), dtype=np.float32)
history = model.fit(x, targets_for(model, labels[:1].repeat(4, 0)), batch_size=4, epochs=3, verbose=0).history["loss"]
print(json.dumps({"backend": keras.backend.backend(), "values": values, "history": history}))
"""


def _jax_importable() -> bool:
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", "import jax"], capture_output=True).returncode == 0


@pytest.mark.slow  # ~15 s: a second Python with JAX
def test_losses_give_the_same_values_and_train_under_jax():
    import json
    import os
    import subprocess
    import sys

    if not _jax_importable():
        pytest.skip("jax is not installed (optional: the GPU image and Kaggle have it)")
    env = with_sources({**os.environ, "KERAS_BACKEND": "jax"})
    result = subprocess.run([sys.executable, "-c", JAX_LOSSES], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["backend"] == "jax"
    rng = np.random.default_rng(11)
    labels = rng.integers(0, 5, (2, 64, 128))
    probs = rng.dirichlet(np.ones(5), (2, 64, 128)).astype(np.float32)
    weights = np.array([0.0, 0.5, 1.0, 1.5, 2.0])
    for name, jax_value in out["values"].items():
        here = float(build_loss(LossConfig(name=name), class_weights=weights)(labels, probs))
        assert jax_value == pytest.approx(here, rel=1e-5), name
    assert out["history"][-1] < out["history"][0]
