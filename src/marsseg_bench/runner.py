"""The `make bench` runner: run the sections in SECTIONS and write BENCHMARKS.md, one stamped block per section.

Each section measures in one run and reports medians and ratios, never a single timing: the machine is shared
and noisy. Each block is stamped with when, at which commit, in how long and on which machine it was measured,
and the command that re-measures it; blocks of sections not run (`--only NAME`) stay as they were. The sections
live in `sections_io`, `sections_models`, `sections_tracking`, `quality` and `gpu`.
"""

from __future__ import annotations

import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from marsseg.errors import UserError
from marsseg.files import atomic_write_text
from marsseg.stamps import git_commit
from marsseg_bench import gpu, quality
from marsseg_bench.sections_io import section_augment, section_kaggle, section_submission
from marsseg_bench.sections_models import section_models
from marsseg_bench.sections_tracking import section_tracking
from marsseg_bench.timing import machine_description

# Every section, in BENCHMARKS.md's order; `--only NAME` runs a subset. Sections that measure nothing on this
# machine (no GPU) return None and keep their block in the file.
SECTIONS = {
    "submission": section_submission,
    "augment": section_augment,
    "kaggle": section_kaggle,
    "models": section_models,
    "tracking": section_tracking,
    "quality": quality.section_quality,
    "quality_long": quality.section_quality_long,
    "gpu": gpu.section_gpu,
    "quality_gpu": quality.section_quality_gpu,
}


def run_benchmarks(out: Path, repeats: int = 5, only: list[str] | None = None, log=None) -> Path:
    """Run the sections (all, or `only`) and write `out`. Blocks of sections not run, or that measured nothing
    here (a GPU section on a CPU machine), stay as they were in `out`."""
    log = log or (lambda message: print(f"[bench] {message}", file=sys.stderr, flush=True))
    unknown = [name for name in only or [] if name not in SECTIONS]
    if unknown:
        raise UserError(f"unknown benchmark section {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    names = only or list(SECTIONS)
    blocks = _read_blocks(out)
    machine = machine_description()
    for name in names:
        log(f"section {name}")
        started = time.perf_counter()
        body = SECTIONS[name](repeats, log)
        if body is None:
            continue
        stamp = (
            f"_Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC "
            f"at commit {git_commit('short', cwd=Path.cwd())} "
            f"in {time.perf_counter() - started:.0f} s on {machine} (`marsseg bench --only {name}`)._"
        )
        blocks[name] = f"<!-- bench:{name} -->\n{body}\n\n{stamp}\n<!-- /bench:{name} -->"
    ordered = [blocks[name] for name in SECTIONS if name in blocks]
    header = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`marsseg bench`; one section: `marsseg bench --only NAME`). The GPU sections",
        "(`gpu`, `quality_gpu`) measure only where the Keras backend sees a GPU; elsewhere they keep their last block.",
        "",
        "Figures are medians of repeated runs inside one invocation; ratios compare timings taken in that same run.",
        "Each section says when, at which commit and on which machine it was measured.",
        "",
    ]
    atomic_write_text(out, "\n".join(header + ["\n\n".join(ordered), ""]))
    log(f"wrote {out}")
    return out


def _read_blocks(path: Path) -> dict[str, str]:
    """The `<!-- bench:NAME -->` blocks already in `path`, by section name (none where it is missing)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return {}
    pattern = re.compile(r"<!-- bench:(\w+) -->.*?<!-- /bench:\1 -->", re.S)
    return {match.group(1): match.group(0) for match in pattern.finditer(text)}
