"""The `make bench` runner: run the sections in SECTIONS and write BENCHMARKS.md, one stamped block per section.

Each section measures in one run and reports medians and ratios, never a single timing: the machine is shared
and noisy. Each block is stamped with when, at which commit, in how long and on which machine it was measured,
and the command that re-measures it; blocks of sections not run (`--only NAME`) stay as they were. The sections
live in `sections_io`, `sections_models`, `sections_tracking`, `quality`, `paired`, `converged`, `stage2_screen`,
`recipe`, `ensemble_bench` and `gpu`.

Sections that take a `seed` (the quality sections) run `repeat` times, at seeds `seed`, `seed + 1`, ...; each run
is stored as it finishes and the block is written from every stored run, so an interrupted series resumes with
`--seed` at the next seed. The file is rewritten after each section. `render=True` rewrites the blocks of the
sections in RENDERERS from their stored records alone, measuring nothing (a change of how a block is written).
"""

from __future__ import annotations

import inspect
import os
import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from marsseg.config import Config
from marsseg.errors import UserError
from marsseg.files import atomic_write_text
from marsseg.stamps import git_commit
from marsseg_bench import converged, ensemble_bench, gpu, paired, quality, recipe, stage2_screen
from marsseg_bench.sections_io import section_augment, section_kaggle, section_submission
from marsseg_bench.sections_models import section_compile, section_models
from marsseg_bench.sections_tracking import section_tracking
from marsseg_bench.timing import machine_description

# Every section, in BENCHMARKS.md's order; `--only NAME` runs a subset. Sections that measure nothing on this
# machine (no GPU) return None and keep their block in the file.
SECTIONS = {
    "submission": section_submission,
    "augment": section_augment,
    "kaggle": section_kaggle,
    "models": section_models,
    "compile": section_compile,
    "tracking": section_tracking,
    "quality": quality.section_quality,
    "quality_long": quality.section_quality_long,
    "paired": paired.section_paired,
    "converged": converged.section_converged,
    "stage2": stage2_screen.section_stage2,
    "recipe": recipe.section_recipe,
    "ensemble": ensemble_bench.section_ensemble,
    "gpu": gpu.section_gpu,
    "quality_gpu": quality.section_quality_gpu,
}

# Sections a plain `make bench` leaves out, run only when named (`--only converged`): hours of both cores.
OPT_IN = ("converged",)

# What chooses what a section runs: its variables (the stamp's command names each one that is set), each with its
# check, run before any section measures.
SECTION_CHOICES = {
    "recipe": ((recipe.ITEMS_ENV, recipe.chosen_items),),
    "ensemble": ((ensemble_bench.NETWORK_ENV, ensemble_bench.chosen_network),),
    "paired": ((paired.PAIRS_ENV, paired.chosen_pairs),),
    "converged": (
        (converged.STAND_INS_ENV, converged.chosen_stand_ins_converged),
        (converged.PAIRS_ENV, converged.chosen_pairs_converged),
    ),
}


# Sections whose block can be written again from their stored records alone (`marsseg bench --render`).
RENDERERS = {"paired": paired.render_stored, "converged": converged.render_stored}


