"""The emulator and the competition profile: uploads (plain or zipped) validated against the profile's test-set
size with the validator's reason, scoring only with truth of that size, the processed-then-error fault and the
weekly GPU quota, through the real `kaggle` 2.2.4 CLI where a client would see them."""

import base64
import io
import json
import time
import urllib.error
import urllib.request
import zipfile
from datetime import datetime, timezone

import numpy as np
import pytest

from marsseg.competition import MARS, MARS_MINI
from marsseg.data.synth import make_synthetic, save_synthetic
from marsseg.errors import SubmissionError
from marsseg.kaggle.emulator.faults import parse_fault
from marsseg.kaggle.emulator.quota import next_refresh
from marsseg.kaggle.emulator.server import print_env
from marsseg.kaggle.emulator.state import default_profile, stored_rows
from marsseg.submission.formats import decode, encode
from marsseg.submission.scoring import score_masks
from tests.helpers.kaggle_support import DUMMY_KEY, kaggle_cli, kit_env, running_emulator

COMPETITION = MARS.slug
BASIC = "Basic " + base64.b64encode(f"tester:{DUMMY_KEY}".encode()).decode()


def routed_env(tmp_path, server) -> dict:
    """The real client's environment, routed as `marsseg emulator --print-env` says (the profile included)."""
    env = kit_env(tmp_path, None)
    for line in print_env(server.server_address[1], server.state.profile).splitlines():
        if line.startswith("export "):
            env.update(pair.partition("=")[::2] for pair in line[len("export ") :].split())
    return env


def api(server, method, body=None, service="competitions.CompetitionApiService"):
    url = f"http://127.0.0.1:{server.server_address[1]}/api/v1/{service}/{method}"
    request = urllib.request.Request(url, json.dumps(body or {}).encode(), {"Authorization": BASIC}, method="POST")
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def upload(server, data: bytes, name="submission.csv") -> tuple[dict, dict]:
    """CreateSubmission on bytes already uploaded: (its answer, the listed submission)."""
    state = server.state
    token = f"test-{len(state.blobs)}"
    state.blobs[token], state.blobs_meta[token] = data, {"fileName": name}
    answer = state.create_submission("tester", {"blobFileTokens": [token], "submissionDescription": name})
    return answer, state.submissions[-1]


