import json
import sys

import pytest

from marsseg.errors import UserError
from marsseg.kaggle.client import CredentialsError, KaggleError, KaggleSession, find_credentials, routing_env
from marsseg.kaggle.records import FIELDS, append_record, latest_records, read_records
from tests.conftest import one_line_error, run_cli
from tests.helpers.kaggle_support import kit_env, make_project

KEY = "c0ffee" + "0" * 26


def test_no_credentials_is_a_clear_error_naming_every_way(tmp_path):
    with pytest.raises(CredentialsError) as caught:
        find_credentials({"HOME": str(tmp_path)})
    message = str(caught.value)
    assert "kaggle.json" in message and "KAGGLE_USERNAME" in message and "KAGGLE_KEY" in message
    assert "KAGGLE_API_TOKEN" in message and "\n" not in message


def test_credentials_in_the_clients_order(tmp_path):
    config = tmp_path / "cfg"
    config.mkdir()
    (config / "kaggle.json").write_text(json.dumps({"username": "alice", "key": KEY}))
    found = find_credentials({"HOME": str(tmp_path), "KAGGLE_CONFIG_DIR": str(config)})
    assert (found.username, found.source) == ("alice", str(config / "kaggle.json"))
    both = find_credentials(
        {
            "HOME": str(tmp_path),
            "KAGGLE_CONFIG_DIR": str(config),
            "KAGGLE_USERNAME": "bob",
            "KAGGLE_KEY": "other-key-123456",
        }
    )
    assert (both.username, both.source) == ("bob", "KAGGLE_USERNAME/KAGGLE_KEY")
    token = find_credentials({"HOME": str(tmp_path), "KAGGLE_API_TOKEN": "tok-123456789"})
    assert token.source == "KAGGLE_API_TOKEN" and token.username is None
    (tmp_path / ".kaggle").mkdir()
    (tmp_path / ".kaggle" / "access_token").write_text("file-token-123456\n")
    assert find_credentials({"HOME": str(tmp_path)}).source == "~/.kaggle/access_token"


def test_credentials_never_show_in_repr_or_messages(tmp_path):
    found = find_credentials({"HOME": str(tmp_path), "KAGGLE_USERNAME": "me", "KAGGLE_KEY": KEY})
    assert KEY not in repr(found) and found.secrets() == (KEY,)
    session = KaggleSession(env={"HOME": str(tmp_path), "KAGGLE_USERNAME": "me", "KAGGLE_KEY": KEY})
    session.credentials()
    assert session.mask(f"401 for key {KEY}") == "401 for key ***"


def test_a_broken_kaggle_json_is_named(tmp_path):
    (tmp_path / "kaggle.json").write_text("{not json")
    with pytest.raises(CredentialsError, match="kaggle.json: not a readable"):
        find_credentials({"HOME": str(tmp_path), "KAGGLE_CONFIG_DIR": str(tmp_path)})


def test_routing_to_an_emulator_sets_exactly_what_the_client_honours():
    env = routing_env("http://127.0.0.1:7777", {"PATH": "/bin", "NO_PROXY": "*"})
    assert env["KAGGLE_API_ENVIRONMENT"] == "LOCALHOST"
    assert env["HTTP_PROXY"] == env["http_proxy"] == "http://127.0.0.1:7777"
    assert env["NO_PROXY"] == env["no_proxy"] == ""
    assert routing_env(None, {"PATH": "/bin"}) == {"PATH": "/bin"}  # unset means real Kaggle, untouched
    with pytest.raises(UserError, match="MARSSEG_KAGGLE_ENDPOINT"):
        routing_env("localhost:7777", {})


def _flaky_command(tmp_path, failures: int, message: str) -> list[str]:
    counter = tmp_path / "count"
    code = (
        f"import pathlib, sys\np = pathlib.Path({str(counter)!r})\nn = int(p.read_text()) if p.exists() else 0\n"
        f"p.write_text(str(n + 1))\nif n < {failures}:\n    print({message!r}, file=sys.stderr); sys.exit(1)\n"
        "print('ok')"
    )
    return [sys.executable, "-c", code]


