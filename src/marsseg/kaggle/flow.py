"""The round trips behind `make submit`, `make submit-csv`, and `make status`.

`submit_kernel`: bundle → rules check → GPU quota check → push → wait → fetch output → validate → convert →
                 check → zip → submit once → confirm → record.
`submit_csv`:    validate → rules check → convert → check → zip → submit once → confirm → record.
Every file is checked against the competition profile before it is uploaded (`guard.py`); the push and the wait
are `push.py`, shared with `make canary`; the last leg (zip, send at most once, confirm, record) is `send.py`.
Every stage that can fail appends a row to the record first-hand (see `records.py`), and the local submission
stays under `submissions/<id>/`: a failed push or submit loses nothing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

from marsseg.competition import Competition, active_competition
from marsseg.errors import UserError
from marsseg.kaggle.bundle import KERNEL_PATH, METADATA_PATH, kernel_digest
from marsseg.kaggle.canaries import CANARIES_PATH, describe_canary, latest_passed
from marsseg.kaggle.client import KaggleError, KaggleSession
from marsseg.kaggle.guard import SubmissionRefused, check_gpu_quota, check_submission, expected_images
from marsseg.kaggle.push import (
    PushOptions,
    kernel_ref_from_metadata,
    kernel_to_push,
    new_id,
    prepare_push_folder,
    wait_for_kernel,
)
from marsseg.kaggle.records import RECORDS_PATH, latest_records
from marsseg.kaggle.rules import enforce_rules, load_metadata
from marsseg.kaggle.send import Attempt, submit_staged
from marsseg.stamps import git_commit
from marsseg.submission.formats import convert

SUBMISSIONS_DIR = Path("submissions")
KERNEL_TIMEOUT = 12.5 * 3600  # seconds to wait for a full run (`submit --skip-push` fetches a later one)
# What the kit fetches from a run (`kernels output --file-pattern`, a regex searched in each output file's name): the
# submission and the reports. The saved models (*.keras) and checkpoints stay on Kaggle unless `submit --models`
# asks for them too (for `marsseg ensemble`; about 200 MB for the kaggle preset).
OUTPUT_FILES = r"^(submission\.csv|submission_rle\.csv|metrics\.json|config\.json|[^/]+\.png)$"
OUTPUT_FILES_AND_MODELS = OUTPUT_FILES[:-2] + r"|model_stage1_fold\d+\.keras|model_stage2\.keras)$"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _metrics(folder: Path) -> dict:
    try:
        metrics = json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}
    return metrics if isinstance(metrics, dict) else {}


def run_facts(folder: Path) -> dict:
    """preset and validation mIoUs from a run folder's config.json / metrics.json, where present."""
    facts = {}
    try:
        facts["preset"] = json.loads((folder / "config.json").read_text()).get("preset", "")
    except (OSError, ValueError, AttributeError):
        pass
    metrics = _metrics(folder)
    for key in ("val_miou_stage1", "val_miou_stage2", "val_miou_final"):
        if isinstance(metrics.get(key), (int, float)):
            facts[key] = float(metrics[key])
    return facts


# ------------------------------------------------------------------------------------- kernel
def _keep_log(session: KaggleSession, ref: str, dest: Path) -> str:
    """Fetch what a failed run left (its log above all) next to the record; say where it is."""
    try:
        files = session.kernel_output(ref, dest, OUTPUT_FILES)
    except KaggleError:
        return f"fetch its log with `kaggle kernels output {ref} -p {dest}`"
    logs = [p for p in files if p.suffix == ".log"]
    return f"its log is in {logs[0]}" if logs else f"its output is in {dest}"


