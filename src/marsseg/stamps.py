"""Stamps for what the kit writes: the git commit it came from and the UTC time."""

from __future__ import annotations

import subprocess
from datetime import datetime, timezone
from pathlib import Path


def utc_now() -> str:
    """The current UTC time as records and histories write it: 2025-01-02T03:04:05Z."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


_GIT_FORMATS = {
    "full": ["rev-parse", "HEAD"],  # config.json: the exact commit a run came from
    "short": ["rev-parse", "--short", "HEAD"],  # BENCHMARKS.md stamps
    "describe": ["describe", "--always", "--dirty", "--abbrev=7"],  # submission records: marks uncommitted edits
}


def git_commit(style: str = "full", cwd=None) -> str:
    """The commit of the repository at `cwd` (default: the package's own folder) as `style` says; "unknown" outside
    a git checkout (a Kaggle kernel, an installed wheel)."""
    where = Path(cwd) if cwd is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(where), *_GIT_FORMATS[style]], capture_output=True, text=True, check=True, timeout=20
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
