"""The `paired` bench section: side specs, core alternation, the store, the block's target lines (hand-made records),
and one real tiny pair through the subprocess path."""

import sys

import pytest

import marsseg_bench.runner as bench
from marsseg.errors import ConfigError, UserError
from marsseg_bench import paired, paired_report
from marsseg_bench.paired_report import render_paired
from marsseg_bench.paired_side import Side, parse_side, within_budget
from marsseg_bench.quality_store import read_results, store_result

DATA = {"kind": "synthetic", "n_train": 10, "n_test": 4, "seed": 5, "version": 2}


def test_side_specs_parse_to_canonical_sides():
    assert parse_side("kit") == Side("kit") and parse_side(" best ").spec == "best"
    assert parse_side("naive") == Side("naive") and parse_side("kit[]") == Side("kit")
    side = parse_side("kit[ stage1.train.batch_size=32 , stage1.loss.name=lovasz ]")
    assert side.overrides == ("stage1.loss.name=lovasz", "stage1.train.batch_size=32")
    assert side.spec == "kit[stage1.loss.name=lovasz,stage1.train.batch_size=32]"
    assert parse_side(side.spec) == side == parse_side("kit[stage1.train.batch_size=32,stage1.loss.name=lovasz]")


@pytest.mark.parametrize(
    "spec, says",
    [
        ("kat", "unknown kind 'kat'"),
        ("best[stage1.train.epochs=2]", "only the kit takes overrides"),
        ("kit[stage1.train.epochs]", "is not KEY=VALUE"),
        ("kit[seed=3]", "the pair sets seed"),
        ("kit[budget_seconds=3]", "the pair sets budget_seconds"),
        ("kit[stage1.train.epochs=2", "is not kit, kit[KEY=VALUE,...], best or naive"),
        ("kit[stage1.train.epochs=2,stage1.train.epochs=3]", "given twice"),
    ],
)
def test_bad_side_specs_raise_a_config_error_naming_the_fault(spec, says):
    with pytest.raises(ConfigError, match="side ") as error:
        parse_side(spec)
    assert says in str(error.value) and isinstance(error.value, UserError)


def test_pairs_split_outside_brackets_and_check_the_kits_settings():
    pairs = paired.parse_pairs("kit|best, kit|kit ,kit[stage1.model_cycle=attention=true | attention=false]|naive")
    assert [(a.spec, b.spec) for a, b in pairs][:2] == [("kit", "best"), ("kit", "kit")]
    cycle, naive = pairs[2]
    assert cycle.overrides == ("stage1.model_cycle=attention=true | attention=false",) and naive == Side("naive")
    for text, says in [
        ("kit", "not two sides"),
        ("kit|best|naive", "not two sides"),
        (" , ", "no pairs"),
        ("kit[stage1.nope=1]|best", "unknown setting 'stage1.nope'"),
        ("kit[stage1.train.batch_size=many]|best", "wants a int"),
    ]:
        with pytest.raises(ConfigError) as error:
            paired.parse_pairs(text)
        assert says in str(error.value), text


def test_the_environment_chooses_pairs_stand_ins_and_budget(monkeypatch):
    monkeypatch.delenv(paired.PAIRS_ENV, raising=False)
    monkeypatch.delenv(paired.STAND_INS_ENV, raising=False)
    monkeypatch.delenv(paired.BUDGET_ENV, raising=False)
    assert [(a.spec, b.spec) for a, b in paired.chosen_pairs()] == [("kit", "best")]
    assert paired.chosen_stand_ins() == ["procedural", "photo"] and paired.paired_budget() == 600.0
    monkeypatch.setenv(paired.PAIRS_ENV, "kit|kit")
    monkeypatch.setenv(paired.STAND_INS_ENV, "photo")
    monkeypatch.setenv(paired.BUDGET_ENV, "30")
    assert paired.chosen_pairs()[0][0] == paired.chosen_pairs()[0][1] == Side("kit")
    assert paired.chosen_stand_ins() == ["photo"] and paired.paired_budget() == 30.0
    monkeypatch.setenv(paired.STAND_INS_ENV, "photo,moon")
    with pytest.raises(UserError, match="choose stand-ins from"):
        paired.chosen_stand_ins()
    monkeypatch.setenv(paired.BUDGET_ENV, "soon")
    with pytest.raises(UserError, match="seconds a side"):
        paired.paired_budget()


