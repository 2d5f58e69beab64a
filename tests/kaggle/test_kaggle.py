import json
import re
import sys

import pytest

from marsseg.errors import UserError
from marsseg.kaggle.client import (
    CredentialsError,
    KaggleError,
    KaggleSession,
    find_credentials,
    json_rows,
    routing_env,
)
from marsseg.kaggle.emulator.faults import parse_fault
from marsseg.kaggle.flow import OUTPUT_FILES
from marsseg.kaggle.records import FIELDS, append_record, latest_records, read_records
from marsseg.submission.formats import write_submission
from tests.conftest import one_line_error, run_cli
from tests.helpers.kaggle_support import endpoint_of, kit_env, make_project, running_emulator

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


def test_the_one_json_reader_takes_the_list_after_what_the_cli_prints_first():
    # `competitions leaderboard` prints the next page's token before the JSON when there is more.
    out = 'Next Page Token = abc\n[{"teamName": "a", "score": "0.5"}, 3, null, {"teamName": "b"}]\n'
    assert json_rows(out, "competitions leaderboard") == [{"teamName": "a", "score": "0.5"}, {"teamName": "b"}]
    assert json_rows("No submissions found\n", "competitions submissions") == []
    assert json_rows('[{"a": 1}]\n', "x") == [{"a": 1}]


def test_the_one_json_reader_names_what_it_could_not_read():
    with pytest.raises(KaggleError, match=r"^kaggle quota: unexpected answer: 403 Forbidden$"):
        json_rows('Traceback (most recent call last):\n  File "x", line 1\n403 Forbidden\n', "quota")
    with pytest.raises(KaggleError, match=r"^kaggle competitions leaderboard: unreadable JSON answer: \[\{oops$"):
        json_rows("[{oops", "competitions leaderboard")


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


# ------------------------------------------------------------------- against the emulator: upload, never twice
CREATE = "POST /api/v1/competitions.CompetitionApiService/CreateSubmission"
LIST = "POST /api/v1/competitions.CompetitionApiService/ListSubmissions"
PUSH = "POST /api/v1/kernels.KernelsApiService/SaveKernel"


