"""One pushed kernel version, executed in a subprocess as Kaggle would run it; its status follows the process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from marsseg.competition import Competition


@dataclass(frozen=True)
class KernelHost:
    """What every kernel run of one emulator shares: where runs live, the data they read, the preset they run."""

    root: Path  # runs go under ROOT/kernels/<owner>/<slug>/v<version>
    data_path: Path  # the competition .npz each run finds in its input folder
    competition: Competition
    preset: str  # the preset the kernel runs with (MARSSEG_KERNEL_PRESET)
    queue_seconds: float  # how long a pushed version waits before it starts, as on Kaggle


class KernelRun:
    """One pushed version, executed in a subprocess; status follows the process."""

    def __init__(
        self,
        owner: str,
        slug: str,
        version: int,
        text: str,
        host: KernelHost,
        corrupt: bool,
        gpu: bool = False,
        overrides: list[str] | None = None,
    ):
        competition = host.competition
        self.owner, self.slug, self.version = owner, slug, version
        self.folder = host.root / "kernels" / owner / slug / f"v{version}"
        self.script = self.folder / "script.py"
        self.input = self.folder / "input"
        self.working = self.folder / "working"
        self.log_path = self.folder / "log.txt"
        for directory in (self.input / competition.slug, self.working):
            directory.mkdir(parents=True, exist_ok=True)
        self.script.write_text(text, encoding="utf-8")
        target = self.input / competition.slug / competition.data_filename
        if corrupt:
            target.write_bytes(b"this is not an npz file")
        else:
            try:
                os.link(host.data_path, target)
            except OSError:
                shutil.copyfile(host.data_path, target)
        self.status, self.failure = "QUEUED", ""
        self.preset, self.queue_seconds = host.preset, host.queue_seconds
        self.gpu = gpu  # pushed with a GPU: its wall time counts against the weekly GPU quota
        self.overrides = list(overrides or [])  # configuration the emulator adds (MARSSEG_KERNEL_SET)
        self.started: float | None = None  # time.monotonic() of the process start and end
        self.ended: float | None = None
        self.process: subprocess.Popen | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _environment(self) -> dict:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("KAGGLE_", "MARSSEG_", "PYTHON")) and k.lower() not in {"http_proxy", "https_proxy"}
        }
        env.update(
            MARSSEG_KAGGLE_INPUT=str(self.input),
            MARSSEG_KAGGLE_WORKING=str(self.working),
            MARSSEG_KERNEL_PRESET=self.preset,
            MARSSEG_KERNEL_SET=";".join(self.overrides),
            PYTHONNOUSERSITE="1",
            PYTHONUNBUFFERED="1",
            KERAS_BACKEND="tensorflow",
            TF_CPP_MIN_LOG_LEVEL="3",
        )
        return env

    def _run(self) -> None:
        time.sleep(self.queue_seconds)
        with open(self.log_path, "wb") as log:
            # As Kaggle does: the script alone, from its working folder, with no arguments.
            self.process = subprocess.Popen(
                [sys.executable, str(self.script)],
                cwd=self.working,
                env=self._environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            self.started = time.monotonic()
            self.status = "RUNNING"
            code = self.process.wait()
            self.ended = time.monotonic()
        if code == 0:
            self.status = "COMPLETE"
        else:
            tail = [line for line in self.log_path.read_text("utf-8", "replace").splitlines() if line.strip()]
            self.failure = (tail[-1].strip() if tail else f"exit status {code}")[:500]
            self.status = "ERROR"

    def wall_seconds(self) -> tuple[float, float]:
        """(seconds of a finished process, seconds so far of a running one): what the quota counts."""
        if self.started is None:
            return 0.0, 0.0
        if self.ended is None:
            return 0.0, time.monotonic() - self.started
        return self.ended - self.started, 0.0

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def output_files(self) -> list[Path]:
        if self.status != "COMPLETE" and self.status != "ERROR":
            return []
        return sorted(p for p in self.working.rglob("*") if p.is_file())

    def log_text(self) -> str:
        try:
            return self.log_path.read_text("utf-8", "replace")
        except OSError:
            return ""