def test_the_first_core_alternates_with_the_seed_and_one_core_runs_the_sides_in_turn():
    plans = [paired.core_plan(seed, {0, 1}) for seed in range(4)]
    assert [(p["a"], p["b"]) for p in plans] == [(0, 1), (1, 0), (0, 1), (1, 0)]
    assert all(p["parallel"] for p in plans)
    assert (paired.core_plan(7, [5, 2, 9])["a"], paired.core_plan(7, [5, 2, 9])["b"]) == (5, 2)
    single = paired.core_plan(3, {4})
    assert (single["a"], single["b"], single["parallel"]) == (4, 4, False) and "one after the other" in single["note"]


def test_within_budget_is_five_percent_either_way():
    assert within_budget(570, 600) and within_budget(630, 600) and not within_budget(569, 600)
    assert not within_budget(631, 600)


def test_a_failing_side_stops_the_other_and_reports_its_log(tmp_path):
    commands = {
        "a": [sys.executable, "-c", "import sys; print('side a broke'); sys.exit(3)"],
        "b": [sys.executable, "-c", "import time; time.sleep(60)"],
    }
    with pytest.raises(RuntimeError, match="side a exited with 3") as error:
        paired.run_children(commands, tmp_path, timeout=50)
    assert "side a broke" in str(error.value)


def record(seed, a_keras, b_keras, pair="kit|best", stand_in="procedural", seconds=(600.0, 600.0), big=(0.5, 0.4)):
    a, b = pair.split("|")
    scores = {
        name: {"miou_keras": k, "miou_scored": k, "iou": {"1": k, "2": k, "3": k, "4": rock}}
        for name, k, rock in (("a", a_keras, big[0]), ("b", b_keras, big[1]))
    }
    runs = {
        name: {"kind": side, "seconds": s, "within_budget": within_budget(s, 600), "train_samples_per_s": 20.0}
        for name, side, s in (("a", a, seconds[0]), ("b", b, seconds[1]))
    }
    return {
        "section": "paired",
        "pair": pair,
        "identical": a == b,
        "sides": {"a": a, "b": b},
        "seed": seed,
        "stand_in": stand_in,
        "data": {**DATA, "stand_in": stand_in},
        "budget": 600.0,
        "preset": "cpu",
        "kit_config": "abc|abc",
        "scores": scores,
        "runs": runs,
        "cores": {"a": seed % 2, "b": 1 - seed % 2, "parallel": True},
        "commit": "c1",
    }


def test_a_rerun_of_the_same_pair_replaces_its_record(tmp_path):
    path = tmp_path / "paired.jsonl"
    store_result(path, record(1, 0.7, 0.6), key=paired.paired_key)
    store_result(path, record(2, 0.7, 0.6), key=paired.paired_key)
    store_result(path, record(1, 0.7, 0.6, stand_in="photo"), key=paired.paired_key)
    store_result(path, record(1, 0.7, 0.6, pair="kit|kit"), key=paired.paired_key)
    store_result(path, {**record(1, 0.7, 0.6), "budget": 300.0}, key=paired.paired_key)
    assert len(read_results(path)) == 5
    store_result(path, {**record(1, 0.8, 0.6), "commit": "c2"}, key=paired.paired_key)
    stored = read_results(path)
    assert len(stored) == 5
    rerun = [r for r in stored if r["seed"] == 1 and r["pair"] == "kit|best" and r["stand_in"] == "procedural"]
    assert [(r["budget"], r["commit"]) for r in rerun] == [(300.0, "c1"), (600.0, "c2")]


def block(records, pairs="kit|best", stand_ins=("procedural", "photo")):
    return render_paired(records, 600.0, "cpu", list(stand_ins), paired.parse_pairs(pairs))


