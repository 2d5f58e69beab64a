"""The stage2 block: the design is chosen on the tuning part, and its lead is reported on the reporting part."""

from marsseg_bench.stage2_report import render_stage2


def _record(seed, stage1, designs):
    """designs: name -> (tune, report, test); stage1: (tune, report, test)."""

    def scores(t):
        return {"tune": t[0], "report": t[1], "test_keras": t[2]}

    return {
        "seed": seed,
        "budget": 240.0,
        "measured_at": f"2026-12-01T10:0{seed}:00+00:00",
        "stage1_seconds": 300.0,
        "stage1": scores(stage1),
        "designs": {n: {**scores(t), "epochs": 3, "best_epoch": 2, "samples_per_s": 50.0} for n, t in designs.items()},
    }


def test_the_tuning_part_chooses_and_the_reporting_part_reports():
    # "b" leads on the tuning part but not on the reporting part: it is still the one chosen, and its (smaller)
    # reporting lead is what the verdict reads.
    records = [
        _record(1, (0.60, 0.60, 0.60), {"a": (0.61, 0.63, 0.62), "b": (0.65, 0.605, 0.60)}),
        _record(2, (0.50, 0.50, 0.50), {"a": (0.51, 0.53, 0.52), "b": (0.55, 0.507, 0.50)}),
    ]
    text = render_stage2(records)
    assert "Chosen on the tuning part: **b**." in text
    assert "stage 2 − stage 1 = +0.0060 (+0.0050 – +0.0070) (ahead in 2 of 2 seeds; target ≥ +0.01: NOT met)" in text
    assert "| a | 0.5600 (0.5100 – 0.6100) | 0.5800 (0.5300 – 0.6300) | +0.0300 (+0.0300 – +0.0300) |" in text
    met = render_stage2([_record(1, (0.6, 0.6, 0.6), {"a": (0.7, 0.62, 0.61)})])
    assert "target ≥ +0.01: met" in met and "2 seed(s)" not in met
