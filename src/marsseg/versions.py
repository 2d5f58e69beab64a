"""The versions of the packages the kernel imports, for its log: what a run ran on is then on record.

Read from the installed distributions' metadata, so nothing heavy is imported to ask; the Keras backend is the
one Keras already runs on where it is loaded, else the one KERAS_BACKEND names (Keras's own default otherwise).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys

# The name a package is logged under -> the distributions that may provide it, the first one installed wins
# (tensorflow-cpu installs the same `tensorflow` module as tensorflow).
DISTRIBUTIONS = {
    "numpy": ("numpy",),
    "keras": ("keras",),
    "tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tf-nightly"),
    "jax": ("jax",),
    "torch": ("torch",),
    "albumentations": ("albumentations",),
    "scikit-learn": ("scikit-learn",),
    "scipy": ("scipy",),
    "pandas": ("pandas",),
    "matplotlib": ("matplotlib",),
}
BACKENDS = ("tensorflow", "jax", "torch")
NOT_INSTALLED = "not installed"


def installed_version(*distributions: str) -> str:
    """The version of the first of `distributions` that is installed, else "not installed"."""
    for name in distributions:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return NOT_INSTALLED


def keras_backend() -> str:
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "backend"):
        return keras.backend.backend()
    return os.environ.get("KERAS_BACKEND", "tensorflow")


def package_versions(backend: str | None = None) -> dict[str, str]:
    """{"python": ..., "numpy": ..., "keras": ..., <the Keras backend>: ..., "albumentations": ..., ...}."""
    backend = backend or keras_backend()
    versions = {"python": platform.python_version()}
    for name, distributions in DISTRIBUTIONS.items():
        if name in BACKENDS and name != backend:
            continue  # only the backend in use is news
        versions[name] = installed_version(*distributions)
    return versions


def versions_line(versions: dict[str, str]) -> str:
    """ "python 3.12.1, numpy 2.0.2, keras 3.13.2 (tensorflow 2.20.0), ...": the backend goes with keras."""
    backend = next((name for name in versions if name in BACKENDS), None)
    parts = []
    for name, version in versions.items():
        if name == backend and "keras" in versions:
            continue
        part = f"{name} {version}"
        if name == "keras" and backend:
            part += f" ({backend} {versions[backend]})"
        parts.append(part)
    return ", ".join(parts)
