"""What is checked before anything leaves the machine (no network): the file against the competition profile, the
zipped upload, the kernel's budget against the GPU quota, the never-twice rule, what is downloaded, the record."""

import re
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from marsseg.competition import MARS, MARS_MINI
from marsseg.kaggle.client import KaggleError, KaggleSession
from marsseg.kaggle.flow import OUTPUT_FILES, OUTPUT_FILES_AND_MODELS
from marsseg.kaggle.guard import (
    TRAIN_IMAGES,
    QuotaError,
    SubmissionRefused,
    check_gpu_quota,
    check_submission,
    kernel_budget,
    projected_need,
    zip_submission,
)
from marsseg.kaggle.records import FIELDS, append_record, read_records
from marsseg.kaggle.send import Attempt, await_score, submit_and_confirm
from marsseg.submission.formats import encode
from tests.conftest import one_line_error, run_cli
from tests.helpers.kaggle_support import ROOT, kit_env, make_project

KERNEL = ROOT / "kernels" / "marsseg_kernel.py"


def empty_rle(path: Path, images: int) -> Path:
    """An all-background RLE submission of IMAGES images, written directly (cheap even for 10,022)."""
    rows = "".join(f"{i}_{c},\n" for i in range(images) for c in (1, 2, 3, 4))
    path.write_text("id,EncodedPixels\n" + rows)
    return path


def pixels(path: Path, images: int, label: int = 1) -> Path:
    path.write_bytes(encode(np.full((images, 64, 128), label, np.uint8), "pixels", MARS))
    return path


# ------------------------------------------------------------------------------------- validation
def test_a_10021_image_file_is_refused_locally_with_its_reason(tmp_path):
    """Against the real profile (10022 test images), with credentials and an endpoint that nothing answers on:
    refused before any call, exit 2 in one line, nothing recorded."""
    bad = empty_rle(tmp_path / "short.csv", 10021)
    project = make_project(tmp_path)
    env = kit_env(tmp_path, "http://127.0.0.1:9", MARSSEG_PROFILE="mars")
    line = one_line_error(run_cli("submit", "--file", bad, cwd=project, env=env))
    assert "refused before upload" in line and "short.csv" in line
    assert "10021 images, expected 10022" in line and "nothing was sent" in line
    assert "mars profile" in line and "--images" in line
    assert not (project / "submissions").exists()


def test_the_profile_comes_from_marsseg_profile_and_images_overrides_it(tmp_path):
    ok = empty_rle(tmp_path / "ok.csv", 32)
    project = make_project(tmp_path)
    # mars-mini has 32 test images: the same file passes the check and stops only at the missing credentials.
    mini = run_cli("submit", "--file", ok, cwd=project, env=kit_env(tmp_path, None, False, MARSSEG_PROFILE="mars-mini"))
    assert "no Kaggle credentials" in one_line_error(mini)
    real = run_cli("submit", "--file", ok, cwd=project, env=kit_env(tmp_path, None, False, MARSSEG_PROFILE="mars"))
    assert "32 images, expected 10022" in one_line_error(real)
    forced = run_cli(
        "submit", "--file", ok, "--images", "32", cwd=project, env=kit_env(tmp_path, None, False, MARSSEG_PROFILE="")
    )
    assert "no Kaggle credentials" in one_line_error(forced)  # --images wins over the profile's 10022
    assert not (project / "submissions").exists()


def test_ids_classes_and_layout_are_checked_too(tmp_path):
    good = pixels(tmp_path / "good.csv", 32)
    assert check_submission(good, MARS_MINI).n_images == 32
    with pytest.raises(SubmissionRefused, match="scorer takes rle"):
        check_submission(good, MARS_MINI, layout="rle")
    lines = good.read_text().splitlines()
    swapped = tmp_path / "ids.csv"
    swapped.write_text("\n".join([lines[0], lines[2], lines[1], *lines[3:]]) + "\n")
    with pytest.raises(SubmissionRefused, match="line 2: id"):
        check_submission(swapped, MARS_MINI)
    seven = tmp_path / "class7.csv"
    seven.write_text("\n".join([lines[0], "0,7" + lines[1][3:], *lines[2:]]) + "\n")  # pixel 0 of image 0: class 7
    with pytest.raises(SubmissionRefused, match="refused before upload.*line 2"):
        check_submission(seven, MARS_MINI)


# --------------------------------------------------------------------------------------------- zip
def test_the_upload_is_the_csv_deflated_in_a_one_member_zip(tmp_path):
    csv = pixels(tmp_path / "submission.csv", 32, label=2)
    upload = zip_submission(csv)
    with zipfile.ZipFile(upload) as archive:
        (member,) = archive.infolist()
        assert member.filename == "submission.csv" and member.compress_type == zipfile.ZIP_DEFLATED
        assert archive.read(member) == csv.read_bytes()
    assert upload.stat().st_size * 20 < csv.stat().st_size  # 36x on the synthetic truth, ~4.5 MB for 10022
    first = upload.read_bytes()
    assert zip_submission(csv).read_bytes() == first  # deterministic: the same CSV gives the same zip
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


