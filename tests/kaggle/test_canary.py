"""`make canary` (`marsseg submit --canary`) through the real `kaggle` client against the emulator, and what
`make submit` makes of its record."""

import json

import pytest

from marsseg.kaggle.bundle import kernel_digest
from marsseg.kaggle.canaries import FIELDS, canary_text, latest_passed
from marsseg.kaggle.emulator.faults import parse_fault
from marsseg.kaggle.records import append_record, read_records
from tests.conftest import one_line_error, run_cli
from tests.helpers.kaggle_support import endpoint_of, kit_env, make_project, running_emulator

PUSH = "POST /api/v1/kernels.KernelsApiService/SaveKernel"


@pytest.fixture
def emulator(tmp_path):
    with running_emulator(tmp_path / "emulator", canary_seconds=60) as server:
        yield server


def test_make_canary_pushes_runs_fetches_reports_records_and_submits_nothing(tmp_path, emulator):
    project = make_project(tmp_path)
    env = kit_env(tmp_path, endpoint_of(emulator))
    result = run_cli("submit", "--canary", cwd=project, env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    # The script that ran is the kernel with CANARY on, and the emulator ran it on the CPU, cut to fit.
    run = emulator.state.kernels["tester/mars-segmentation-kit"]
    assert "CANARY = True" in run.script.read_text() and "[marsseg] CANARY run" in run.log_text()
    assert "canary.budget_seconds=60" in run.overrides and "require_gpu=false" in run.overrides
    # The report: the machine, per-stage speeds and compile seconds, prediction, memory, the projected full run.
    assert "canary of preset smoke on the CPU" in out
    assert "stage 1, network 1" in out and "compile" in out and "img/s" in out
    assert "stage 2:" in out and "peak GPU memory" in out
    assert "projected full run of preset smoke" in out and "at most" in out
    assert "NOTE: ran on the CPU" in out and "60 s budget" in out
    # Nothing submitted; the canary is recorded for this kernel digest and machine shape.
    assert emulator.state.submissions == [] and not (project / "submissions" / "records.csv").exists()
    rows = read_records(project / "submissions" / "canaries.csv")
    assert [r["status"] for r in rows] == ["started", "passed"]
    passed = rows[-1]
    digest = kernel_digest(project / "kernels" / "marsseg_kernel.py")
    assert passed["kernel_digest"] == digest and passed["machine_shape"] == "NvidiaTeslaT4"
    assert passed["devices"] == "CPU" and float(passed["projected_seconds"]) > 0
    metrics = json.loads(next((project / "submissions" / "canaries").glob("*/metrics.json")).read_text())
    assert metrics["canary"]["budget_seconds"] == 60 and metrics["canary"]["on_gpu"] is False
    assert metrics["runtime"]["replicas"] == 1 and metrics["runtime"]["precision"] == "float32"
    # `make submit --skip-push` would fetch the canary's output: refused, nothing sent.
    skipped = run_cli("submit", "--skip-push", cwd=project, env=env, timeout=120)
    assert "is a canary" in one_line_error(skipped) and emulator.state.submissions == []
    # `make submit` names the canary it relies on, and the quota check uses its projection (the push is stopped
    # there: the full round trip is tests/kaggle/test_emulator.py's).
    emulator.state.add_fault(parse_fault("SaveKernel:400:9"))
    submit = run_cli("submit", cwd=project, env=env, timeout=300)
    assert "kernels push failed" in one_line_error(submit)
    assert f"relying on canary {passed['id']}" in submit.stdout and "WARNING: no canary" not in submit.stdout
    assert f"canary {passed['id']}'s projection" in submit.stdout


def test_submit_warns_when_no_canary_passed_for_this_kernel_and_shape(tmp_path, emulator):
    project = make_project(tmp_path)
    env = kit_env(tmp_path, endpoint_of(emulator))
    emulator.state.add_fault(parse_fault("SaveKernel:400:9"))  # stop right after the warning and the quota line
    # A passed canary of another kernel digest does not count.
    append_record(
        {"id": "old", "status": "passed", "kernel_digest": "0" * 16, "machine_shape": "NvidiaTeslaT4"},
        project / "submissions" / "canaries.csv",
        FIELDS,
    )
    result = run_cli("submit", cwd=project, env=env)
    assert "kernels push failed" in one_line_error(result)
    assert "WARNING: no canary has passed for this kernel" in result.stdout and "on NvidiaTeslaT4" in result.stdout
    assert "preset kaggle's estimate from assumed T4 rates (no canary passed yet)" in result.stdout


def test_a_failed_canary_is_recorded_failed_with_where_its_log_is(tmp_path, emulator):
    project = make_project(tmp_path)
    emulator.state.add_fault(parse_fault("kernel-error"))  # the pushed kernel finds corrupt data
    result = run_cli("submit", "--canary", cwd=project, env=kit_env(tmp_path, endpoint_of(emulator)), timeout=300)
    line = one_line_error(result)
    assert "the canary ended ERROR" in line and "canaries" in line
    rows = read_records(project / "submissions" / "canaries.csv")
    assert [r["status"] for r in rows] == ["started", "failed"] and "ERROR" in rows[-1]["detail"]
    assert latest_passed(rows[-1]["kernel_digest"], "NvidiaTeslaT4", project / "submissions" / "canaries.csv") is None


@pytest.mark.parametrize("shape, replacement", [("NvidiaTeslaP100", "NvidiaTeslaT4"), ("Tpu1VmV38", "NvidiaTeslaT4")])
def test_a_retired_accelerator_is_refused_in_one_line_before_anything_is_pushed(tmp_path, emulator, shape, replacement):
    project = make_project(tmp_path)
    env = kit_env(tmp_path, endpoint_of(emulator))
    for args in (("submit", "--accelerator", shape), ("submit", "--canary", "--accelerator", shape)):
        line = one_line_error(run_cli(*args, cwd=project, env=env))
        assert f"'{shape}' is retired" in line and f"use {replacement}" in line
    assert PUSH not in emulator.state.requests


def test_canary_text_turns_the_setting_on_once_and_refuses_a_kernel_without_it():
    from marsseg.errors import UserError
    from marsseg.kaggle.bundle import build_kernel

    text = build_kernel().text
    assert "CANARY = False" in text
    on = canary_text(text)
    assert on.count("CANARY = True") == 1 and "CANARY = False" not in on
    with pytest.raises(UserError, match="make bundle"):
        canary_text(text.replace("CANARY = False", "SOMETHING = 1"))
