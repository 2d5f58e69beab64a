"""`make bench` section `paired`: two sides trained at the same time, one core each, so the machine's speed swings
hit both alike, and identical pairs that measure what is left of the noise.

    MARSSEG_BENCH_PAIRED_PAIRS='kit|best,kit|kit' marsseg bench --only paired --seed 42 --repeat 5

A *pair* is two sides (`paired_side`, each its own process) started together, each pinned to one core with one
thread pool; which side gets the first core alternates with the seed's parity. On a machine with one core the
sides run one after the other (the record says so). Each side gets the same wall clock, `budget` seconds from its
own start to test labels. A side spec is

    kit                          the kit: `pipeline.run`, the preset (`cpu`), the budget and the seed
    kit[KEY=VALUE,KEY=VALUE]     the kit with `--set`-style overrides (`config.override`), e.g.
                                 kit[stage1.loss.name=lovasz,stage1.train.batch_size=32]
    best | naive                 a reference U-Net (`reference_models.reference_run`)

and a pair is `A|B`. Inside brackets `,` separates settings and `|` belongs to a value (stage1.model_cycle);
a value cannot hold `,`, `[` or `]`.
`A|A` is an identical pair: the same config and seed on both cores, whose difference is the protocol's own noise.

Environment: MARSSEG_BENCH_PAIRED_PAIRS (comma-separated pairs, default `kit|best`), MARSSEG_BENCH_PAIRED_STAND_INS
(default `procedural,photo`, from `synth.STAND_INS`), MARSSEG_BENCH_PAIRED_BUDGET (seconds a side, default 600).
Data: the quality sections' synthetic set, written once per stand-in; the children score against a truth file.
Each pair is a line of `.bench/paired.jsonl`; a rerun of the same `paired_key` replaces the stored one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from marsseg.config import preset, to_dict
from marsseg.data.synth import STAND_INS
from marsseg.errors import ConfigError, UserError
from marsseg.files import atomic_save_npz
from marsseg.stamps import git_commit
from marsseg_bench.paired_report import EARLIER, render_paired
from marsseg_bench.paired_side import SINGLE_THREAD, Side, parse_side, side_config
from marsseg_bench.quality import N_TEST, N_TRAIN, quality_data, write_quality_data
from marsseg_bench.quality_store import _canonical, config_fingerprint, read_results, results_path, store_result
from marsseg_bench.timing import machine_description

PAIRS_ENV = "MARSSEG_BENCH_PAIRED_PAIRS"
STAND_INS_ENV = "MARSSEG_BENCH_PAIRED_STAND_INS"
BUDGET_ENV = "MARSSEG_BENCH_PAIRED_BUDGET"
DEFAULT_PAIRS, DEFAULT_STAND_INS, DEFAULT_BUDGET = "kit|best", "procedural,photo", 600.0
RESULTS_NAME = "paired.jsonl"


def split_top(text: str, separator: str) -> list[str]:
    """`text` split at `separator` outside brackets."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == separator and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return parts + [current]


def parse_pairs(text: str, preset_name: str = "cpu", variable: str = PAIRS_ENV) -> list[tuple[Side, Side]]:
    """Comma-separated `A|B` pairs, every kit side's overrides checked against `preset_name` (`variable`: the
    environment variable an error names)."""
    pairs = []
    for item in (part.strip() for part in split_top(text, ",")):
        if not item:
            continue
        sides = split_top(item, "|")
        if len(sides) != 2:
            raise ConfigError(f"pair {item!r} is not two sides A|B (e.g. kit|best, kit|kit)")
        pair = tuple(parse_side(s) for s in sides)
        for side in pair:
            side_config(side, preset_name, DEFAULT_BUDGET, 0)
        pairs.append(pair)
    if not pairs:
        raise ConfigError(f"no pairs in {text!r} (e.g. {variable}='kit|best,kit|kit')")
    return pairs


def chosen_pairs(
    preset_name: str = "cpu", text: str | None = None, variable: str = PAIRS_ENV, default: str = DEFAULT_PAIRS
) -> list[tuple[Side, Side]]:
    """The pairs named in `text` (else in the environment's `variable`, else `default`), checked by `parse_pairs`."""
    if text is None:
        text = os.environ.get(variable, "").strip() or default
    return parse_pairs(text, preset_name, variable)


def chosen_stand_ins(text: str | None = None, variable: str = STAND_INS_ENV, default: str = DEFAULT_STAND_INS):
    """The stand-ins named in `text` (else in the environment's `variable`, else `default`)."""
    if text is None:
        text = os.environ.get(variable, "").strip() or default
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in STAND_INS]
    if unknown or not names:
        raise UserError(f"{variable}={text!r}: choose stand-ins from {', '.join(STAND_INS)}")
    return names


def paired_budget(variable: str = BUDGET_ENV, default: float = DEFAULT_BUDGET) -> float:
    """The seconds a side from the environment's `variable` (else `default`)."""
    raw = os.environ.get(variable, "").strip() or str(default)
    try:
        budget = float(raw)
    except ValueError:
        budget = 0.0
    if budget <= 0:
        raise UserError(f"{variable}={raw!r}: give the seconds a side, e.g. {default:.0f}")
    return budget