def truth_csv(server, path, images=None):
    """A pixels submission of the emulator's own test labels (public score 1), made without training."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_submission(path, server.state.truth[:images], "pixels")


def only_row(project) -> dict:
    latest = latest_records(project / "submissions" / "records.csv")
    assert len(latest) == 1, latest
    return next(iter(latest.values()))


def test_a_submit_answered_503_after_it_was_created_is_listed_once_and_uploaded_zipped(tmp_path, emulator):
    emulator.state.add_fault(parse_fault("CreateSubmission:503:1:after"))  # created, then answered 503
    csv = truth_csv(emulator, tmp_path / "run" / "submission.csv")
    project = make_project(tmp_path)
    result = run_cli("submit", "--file", csv, cwd=project, env=kit_env(tmp_path, endpoint_of(emulator)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "503" in result.stdout and "sending it again" not in result.stdout
    assert emulator.state.requests.count(CREATE) == 1
    assert len(emulator.state.submissions) == 1  # never twice
    row, submitted = only_row(project), emulator.state.submissions[0]
    assert row["status"] == "complete" and row["public_score"] == submitted["publicScore"] == "1.00000"
    # What went up is the staged CSV deflated in a zip; the record keeps both sizes.
    staged = project / row["file"]
    assert submitted["fileName"] == "submission.zip" and int(row["zip_bytes"]) == submitted["totalBytes"]
    assert int(row["csv_bytes"]) == staged.stat().st_size > 10 * int(row["zip_bytes"])  # the header weighs here
    assert (staged.parent / "submission.zip").stat().st_size == submitted["totalBytes"]


def test_a_submit_that_failed_before_creating_is_looked_for_then_sent_again(tmp_path, emulator):
    emulator.state.add_fault(parse_fault("CreateSubmission:503:1"))  # refused before it was created
    csv = truth_csv(emulator, tmp_path / "run" / "submission.csv")
    project = make_project(tmp_path)
    result = run_cli("submit", "--file", csv, cwd=project, env=kit_env(tmp_path, endpoint_of(emulator)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "not in the submissions list after the failed try; sending it again" in result.stdout
    requests = emulator.state.requests
    first, second = [i for i, r in enumerate(requests) if r == CREATE]
    assert LIST in requests[first + 1 : second]  # the re-send came after a look at the list
    assert len(emulator.state.submissions) == 1 and only_row(project)["status"] == "complete"


def test_why_kaggle_could_not_score_a_submission_reaches_the_user_and_the_record(tmp_path, emulator):
    # --images overrides the profile, so a 31-image file leaves; the emulator's scorer (32 images) rejects it.
    csv = truth_csv(emulator, tmp_path / "run" / "submission.csv", images=31)
    project = make_project(tmp_path)
    env = kit_env(tmp_path, endpoint_of(emulator))
    line = one_line_error(run_cli("submit", "--file", csv, "--images", "31", cwd=project, env=env))
    reason = emulator.state.submissions[-1]["errorDescription"]
    assert reason and "31" in reason
    assert "Kaggle could not score submission" in line and reason in line
    row = only_row(project)
    assert row["status"] == "error" and row["detail"] == reason


def test_a_push_whose_budget_exceeds_the_gpu_quota_left_is_refused(tmp_path):
    with running_emulator(tmp_path / "emulator", gpu_quota_hours=30, gpu_quota_used=29.5) as server:
        project = make_project(tmp_path)
        result = run_cli("submit", cwd=project, env=kit_env(tmp_path, endpoint_of(server)))
        line = one_line_error(result)
        assert "refused" in line and "preset kaggle's estimate" in line and "only 0.50 h" in line
        assert "FORCE=1" in line and "--force" in line
        assert "weekly GPU quota: 0.50 h left of 30.00 h" in result.stdout
        assert PUSH not in server.state.requests and server.state.kernels == {}
        assert not (project / "submissions" / "records.csv").exists()


def test_force_pushes_past_the_quota_and_an_unreadable_quota_does_not_block(tmp_path):
    with running_emulator(tmp_path / "emulator", gpu_quota_hours=30, gpu_quota_used=29.5) as server:
        server.state.add_fault(parse_fault("SaveKernel:400:9"))  # stop right after the push is attempted
        project = make_project(tmp_path)
        env = kit_env(tmp_path, endpoint_of(server))
        forced = run_cli("submit", "--force", cwd=project, env=env)
        assert "kernels push failed" in one_line_error(forced)
        assert "pushing anyway (--force)" in forced.stdout and server.state.requests.count(PUSH) == 1
        server.state.add_fault(parse_fault("GetAcceleratorQuotaStatistics:404:1"))
        unread = run_cli("submit", cwd=project, env=env)
        assert "kernels push failed" in one_line_error(unread)
        assert "cannot read the weekly GPU quota" in unread.stdout and server.state.requests.count(PUSH) == 2


def test_a_kernel_submission_of_the_wrong_size_is_refused_and_only_reports_are_fetched(tmp_path, emulator):
    """The emulator serves 32 test images; checked against the real profile (10022) the kernel's file is refused."""
    project = make_project(tmp_path)
    env = kit_env(tmp_path, endpoint_of(emulator), MARSSEG_PROFILE="mars")
    result = run_cli("submit", cwd=project, env=env, timeout=240)
    line = one_line_error(result)
    assert "refused before upload" in line and "expected 10022" in line and "nothing was sent" in line
    assert "downloading it again" in result.stdout  # once, to rule out a broken download; the same bytes: refused
    row = only_row(project)
    assert row["status"] == "refused" and "expected 10022" in row["detail"]
    assert not any("Submission" in r and "List" not in r for r in emulator.state.requests)
    assert emulator.state.submissions == []
    # Only the submission and the reports came down (not the models the run saved), plus the run's log.
    run = emulator.state.kernels["tester/mars-segmentation-kit"]
    written = {p.relative_to(run.working).as_posix() for p in run.output_files()}
    fetched = {p.name for p in (project / "submissions" / row["id"] / "kernel_output").iterdir()}
    assert fetched == {n for n in written if re.search(OUTPUT_FILES, n)} | {"mars-segmentation-kit.log"}
    assert {"submission.csv", "metrics.json", "config.json"} <= fetched
