"""The bundled kernel runs on Kaggle's image (Python 3.10 and the competition-time pins), not only on today's."""

import shutil
import subprocess
from pathlib import Path

import pytest

from marsseg.kaggle.bundle import build_kernel
from tests.helpers import kaggle_image

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "marsseg"


@pytest.fixture(scope="module")
def interpreter():
    python = kaggle_image.find_python()
    if python is None:
        pytest.skip(f"no Python {kaggle_image.PYTHON_VERSION} on this machine")
    return kaggle_image.ensure_env(python)


def test_the_environment_is_pinned_like_kaggles_image(interpreter):
    probe = (
        "import sys, keras, sklearn, numpy, tensorflow; print(sys.version_info[:2], keras.__version__, "
        "sklearn.__version__, numpy.__version__, tensorflow.__version__)"
    )
    versions = subprocess.run(
        [str(interpreter), "-c", probe], capture_output=True, text=True, check=True, env=kaggle_image.clean_env()
    ).stdout.split()
    assert versions == ["(3,", "10)", "3.5.0", "1.2.2", "1.26.4", "2.17.1"]


def test_kernel_smoke_run_on_the_kaggle_image(interpreter, tmp_path):
    from marsseg.submission.formats import read_submission

    result = kaggle_image.smoke_run(interpreter, tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    assert read_submission(tmp_path / "out" / "submission.csv", 24).n_images == 24
    assert "[kernel] done" in result.stdout


def test_a_kernel_using_python_311_api_fails_there(interpreter, tmp_path):
    """The guard can fail: `datetime.UTC` is new in Python 3.11 (what pyupgrade would write for py311)."""
    copy = tmp_path / "marsseg"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    config = copy / "config.py"
    config.write_text(config.read_text() + "\nfrom datetime import UTC  # noqa: E402\n")
    kernel = tmp_path / "kernel.py"
    kernel.write_text(build_kernel(copy).text)
    result = kaggle_image.smoke_run(interpreter, tmp_path, kernel=kernel)
    assert result.returncode != 0
    assert "cannot import name 'UTC'" in result.stderr