def core_plan(seed: int, available) -> dict:
    """The cores of sides a and b: the first two available, a on the first at even seeds and on the second at
    odd ones; with one core both run there, one after the other."""
    cores = sorted(available)
    if len(cores) < 2:
        return {"a": cores[0], "b": cores[0], "parallel": False, "note": "one core: the sides ran one after the other"}
    first, second = cores[:2]
    a, b = (first, second) if int(seed) % 2 == 0 else (second, first)
    return {"a": a, "b": b, "parallel": True, "note": "both sides at once, one core each"}


def paired_key(record: dict) -> tuple:
    """(pair, data, seed, budget, preset, kit settings): a rerun of these replaces the stored record."""
    return (
        record["section"],
        record["pair"],
        _canonical(record["data"]),
        int(record["seed"]),
        float(record["budget"]),
        record.get("preset"),
        record.get("kit_config", ""),
    )


def pair_data(stand_in: str, n_train: int, n_test: int) -> dict:
    return {**quality_data(stand_in), "n_train": n_train, "n_test": n_test, "stand_in": stand_in}


def run_children(commands: dict, work: Path, timeout: float) -> None:
    """Start every command at once (each to its own log in `work`) and wait for all; a failure or the timeout
    stops the others and raises RuntimeError with the failing side's log tail."""
    env = {**os.environ, **SINGLE_THREAD, "TF_CPP_MIN_LOG_LEVEL": "2"}
    logs = {name: (work / f"{name}.log").open("w") for name in commands}
    procs = {
        name: subprocess.Popen(cmd, stdout=logs[name], stderr=subprocess.STDOUT, env=env)
        for name, cmd in commands.items()
    }
    deadline = time.monotonic() + timeout
    try:
        while True:
            codes = {name: proc.poll() for name, proc in procs.items()}
            failed = [name for name, code in codes.items() if code not in (None, 0)]
            late = time.monotonic() > deadline
            if failed or late:
                for proc in procs.values():
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
                name = failed[0] if failed else next(iter(commands))
                tail = (work / f"{name}.log").read_text()[-3000:]
                why = f"exited with {codes[name]}" if failed else f"ran past {timeout:.0f}s"
                raise RuntimeError(f"paired: side {name} {why}; its log ends:\n{tail}")
            if all(code == 0 for code in codes.values()):
                return
            time.sleep(0.5)
    finally:
        for handle in logs.values():
            handle.close()


def measure_pair(pair, data: Path, truth: Path, seed: int, budget: float, preset_name: str, work: Path) -> dict:
    """Both sides' results (their cores and order in `cores`); the children's logs stay in `work`."""
    plan = core_plan(seed, os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else [0])

    def command(name, side):
        args = ["--side", side.spec, "--preset", preset_name, "--data", data, "--truth", truth, "--budget", budget]
        args += ["--seed", seed, "--core", plan[name], "--out", work / f"{name}.json"]
        return [sys.executable, "-m", "marsseg_bench.paired_side", *map(str, args)]

    groups = [("a", "b")] if plan["parallel"] else [("a",), ("b",)]
    for group in groups:
        run_children({name: command(name, pair["ab".index(name)]) for name in group}, work, budget * 1.5 + 300)
    return {"cores": plan, "results": {name: json.loads((work / f"{name}.json").read_text()) for name in "ab"}}


