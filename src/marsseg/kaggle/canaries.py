"""`make canary` (`marsseg submit --canary`): the kernel pushed with CANARY = True, run, fetched and reported; no
submission. Its record, `submissions/canaries.csv`, is what `make submit` relies on.

    push (CANARY = True, same machine shape) -> wait -> fetch metrics.json, config.json, both CSVs, the log
    -> check them -> print `pipeline.canary.report_lines` -> record passed | failed

A canary runs the kernel's preset cut to about 10 minutes on the full data (`pipeline.canary`): every network of
the model cycle, mixed precision, every GPU, stage 2, saving, prediction, both CSVs. It costs ~10 minutes of GPU
quota, where a broken image or CUDA would cost the whole budget. Its record holds the kernel's sources digest and
the machine shape, so a later `make submit` knows whether this kernel has passed on this machine.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

from marsseg.competition import Competition, active_competition
from marsseg.errors import UserError
from marsseg.kaggle.bundle import KERNEL_PATH, METADATA_PATH, kernel_digest
from marsseg.kaggle.client import KaggleError, KaggleSession
from marsseg.kaggle.guard import SubmissionRefused, check_gpu_quota, check_submission, expected_images
from marsseg.kaggle.push import PushOptions, kernel_to_push, new_id, prepare_push_folder, wait_for_kernel
from marsseg.kaggle.records import append_record, read_records
from marsseg.pipeline.canary import report_lines
from marsseg.stamps import git_commit
from marsseg.submission.formats import read_submission
from marsseg.training.runtime import describe_devices

CANARIES_PATH = Path("submissions/canaries.csv")
CANARY_TIMEOUT = 3 * 3600  # seconds to wait for a canary (a ~10-minute run) before giving up
FIELDS = (
    "id",
    "time",
    "kernel_ref",
    "kernel_digest",  # the first 16 hex digits of the embedded sources' sha256 (the kernel's docstring shows it)
    "machine_shape",
    "preset",
    "status",  # started | passed | failed
    "devices",  # what the kernel trained on, e.g. "2 x Tesla T4 (compute capability 7.5)", or "CPU" (the emulator)
    "precision",
    "replicas",
    "projected_seconds",  # the full run, projected from the canary (an upper bound)
    "budget_seconds",  # the full run's budget
    "git_commit",
    "detail",
)
CANARY_FILES = r"^(submission\.csv|submission_rle\.csv|metrics\.json|config\.json)$"
_CANARY_LINE = re.compile(r"^CANARY = False\b.*$", re.MULTILINE)


def canary_text(kernel_text: str) -> str:
    """The kernel's text with its CANARY setting on; UserError for a kernel without one (bundled before it)."""
    text, count = _CANARY_LINE.subn("CANARY = True  # pushed by `make canary`", kernel_text, count=1)
    if count != 1:
        raise UserError("the kernel has no `CANARY = False` setting; regenerate it with `make bundle`")
    return text


def latest_passed(digest: str, shape: str, path: Path = CANARIES_PATH) -> dict | None:
    """The newest canary that passed for this kernel digest and machine shape, else None."""
    passed = [
        r
        for r in read_records(path)
        if r.get("status") == "passed" and r.get("kernel_digest") == digest and r.get("machine_shape") == shape
    ]
    return passed[-1] if passed else None


def describe_canary(row: dict) -> str:
    """One line about a recorded canary, for `make submit`."""
    projected = row.get("projected_seconds")
    hours = f", projected full run {float(projected) / 3600:.2f} h" if projected else ""
    return f"canary {row['id']} ({row['time']}) passed on {row.get('devices') or '?'}{hours}"


