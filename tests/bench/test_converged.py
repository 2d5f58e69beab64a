"""The `converged` bench section: the paired protocol at the converged horizon. Its block's lead target (+0.02 at
2 seeds), the line that names every side the deadline cut, its own store and its place in the runner (hand-made
records; the subprocess path is `paired`'s, tested there)."""

import pytest

import marsseg_bench.runner as bench
from marsseg_bench import converged, paired
from marsseg_bench.paired_report import converged_line, render_paired, side_stops
from marsseg_bench.quality_store import store_result
from tests.bench.test_paired import lines_with, record


def stopped(r, kit=("epochs",), stage2="epochs", best="patience"):
    """`r` with the stop reasons a converged run stores: the kit's per fold model and its stage 2's, the
    reference's one."""
    runs = {side: dict(run) for side, run in r["runs"].items()}
    for run in runs.values():
        if run["kind"] == "kit":
            run["details"] = {"stage1_stop_reasons": list(kit), "stage2": {"stop_reason": stage2} if stage2 else {}}
        else:
            run["details"] = {"stop_reason": best}
    return {**r, "runs": runs, "budget": 7200.0}


def converged_block(records, stand_ins=("procedural",)):
    return render_paired(records, 7200.0, "cpu", list(stand_ins), paired.parse_pairs("kit|best"), converged=True)


def test_side_stops_reads_the_kits_folds_and_stage_2_and_the_references_one_network():
    r = stopped(record(1, 0.7, 0.6), kit=("patience", "epochs"), stage2="budget", best="epochs")
    assert side_stops(r["runs"]["a"]) == ["patience", "epochs", "budget"]
    assert side_stops(r["runs"]["b"]) == ["epochs"]
    no_stage2 = stopped(record(1, 0.7, 0.6), stage2=None)
    assert side_stops(no_stage2["runs"]["a"]) == ["epochs"]
    assert side_stops(record(1, 0.7, 0.6)["runs"]["a"]) == []  # a record from before stop reasons were stored


def test_the_converged_line_names_every_side_the_deadline_cut():
    own = [stopped(record(seed, 0.72, 0.70)) for seed in (42, 43)]
    assert "**met**, 4 of 4 sides" in converged_line(own)
    cut = own[:1] + [stopped(record(43, 0.72, 0.70), best="budget")]
    line = converged_line(cut)
    assert "**NOT met**, 3 of 4 sides" in line and "seed 43 procedural side b (best): budget" in line
    stage2_cut = [stopped(record(44, 0.72, 0.70), stage2="budget")]
    assert "side a (kit): epochs, budget" in converged_line(stage2_cut)
    assert "no stop reason stored" in converged_line([record(45, 0.7, 0.6)])
    assert "**NOT met**, 0 of 0 sides" in converged_line([])


@pytest.mark.parametrize(
    ("gaps", "verdict", "says"),
    [
        ((0.025, 0.03), "**met**", "median +0.0275 over 2 seed(s)"),
        ((0.025,), "**NOT met**", "only 1 of 2 seeds"),
        ((0.01, 0.02), "**NOT met**", "short by 0.0050"),
    ],
)
def test_the_converged_block_holds_the_kit_to_0_02_at_two_seeds_in_place_of_the_5_percent_window(gaps, verdict, says):
    records = [stopped(record(42 + i, 0.70 + gap, 0.70)) for i, gap in enumerate(gaps)]
    text = converged_block(records)
    assert text.startswith("## Converged horizon: paired runs until every side stops improving (at most 7200 s")
    (lead,) = lines_with(text, "kit − best-practice ≥ +0.02")
    assert verdict in lead and says in lead
    assert lines_with(text, "every side stopped by its own rule") and not lines_with(text, "within 5% of its budget")
    short = render_paired(records, 600.0, "cpu", ["procedural"], paired.parse_pairs("kit|best"))
    assert lines_with(short, "kit − best-practice ≥ +0.03") and lines_with(short, "within 5% of its budget")


