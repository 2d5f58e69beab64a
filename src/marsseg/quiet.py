"""Keep TensorFlow's C++ start-up lines out of the terminal and the kernel log (unless MARSSEG_VERBOSE=1).

TensorFlow 2.18+ writes its oneDNN, absl and cpu_feature_guard lines while `import tensorflow` runs, before it reads
TF_CPP_MIN_LOG_LEVEL, so the variable alone does not silence them. A finder on `sys.meta_path` waits for that one
import and runs it with file descriptor 2 pointed at a temporary file; if the import fails, what it wrote is
replayed, so a real failure still shows. Nothing is imported here: commands that never load TensorFlow pay nothing.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import sys
import tempfile


@contextlib.contextmanager
def stderr_silenced():
    """File descriptor 2 goes to a temporary file inside the block; its text is replayed if the block raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Runs the first `import tensorflow` under `stderr_silenced`, then steps aside."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # one import only; find the real spec without this finder
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            exec_module = spec.loader.exec_module

            def quiet_exec_module(module):
                with stderr_silenced():
                    exec_module(module)

            spec.loader.exec_module = quiet_exec_module
        return spec


def install() -> None:
    """Quiet TensorFlow's start-up, unless MARSSEG_VERBOSE=1 or it is already imported."""
    if os.environ.get("MARSSEG_VERBOSE") == "1" or "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # the C++ lines TensorFlow writes after start-up
    if not any(isinstance(finder, QuietTensorFlowImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, QuietTensorFlowImport())
