"""One push of the kernel, shared by `make submit` (`flow.py`) and `make canary` (`canaries.py`): the push's
options, the kernel and metadata it sends, the push folder, and the wait for a terminal status."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from marsseg.errors import UserError
from marsseg.kaggle.bundle import check_accelerator, write_kernel
from marsseg.kaggle.client import KaggleError, KaggleSession
from marsseg.kaggle.rules import enforce_rules, load_metadata

TERMINAL = {"COMPLETE", "ERROR", "CANCEL_ACKNOWLEDGED"}


@dataclass(frozen=True)
class PushOptions:
    """What `marsseg submit` (with or without --canary) asks of a push, from its flags."""

    accelerator: str | None = None  # the machine shape for this push (default: kernel-metadata.json's)
    allowed_sources: tuple[str, ...] = ()  # data sources besides the competition that the rules allow
    images: int | None = None  # expected test images, overriding the competition profile's
    poll: float | None = None  # first status poll in seconds (default: $MARSSEG_KAGGLE_POLL, else 10)
    force: bool = False  # push even when the run's projected need exceeds the weekly GPU quota left
    timeout: float | None = None  # seconds to wait for a terminal status (default: the caller's own)

    def poll_seconds(self, session: KaggleSession) -> float:
        return float(session.env.get("MARSSEG_KAGGLE_POLL", 10)) if self.poll is None else float(self.poll)


def new_id() -> str:
    return (
        datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-")
        + hashlib.sha256(str(time.time_ns()).encode()).hexdigest()[:6]
    )


def kernel_ref_from_metadata(meta: dict, username: str) -> str:
    ident = str(meta.get("id", "{username}/mars-segmentation-kit")).replace("{username}", username)
    owner, _, slug = ident.partition("/")
    if not slug or owner != username:
        raise UserError(
            f"kernel-metadata.json: id {meta.get('id')!r} should be '{{username}}/<slug>'; "
            "the username is filled in from your credentials at push time"
        )
    if len(slug) < 5:
        raise UserError(f"kernel-metadata.json: the kernel slug {slug!r} needs at least 5 characters")
    return ident


def kernel_to_push(
    kernel: Path, metadata_path: Path, username: str, options: PushOptions, log, bundle: bool = True
) -> tuple[dict, str]:
    """Bundle the kernel (unless `bundle` is off), check the rules, and read the metadata with this push's machine
    shape (`options.accelerator`, else the metadata's; a retired or unknown one refused): (metadata, 'user/slug')."""
    if bundle:
        write_kernel(kernel, log=log)
    enforce_rules(kernel, metadata_path, options.allowed_sources, log=log)
    meta = load_metadata(metadata_path)
    meta = {**meta, "machine_shape": check_accelerator(options.accelerator or str(meta.get("machine_shape", "")))}
    return meta, kernel_ref_from_metadata(meta, username)


def prepare_push_folder(kernel: Path, metadata: dict, ref: str, folder: Path) -> Path:
    """A temporary push folder: the script and the metadata with the id filled in (never written back)."""
    shutil.copyfile(kernel, folder / kernel.name)
    meta = {**metadata, "id": ref, "code_file": kernel.name}
    (folder / "kernel-metadata.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return folder


def wait_for_kernel(session: KaggleSession, ref: str, poll: float, timeout: float, log=print) -> tuple[str, str]:
    """Poll with backoff until a terminal status; a progress line on every change (and every few minutes)."""
    started = time.monotonic()
    delay, last, last_line = poll, None, 0.0
    while True:
        status, failure = session.kernel_status(ref)
        elapsed = time.monotonic() - started
        if status != last or elapsed - last_line > 300:
            log(f"[kaggle] {ref}: {status} after {elapsed:.0f} s")
            last, last_line = status, elapsed
        if status in TERMINAL:
            return status, failure
        if elapsed > timeout:
            raise KaggleError(
                f"{ref} still {status} after {timeout:.0f} s; check it with `make status` and "
                "fetch it later with `marsseg submit --skip-push`"
            )
        session.sleep(delay)
        delay = min(delay * 1.5, 60.0)