def zipped(*members: tuple[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def validator_says(csv: bytes, competition=MARS_MINI) -> str:
    with pytest.raises(SubmissionError) as caught:
        decode(csv, competition.test_images, competition)
    return f"invalid submission: {caught.value}"


def test_default_synthetic_data_has_the_profiles_size_and_is_cached(tmp_path, monkeypatch):
    with running_emulator(tmp_path / "emu") as server:
        state = server.state
        assert (state.profile, state.competition) == ("mars-mini", MARS_MINI)
        assert stored_rows(state.data_path, "test_set") == 32 == len(state.truth)
        assert stored_rows(state.data_path, "training_set") == 96 and state.data_path.parent == tmp_path / "emu"
    stamp = state.data_path.stat().st_mtime_ns
    with running_emulator(tmp_path / "emu") as again:
        assert again.state.data_path == state.data_path and state.data_path.stat().st_mtime_ns == stamp
    monkeypatch.delenv("MARSSEG_PROFILE", raising=False)
    assert default_profile() == "mars"  # the real competition's 10022 images, unless told otherwise
    monkeypatch.setenv("MARSSEG_PROFILE", "mars-mini")
    with running_emulator(tmp_path / "env", profile=None) as server:
        assert server.state.competition.test_images == 32


def test_uploads_are_validated_against_the_profile_with_the_validators_reason(emulator):
    truth = emulator.state.truth
    perfect = encode(truth, "pixels", MARS_MINI)
    answer, row = upload(emulator, perfect)
    assert (row["status"], row["publicScore"], row["errorDescription"]) == ("COMPLETE", "1.00000", "")
    assert answer["message"] == f"Successfully submitted to {MARS.title}"
    _, row = upload(emulator, zipped(("submission.csv", perfect)), "submission.zip")  # Kaggle takes a zip
    assert (row["status"], row["publicScore"]) == ("COMPLETE", "1.00000")
    out_of_range = bytearray(perfect)
    out_of_range[perfect.index(b"\n0,") + 3] = ord("7")  # image 0, pixel 0: class 7 of 0-4
    bad_ids = perfect.replace(b"\n1,", b"\n9,", 1)
    for csv in (
        encode(truth[:31], "pixels", MARS_MINI),  # the row count: one image short
        encode(truth, "rle", MARS_MINI),  # valid RLE, but the scorer takes the pixels layout
        out_of_range,
        bad_ids,
        b"not,a,submission\n",
    ):
        _, row = upload(emulator, csv)
        expected = validator_says(csv) if b"EncodedPixels" not in csv else "the scorer takes the pixels layout"
        assert row["status"] == "ERROR" and row["publicScore"] == "", row
        assert expected in row["errorDescription"] and "\n" not in row["errorDescription"]
    assert "31 rows, expected 32" in emulator.state.submissions[2]["errorDescription"]
    assert "not a class 0–4" in emulator.state.submissions[4]["errorDescription"]
    for members in ((("a.csv", perfect), ("b.csv", perfect)), (("submission.txt", perfect),)):
        _, row = upload(emulator, zipped(*members), "submission.zip")
        assert row["status"] == "ERROR" and "exactly one .csv file" in row["errorDescription"]
    listed = api(emulator, "ListSubmissions", {"competitionName": COMPETITION, "pageSize": 50})["submissions"]
    errors = [s for s in listed if s["status"] == "ERROR"]
    assert len(errors) == 7 and all(s["errorDescription"].startswith("invalid submission: ") for s in errors)


def test_the_real_cli_submits_a_zip_and_a_wrong_size_file_is_scored_error(tmp_path, emulator):
    env = routed_env(tmp_path, emulator)
    assert env["MARSSEG_PROFILE"] == "mars-mini"
    good, short = tmp_path / "submission.zip", tmp_path / "short.csv"
    good.write_bytes(zipped(("submission.csv", encode(emulator.state.truth, "pixels", MARS_MINI))))
    short.write_bytes(encode(emulator.state.truth[:24], "pixels", MARS_MINI))
    for path, message in ((good, "zipped"), (short, "short")):
        result = kaggle_cli(env, "competitions", "submit", "-c", COMPETITION, "-f", path, "-m", message)
        assert result.returncode == 0 and "Successfully submitted" in result.stdout, result.stdout + result.stderr
    listed = {
        s["description"]: s for s in api(emulator, "ListSubmissions", {"competitionName": COMPETITION})["submissions"]
    }
    assert (listed["zipped"]["status"], listed["zipped"]["publicScore"]) == ("COMPLETE", "1.00000")
    assert listed["zipped"]["fileName"] == "submission.zip"
    assert listed["short"]["status"] == "ERROR"
    assert listed["short"]["errorDescription"] == "invalid submission: 24 rows, expected 32 (one per test image)"


def test_without_truth_of_the_profiles_size_submissions_complete_unscored_and_say_so(tmp_path, emulator):
    data, truth = tmp_path / "data.npz", tmp_path / "truth.npz"
    save_synthetic(make_synthetic(n_train=8, n_test=24, seed=3), data, truth)
    csv = tmp_path / "submission.csv"
    csv.write_bytes(encode(emulator.state.truth, "pixels", MARS_MINI))  # 32 valid rows from elsewhere
    cases = ((truth, "the truth holds 24 test images, profile mars-mini has 32"), (None, "(pass --truth)"))
    for n, (truth_path, why) in enumerate(cases):
        said = []
        with running_emulator(tmp_path / f"emu-{n}", data_path=data, truth_path=truth_path, log=said.append) as server:
            assert server.state.truth is None and why in server.state.unscored
            assert any("not scored" in line and why in line for line in said), said
            assert any("has 24 test images, profile mars-mini expects 32" in line for line in said), said
            result = kaggle_cli(
                routed_env(tmp_path, server), "competitions", "submit", "-c", COMPETITION, "-f", csv, "-m", "unscored"
            )
            assert result.returncode == 0 and "not scored" in result.stdout and why in result.stdout, result.stdout
            row = api(server, "ListSubmissions", {"competitionName": COMPETITION})["submissions"][0]
            assert (row["status"], row["publicScore"]) == ("COMPLETE", "")
            assert row["errorDescription"].startswith("not scored: ") and why in row["errorDescription"]
            board = api(server, "GetLeaderboard", {"competitionName": COMPETITION})["submissions"]
            assert "tester" not in {r["teamName"] for r in board}


def test_an_after_fault_creates_the_submission_then_answers_503(tmp_path, emulator):
    csv = tmp_path / "submission.csv"
    csv.write_bytes(encode(emulator.state.truth, "pixels", MARS_MINI))
    emulator.state.add_fault(parse_fault("CreateSubmission:503:1:after"))
    env = routed_env(tmp_path, emulator)
    result = kaggle_cli(env, "competitions", "submit", "-c", COMPETITION, "-f", csv, "-m", "processed")
    assert result.returncode == 1 and "503" in result.stdout + result.stderr, result.stdout + result.stderr
    assert [s["description"] for s in emulator.state.submissions] == ["processed"]  # it went through all the same
    assert emulator.state.submissions[0]["status"] == "COMPLETE"
    again = kaggle_cli(env, "competitions", "submit", "-c", COMPETITION, "-f", csv, "-m", "second")
    assert again.returncode == 0 and len(emulator.state.submissions) == 2  # the fault is spent
    # On the blob PUT too: the bytes are stored, the answer is the fault.
    start = api(emulator, "StartSubmissionUpload", {"competitionName": COMPETITION, "fileName": "x.csv"})
    emulator.state.add_fault(parse_fault("blob-upload:503:1:after"))
    put = urllib.request.Request(start["createUrl"].replace("localhost", "127.0.0.1"), b"abc", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(put, timeout=10)
    assert caught.value.code == 503 and emulator.state.blobs[start["token"]] == b"abc"


def test_kaggle_quota_reports_the_configured_gpu_quota_plus_gpu_kernel_runs(tmp_path):
    from kagglesdk.kernels.types.kernels_api_service import ApiGetAcceleratorQuotaStatisticsResponse

    with running_emulator(tmp_path / "emu", gpu_quota_hours=12, gpu_quota_used=2.5, queue_seconds=0) as server:
        result = kaggle_cli(routed_env(tmp_path, server), "quota", "--csv")
        assert result.returncode == 0, result.stdout + result.stderr
        rows = {line.split(",")[0]: line.split(",") for line in result.stdout.strip().splitlines()}
        assert rows["GPU"][1:4] == ["2.50h", "9.50h", "12.00h"] and rows["TPU"][1:4] == ["0.00h", "20.00h", "20.00h"]
        refresh = datetime.fromisoformat(rows["GPU"][4])
        now = datetime.now(timezone.utc).replace(tzinfo=None)  # the client hands back a naive UTC time
        assert refresh.weekday() == 5 and refresh > now and (refresh - now).days < 7
        script = "import time\ntime.sleep(1.5)\n"
        server.state.save_kernel("me", {"slug": "me/gpu-kernel", "text": script, "enableGpu": True})
        server.state.save_kernel("me", {"slug": "me/cpu-kernel", "text": script})
        deadline = time.monotonic() + 30
        while any(r.status != "COMPLETE" for r in server.state.runs) and time.monotonic() < deadline:
            time.sleep(0.05)
        answer = api(server, "GetAcceleratorQuotaStatistics", service="kernels.KernelsApiService")
        parsed = ApiGetAcceleratorQuotaStatisticsResponse.from_dict(answer)  # the client's own parser
        extra = parsed.gpu_quota.time_used.total_seconds() - 2.5 * 3600
        assert 1.5 <= extra < 3.0  # the GPU run's wall time only, not the CPU run's
        assert parsed.gpu_quota.total_time_allowed.total_seconds() == 12 * 3600
        assert parsed.tpu_quota.time_used.total_seconds() == 0


def test_the_quota_week_restarts_on_saturday_at_midnight_utc():
    friday = datetime(2026, 1, 9, 23, 59, tzinfo=timezone.utc)
    saturday = datetime(2026, 1, 10, 0, 0, tzinfo=timezone.utc)
    assert next_refresh(friday) == saturday and next_refresh(saturday) == datetime(2026, 1, 17, tzinfo=timezone.utc)


@pytest.mark.slow
def test_full_size_profile_scores_a_10022_image_submission_through_the_real_cli(tmp_path):
    with running_emulator(tmp_path / "emu", profile="mars") as server:
        state = server.state
        assert state.competition.test_images == 10022 == len(state.truth)
        assert stored_rows(state.data_path, "test_set") == 10022
        rng = np.random.default_rng(0)
        prediction = state.truth.copy()
        wrong = rng.random(prediction.shape) < 0.2
        prediction[wrong] = rng.integers(0, 5, int(wrong.sum()))
        csv = encode(prediction, "pixels", MARS)
        path = tmp_path / "submission.zip"
        path.write_bytes(zipped(("submission.csv", csv)))
        env = routed_env(tmp_path, server)
        assert env["MARSSEG_PROFILE"] == "mars"
        result = kaggle_cli(env, "competitions", "submit", "-c", COMPETITION, "-f", path, "-m", "full", timeout=300)
        assert result.returncode == 0 and "Successfully submitted" in result.stdout, result.stdout + result.stderr
        row = state.submissions[-1]
        expected = score_masks(state.truth[state.public], prediction[state.public], MARS)["miou"]
        assert row["status"] == "COMPLETE" and row["publicScore"] == f"{expected:.5f}" and 0.3 < expected < 0.95
        _, short = upload(server, encode(prediction[:-1], "pixels", MARS))
        assert short["errorDescription"] == "invalid submission: 10021 rows, expected 10022 (one per test image)"