def lines_with(text, words):
    return [line for line in text.splitlines() if words in line]


def test_the_lead_target_is_met_only_with_five_seeds_and_the_margin_on_each_stand_in():
    five = [record(s, 0.75, 0.70, stand_in=st) for s in range(5) for st in ("procedural", "photo")]
    (lead,) = lines_with(block(five), "kit − best-practice ≥ +0.03")
    assert "**met**" in lead and "median +0.0500 over 5 seed(s)" in lead
    (rock,) = lines_with(block(five), "kit big rock ≥ best-practice big rock")
    assert "**met**" in rock and "kit ahead at 5 of 5" in rock
    # Three seeds on the photo stand-in, and a lead of only +0.01 there: not met, both said.
    short = [r for r in five if r["stand_in"] == "procedural"] + [
        record(s, 0.71, 0.70, stand_in="photo") for s in (0, 1, 2)
    ]
    (lead,) = lines_with(block(short), "kit − best-practice ≥ +0.03")
    assert "**NOT met**" in lead and "short by 0.0200" in lead and "only 3 of 5 seeds" in lead
    # A stand-in never measured fails the target too; big rock behind at the median fails its line.
    behind = [record(s, 0.75, 0.70, big=(0.3, 0.4)) for s in range(5)]
    text = block(behind)
    assert "**NOT met**" in lines_with(text, "≥ +0.03")[0] and "photo: not measured" in lines_with(text, "≥ +0.03")[0]
    assert (
        "**NOT met**" in lines_with(text, "big rock ≥")[0]
        and "kit ahead at 0 of 5" in lines_with(text, "big rock ≥")[0]
    )


def test_the_spread_of_identical_pairs_is_the_largest_gap_against_0_01():
    tight = [record(s, 0.70 + d, 0.70, pair="kit|kit") for s, d in enumerate((0.004, -0.002, 0.001))]
    text = block(tight, pairs="kit|kit", stand_ins=("procedural",))
    (line,) = lines_with(text, "spread of identical pairs")
    assert "**met**" in line and "max 0.0040" in line and "median 0.0020" in line
    (lead,) = lines_with(text, "≥ +0.03")  # no kit|best pair: the target shows, unmeasured
    assert "**NOT met** (procedural: not measured under today's settings)" in lead
    loose = tight + [record(9, 0.675, 0.70, pair="kit|kit")]
    (line,) = lines_with(block(loose, pairs="kit|kit", stand_ins=("procedural",)), "spread of identical pairs")
    assert "**NOT met by 0.0150**" in line and "max 0.0250" in line
    (missing,) = lines_with(block([record(1, 0.7, 0.6)]), "spread of identical pairs")
    assert "not measured" in missing


def test_every_kit_run_within_budget_counts_and_lists_the_misses():
    records = [record(1, 0.7, 0.6), record(2, 0.7, 0.6, seconds=(655.0, 600.0)), record(3, 0.7, 0.7, pair="kit|kit")]
    text = block(records, pairs="kit|best,kit|kit", stand_ins=("procedural",))
    (line,) = lines_with(text, "every kit run ends within 5% of its budget")
    assert "3 of 4" in line and "seed 2 procedural `kit|best` side a: 655.0 s" in line
    assert "### procedural stand-in (version 2): `kit|best`, 2 seed(s) (1, 2)" in text
    row = "| mIoU (Keras rule) | 0.7000 (0.7000 – 0.7000) | 0.6000 (0.6000 – 0.6000) | +0.1000 (+0.1000 – +0.1000) |"
    assert row + " 2 of 2 |" in text


def test_the_section_is_registered_after_quality_long_and_takes_a_seed():
    names = list(bench.SECTIONS)
    assert names.index("paired") == names.index("quality_long") + 1
    assert bench.takes_seed(bench.SECTIONS["paired"]) and bench.SECTION_CHOICES["paired"][0][0] == paired.PAIRS_ENV


