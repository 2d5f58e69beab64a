"""The bundled kernel runs on Kaggle's images: the competition's (Python 3.10, 2024 pins) and today's (3.12)."""

import functools
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from marsseg.kaggle.bundle import build_kernel
from tests.helpers import kaggle_image
from tests.helpers.kaggle_image import COMPETITION, STACKS

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "marsseg"


@functools.cache
def _interpreter(stack):
    python = kaggle_image.find_python(stack.python)
    if python is None:
        pytest.skip(f"no Python {stack.python} on this machine (the {stack.name} stack)")
    return kaggle_image.ensure_env(stack, python)


@pytest.fixture(scope="module", params=STACKS, ids=[stack.name for stack in STACKS])
def stack(request):
    return request.param


@pytest.fixture(scope="module")
def interpreter(stack):
    return _interpreter(stack)


def test_the_environment_is_pinned_like_the_image(stack, interpreter):
    probe = (
        "import importlib.metadata as m, json, sys, keras, tensorflow; print(json.dumps({'python': '%d.%d' % "
        "sys.version_info[:2], 'keras': keras.__version__, 'tensorflow': tensorflow.__version__, "
        "**{d: m.version(d) for d in sys.argv[1:]}}))"
    )
    pinned = dict(pin.split("==") for pin in stack.pins)
    out = subprocess.run(
        [str(interpreter), "-c", probe, *pinned],
        capture_output=True,
        text=True,
        check=True,
        env=kaggle_image.clean_env(),
    ).stdout
    expected = {"python": stack.python, "tensorflow": stack.version("tensorflow-cpu"), **pinned}
    assert json.loads(out.splitlines()[-1]) == expected


def test_kernel_smoke_run_on_the_image(stack, interpreter, tmp_path):
    from marsseg.submission.formats import read_submission

    result = kaggle_image.smoke_run(interpreter, tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    assert read_submission(tmp_path / "out" / "submission.csv", 24).n_images == 24
    assert "[kernel] done" in result.stdout
    packages = [line for line in result.stdout.splitlines() if line.startswith("[kernel] packages: ")]
    assert len(packages) == 1, result.stdout[-2000:]
    assert f"python {stack.python}." in packages[0]
    assert f"keras {stack.version('keras')} (tensorflow {stack.version('tensorflow-cpu')})" in packages[0]
    assert f"albumentations {stack.version('albumentations')}" in packages[0]


def test_a_kernel_using_python_311_api_fails_on_the_competition_image(tmp_path):
    """The guard can fail: `datetime.UTC` is new in Python 3.11 (what pyupgrade would write for py311)."""
    interpreter = _interpreter(COMPETITION)
    copy = tmp_path / "marsseg"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    config = copy / "config" / "__init__.py"
    config.write_text(config.read_text() + "\nfrom datetime import UTC  # noqa: E402\n")
    kernel = tmp_path / "kernel.py"
    kernel.write_text(build_kernel(copy).text)
    result = kaggle_image.smoke_run(interpreter, tmp_path, kernel=kernel)
    assert result.returncode != 0
    assert "cannot import name 'UTC'" in result.stderr


def test_the_kernel_turns_off_albumentations_update_check_first():
    """Set before anything imports albumentations: on Kaggle (no internet) the check costs a timeout each run."""
    text = build_kernel().text
    setting = text.find('os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")')
    first_import = re.search(r"^\s*(from|import) (marsseg|albumentations)\b", text, re.MULTILINE)
    assert 0 < setting < first_import.start()
