"""Run the bundled kernel's smoke run in environments pinned like Kaggle's images: `make test-kaggle-image`.

The kernel must run on the image Kaggle had for the competition and on the one a kernel pushed today gets: one
line of new syntax or one API that moved would break it on one of them. Each stack's environment is built once
under `~/.cache/marsseg/` (outside the clone, so reruns and fresh clones reuse it) and locked while it is built.
A stack whose Python is missing here is reported as skipped.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KERNEL = ROOT / "kernels" / "marsseg_kernel.py"


@dataclass(frozen=True)
class Stack:
    """One Kaggle image: its Python (major.minor) and the pins installed into a virtual environment of it."""

    name: str
    python: str
    pins: tuple[str, ...]
    note: str

    def version(self, distribution: str) -> str:
        """The pinned version of `distribution` (e.g. "keras" -> "3.5.0")."""
        return next(pin.split("==")[1] for pin in self.pins if pin.split("==")[0] == distribution)


# tensorflow-cpu stands in for the images' tensorflow (same version, no CUDA wheels): there is no GPU here.
COMPETITION = Stack(
    "competition",
    "3.10",
    (
        "tensorflow-cpu==2.17.1",
        "keras==3.5.0",
        "albumentations==1.4.20",
        "scikit-learn==1.2.2",
        "matplotlib==3.7.5",
        "numpy==1.26.4",
        "pandas==2.2.2",
        "scipy==1.13.1",
    ),
    "Kaggle's image as the competition ran on it (Colab's base image, late 2024)",
)
TODAY = Stack(
    "today",
    "3.12",
    (
        "tensorflow-cpu==2.20.0",
        "keras==3.13.2",
        "albumentations==2.0.8",
        "scikit-learn==1.6.1",
        "matplotlib==3.10.0",
        "numpy==2.0.2",
        "pandas==2.2.2",
        # scipy and opencv as Colab's 2026-05 pip freeze has them (googlecolab/backend-info); unpinned, pip would
        # take today's newest, which the image does not have.
        "scipy==1.16.3",
        "opencv-python-headless==4.13.0.92",
    ),
    "what a kernel pushed today runs on (Colab's base image, 2026-05; Python 3.12.13 there)",
)
STACKS = (COMPETITION, TODAY)


def cache_dir(stack: Stack) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha256("\n".join((stack.python, *stack.pins)).encode()).hexdigest()[:12]
    return base / "marsseg" / f"kaggle-image-py{stack.python}-{digest}"


def _is_python(candidate: str, version: str) -> bool:
    try:
        out = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and out.stdout.strip() == version


def python_variable(version: str) -> str:
    """The variable that names an interpreter for `version`: "3.12" -> MARSSEG_PYTHON312."""
    return "MARSSEG_PYTHON" + version.replace(".", "")


def find_python(version: str) -> str | None:
    """A Python `version` ("3.12"): $MARSSEG_PYTHON312, python3.12 on PATH, else pyenv's; None if there is none."""
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    candidates = [
        os.environ.get(python_variable(version)),
        shutil.which(f"python{version}"),
        *sorted(glob.glob(f"{pyenv_root}/versions/{version}.*/bin/python"), reverse=True),
    ]
    return next((c for c in candidates if c and _is_python(c, version)), None)


def ensure_env(stack: Stack, python: str, log=print) -> Path:
    """The stack's environment's interpreter, built first if missing (under a lock: tests may race)."""
    env = cache_dir(stack)
    env.parent.mkdir(parents=True, exist_ok=True)
    with open(env.parent / f"{env.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = env / ".complete"
        if not done.is_file():
            shutil.rmtree(env, ignore_errors=True)  # a build that was interrupted half way
            log(f">> building the {stack.name} Kaggle-image environment in {env} (a minute or two, once)")
            subprocess.run([python, "-m", "venv", str(env)], check=True)
            pip = [
                str(env / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "--progress-bar",
                "off",
            ]
            result = subprocess.run([*pip, *stack.pins], capture_output=True, text=True)
            if result.returncode != 0:
                tail = "\n".join(line for line in result.stderr.splitlines() if "Location" not in line)[-2000:]
                raise SystemExit(f"pip could not install the {stack.name} pins into {env}:\n{tail}")
            done.write_text("\n".join(stack.pins) + "\n")
    return env / "bin" / "python"


def clean_env() -> dict:
    """No PYTHONPATH and no kit or Kaggle settings: the kernel must bring its own package."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MARSSEG_", "KAGGLE_", "VIRTUAL_ENV"))}
    env.pop("NO_ALBUMENTATIONS_UPDATE", None)  # the kernel must set it itself
    env.update(TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    return env


def smoke_run(python: Path, work: Path, kernel: Path = KERNEL) -> subprocess.CompletedProcess:
    """The kernel's smoke run on small synthetic data, under `python`; its outputs go to work/out."""
    from marsseg.data.synth import make_synthetic, save_synthetic

    data = work / "data.npz"
    save_synthetic(make_synthetic(n_train=96, n_test=24, seed=7), data)
    return subprocess.run(
        [str(python), str(kernel), "--data", str(data), "--out", str(work / "out"), "--preset", "smoke"],
        cwd=work,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )


def check(stack: Stack) -> bool | None:
    """Run the smoke run under `stack` and print one line: True if it passed, False if not, None if skipped."""
    label = f"test-kaggle-image: {stack.name} (Python {stack.python} with {' '.join(stack.pins)})"
    python = find_python(stack.python)
    if python is None:
        print(
            f"{label}: skipped: no Python {stack.python} here (install it, e.g. `pyenv install {stack.python}`, "
            f"or point {python_variable(stack.python)} at one)"
        )
        return None
    interpreter = ensure_env(stack, python)
    with tempfile.TemporaryDirectory(prefix="marsseg-kaggle-image-") as work:
        result = smoke_run(interpreter, Path(work))
        if result.returncode != 0:
            print(result.stdout[-3000:] + result.stderr[-6000:], file=sys.stderr)
            print(f"{label}: FAILED: the kernel's smoke run exited {result.returncode}", file=sys.stderr)
            return False
        from marsseg.submission.formats import read_submission

        info = read_submission(Path(work) / "out" / "submission.csv", 24)
    print(f"{label}: ok: a valid {info.layout} submission of {info.n_images} images")
    return True


def main() -> int:
    results = [check(stack) for stack in STACKS]  # every stack, even after a failure: both lines are news
    return 1 if False in results else 0


if __name__ == "__main__":
    sys.exit(main())