def fetch_output(
    session: KaggleSession,
    ref: str,
    dest: Path,
    competition: Competition,
    images: int | None,
    log=print,
    pattern: str = OUTPUT_FILES,
) -> Path:
    """Download the kernel's submission and reports (the files `pattern` names) and validate them against the
    profile. An error body saved as a file counts as a failed try; a submission that is invalid twice with the same
    bytes is refused."""
    seen = {"sha256": None}

    def once():
        if dest.exists():
            shutil.rmtree(dest)
        files = session.kernel_output(ref, dest, pattern)
        csv = dest / "submission.csv"
        if not csv.is_file():
            names = ", ".join(p.name for p in files) or "nothing"
            raise KaggleError(f"{ref} wrote no submission.csv (its output: {names})")
        for path in files:
            if path.suffix == ".json":
                try:
                    json.loads(path.read_text(encoding="utf-8"))
                except (ValueError, UnicodeDecodeError):
                    raise KaggleError(f"{path.name} from {ref} is not JSON (a failed download?)") from None
        try:
            info = check_submission(csv, competition, images, what="the kernel's ")
        except SubmissionRefused as exc:
            digest = sha256_file(csv)
            if digest == seen["sha256"]:  # the same bytes twice: the kernel wrote it so, not a broken download
                raise
            seen["sha256"] = digest
            raise KaggleError(f"{exc} (downloading it again to rule out a broken download)") from None
        log(f"[kaggle] fetched {len(files)} files from {ref}: valid {info.layout} submission, {info.n_images} images")
        return csv

    return session.retrying("kernels output", once)


# ------------------------------------------------------------------------------------ submit
def stage_submission(
    source: Path, attempt: Attempt, competition: Competition, images: int | None, submissions_dir: Path
) -> Path:
    """Validate, convert to the profile's layout and keep the file under submissions/<id>/."""

    folder = submissions_dir / attempt.id
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "submission.csv"
    convert(source, target, competition.submission_layout, expected_images(competition, images), competition)
    attempt.fields.update(file=target.as_posix(), sha256=sha256_file(target), layout=competition.submission_layout)
    return target


def submit_kernel(
    options: PushOptions | None = None,
    *,
    skip_push: bool = False,
    models: bool = False,
    kernel: Path | None = None,
    metadata: Path | None = None,
    competition: Competition | None = None,
    session: KaggleSession | None = None,
    submissions_dir: Path = SUBMISSIONS_DIR,
    log=print,
) -> dict:
    """`make submit`: the whole chain; returns the final record row. `options` holds the flags a push shares with
    a canary (`options.force` pushes past the GPU quota check); `skip_push` uses the kernel's latest run; `models`
    fetches the run's saved models too, so its folder can join `marsseg ensemble`. Says which passed canary it
    relies on (the newest for this kernel digest and shape, `canaries.csv`), or warns that none has."""

    options = options or PushOptions()
    images, allowed_sources = options.images, options.allowed_sources
    competition = competition or active_competition()
    kernel = Path(kernel or KERNEL_PATH)
    metadata_path = Path(metadata or METADATA_PATH)
    session = session or KaggleSession(log=log)
    username = session.username()  # missing credentials stop here, before anything is written
    poll = options.poll_seconds(session)
    timeout = KERNEL_TIMEOUT if options.timeout is None else options.timeout
    meta, ref = kernel_to_push(kernel, metadata_path, username, options, log, bundle=not skip_push)
    if not skip_push:
        digest = kernel_digest(kernel)
        canary = latest_passed(digest, meta["machine_shape"], submissions_dir / CANARIES_PATH.name)
        if canary:
            log(f"[kaggle] relying on {describe_canary(canary)}")
        else:
            log(
                f"[kaggle] WARNING: no canary has passed for this kernel (sources {digest}) on "
                f"{meta['machine_shape']}; `make canary` costs ~10 min of GPU quota and finds a broken image or "
                "CUDA before this run's hours do"
            )
        check_gpu_quota(session, kernel, meta, options.force, log, canary)  # a refusal stops here: nothing pushed
    attempt = Attempt(
        new_id(),
        competition.slug,
        {"git_commit": git_commit("describe", cwd=Path.cwd()), "kernel_ref": ref},
        records=submissions_dir / RECORDS_PATH.name,
    )
    attempt.record("started")
    folder = submissions_dir / attempt.id
    folder.mkdir(parents=True, exist_ok=True)
    if not skip_push:
        try:
            with tempfile.TemporaryDirectory(prefix="marsseg_push_") as tmp:
                version = session.push_kernel(prepare_push_folder(kernel, meta, ref, Path(tmp)))
        except KaggleError as exc:
            raise attempt.fail("push_failed", exc) from None
        attempt.fields["kernel_ref"] = f"{ref}@{version}" if version else ref
        log(f"[kaggle] pushed {ref} version {version or '?'} to {session.where}; waiting for it to run")
    try:
        status, failure = wait_for_kernel(session, ref, poll, timeout, log)
        if status != "COMPLETE":
            raise KaggleError(
                f"kernel {ref} ended {status}: {failure or 'no failure message'}; "
                f"{_keep_log(session, ref, folder / 'kernel_output')}"
            )
    except KaggleError as exc:
        raise attempt.fail("kernel_failed", exc) from None
    try:
        pattern = OUTPUT_FILES_AND_MODELS if models else OUTPUT_FILES
        output = fetch_output(session, ref, folder / "kernel_output", competition, images, log, pattern)
        if "canary" in _metrics(output.parent):
            raise UserError(
                f"the latest run of {ref} is a canary (a 10-minute run, not for the leaderboard); push a full run "
                "with `make submit` (without --skip-push)"
            )
        attempt.fields.update(run_facts(output.parent))
        staged = stage_submission(output, attempt, competition, images, submissions_dir)
    except SubmissionRefused as exc:
        raise attempt.fail("refused", exc) from None
    except UserError as exc:
        raise attempt.fail("output_invalid", exc) from None
    return submit_staged(session, attempt, staged, competition, images, allowed_sources, kernel, metadata_path, log=log)