@pytest.mark.slow
def test_a_tiny_pair_runs_both_sides_in_subprocesses_and_stores_one_record(tmp_path):
    path = tmp_path / "paired.jsonl"
    text = paired.section_paired(
        1, lambda m: None, seed=3, preset_name="smoke", budget=12, n_train=64, n_test=16,
        pairs="kit|best", stand_ins="procedural", results=path,
    )  # fmt: skip
    (stored,) = read_results(path)
    assert stored["pair"] == "kit|best" and stored["seed"] == 3 and stored["data"]["stand_in"] == "procedural"
    assert stored["data"]["n_train"] == 64 and stored["runs"]["a"]["kind"] == "kit"
    assert stored["runs"]["b"]["kind"] == "best"
    for side in "ab":
        run = stored["runs"][side]
        assert 0.0 <= stored["scores"][side]["miou_keras"] <= 1.0 and set(stored["scores"][side]["iou"]) >= {"4"}
        assert run["seconds"] > 0 and isinstance(run["within_budget"], bool) and run["train_samples_per_s"] >= 0
        assert run["core"] == stored["cores"][side]
    cores = stored["cores"]
    assert cores["parallel"] == (cores["a"] != cores["b"])
    assert "folds_trained" in stored["runs"]["a"]["details"] and "epochs" in stored["runs"]["b"]["details"]
    # How each training ended, which the converged horizon's block reads (`paired_report.side_stops`).
    reasons = {"patience", "epochs", "budget"}
    assert set(paired_report.side_stops(stored["runs"]["a"])) <= reasons
    assert len(paired_report.side_stops(stored["runs"]["a"])) >= 1
    assert paired_report.side_stops(stored["runs"]["b"])[0] in reasons
    assert "### procedural stand-in (version 2): `kit|best`, 1 seed(s) (3)" in text


def test_the_block_shows_every_current_series_and_drops_pairs_run_under_other_settings():
    from marsseg_bench.quality import quality_data

    def current(r):
        pair = paired.parse_pairs(r["pair"])[0]
        return {**r, "kit_config": paired.record_fingerprint(*pair, "cpu"), "data": quality_data(r["stand_in"])}

    stored = [
        current(record(42, 0.6, 0.7, stand_in="photo")),
        current(record(42, 0.71, 0.70, pair="kit|kit", stand_in="photo")),
        {**record(43, 0.9, 0.1, stand_in="photo"), "data": quality_data("photo")},  # settings since changed
    ]
    records, pairs, stand_ins = paired.current_series(stored, 600.0, "cpu", 2615, 2000)
    assert [r["seed"] for r in records] == [42, 42, 43] and stand_ins == ["photo"]
    assert sorted(pairs) == ["kit|best", "kit|best @ c1 (earlier settings)", "kit|kit"]
    block = render_paired(records, 600.0, "cpu", stand_ins, pairs)
    assert "`kit|best @ c1 (earlier settings)`, 1 seed(s) (43)" in block
    # The earlier series decides no target: the lead line counts the current seed alone.
    assert "median -0.1000 over 1 seed(s)" in block
    # With no `kit|best` under today's settings, the targets still show, as not measured rather than met.
    records, pairs, stand_ins = paired.current_series(stored[2:], 600.0, "cpu", 2615, 2000)
    block = render_paired(records, 600.0, "cpu", stand_ins, pairs)
    (lead,) = lines_with(block, "≥ +0.03")
    assert "**NOT met** (photo: not measured under today's settings)" in lead
    assert "`kit|best @ c1 (earlier settings)`, 1 seed(s) (43)" in block


CANDIDATE = "kit[stage1.train.batch_size=32]|kit"