# ------------------------------------------------------------------------------------------- quota
def _kernel(tmp_path, body: str) -> Path:
    path = tmp_path / "kernel.py"
    path.write_text(f'"""doc"""\nimport os\n{body}\n\ndef main():\n    PRESET = "ignored"\n')
    return path


def test_the_kernel_budget_is_its_budget_seconds_else_its_presets():
    assert kernel_budget(KERNEL) == (2.5 * 3600.0, "preset kaggle")  # the bundled kernel: kaggle preset, 2.5 h


def test_the_kaggle_budget_is_the_estimated_need_with_a_margin_not_a_blanket_limit():
    from marsseg.config import preset
    from marsseg.pipeline.canary import estimate

    cfg = preset("kaggle")
    need = estimate(cfg, TRAIN_IMAGES, 10022)["total"]
    assert 3600 <= need <= 1.5 * 3600  # a reading of the work on two T4s: about 1-1.5 h
    assert 1.5 <= cfg.budget_seconds / need <= 2.5


def test_the_need_is_a_passed_canarys_projection_else_the_estimate_capped_at_the_budget(tmp_path):
    estimated, what = projected_need(KERNEL)
    assert 3600 <= estimated <= 1.5 * 3600 and "estimate from assumed T4 rates (no canary passed yet)" in what
    seconds, what = projected_need(KERNEL, {"id": "c1", "projected_seconds": "3000"})
    assert seconds == 3000 and "canary c1's projection" in what
    seconds, what = projected_need(KERNEL, {"id": "c2", "projected_seconds": "36000"})
    assert seconds == 2.5 * 3600 and "capped at the budget (preset kaggle)" in what
    canary = _kernel(tmp_path, 'PRESET = "kaggle"\nBUDGET_SECONDS = None\nOVERRIDES = []\nCANARY = True')
    assert projected_need(canary) == (600.0, "the canary's budget (10 min)")


def test_budget_seconds_and_overrides_in_the_kernel_are_honoured(tmp_path):
    explicit = _kernel(tmp_path, 'PRESET = "gpu"\nBUDGET_SECONDS = 1800\nOVERRIDES = []')
    assert kernel_budget(explicit) == (1800.0, "BUDGET_SECONDS in kernel.py")
    overridden = _kernel(tmp_path, 'PRESET = "smoke"\nBUDGET_SECONDS = None\nOVERRIDES = ["budget_seconds=600"]')
    assert kernel_budget(overridden) == (600.0, "preset smoke")


class FakeQuota:
    def __init__(self, used=None, total=30.0, error=None):
        self.answer, self.error, self.calls = (used, total), error, 0

    def gpu_quota(self):
        self.calls += 1
        if self.error:
            raise self.error
        return self.answer


def test_a_need_above_the_quota_left_is_refused_unless_forced():
    lines = []
    need = projected_need(KERNEL)[0] / 3600
    with pytest.raises(QuotaError) as caught:
        check_gpu_quota(FakeQuota(used=29.0), KERNEL, {"enable_gpu": True}, log=lines.append)
    message = str(caught.value)
    assert f"needs up to {need:.2f} h" in message and "only 1.00 h" in message and "FORCE=1" in message
    assert "\n" not in message and "estimate from assumed T4 rates" in message
    assert "1.00 h left of 30.00 h" in lines[0] and f"this run needs at most {need:.2f} h" in lines[0]
    assert check_gpu_quota(FakeQuota(used=29.0), KERNEL, {"enable_gpu": True}, force=True, log=lines.append) == 1.0
    assert "pushing anyway (--force)" in lines[-1]
    assert check_gpu_quota(FakeQuota(used=20.0), KERNEL, {"enable_gpu": True}, log=lines.append) == 10.0
    # A passed canary's projection decides instead: 0.5 h fits in the hour left.
    canary = {"id": "c1", "projected_seconds": "1800"}
    assert check_gpu_quota(FakeQuota(used=29.0), KERNEL, {"enable_gpu": True}, log=lines.append, canary=canary) == 1
    assert "canary c1's projection" in lines[-1]


def test_an_unreadable_quota_is_said_and_does_not_block():
    lines = []
    broken = FakeQuota(error=KaggleError("kaggle quota failed: 404 the emulator does not implement it"))
    assert check_gpu_quota(broken, KERNEL, {"enable_gpu": True}, log=lines.append) is None
    assert lines == [
        "[kaggle] cannot read the weekly GPU quota (kaggle quota failed: 404 the emulator does not implement it); "
        "going on without the check"
    ]
    cpu_only = FakeQuota(used=30.0)
    assert check_gpu_quota(cpu_only, KERNEL, {"enable_gpu": False}, log=lines.append) is None
    assert cpu_only.calls == 0 and "uses no GPU quota" in lines[-1]


