"""Run the bundled kernel's smoke run in an environment pinned like Kaggle's image: `make test-kaggle-image`.

The kernel must run on the image Kaggle had for the competition, not only on today's releases: one line of
new syntax or one new API call would break it there. The environment is built once per set of pins under
`~/.cache/marsseg/` (outside the clone, so reruns and fresh clones reuse it) and locked while it is built.
Where no Python 3.10 exists, it says so and skips (exit 0).
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
from pathlib import Path

PYTHON_VERSION = "3.10"
# Kaggle's image as the competition ran on it (Colab's base image, late 2024).
PINS = (
    "tensorflow-cpu==2.17.1",
    "keras==3.5.0",
    "albumentations==1.4.20",
    "scikit-learn==1.2.2",
    "matplotlib==3.7.5",
    "numpy==1.26.4",
    "pandas==2.2.2",
    "scipy==1.13.1",
)
ROOT = Path(__file__).resolve().parents[2]
KERNEL = ROOT / "kernels" / "marsseg_kernel.py"


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha256("\n".join((PYTHON_VERSION, *PINS)).encode()).hexdigest()[:12]
    return base / "marsseg" / f"kaggle-image-py{PYTHON_VERSION}-{digest}"


def _is_python(candidate: str) -> bool:
    try:
        out = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and out.stdout.strip() == PYTHON_VERSION


def find_python() -> str | None:
    """A Python 3.10 interpreter: $MARSSEG_PYTHON310, python3.10 on PATH, else pyenv's; None if there is none."""
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    candidates = [
        os.environ.get("MARSSEG_PYTHON310"),
        shutil.which(f"python{PYTHON_VERSION}"),
        *sorted(glob.glob(f"{pyenv_root}/versions/{PYTHON_VERSION}.*/bin/python"), reverse=True),
    ]
    return next((c for c in candidates if c and _is_python(c)), None)


def ensure_env(python: str, log=print) -> Path:
    """The pinned environment's interpreter, built first if missing (under a lock: tests may race)."""
    env = cache_dir()
    env.parent.mkdir(parents=True, exist_ok=True)
    with open(env.parent / f"{env.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = env / ".complete"
        if not done.is_file():
            shutil.rmtree(env, ignore_errors=True)  # a build that was interrupted half way
            log(f">> building the Kaggle-image environment in {env} (about a minute, once)")
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
            result = subprocess.run([*pip, *PINS], capture_output=True, text=True)
            if result.returncode != 0:
                tail = "\n".join(line for line in result.stderr.splitlines() if "Location" not in line)[-2000:]
                raise SystemExit(f"pip could not install the Kaggle-image pins into {env}:\n{tail}")
            done.write_text("\n".join(PINS) + "\n")
    return env / "bin" / "python"


def clean_env() -> dict:
    """No PYTHONPATH and no kit or Kaggle settings: the kernel must bring its own package."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MARSSEG_", "KAGGLE_", "VIRTUAL_ENV"))}
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


def main() -> int:
    python = find_python()
    if python is None:
        print(
            f"test-kaggle-image: skipped: no Python {PYTHON_VERSION} here (install it, e.g. `pyenv install "
            f"{PYTHON_VERSION}`, or point MARSSEG_PYTHON310 at one)"
        )
        return 0
    interpreter = ensure_env(python)
    with tempfile.TemporaryDirectory(prefix="marsseg-kaggle-image-") as work:
        result = smoke_run(interpreter, Path(work))
        if result.returncode != 0:
            print(result.stdout[-3000:] + result.stderr[-6000:], file=sys.stderr)
            print(
                f"test-kaggle-image: FAILED: the kernel's smoke run exited {result.returncode} on Python "
                f"{PYTHON_VERSION} with {' '.join(PINS)}",
                file=sys.stderr,
            )
            return 1
        from marsseg.submission.formats import read_submission

        info = read_submission(Path(work) / "out" / "submission.csv", 24)
    print(
        f"test-kaggle-image: ok: the kernel ran its smoke run on Python {PYTHON_VERSION} with {' '.join(PINS)} "
        f"and wrote a valid {info.layout} submission of {info.n_images} images"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