@pytest.mark.parametrize(
    ("gains", "verdict"),
    [
        ({"procedural": (0.02, 0.03, 0.01), "photo": (0.02, 0.02, 0.04)}, "**helps on both**"),
        ({"procedural": (0.02, 0.03, 0.01), "photo": (-0.02, 0.01, -0.01)}, "**does not help on both**"),
        ({"procedural": (0.02, 0.03), "photo": (0.02, 0.02, 0.04)}, "undecided (fewer than 3 seeds"),
        ({"procedural": (0.004, 0.006, 0.01), "photo": (0.02, 0.02, 0.04)}, "close (a gain under 0.01)"),
        ({"procedural": (0.004, 0.006, 0.01, 0.0, 0.008), "photo": (0.02,) * 5}, "**helps on both**"),
    ],
)
def test_a_candidate_setting_is_kept_only_where_it_helps_on_both_stand_ins(gains, verdict):
    records = [
        record(seed, 0.70 + gain, 0.70, pair=CANDIDATE, stand_in=stand_in, big=(0.45, 0.40))
        for stand_in, values in gains.items()
        for seed, gain in enumerate(values)
    ]
    (line,) = lines_with(block(records, pairs=CANDIDATE), "candidate `")
    assert verdict in line and "big rock +0.050" in line
    assert not lines_with(block(records, pairs="kit|kit"), "candidate `")  # no candidate in the pairs: no line


def test_render_rewrites_the_paired_block_from_stored_records_and_keeps_the_others(tmp_path, monkeypatch):
    monkeypatch.setenv("MARSSEG_BENCH_RESULTS", str(tmp_path))
    monkeypatch.delenv(paired.BUDGET_ENV, raising=False)
    pair = paired.parse_pairs("kit|best")[0]
    stored = {**record(42, 0.75, 0.70), "data": paired.pair_data("procedural", 2615, 2000)}
    stored["kit_config"] = paired.record_fingerprint(*pair, "cpu")
    store_result(tmp_path / "paired.jsonl", stored, key=paired.paired_key)
    out = tmp_path / "BENCHMARKS.md"
    other = "<!-- bench:models -->\nmodels as measured\n<!-- /bench:models -->"
    out.write_text(f"# old\n\n{other}\n\n<!-- bench:paired -->\nold paired\n<!-- /bench:paired -->\n")
    text = bench.run_benchmarks(out, only=["paired"], render=True, log=lambda m: None).read_text()
    assert other in text and "old paired" not in text
    assert "`kit|best`, 1 seed(s) (42)" in text and "(`marsseg bench --only paired --render`)" in text
    with pytest.raises(UserError, match="--render: models cannot be re-rendered; choose from paired"):
        bench.run_benchmarks(out, only=["models"], render=True, log=lambda m: None)
    (tmp_path / "paired.jsonl").unlink()  # nothing stored: the block stays as it was
    assert bench.run_benchmarks(out, only=["paired"], render=True, log=lambda m: None).read_text() == text


def test_a_candidate_run_under_earlier_settings_keeps_its_verdict_against_the_kit_of_then():
    earlier = "kit[stage1_share=0.8]|kit"
    stored = [
        {**record(seed, 0.72, 0.70, pair=earlier, stand_in=stand_in), "data": paired.pair_data(stand_in, 2615, 2000)}
        for stand_in in ("procedural", "photo")
        for seed in (42, 43, 44)
    ]  # no kit_config of today's settings: a series since changed
    # Its last seed ran at a later commit under the same settings; a run under other earlier settings stays apart.
    stored = [{**r, "commit": "c2"} if r["seed"] == 44 else r for r in stored]
    stored.append({**stored[0], "seed": 45, "kit_config": "xyz|xyz", "commit": "c3"})
    records, pairs, stand_ins = paired.current_series(stored, 600.0, "cpu", 2615, 2000)
    label = f"{earlier} @ c1, c2 (earlier settings)"
    assert sorted(pairs) == [label, f"{earlier} @ c3 (earlier settings)"]
    pairs.pop(f"{earlier} @ c3 (earlier settings)")
    records = [r for r in records if r["pair"] == label]
    (line,) = lines_with(render_paired(records, 600.0, "cpu", stand_ins, pairs), "candidate `")
    assert line.startswith(f"- candidate `{label}` against the kit of its commit: **helps on both**")
    assert "procedural: median +0.0200, ahead at 3 of 3" in line and "photo: median +0.0200, ahead at 3 of 3" in line
