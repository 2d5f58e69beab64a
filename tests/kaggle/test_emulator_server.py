"""The emulator itself: its routing for a plain `kaggle` client, its loopback-only server, fault specs, and the
`marsseg emulator` command."""

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile

import pytest

from marsseg.errors import UserError
from marsseg.kaggle.emulator.faults import parse_fault
from marsseg.kaggle.emulator.server import print_env
from tests.conftest import one_line_error, run_cli
from tests.helpers.kaggle_support import endpoint_of, kaggle_cli, kit_env

COMPETITION = "an-2-dl-2024-2025-homework-2"


def test_plain_kaggle_cli_routed_by_print_env(tmp_path, emulator):
    port = emulator.server_address[1]
    routed = {}
    for line in print_env(port).splitlines():
        if line.startswith("export "):
            for pair in line[len("export ") :].split():
                key, _, value = pair.partition("=")
                routed[key] = value
    assert routed["MARSSEG_KAGGLE_ENDPOINT"] == f"http://127.0.0.1:{port}" and routed["no_proxy"] == ""
    env = {**kit_env(tmp_path, None), **routed}
    files = kaggle_cli(env, "competitions", "files", "-c", COMPETITION)
    assert files.returncode == 0 and "mars_for_students.npz" in files.stdout, files.stderr
    first = kaggle_cli(env, "competitions", "leaderboard", "-c", COMPETITION, "--show", "--format", "json")
    second = kaggle_cli(env, "competitions", "leaderboard", "-c", COMPETITION, "--show", "--format", "json")
    board1, board2 = json.loads(first.stdout), json.loads(second.stdout)
    assert board1 != board2  # the scripted leaderboard moves with every call
    assert len(board2) >= len(board1) >= 6
    scores = [float(r["score"]) for r in board2]
    assert scores == sorted(scores, reverse=True)
    none = kaggle_cli(env, "competitions", "submissions", "-c", COMPETITION)
    assert none.returncode == 0
    download = kaggle_cli(
        env, "competitions", "leaderboard", "-c", COMPETITION, "--download", "-p", str(tmp_path / "lb")
    )
    assert download.returncode == 0, download.stderr
    with zipfile.ZipFile(next((tmp_path / "lb").glob("*.zip"))) as archive:
        csv = archive.read(archive.namelist()[0]).decode()
    assert csv.startswith("Rank,TeamId,TeamName,LastSubmissionDate,Score\n1,")


def test_token_credentials_are_introspected(tmp_path, emulator):
    from marsseg.kaggle.client import KaggleSession

    env = kit_env(tmp_path, endpoint_of(emulator), credentials=False, KAGGLE_API_TOKEN="emulated-token-123")
    session = KaggleSession(env=env, log=lambda *_: None)
    assert session.username() == "emulator-user"


def test_emulator_answers_absolute_form_targets_and_binds_loopback_only(emulator):
    host, port = emulator.server_address
    assert host == "127.0.0.1"
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/security.OAuthService/IntrospectToken", data=b'{"token": "t"}', method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert json.loads(answer.read()) == {"active": True, "username": "emulator-user"}
    proxy = urllib.request.build_opener(urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{port}"}))
    unauthorised = urllib.request.Request(
        "http://localhost/api/v1/competitions.CompetitionApiService/ListSubmissions", data=b"{}", method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        proxy.open(unauthorised, timeout=10)
    assert caught.value.code == 401


def test_fault_specs_parse_and_bad_ones_are_one_line_errors():
    assert vars(parse_fault("SaveKernel:429:2")) == {
        "target": "SaveKernel",
        "status": 429,
        "delay": 0.0,
        "times": 2,
        "after": False,
    }
    assert vars(parse_fault("CreateSubmission:503:1:after")) == {
        "target": "CreateSubmission",
        "status": 503,
        "delay": 0.0,
        "times": 1,
        "after": True,
    }
    assert parse_fault("*:slow=1.5").delay == 1.5 and parse_fault("kernel-error:3").times == 3
    for bad in ("SaveKernel", "SaveKernel:503:1:later", "SaveKernel:slow=1:1:after", "SaveKernel:42", ":503"):
        with pytest.raises(UserError, match=r"METHOD:STATUS:TIMES:after") as caught:
            parse_fault(bad)
        assert "\n" not in str(caught.value) and repr(bad) in str(caught.value)


def test_slow_answers_are_waited_for(tmp_path, emulator):
    emulator.state.add_fault(parse_fault("ListDataFiles:slow=1.0:1"))
    env = {**kit_env(tmp_path, None), **{"KAGGLE_API_ENVIRONMENT": "LOCALHOST"}}
    endpoint = endpoint_of(emulator)
    env.update(HTTP_PROXY=endpoint, http_proxy=endpoint, NO_PROXY="", no_proxy="")
    started = time.monotonic()
    files = kaggle_cli(env, "competitions", "files", "-c", COMPETITION)
    assert files.returncode == 0 and time.monotonic() - started >= 1.0


def test_marsseg_emulator_command_serves_and_prints_its_routing(tmp_path):
    env = kit_env(tmp_path, None)
    printed = run_cli("emulator", "--print-env", "--port", "7123", env=env)
    assert printed.returncode == 0 and "export MARSSEG_KAGGLE_ENDPOINT=http://127.0.0.1:7123" in printed.stdout
    assert "export MARSSEG_PROFILE=mars-mini\n" in printed.stdout  # kit_env's profile is the default
    real = run_cli("emulator", "--print-env", env={k: v for k, v in env.items() if k != "MARSSEG_PROFILE"})
    assert "export MARSSEG_PROFILE=mars\n" in real.stdout  # unset: the real, full-size competition
    chosen = run_cli("emulator", "--print-env", "--profile", "mars", env=env)
    assert "export MARSSEG_PROFILE=mars\n" in chosen.stdout
    process = subprocess.Popen(
        [sys.executable, "-m", "marsseg", "emulator", "--port", "0", "--root", str(tmp_path / "emu")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        for _ in range(4):  # generating the synthetic data is announced before the banner
            first = process.stdout.readline()
            if first.startswith("Kaggle emulator on"):
                break
        assert "profile mars-mini with 32 test images" in first, first
        assert process.stdout.readline() == "export MARSSEG_KAGGLE_ENDPOINT=" + first.split(" ")[3] + "\n"
        assert process.stdout.readline() == "export MARSSEG_PROFILE=mars-mini\n"
        port = int(first.split("127.0.0.1:")[1].split(" ")[0])
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/security.OAuthService/IntrospectToken",
            data=b'{"token": "t"}',
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert json.loads(answer.read())["active"] is True
    finally:
        process.terminate()
        process.wait(10)
        process.stdout.close()


def test_marsseg_emulator_rejects_a_missing_data_file(tmp_path):
    line = one_line_error(run_cli("emulator", "--data", tmp_path / "nope.npz", env=kit_env(tmp_path, None)))
    assert "nope.npz" in line
    (tmp_path / "truth.npz").write_bytes(b"")
    line = one_line_error(run_cli("emulator", "--truth", tmp_path / "truth.npz", env=kit_env(tmp_path, None)))
    assert "--truth goes with --data" in line
    line = one_line_error(run_cli("emulator", "--gpu-quota-used", "-1", env=kit_env(tmp_path, None)))
    assert "--gpu-quota-used" in line
