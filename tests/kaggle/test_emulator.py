"""The real `kaggle` 2.2.4 CLI, driven through the kit's own commands, against the loopback emulator."""

import time

import pytest

from marsseg.kaggle.emulator.faults import parse_fault
from marsseg.kaggle.records import latest_records, read_records
from marsseg.submission.formats import read_submission
from tests.conftest import one_line_error, run_cli
from tests.helpers.kaggle_support import endpoint_of, kit_env, make_project, running_emulator

COMPETITION = "an-2-dl-2024-2025-homework-2"


def only_record(project):
    latest = latest_records(project / "submissions" / "records.csv")
    assert len(latest) == 1, latest
    return next(iter(latest.values()))


def test_make_submit_round_trip_push_run_fetch_submit_record(tmp_path, emulator):
    """The `make submit` chain end to end: the pushed script really runs, and its output is what gets submitted."""
    project = make_project(tmp_path)
    env = kit_env(tmp_path, endpoint_of(emulator))
    # 2.2.4 writes a failed output GET's error body into the file and exits 0: validation must catch it.
    emulator.state.add_fault(parse_fault("output-file:500:1"))
    result = run_cli("submit", cwd=project, env=env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rules check passed" in result.stdout and "COMPLETE" in result.stdout
    assert "[kaggle] kernels output:" in result.stdout and "retry 1/3" in result.stdout
    # The script Kaggle would run is the bundle of this tree, pushed under the user's name.
    run = emulator.state.kernels["tester/mars-segmentation-kit"]
    assert run.script.read_text() == (project / "kernels" / "marsseg_kernel.py").read_text()
    assert run.status == "COMPLETE" and "[kernel] done" in run.log_text()
    # The record: one started row, then the final one with everything tracking needs.
    rows = read_records(project / "submissions" / "records.csv")
    assert [r["status"] for r in rows] == ["started", "complete"]
    row = rows[-1]
    staged = project / row["file"]
    info = read_submission(staged)
    assert info.layout == "pixels" and info.n_images == 32  # converted to the profile's layout
    import hashlib

    assert row["sha256"] == hashlib.sha256(staged.read_bytes()).hexdigest()
    assert row["preset"] == "smoke" and float(row["val_miou_final"]) > 0
    assert row["kernel_ref"] == "tester/mars-segmentation-kit@1"
    submitted = emulator.state.submissions[-1]
    assert row["kaggle_ref"] == str(submitted["ref"]) and row["public_score"] == submitted["publicScore"]
    assert row["id"] in submitted["description"] and "preset=smoke" in submitted["description"]
    assert float(row["public_score"]) > 0
    # What the run wrote is kept next to it, and the credentials went nowhere.
    assert (project / "submissions" / row["id"] / "kernel_output" / "metrics.json").is_file()
    assert "feedface" not in result.stdout + result.stderr + (project / "submissions" / "records.csv").read_text()
    # `make status` reads the same kernel and record back.
    status = run_cli("status", cwd=project, env=env)
    assert status.returncode == 0, status.stderr
    assert "COMPLETE" in status.stdout and row["id"] in status.stdout


@pytest.mark.slow
def test_make_submit_recovers_from_faults_on_every_leg(tmp_path, emulator):
    for spec in (
        "SaveKernel:429:1",
        "GetKernelSessionStatus:500:1",
        "output-file:500:1",
        "ListSubmissions:429:1",
        "blob-upload:500:1",
        "CreateSubmission:503:1",
    ):
        emulator.state.add_fault(parse_fault(spec))
    project = make_project(tmp_path)
    result = run_cli("submit", cwd=project, env=kit_env(tmp_path, endpoint_of(emulator)), timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("retry") >= 4
    assert only_record(project)["status"] == "complete"
    assert len(emulator.state.submissions) == 1  # retried, never submitted twice
    assert all(f.times == 0 for f in emulator.state.faults)


@pytest.fixture(scope="module")
def mini_data_file(tmp_path_factory):
    """Synthetic data with the mars-mini profile's 32 test images (the shared small data has 24)."""
    from marsseg.data.synth import make_synthetic, save_synthetic

    directory = tmp_path_factory.mktemp("mini")
    data, truth = directory / "data.npz", directory / "truth.npz"
    save_synthetic(make_synthetic(n_train=96, n_test=32, seed=7), data, truth)
    return data, truth


@pytest.fixture(scope="module")
def mini_csv(tmp_path_factory, mini_data_file):
    """One smoke run's submission.csv (with its config.json), shared by the tests that submit a local file."""
    from marsseg.config import preset
    from marsseg.pipeline.run import run

    out = tmp_path_factory.mktemp("run")
    run(preset("smoke"), mini_data_file[0], out, log=lambda *_: None)
    return out / "submission.csv"


@pytest.fixture
def scored_emulator(tmp_path, mini_data_file):
    data, truth = mini_data_file
    with running_emulator(tmp_path / "emulator", data_path=data, truth_path=truth) as server:
        yield server


def test_submit_csv_recovers_from_429_and_500(tmp_path, mini_csv, scored_emulator):
    csv = mini_csv
    for spec in ("ListSubmissions:429:1", "CreateSubmission:500:1", "StartSubmissionUpload:429:1"):
        scored_emulator.state.add_fault(parse_fault(spec))
    project = make_project(tmp_path)
    result = run_cli("submit", "--file", csv, cwd=project, env=kit_env(tmp_path, endpoint_of(scored_emulator)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("retry") == 3
    row = only_record(project)
    assert row["status"] == "complete" and row["preset"] == "smoke" and row["kernel_ref"] == ""
    assert len(scored_emulator.state.submissions) == 1 and float(row["public_score"]) > 0


def test_persistent_submit_failure_exits_2_in_one_line_and_loses_nothing(tmp_path, mini_csv, scored_emulator):
    csv = mini_csv
    scored_emulator.state.add_fault(parse_fault("CreateSubmission:503:99"))
    project = make_project(tmp_path)
    result = run_cli("submit", "--file", csv, cwd=project, env=kit_env(tmp_path, endpoint_of(scored_emulator)))
    line = one_line_error(result)
    assert "503" in line and "nothing is lost" in line
    row = only_record(project)
    assert row["status"] == "submit_failed" and "503" in row["detail"]
    staged = project / row["file"]
    assert staged.is_file() and read_submission(staged).layout == "pixels"
    assert scored_emulator.state.submissions == []


def test_failed_upload_that_exits_0_is_caught_by_listing(tmp_path, mini_csv, scored_emulator):
    """2.2.4 prints 'Could not submit' and exits 0 when the blob PUT fails: the kit must notice and retry."""
    csv = mini_csv
    scored_emulator.state.add_fault(parse_fault("blob-upload:404:1"))
    project = make_project(tmp_path)
    result = run_cli("submit", "--file", csv, cwd=project, env=kit_env(tmp_path, endpoint_of(scored_emulator)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "upload failed" in result.stdout
    assert only_record(project)["status"] == "complete" and len(scored_emulator.state.submissions) == 1


def test_a_kernel_that_ends_in_error_is_recorded_and_reported(tmp_path, emulator):
    emulator.state.add_fault(parse_fault("kernel-error"))
    project = make_project(tmp_path)
    result = run_cli("submit", cwd=project, env=kit_env(tmp_path, endpoint_of(emulator)), timeout=120)
    line = one_line_error(result)
    assert "ended ERROR" in line and "not an npz file" in line and "its log is in submissions/" in line
    log = project / line.split("its log is in ", 1)[1].strip()
    assert "marsseg: error:" in log.read_text()
    row = only_record(project)
    assert row["status"] == "kernel_failed" and row["kernel_ref"] == "tester/mars-segmentation-kit@1"


def test_persistent_push_failure_keeps_the_record(tmp_path, emulator):
    emulator.state.add_fault(parse_fault("SaveKernel:500:99"))
    project = make_project(tmp_path)
    result = run_cli("submit", cwd=project, env=kit_env(tmp_path, endpoint_of(emulator)))
    line = one_line_error(result)
    assert "kernels push failed after 4 tries" in line
    assert only_record(project)["status"] == "push_failed"


def test_data_download_through_the_real_client(tmp_path, emulator):
    project = make_project(tmp_path)
    emulator.state.add_fault(parse_fault("data-file:500:1"))
    result = run_cli("data", "--dir", "data", cwd=project, env=kit_env(tmp_path, endpoint_of(emulator)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "competitions download: 500" in result.stdout and "retry 1/3" in result.stdout
    from marsseg.data.load import load_dataset

    dataset = load_dataset(project / "data" / "mars_for_students.npz")
    assert (dataset.n_train, dataset.n_test) == (96, 32)
    assert not (project / "data" / f"{COMPETITION}.zip").exists()


def test_kernel_status_follows_the_process(tmp_path, mini_data_file):
    data, truth = mini_data_file
    with running_emulator(tmp_path / "emu", data_path=data, truth_path=truth, queue_seconds=0.5) as server:
        # A stand-in script: the status is the process's (the real kernel's run is the round trip's, above).
        script = (
            "import os, pathlib, time\n"
            "time.sleep(0.5)\n"
            "working = pathlib.Path(os.environ['MARSSEG_KAGGLE_WORKING'])\n"
            "(working / 'submission.csv').write_text('ImageId,EncodedPixels\\n')\n"
            "(working / 'metrics.json').write_text('{}')\n"
        )
        answer = server.state.save_kernel(
            "me", {"slug": "me/kernel-one", "text": script, "competitionDataSources": [COMPETITION]}
        )
        run = server.state.kernels["me/kernel-one"]
        assert answer["versionNumber"] == 1 and run.status == "QUEUED"
        seen = {run.status}
        deadline = time.monotonic() + 180
        while run.status not in {"COMPLETE", "ERROR"} and time.monotonic() < deadline:
            seen.add(run.status)
            time.sleep(0.05)
        assert seen >= {"QUEUED", "RUNNING"} and run.status == "COMPLETE", run.log_text()
        assert {p.name for p in run.output_files()} >= {"submission.csv", "metrics.json"}
        assert "cannot push" in server.state.save_kernel("me", {"slug": "you/kernel-two"})["error"]


def test_data_download_refused_says_to_accept_the_rules(tmp_path, emulator):
    emulator.state.add_fault(parse_fault("DownloadDataFiles:403:1"))
    project = make_project(tmp_path)
    line = one_line_error(run_cli("data", "--dir", "data", cwd=project, env=kit_env(tmp_path, endpoint_of(emulator))))
    assert "403" in line and "accept the competition's rules" in line