def _session(tmp_path, retries=3):
    delays = []
    session = KaggleSession(
        env={"HOME": str(tmp_path), "KAGGLE_USERNAME": "me", "KAGGLE_KEY": KEY},
        retries=retries,
        backoff=0.5,
        log=lambda *_: None,
        sleep=delays.append,
    )
    return session, delays


@pytest.mark.parametrize(
    "message",
    [
        "429 Client Error: Too Many Requests for url: http://localhost/api/v1/x",
        "500 Server Error: Internal Server Error for url: x",
        "requests.exceptions.ConnectionError: ('Connection aborted.', RemoteDisconnected())",
    ],
)
def test_transient_failures_are_retried_with_exponential_backoff(tmp_path, message):
    session, delays = _session(tmp_path)
    assert session._run(_flaky_command(tmp_path, 3, message), "test").strip() == "ok"
    assert delays == [0.5, 1.0, 2.0]


def test_persistent_failure_gives_up_with_one_clear_line(tmp_path):
    session, delays = _session(tmp_path, retries=2)
    with pytest.raises(KaggleError) as caught:
        session._run(
            _flaky_command(tmp_path, 99, "503 Server Error: Service Unavailable for url: x"), "competitions submit"
        )
    assert (
        str(caught.value)
        == "kaggle competitions submit failed after 3 tries: 503 Server Error: Service Unavailable for url: x"
    )
    assert len(delays) == 2 and not caught.value.retryable


def test_permanent_failures_are_not_retried(tmp_path):
    session, delays = _session(tmp_path)
    with pytest.raises(KaggleError, match="Competition not found"):
        session._run(_flaky_command(tmp_path, 99, "Competition not found"), "x")
    assert delays == []
    with pytest.raises(CredentialsError, match="rejected the credentials"):
        session._run(_flaky_command(tmp_path, 99, "401 Client Error: Unauthorized"), "x")


def test_records_are_append_only_and_the_latest_row_wins(tmp_path):
    path = tmp_path / "records.csv"
    append_record({"id": "a", "status": "started"}, path)
    append_record({"id": "b", "status": "started", "message": "two\nlines"}, path)
    append_record({"id": "a", "status": "complete", "public_score": "0.61234"}, path)
    rows = read_records(path)
    assert [r["status"] for r in rows] == ["started", "started", "complete"] and list(rows[0]) == list(FIELDS)
    assert latest_records(path)["a"]["public_score"] == "0.61234"
    assert latest_records(path)["b"]["message"] == "two lines"
    assert path.read_text().count("id,time,") == 1
    with pytest.raises(ValueError):
        append_record({"id": "c", "score": 1}, path)


def test_cli_submit_without_credentials_exits_2_with_how_to_and_writes_nothing(tmp_path):
    project = make_project(tmp_path)
    result = run_cli("submit", cwd=project, env=kit_env(tmp_path, "http://127.0.0.1:9", credentials=False))
    line = one_line_error(result)
    assert "no Kaggle credentials found" in line and "kaggle.json" in line and "KAGGLE_API_TOKEN" in line
    assert not (project / "submissions").exists()


def test_cli_status_without_credentials_exits_2(tmp_path):
    project = make_project(tmp_path)
    one_line_error(run_cli("status", cwd=project, env=kit_env(tmp_path, None, credentials=False)))


def test_cli_data_without_credentials_says_how_and_makes_synthetic_data(tmp_path):
    project = make_project(tmp_path)
    result = run_cli(
        "data",
        "--dir",
        "data",
        "--train",
        "40",
        "--test",
        "8",
        cwd=project,
        env=kit_env(tmp_path, None, credentials=False),
    )
    assert result.returncode == 0, result.stderr
    assert "no Kaggle credentials" in result.stdout and "kaggle.json" in result.stdout
    from marsseg.data.load import load_dataset

    assert load_dataset(project / "data" / "synthetic_mars.npz").n_train == 40


def test_cli_submit_csv_rejects_a_bad_file_before_anything_else(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,EncodedPixels\n0_1,3 2 1\n")
    project = make_project(tmp_path)
    line = one_line_error(run_cli("submit", "--file", bad, cwd=project, env=kit_env(tmp_path, None, credentials=False)))
    assert "bad.csv" in line
    assert not (project / "submissions").exists()
