"""`make bench` section `converged`: the paired protocol at a horizon long enough for every side to train until its
validation mIoU stops improving, as on Kaggle (issue 27's converged horizon).

    marsseg bench --only converged --seed 42 --repeat 2

The pairs, their two processes on one core each and their records are `paired`'s; only the horizon differs. Each
side gets MARSSEG_BENCH_CONVERGED_BUDGET seconds (default 7200: about two hours of both cores on the 2-core
development machine) as a ceiling, on the stand-ins in MARSSEG_BENCH_CONVERGED_STAND_INS (default `procedural`), for
the pairs in MARSSEG_BENCH_CONVERGED_PAIRS (default `kit|best`; a candidate such as
`kit[stage1.train.epochs=100]|kit` is measured at this horizon the same way). A side counts as converged where its
own rule ended its training (patience, or the kit's epoch cap where its cosine decay ends), not the deadline; the
block names every side the deadline cut. Records go to `.bench/converged.jsonl`, so the two horizons' blocks never
mix.
"""

from __future__ import annotations

from pathlib import Path

from marsseg_bench.paired import (
    chosen_pairs,
    chosen_stand_ins,
    current_series,
    measure_series,
    paired_budget,
    parse_pairs,
)
from marsseg_bench.paired_report import render_paired
from marsseg_bench.quality import N_TEST, N_TRAIN
from marsseg_bench.quality_store import read_results, results_path

BUDGET_ENV = "MARSSEG_BENCH_CONVERGED_BUDGET"
STAND_INS_ENV = "MARSSEG_BENCH_CONVERGED_STAND_INS"
PAIRS_ENV = "MARSSEG_BENCH_CONVERGED_PAIRS"
DEFAULT_BUDGET, DEFAULT_STAND_INS = 7200.0, "procedural"
PAIRS = "kit|best"
RESULTS_NAME = "converged.jsonl"


def chosen_stand_ins_converged(text: str | None = None) -> list[str]:
    return chosen_stand_ins(text, STAND_INS_ENV, DEFAULT_STAND_INS)


def chosen_pairs_converged(preset_name: str = "cpu", text: str | None = None):
    return chosen_pairs(preset_name, text, PAIRS_ENV, PAIRS)


def converged_budget() -> float:
    return paired_budget(BUDGET_ENV, DEFAULT_BUDGET)


def section_converged(
    repeats: int,
    log,
    seed: int | None = None,
    preset_name: str = "cpu",
    budget: float | None = None,
    n_train: int = N_TRAIN,
    n_test: int = N_TEST,
    stand_ins: str | None = None,
    results=None,
    pairs: str | None = None,
) -> str:
    """At `seed`, every chosen pair (`kit|best` unless chosen otherwise) on every chosen stand-in (each stored as it
    ends), then the block from every stored pair at this budget and settings."""
    budget = converged_budget() if budget is None else float(budget)
    names = chosen_stand_ins_converged(stand_ins)
    path = Path(results) if results else results_path(name=RESULTS_NAME)
    chosen = chosen_pairs_converged(preset_name, pairs)
    measure_series(chosen, names, seed, budget, preset_name, path, n_train, n_test, log)
    return _render(path, budget, preset_name, names, n_train, n_test)


def render_stored(preset_name: str = "cpu", n_train: int = N_TRAIN, n_test: int = N_TEST, results=None) -> str | None:
    """The block from the pairs already stored at the environment's budget (`marsseg bench --render`), measuring
    nothing; None when none is stored."""
    path = Path(results) if results else results_path(name=RESULTS_NAME)
    return _render(path, converged_budget(), preset_name, chosen_stand_ins_converged(), n_train, n_test)


def _render(path: Path, budget: float, preset_name: str, names: list[str], n_train: int, n_test: int) -> str | None:
    records, pairs, stand_ins = current_series(read_results(path), budget, preset_name, n_train, n_test)
    if not records:
        return None
    names = [s for s in names if s in stand_ins] + [s for s in stand_ins if s not in names]
    pairs = {PAIRS: parse_pairs(PAIRS, preset_name)[0]} | pairs
    return render_paired(records, budget, preset_name, names, pairs, converged=True)
