"""What a test's child Python process needs: the kit's sources (and, where asked, the tests) importable.

env = with_sources({**os.environ, "KERAS_BACKEND": "jax"})              # `import marsseg` works in the child
env = with_sources({**os.environ}, tests=True)                          # and `import tests.helpers...` too
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def with_sources(env: dict, tests: bool = False) -> dict:
    """`env` with src/ (and, with `tests`, the repository root) first on PYTHONPATH, followed by whatever
    PYTHONPATH `env` had: the checkout's code, not an installed copy, is what the child runs."""
    first = [str(ROOT / "src")] + ([str(ROOT)] if tests else [])
    return {**env, "PYTHONPATH": os.pathsep.join(filter(None, [*first, env.get("PYTHONPATH")]))}