def submit_csv(
    path: Path,
    *,
    preset: str | None = None,
    competition: Competition | None = None,
    allowed_sources: tuple[str, ...] = (),
    images: int | None = None,
    session: KaggleSession | None = None,
    submissions_dir: Path = SUBMISSIONS_DIR,
    log=print,
) -> dict:
    """`make submit-csv FILE=…`: a CSV made locally (e.g. on a GPU box); facts from its run folder if there."""

    competition = competition or active_competition()
    path = Path(path)
    check_submission(path, competition, images)  # a file that would not be scored stops here: nothing recorded
    session = session or KaggleSession(log=log)
    session.username()
    enforce_rules(None, METADATA_PATH, allowed_sources, log=log)
    attempt = Attempt(
        new_id(),
        competition.slug,
        {"git_commit": git_commit("describe", cwd=Path.cwd()), **run_facts(path.parent)},
        records=submissions_dir / RECORDS_PATH.name,
    )
    if preset:
        attempt.fields["preset"] = preset
    staged = stage_submission(path, attempt, competition, images, submissions_dir)
    attempt.record("started")
    return submit_staged(session, attempt, staged, competition, images, allowed_sources, None, METADATA_PATH, log=log)


# ------------------------------------------------------------------------------------ status
def show_status(
    session: KaggleSession | None = None,
    metadata: Path | None = None,
    submissions_dir: Path = SUBMISSIONS_DIR,
    log=print,
) -> str:
    """`make status`: the latest kernel run and the latest recorded submission."""

    session = session or KaggleSession(log=log)
    ref = kernel_ref_from_metadata(load_metadata(Path(metadata or METADATA_PATH)), session.username())
    status, failure = session.kernel_status(ref)
    log(f"kernel {ref}: {status}" + (f" ({failure})" if failure else "") + f" [{session.where}]")
    latest = list(latest_records(submissions_dir / RECORDS_PATH.name).values())
    if latest:
        row = latest[-1]
        score = f", public score {row['public_score']}" if row.get("public_score") else ""
        log(
            f"latest submission {row['id']} ({row['time']}): {row['status']}{score}"
            + (f" — {row['detail']}" if row.get("detail") else "")
        )
    return status


# -------------------------------------------------------------------------------------- data