def test_the_section_comes_after_paired_takes_a_seed_and_runs_only_when_named(tmp_path, monkeypatch):
    names = list(bench.SECTIONS)
    assert names.index("converged") == names.index("paired") + 1 and bench.takes_seed(bench.SECTIONS["converged"])
    ran = []

    def section(name):
        return lambda repeats, log: ran.append(name) or f"{name} block"

    monkeypatch.setattr(bench, "SECTIONS", {"models": section("models"), "converged": section("converged")})
    text = bench.run_benchmarks(tmp_path / "B.md", log=lambda m: None).read_text()
    assert ran == ["models"] and "converged block" not in text
    text = bench.run_benchmarks(tmp_path / "B.md", only=["converged"], log=lambda m: None).read_text()
    assert ran == ["models", "converged"] and "models block" in text and "converged block" in text


def test_its_records_are_its_own_store_rendered_at_its_own_budget(tmp_path, monkeypatch):
    monkeypatch.delenv(converged.BUDGET_ENV, raising=False)
    monkeypatch.delenv(converged.STAND_INS_ENV, raising=False)
    pair = paired.parse_pairs("kit|best")[0]
    stored = stopped(record(42, 0.75, 0.70))
    stored |= {"data": paired.pair_data("procedural", 2615, 2000)}
    stored |= {"kit_config": paired.record_fingerprint(*pair, "cpu")}
    path = tmp_path / "converged.jsonl"
    store_result(path, stored, key=paired.paired_key)
    text = converged.render_stored(results=path)
    assert "## Converged horizon" in text and "`kit|best`, 1 seed(s) (42)" in text and "**met**, 2 of 2 sides" in text
    assert paired.render_stored(results=path) is None  # not at the paired section's 600 s
    monkeypatch.setenv(converged.BUDGET_ENV, "3600")
    assert converged.render_stored(results=path) is None
    monkeypatch.setenv(converged.BUDGET_ENV, "soon")
    with pytest.raises(Exception, match="MARSSEG_BENCH_CONVERGED_BUDGET='soon': give the seconds a side, e.g. 7200"):
        converged.converged_budget()
    with pytest.raises(Exception, match="MARSSEG_BENCH_CONVERGED_STAND_INS='mars': choose stand-ins from"):
        converged.chosen_stand_ins_converged("mars")


def test_its_pairs_are_chosen_like_paireds_and_a_bad_one_names_its_own_variable(monkeypatch):
    monkeypatch.delenv(converged.PAIRS_ENV, raising=False)
    assert [(a.spec, b.spec) for a, b in converged.chosen_pairs_converged()] == [("kit", "best")]
    monkeypatch.setenv(converged.PAIRS_ENV, "kit[stage1.train.epochs=100]|kit")
    ((a, b),) = converged.chosen_pairs_converged()
    assert (a.spec, b.spec) == ("kit[stage1.train.epochs=100]", "kit")
    assert converged.PAIRS_ENV in [variable for variable, _ in bench.SECTION_CHOICES["converged"]]
    with pytest.raises(Exception, match="MARSSEG_BENCH_CONVERGED_PAIRS='kit|best,kit|kit'"):
        converged.chosen_pairs_converged(text=",")
    with pytest.raises(Exception, match="stage1.train.epochz"):
        converged.chosen_pairs_converged(text="kit[stage1.train.epochz=100]|kit")


def test_the_stamps_command_names_every_chosen_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(converged.PAIRS_ENV, "kit|kit")
    monkeypatch.setenv(converged.STAND_INS_ENV, "photo")
    monkeypatch.setattr(bench, "SECTIONS", {"converged": lambda repeats, log: "converged block"})
    text = bench.run_benchmarks(tmp_path / "B.md", only=["converged"], log=lambda m: None).read_text()
    assert f"{converged.STAND_INS_ENV}=photo {converged.PAIRS_ENV}=kit|kit marsseg bench --only converged" in text