def check_canary_output(folder: Path, competition: Competition, images: int | None) -> dict:
    """The canary's metrics.json, once both CSVs are valid and the run says it was a canary; KaggleError else."""
    try:
        metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise KaggleError(f"the canary left no readable metrics.json in {folder} ({exc})") from None
    if "canary" not in metrics:
        raise KaggleError("the kernel's run was not a canary (no `canary` in its metrics.json); push it again")
    try:
        check_submission(folder / "submission.csv", competition, images, what="the canary's ")
        read_submission(folder / "submission_rle.csv", expected_images(competition, images))
    except (SubmissionRefused, UserError) as exc:
        raise KaggleError(f"the canary's CSVs are not valid: {exc}") from None
    return metrics


def run_canary(
    options: PushOptions | None = None,
    *,
    kernel: Path | None = None,
    metadata: Path | None = None,
    competition: Competition | None = None,
    session: KaggleSession | None = None,
    canaries: Path = CANARIES_PATH,
    log=print,
) -> dict:
    """Push the kernel as a canary with `options`' flags, wait, fetch, check and report it; record it; return the
    record row."""
    options = options or PushOptions()
    competition = competition or active_competition()
    kernel = Path(kernel or KERNEL_PATH)
    metadata_path = Path(metadata or METADATA_PATH)
    session = session or KaggleSession(log=log)
    username = session.username()  # missing credentials stop here, before anything is written
    poll = options.poll_seconds(session)
    timeout = CANARY_TIMEOUT if options.timeout is None else options.timeout
    meta, ref = kernel_to_push(kernel, metadata_path, username, options, log)
    shape = meta["machine_shape"]
    digest = kernel_digest(kernel)
    row = {"id": new_id(), "kernel_ref": ref, "kernel_digest": digest, "machine_shape": shape}
    row["git_commit"] = git_commit("describe", cwd=Path.cwd())
    folder = canaries.parent / "canaries" / row["id"]
    with tempfile.TemporaryDirectory(prefix="marsseg_canary_") as tmp:
        push = prepare_push_folder(kernel, meta, ref, Path(tmp))
        copy = push / kernel.name
        copy.write_text(canary_text(copy.read_text(encoding="utf-8")), encoding="utf-8")
        check_gpu_quota(session, copy, meta, options.force, log)
        append_record({**row, "status": "started"}, canaries, FIELDS)
        try:
            version = session.push_kernel(push)
        except KaggleError as exc:
            append_record({**row, "status": "failed", "detail": f"push failed: {exc}"}, canaries, FIELDS)
            raise
    row["kernel_ref"] = f"{ref}@{version}" if version else ref
    log(f"[kaggle] canary pushed: {ref} version {version or '?'} on {shape}, sources {digest}; waiting for it")
    try:
        status, failure = wait_for_kernel(session, ref, poll, timeout, log)
        if status != "COMPLETE":
            raise KaggleError(f"the canary ended {status}: {failure or 'no failure message'}")
        session.retrying("kernels output", lambda: session.kernel_output(ref, folder, CANARY_FILES))
        metrics = check_canary_output(folder, competition, options.images)
    except KaggleError as exc:
        append_record({**row, "status": "failed", "detail": str(exc)}, canaries, FIELDS)
        raise KaggleError(f"{exc}; its output and log are under {folder}") from None
    for line in report_lines(metrics):
        log(line)
    runtime, projection = metrics.get("runtime", {}), metrics["canary"].get("projection") or {}
    row.update(
        status="passed",
        preset=metrics["canary"]["full_preset"],
        devices=describe_devices(runtime) if runtime.get("gpus") else "CPU",
        precision=runtime.get("precision", ""),
        replicas=runtime.get("replicas", ""),
        projected_seconds=projection.get("total", ""),
        budget_seconds=metrics["canary"]["full_budget_seconds"],
        detail="" if metrics["canary"]["on_gpu"] else "ran on a CPU (require_gpu off): not a GPU's figures",
    )
    written = append_record(row, canaries, FIELDS)
    log(f"[kaggle] canary passed; recorded in {canaries}; nothing was submitted. `make submit` relies on it")
    return written
