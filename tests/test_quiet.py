"""TensorFlow's C++ start-up lines stay out of the terminal unless MARSSEG_VERBOSE=1; a failing import still shows."""

import os
import subprocess
import sys

import pytest

NOISY = 'import os\nos.write(2, b"I0000 port.cc:153] oneDNN custom operations are on\\n")\n'


def run_with_fake_tensorflow(tmp_path, body: str, verbose: bool = False):
    (tmp_path / "tensorflow").mkdir()
    (tmp_path / "tensorflow" / "__init__.py").write_text(body)
    code = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import marsseg; import tensorflow; print('IMPORTED')"
    env = {k: v for k, v in os.environ.items() if k not in ("MARSSEG_VERBOSE", "TF_CPP_MIN_LOG_LEVEL")}
    if verbose:
        env["MARSSEG_VERBOSE"] = "1"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)


def test_start_up_lines_are_hidden_by_default(tmp_path):
    result = run_with_fake_tensorflow(tmp_path, NOISY)
    assert result.stdout.strip() == "IMPORTED" and result.stderr == ""


def test_marsseg_verbose_shows_them(tmp_path):
    result = run_with_fake_tensorflow(tmp_path, NOISY, verbose=True)
    assert "oneDNN custom operations" in result.stderr


def test_a_failing_import_replays_what_it_wrote(tmp_path):
    result = run_with_fake_tensorflow(tmp_path, NOISY + 'raise ImportError("libcudart.so.12: cannot open")\n')
    assert result.returncode != 0 and "IMPORTED" not in result.stdout
    assert "oneDNN custom operations" in result.stderr and "libcudart.so.12: cannot open" in result.stderr


@pytest.mark.slow
def test_real_tensorflow_starts_quietly():
    code = "import marsseg, keras, numpy as np; keras.ops.convert_to_tensor(np.ones(3)) + 1; print('OK')"
    env = {k: v for k, v in os.environ.items() if k not in ("MARSSEG_VERBOSE", "TF_CPP_MIN_LOG_LEVEL")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.stdout.strip() == "OK" and "oneDNN" not in result.stderr and "absl" not in result.stderr
