import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(scope="session")
def small_synthetic():
    from marsseg.data.synth import make_synthetic

    return make_synthetic(n_train=96, n_test=24, seed=7)


@pytest.fixture(scope="session")
def small_data_file(tmp_path_factory, small_synthetic):
    from marsseg.data.synth import save_synthetic

    directory = tmp_path_factory.mktemp("synthetic")
    data, truth = directory / "data.npz", directory / "truth.npz"
    save_synthetic(small_synthetic, data, truth)
    return data, truth


def run_cli(*args, cwd=None, env=None, timeout=120):
    """Run `python -m marsseg ARGS` in a subprocess; returns CompletedProcess (no check)."""
    return subprocess.run(
        [sys.executable, "-m", "marsseg", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def one_line_error(result):
    """Assert a user error: exit status 2, one line on stderr, no traceback; return the line."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("marsseg: error: ")
    return lines[0]


@pytest.fixture
def rng():
    return np.random.default_rng(0)