# ------------------------------------------------------------------------------------- never twice
def test_run_without_retry_sends_once_and_leaves_the_retry_to_the_caller(tmp_path):
    counter = tmp_path / "count"
    code = (
        f"import pathlib, sys\np = pathlib.Path({str(counter)!r})\n"
        "p.write_text(str(int(p.read_text()) + 1) if p.exists() else '1')\n"
        "print('503 Server Error: Service Unavailable', file=sys.stderr)\nsys.exit(1)"
    )
    session = KaggleSession(
        env={"HOME": str(tmp_path), "KAGGLE_USERNAME": "me", "KAGGLE_KEY": "k" * 32}, retries=3, sleep=lambda _: None
    )
    with pytest.raises(KaggleError) as caught:
        session._run([sys.executable, "-c", code], "competitions submit", retry=False)
    assert counter.read_text() == "1" and caught.value.retryable


def _listing_session(tmp_path, listed: list):
    session = KaggleSession(
        env={"HOME": str(tmp_path), "KAGGLE_USERNAME": "me", "KAGGLE_KEY": "k" * 32},
        retries=3,
        log=lambda *_: None,
        sleep=lambda _: None,
    )
    session.sent = []
    session.submissions = lambda competition: list(listed)
    return session


def test_a_submit_the_client_called_successful_is_never_sent_again(tmp_path):
    session = _listing_session(tmp_path, [])  # Kaggle's list never shows it (a lag, or a lie)
    session.submit = lambda competition, path, message: session.sent.append(message)
    attempt = Attempt("20260101-000000-abcdef", "comp", records=tmp_path / "records.csv")
    with pytest.raises(KaggleError, match="not in the competition's list"):
        submit_and_confirm(session, attempt, tmp_path / "submission.zip", log=lambda *_: None)
    assert len(session.sent) == 1


def test_a_failed_try_is_looked_for_before_it_is_sent_again(tmp_path):
    listed = []
    session = _listing_session(tmp_path, listed)
    attempt = Attempt("20260101-000000-abcdef", "comp", records=tmp_path / "records.csv")

    def submit(competition, path, message):
        session.sent.append(message)
        listed.append({"ref": 1, "description": message, "status": "PENDING"})  # Kaggle created it ...
        raise KaggleError("kaggle competitions submit: 503 Service Unavailable")  # ... then answered 503

    session.submit = submit
    item = submit_and_confirm(session, attempt, tmp_path / "submission.zip", log=lambda *_: None)
    assert item["ref"] == 1 and len(session.sent) == 1


# ---------------------------------------------------------------------------------- downloads, record
def test_only_the_submission_and_the_reports_are_downloaded():
    wanted = ["submission.csv", "submission_rle.csv", "metrics.json", "config.json", "curves_stage1.png"]
    unwanted = ["model_stage2.keras", "model_stage1_fold1.keras", "checkpoints/x.png", "notes.txt", "a.csv"]
    assert [n for n in wanted + unwanted if re.search(OUTPUT_FILES, n)] == wanted


def test_submit_models_also_downloads_the_saved_models_and_nothing_else():
    models = ["model_stage1_fold1.keras", "model_stage1_fold12.keras", "model_stage2.keras"]
    reports = ["submission.csv", "submission_rle.csv", "metrics.json", "config.json", "curves_stage1.png"]
    unwanted = ["checkpoints/model_stage2.keras", "x.keras", "model_stage3.keras", "notes.txt", "a.csv"]
    names = reports + models + unwanted
    assert [n for n in names if re.search(OUTPUT_FILES_AND_MODELS, n)] == reports + models
    assert "--models" in one_line_error(run_cli("submit", "--file", "x.csv", "--models"))


def test_a_records_file_with_an_older_header_is_upgraded_keeping_every_row(tmp_path):
    path = tmp_path / "records.csv"
    old = [f for f in FIELDS if f not in ("csv_bytes", "zip_bytes")]
    path.write_text(",".join(old) + "\n" + ",".join("a" if f == "id" else "" for f in old) + "\n")
    append_record({"id": "b", "status": "complete", "csv_bytes": 164000000, "zip_bytes": 3000000}, path)
    rows = read_records(path)
    assert [r["id"] for r in rows] == ["a", "b"] and list(rows[0]) == list(FIELDS)
    assert (rows[1]["csv_bytes"], rows[1]["zip_bytes"], rows[0]["zip_bytes"]) == ("164000000", "3000000", "")


def test_a_pending_submission_is_looked_at_again_until_scored(tmp_path):
    answers = [[{"ref": 1, "description": "marsseg X", "status": "PENDING"}]] * 2 + [
        [{"ref": 1, "description": "marsseg X", "status": "ERROR", "errorDescription": "bad ids"}]
    ]
    session = _listing_session(tmp_path, [])
    session.env["MARSSEG_KAGGLE_POLL"] = "0"
    session.submissions = lambda competition: answers.pop(0)
    attempt = Attempt("X", "comp", records=tmp_path / "records.csv")
    item = await_score(session, attempt, {"ref": 1, "status": "PENDING"}, log=lambda *_: None)
    assert item["errorDescription"] == "bad ids" and answers == []
