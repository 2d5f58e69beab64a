"""The kernel's `[kernel] packages:` line: versions from the installed metadata, missing ones said so."""

import platform
import sys
import types

from marsseg import versions


def test_a_missing_package_is_not_installed(monkeypatch):
    assert versions.installed_version("marsseg-no-such-distribution") == "not installed"
    monkeypatch.setitem(versions.DISTRIBUTIONS, "scipy", ("marsseg-no-such-distribution",))
    assert versions.package_versions()["scipy"] == "not installed"


def test_the_first_installed_distribution_wins():
    assert versions.installed_version("marsseg-no-such-distribution", "numpy") == versions.installed_version("numpy")
    assert versions.installed_version("numpy") != "not installed"


def test_only_the_backend_in_use_is_listed():
    found = versions.package_versions(backend="jax")
    assert found["python"] == platform.python_version()
    assert "jax" in found and "tensorflow" not in found and "torch" not in found
    assert list(found)[:4] == ["python", "numpy", "keras", "jax"]


def test_the_line_puts_the_backend_with_keras():
    line = versions.versions_line(
        {"python": "3.12.1", "numpy": "2.0.2", "keras": "3.13.2", "tensorflow": "2.20.0", "scipy": "not installed"}
    )
    assert line == "python 3.12.1, numpy 2.0.2, keras 3.13.2 (tensorflow 2.20.0), scipy not installed"


def test_the_backend_is_keras_own_once_loaded(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    monkeypatch.delitem(sys.modules, "keras", raising=False)
    assert versions.keras_backend() == "jax"  # not loaded yet: the variable Keras will read
    loaded = types.SimpleNamespace(backend=types.SimpleNamespace(backend=lambda: "torch"))
    monkeypatch.setitem(sys.modules, "keras", loaded)
    assert versions.keras_backend() == "torch"