def pair_record(pair, measured: dict, seed, stand_in, data, budget, preset_name) -> dict:
    """One stored line: the pair, its data and settings, both sides' scores (`scores`, as the quality records
    hold them) and the rest of their results (`runs`), the cores, commit, machine and time."""
    a, b = pair
    results = measured["results"]
    return {
        "section": "paired",
        "pair": f"{a.spec}|{b.spec}",
        "identical": a == b,
        "sides": {"a": a.spec, "b": b.spec},
        "seed": int(seed),
        "stand_in": stand_in,
        "data": data,
        "budget": float(budget),
        "preset": preset_name,
        "kit_config": record_fingerprint(a, b, preset_name),
        "scores": {name: results[name].pop("scores") for name in "ab"},
        "runs": results,
        "cores": measured["cores"],
        "commit": git_commit("short", cwd=Path.cwd()),
        "machine": machine_description(),
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def section_paired(
    repeats: int,
    log,
    seed: int | None = None,
    preset_name: str = "cpu",
    budget: float | None = None,
    n_train: int = N_TRAIN,
    n_test: int = N_TEST,
    pairs: str | None = None,
    stand_ins: str | None = None,
    results=None,
) -> str:
    """At `seed`, every pair on every stand-in (each stored as it ends), then the block from every stored pair of
    these pairs, stand-ins, budget and settings. `pairs`, `stand_ins` and `budget` default to the environment."""
    budget = paired_budget() if budget is None else float(budget)
    chosen = chosen_pairs(preset_name, pairs)
    names = chosen_stand_ins(stand_ins)
    path = Path(results) if results else results_path(name=RESULTS_NAME)
    measure_series(chosen, names, seed, budget, preset_name, path, n_train, n_test, log)
    records, pairs, stand_ins = current_series(read_results(path), budget, preset_name, n_train, n_test)
    pairs = {f"{a.spec}|{b.spec}": (a, b) for a, b in chosen} | pairs
    names += [s for s in stand_ins if s not in names]
    return render_paired(records, budget=budget, preset_name=preset_name, stand_ins=names, pairs=pairs)


def measure_series(chosen, names, seed, budget: float, preset_name: str, path: Path, n_train: int, n_test: int, log):
    """At `seed` (None: the preset's), every pair of `chosen` on every stand-in of `names`, each stored in `path`
    as it ends."""
    seed = preset(preset_name).seed if seed is None else int(seed)
    for stand_in in names:
        with tempfile.TemporaryDirectory(prefix="marsseg-paired-") as tmp:
            log(f"paired: {stand_in} stand-in, {n_train} train + {n_test} test images, seed {seed}")
            synthetic, data = write_quality_data(Path(tmp), n_train, n_test, stand_in)
            truth = atomic_save_npz(Path(tmp) / "truth.npz", test_labels=synthetic.test_labels)
            del synthetic
            described = pair_data(stand_in, n_train, n_test)
            for i, pair in enumerate(chosen):
                work = Path(tmp) / f"pair{i}"
                work.mkdir()
                log(f"paired: {pair[0].spec} | {pair[1].spec} at {budget:.0f}s a side ({stand_in}, seed {seed})")
                measured = measure_pair(pair, data, truth, seed, budget, preset_name, work)
                record = pair_record(pair, measured, seed, stand_in, described, budget, preset_name)
                store_result(path, record, key=paired_key)
                a, b = (record["scores"][name]["miou_keras"] for name in "ab")
                log(f"paired: stored in {path}: {a:.4f} vs {b:.4f} (Keras rule)")


def render_stored(preset_name: str = "cpu", n_train: int = N_TRAIN, n_test: int = N_TEST, results=None) -> str | None:
    """The block from the pairs already stored at the environment's budget (`marsseg bench --render`), measuring
    nothing; None when none is stored."""
    path = Path(results) if results else results_path(name=RESULTS_NAME)
    records, pairs, stand_ins = current_series(read_results(path), paired_budget(), preset_name, n_train, n_test)
    if not records:
        return None
    names = [s for s in chosen_stand_ins() if s in stand_ins] + [s for s in stand_ins if s not in chosen_stand_ins()]
    return render_paired(records, budget=paired_budget(), preset_name=preset_name, stand_ins=names, pairs=pairs)


def current_series(stored: list[dict], budget: float, preset_name: str, n_train: int, n_test: int):
    """The stored pairs at this budget, preset and data size: (records, {label: (Side, Side)}, stand-ins). Every
    series shows, not only the pairs this invocation ran. A pair run under settings since changed keeps its own
    table, labelled `PAIR @ COMMIT (earlier settings)`, and decides no target but the protocol's (its spread and
    its budget window): a preset choice cites the runs it was made from. Runs of one pair under the same earlier
    settings stay one series however many commits they span (`PAIR @ C1, C2 (earlier settings)`)."""
    kept, commits = [], {}
    for r in stored:
        if r.get("section") != "paired" or float(r.get("budget", -1)) != budget or r.get("preset") != preset_name:
            continue
        try:
            pair = parse_pairs(r["pair"], preset_name)[0]
        except UserError:  # a side no longer valid under today's settings
            continue
        stand_in = r.get("stand_in", "procedural")
        if stand_in not in STAND_INS or _canonical(r["data"]) != _canonical(pair_data(stand_in, n_train, n_test)):
            continue
        earlier = r.get("kit_config") != record_fingerprint(*pair, preset_name)
        if earlier:
            seen = commits.setdefault((r["pair"], r.get("kit_config")), [])
            seen += [r.get("commit", "unknown")] if r.get("commit", "unknown") not in seen else []
        kept.append((r, pair, stand_in, earlier))
    records, pairs, stand_ins = [], {}, []
    for r, pair, stand_in, earlier in kept:
        if earlier:
            label = ", ".join(commits[r["pair"], r.get("kit_config")])
            r = {**r, "pair": f"{r['pair']}{EARLIER}{label} (earlier settings)"}
        records.append(r)
        pairs.setdefault(r["pair"], pair)
        stand_ins += [stand_in] if stand_in not in stand_ins else []
    return records, pairs, stand_ins


def record_fingerprint(a: Side, b: Side, preset_name: str) -> str:
    """The `kit_config` a pair's records carry (seed and budget do not enter it)."""
    return "|".join(config_fingerprint(to_dict(side_config(s, preset_name, DEFAULT_BUDGET, 0))) for s in (a, b))