def run_benchmarks(
    out: Path,
    repeats: int = 5,
    only: list[str] | None = None,
    log=None,
    repeat: int = 1,
    seed: int | None = None,
    render: bool = False,
) -> Path:
    """Run the sections (all, or `only`) and write `out`. Blocks of sections not run, or that measured nothing
    here (a GPU section on a CPU machine), stay as they were in `out`. Sections that take a seed run `repeat`
    times at seeds `seed` (default: the presets' seed), `seed + 1`, ...; the others run once."""
    log = log or (lambda message: print(f"[bench] {message}", file=sys.stderr, flush=True))
    unknown = [name for name in only or [] if name not in SECTIONS]
    if unknown:
        raise UserError(f"unknown benchmark section {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    if repeat < 1:
        raise UserError(f"--repeat {repeat}: run each seeded section at least once (e.g. --repeat 3)")
    if render:
        return render_blocks(out, only or list(RENDERERS), log)
    names = only or [name for name in SECTIONS if name not in OPT_IN]
    for name in names:  # the sections' own choices, checked before hours of other sections run
        for _, check in SECTION_CHOICES.get(name, ()):
            check()
    blocks = _read_blocks(out)
    machine = machine_description()
    for name in names:
        log(f"section {name}")
        started = time.perf_counter()
        body, command = _run_section(name, repeats, log, repeat, seed)
        if body is None:
            continue
        blocks[name] = stamped_block(name, body, command, time.perf_counter() - started, machine)
        _write(out, blocks)
    _write(out, blocks)
    log(f"wrote {out}")
    return out


def render_blocks(out: Path, names: list[str], log) -> Path:
    """Rewrite the `names` blocks of `out` from their stored records; the stamp says so (the tables name the
    commits their records were measured at)."""
    cannot = [name for name in names if name not in RENDERERS]
    if cannot:
        raise UserError(f"--render: {', '.join(cannot)} cannot be re-rendered; choose from {', '.join(RENDERERS)}")
    blocks = _read_blocks(out)
    for name in names:
        body = RENDERERS[name]()
        if body is None:
            log(f"{name}: no stored records; block kept")
            continue
        stamp = (
            f"_Rendered {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC at commit {git_commit('short', cwd=Path.cwd())}"
            f" from the records stored under .bench/, measured at the commits listed above "
            f"(`marsseg bench --only {name} --render`)._"
        )
        blocks[name] = f"<!-- bench:{name} -->\n{body}\n\n{stamp}\n<!-- /bench:{name} -->"
    _write(out, blocks)
    log(f"wrote {out}")
    return out


def stamped_block(name: str, body: str, command: str, seconds: float, machine: str | None = None) -> str:
    """A section's block: its body, then when, at which commit, in how long, where and by which command."""
    stamp = (
        f"_Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC "
        f"at commit {git_commit('short', cwd=Path.cwd())} "
        f"in {seconds:.0f} s on {machine or machine_description()} (`{command}`)._"
    )
    return f"<!-- bench:{name} -->\n{body}\n\n{stamp}\n<!-- /bench:{name} -->"


def write_block(out: Path, name: str, block: str) -> Path:
    """`out` with its `name` block replaced by `block` (every other block kept)."""
    blocks = _read_blocks(out)
    blocks[name] = block
    _write(out, blocks)
    return out


def takes_seed(section) -> bool:
    """Whether a section function has a `seed` parameter (runs at several seeds, results stored)."""
    try:
        return "seed" in inspect.signature(section).parameters
    except (TypeError, ValueError):
        return False


def _run_section(name: str, repeats: int, log, repeat: int, seed: int | None):
    """The section's block (None: measured nothing here) and the command that re-measures it."""
    section = SECTIONS[name]
    chosen = [(variable, os.environ.get(variable, "").strip()) for variable, _ in SECTION_CHOICES.get(name, ())]
    command = "".join(f"{variable}={value} " for variable, value in chosen if value) + f"marsseg bench --only {name}"
    if not takes_seed(section):
        if repeat > 1 or seed is not None:
            log(f"{name}: takes no seed; measured once")
        return section(repeats, log), command
    first = Config().seed if seed is None else int(seed)
    body = None
    for i in range(repeat):
        log(f"{name}: seed {first + i} ({i + 1} of {repeat})")
        body = section(repeats, log, seed=first + i)
        if body is None:  # nothing to measure on this machine: no point in the other seeds
            break
    if seed is not None or repeat > 1:
        command += f" --seed {first}" + (f" --repeat {repeat}" if repeat > 1 else "")
    return body, command


def _write(out: Path, blocks: dict[str, str]) -> None:
    ordered = [blocks[name] for name in SECTIONS if name in blocks]
    header = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`marsseg bench`; one section: `marsseg bench --only NAME`). The GPU sections",
        "(`gpu`, `quality_gpu`) measure only where the Keras backend sees a GPU; elsewhere they keep their last block.",
        "",
        "Figures are medians of repeated runs inside one invocation; ratios compare timings taken in that same run.",
        "Each section says when, at which commit and on which machine it was measured.",
        "What each section measures and where the kit stands: [docs/benchmarks.md](docs/benchmarks.md).",
        "",
    ]
    atomic_write_text(out, "\n".join(header + ["\n\n".join(ordered), ""]))


def _read_blocks(path: Path) -> dict[str, str]:
    """The `<!-- bench:NAME -->` blocks already in `path`, by section name (none where it is missing)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return {}
    pattern = re.compile(r"<!-- bench:(\w+) -->.*?<!-- /bench:\1 -->", re.S)
    return {match.group(1): match.group(0) for match in pattern.finditer(text)}
