import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from marsseg.errors import UserError
from marsseg.kaggle.bundle import (
    KERNEL_PATH,
    build_kernel,
    collect_sources,
    embedded_sources,
    entry_text,
    import_closure,
    stale_reason,
    write_kernel,
)
from tests.conftest import one_line_error, run_cli

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "marsseg"
COMMITTED = ROOT / KERNEL_PATH


def clean_env(**extra):
    """No PYTHONPATH and no Kaggle or kit settings: the kernel must bring its own package."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MARSSEG_", "KAGGLE_"))}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", **extra)
    return env


def test_committed_kernel_is_fresh_against_src():
    # Chosen policy: the generated kernel is committed, and this fails when src/ moved on without `make bundle`.
    assert stale_reason(COMMITTED, PACKAGE) is None


def test_kernel_compiles_and_has_its_settings_on_top():
    text = build_kernel(PACKAGE).text
    compile(text, "marsseg_kernel.py", "exec")
    head = entry_text(text)
    assert (
        head.index('PRESET = "kaggle"')
        < head.index("def locate(")
        < head.index("def main(")
        < head.index("def unpack_package(")
    )
    assert "BUDGET_SECONDS = None" in head and "OVERRIDES = []" in head
    assert head.count('"/kaggle/input"') == 1 and head.count('"/kaggle/working"') == 1  # the one switch
    assert "pip install" not in head and "subprocess" not in head


def test_same_sources_give_byte_identical_script(tmp_path):
    copy = tmp_path / "marsseg"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    for path in copy.rglob("*.py"):
        os.utime(path, (1_000_000, 1_000_000))  # different mtimes must not matter
    assert build_kernel(copy).text == build_kernel(PACKAGE).text == build_kernel(PACKAGE).text


def test_candidate_sources_are_every_py_file_recursively_and_nothing_else(tmp_path):
    package = tmp_path / "pkg"
    for name in (
        "__init__.py",
        "a.py",
        "sub/__init__.py",
        "sub/deep/b.py",
        "__pycache__/a.cpython-311.py",
        "tests/test_a.py",
        "data/x.py",
        "notes.txt",
        "sub/weights.h5",
    ):
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text("x = 1\n")
    assert list(collect_sources(package)) == [
        "pkg/__init__.py",
        "pkg/a.py",
        "pkg/data/x.py",
        "pkg/sub/__init__.py",
        "pkg/sub/deep/b.py",
    ]


def _package(tmp_path, files: dict) -> Path:
    for name, text in files.items():
        (tmp_path / "pkg" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "pkg" / name).write_text(textwrap.dedent(text))
    return tmp_path / "pkg"


def test_closure_follows_every_import_node_and_leaves_the_rest_out(tmp_path):
    package = _package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "import numpy\nfrom pkg import b\n",
            "b.py": "def f():\n    from .sub.deep import c  # function-level and relative\n",
            "sub/__init__.py": "",
            "sub/deep/__init__.py": "from pkg.sub.deep.d import x\n",
            "sub/deep/c.py": "from .. import e\n",
            "sub/deep/d.py": "x = 1\n",
            "sub/e.py": "",
            "tool.py": "import pkg.a\n",  # imports the kernel's modules, but nothing imports it
        },
    )
    names = list(import_closure("import os\nfrom pkg.a import numpy as np\n", package))
    assert names == [
        "pkg/__init__.py",
        "pkg/a.py",
        "pkg/b.py",
        "pkg/sub/__init__.py",
        "pkg/sub/deep/__init__.py",
        "pkg/sub/deep/c.py",
        "pkg/sub/deep/d.py",
        "pkg/sub/e.py",
    ]


@pytest.mark.parametrize("code", ["import pkg.missing", "from pkg.missing import x", "from pkg.a.b import c"])
def test_closure_refuses_an_import_of_the_package_that_names_no_module(tmp_path, code):
    package = _package(tmp_path, {"__init__.py": "", "a.py": f"def f():\n    {code}\n"})
    with pytest.raises(UserError, match=r"pkg/a.py:2: `pkg\.(missing|a\.b)` is not a module of pkg"):
        import_closure("import pkg.a", package)


def test_the_kernel_embeds_what_it_runs_and_no_tooling():
    names = set(embedded_sources(build_kernel(PACKAGE).text))
    assert {
        "marsseg/__init__.py",
        "marsseg/pipeline/run.py",
        "marsseg/models/unet.py",
        "marsseg/training/fit.py",
    } <= names
    tooling = ("kaggle/", "tracking", "cli", "bench", "quality", "plots", "bundle", "rules", "emulator")
    tooling += ("pipeline/ensemble", "pipeline/members")  # `marsseg ensemble` runs here, never in the kernel
    assert not [n for n in names if any(t in n for t in tooling)], names
    assert not any("__pycache__" in n or "/tests/" in n for n in names)
    embedded = sum(data.count(b"\n") for data in embedded_sources(build_kernel(PACKAGE).text).values())
    everything = sum(data.count(b"\n") for data in collect_sources(PACKAGE).values())
    assert embedded <= 0.6 * everything, (embedded, everything)


def test_stale_kernel_is_detected_and_names_the_changed_file(tmp_path, monkeypatch):
    copy = tmp_path / "src" / "marsseg"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    kernel = tmp_path / "kernel.py"
    write_kernel(kernel, copy, log=lambda *_: None)
    assert stale_reason(kernel, copy) is None
    (copy / "prep" / "folds.py").write_text((copy / "prep" / "folds.py").read_text() + "\n# changed\n")
    reason = stale_reason(kernel, copy)
    assert reason and "marsseg/prep/folds.py" in reason and "make bundle" in reason
    _, changed = write_kernel(kernel, copy, log=lambda *_: None)
    assert changed and stale_reason(kernel, copy) is None
    (copy / "tracking" / "plots.py").write_text((copy / "tracking" / "plots.py").read_text() + "\n# a tooling edit\n")
    assert stale_reason(kernel, copy) is None  # the kernel does not embed the tracking tools


def test_cli_bundle_check_fails_in_one_line_when_stale(tmp_path):
    stale = tmp_path / "k.py"
    stale.write_text("print('old')\n")
    line = one_line_error(run_cli("bundle", "--check", "--out", stale, env={"PYTHONPATH": str(ROOT / "src")}))
    assert "make bundle" in line


def test_kernel_imports_its_own_package_and_removes_it_at_exit(tmp_path, small_data_file):
    data, _ = small_data_file
    kernel = tmp_path / "kernel.py"
    kernel.write_text(build_kernel(PACKAGE).text)
    probe = textwrap.dedent(f"""
        import runpy, sys
        ns = runpy.run_path({str(kernel)!r}, run_name="kernel")
        unpacked = ns["unpack_package"]()
        ns["main"](["--data", {str(data)!r}, "--out", "out", "--preset", "smoke"])
        files = [m.__file__ for n, m in sys.modules.items() if n.split(".")[0] == "marsseg"]
        print("UNPACKED", unpacked)
        print("FILES", *files, sep="\\n")
    """)
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    unpacked = lines[lines.index(next(line for line in lines if line.startswith("UNPACKED")))].split(" ", 1)[1]
    files = lines[lines.index("FILES") + 1 :]
    assert len(files) >= 5 and all(f.startswith(unpacked) for f in files), files
    assert not any(str(ROOT) in f for f in files)
    assert not Path(unpacked).exists()  # the unpacked package goes when the process ends


def test_kernel_runs_end_to_end_in_kaggle_folders_and_writes_a_valid_submission(tmp_path, small_data_file):
    """No arguments, as on Kaggle: data found under the input folder, every output in the working folder."""
    from marsseg.submission.formats import read_submission

    data, _ = small_data_file
    kernel = tmp_path / "marsseg_kernel.py"
    kernel.write_text(build_kernel(PACKAGE).text)
    (tmp_path / "input" / "comp").mkdir(parents=True)
    shutil.copyfile(data, tmp_path / "input" / "comp" / "mars_for_students.npz")
    out = tmp_path / "working"
    out.mkdir()
    result = subprocess.run(
        [sys.executable, str(kernel)],
        cwd=out,
        capture_output=True,
        text=True,
        env=clean_env(
            MARSSEG_KAGGLE_INPUT=str(tmp_path / "input"),
            MARSSEG_KAGGLE_WORKING=str(out),
            MARSSEG_KERNEL_PRESET="smoke",
        ),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    info = read_submission(out / "submission.csv", 24)
    assert info.layout == "pixels" and info.n_images == 24  # the competition's layout: ready for Submit
    assert (read_submission(out / "submission_rle.csv", 24).masks == info.masks).all()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stage1_status"] == "ok" and "submission_copy" not in metrics
    names = {p.name for p in out.iterdir()}
    assert names == set(metrics["outputs"]["files"]) | {"metrics.json"}  # /kaggle/working holds the run's files only
    assert {"model_stage1_fold1.keras", "model_stage1_fold2.keras", "submission_rle.csv", "config.json"} <= names
    assert "submission.csv is ready to submit" in result.stdout


def test_kernel_reports_bad_data_in_one_line(tmp_path):
    kernel = tmp_path / "k.py"
    kernel.write_text(build_kernel(PACKAGE).text)
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    result = subprocess.run(
        [sys.executable, str(kernel), "--data", "bad.npz", "--preset", "smoke"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("marsseg: error: bad.npz: not an npz file")


def test_kernel_exits_3_when_stage_1_crashes_after_writing_the_fallback(tmp_path, small_data_file):
    data, _ = small_data_file
    kernel = tmp_path / "kernel.py"
    kernel.write_text(build_kernel(PACKAGE).text)
    probe = textwrap.dedent(f"""
        import runpy
        ns = runpy.run_path({str(kernel)!r}, run_name="kernel")
        ns["unpack_package"]()
        import marsseg.pipeline.run as pipeline_run
        def broken(*args, **kwargs):
            raise RuntimeError("injected stage-1 crash")
        pipeline_run.stage1_folds = broken
        ns["main"](["--data", {str(data)!r}, "--out", "out", "--preset", "smoke"])
    """)
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 3, result.stderr
    assert "[kernel] FAILED: stage 1 crashed (RuntimeError: injected stage-1 crash)" in result.stderr
    assert "[kernel] done" not in result.stdout
    from marsseg.submission.formats import read_submission

    assert read_submission(tmp_path / "out" / "submission.csv", 24).layout == "pixels"
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["fallback"] == "nearest-centroid"


# JAX comes with the image's Colab base, beside TensorFlow (shared/kaggle-api.md); the kit imports it only under
# KERAS_BACKEND=jax.
KAGGLE_IMAGE = {
    "numpy", "pandas", "scipy", "sklearn", "tensorflow", "keras", "albumentations", "cv2", "matplotlib", "jax"
}  # fmt: skip


def test_bundled_modules_import_only_what_kaggles_image_ships():
    import ast

    outside = set()
    for name, data in embedded_sources(build_kernel(PACKAGE).text).items():
        for node in ast.walk(ast.parse(data)):
            if isinstance(node, ast.Import):
                tops = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops = [node.module.split(".")[0]]
            else:
                continue
            outside |= {
                f"{name}: {t}"
                for t in tops
                if t not in sys.stdlib_module_names and t not in KAGGLE_IMAGE and t != "marsseg"
            }
    assert not outside, sorted(outside)
