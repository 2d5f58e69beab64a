"""The emulator's state: pushed kernels, uploaded blobs and scored submissions, and the scripted leaderboard."""

from __future__ import annotations

import io
import os
import threading
import zipfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from marsseg.competition import PROFILE_ENV, get_competition
from marsseg.data.synth import ensure_synthetic
from marsseg.errors import DataError, UserError
from marsseg.kaggle.emulator.faults import Fault
from marsseg.kaggle.emulator.kernel_run import KernelHost, KernelRun
from marsseg.kaggle.emulator.uploads import score_upload
from marsseg.kaggle.guard import settings_from_text

_EPOCH = datetime(2026, 1, 5, 9, 0, 0, tzinfo=timezone.utc)
_RIVALS = (  # (team, score at tick 0, final gain, tick it joins)
    ("Olympus Mons", 0.612, 0.064, 0),
    ("Jezero Crater", 0.574, 0.071, 0),
    ("Valles Marineris", 0.541, 0.052, 0),
    ("Gale Crater", 0.498, 0.083, 0),
    ("Elysium Planitia", 0.455, 0.040, 0),
    ("Utopia Planitia", 0.402, 0.095, 0),
    ("Late Rover", 0.380, 0.220, 3),
)


# Here, not in server: the state and the handler both stamp times, and server imports them both.
def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def default_profile() -> str:
    """The profile name the kit's commands use too: $MARSSEG_PROFILE, else the real competition ("mars")."""
    return os.environ.get(PROFILE_ENV) or "mars"


def stored_rows(path: Path, key: str) -> int | None:
    """How many rows the array KEY of the .npz at PATH has, read from its header alone (None if unreadable)."""
    try:
        with zipfile.ZipFile(path) as archive, archive.open(f"{key}.npy") as handle:
            version = np.lib.format.read_magic(handle)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape = read(handle)[0]
        return int(shape[0]) if shape else None
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None


@dataclass(frozen=True)
class EmulatorSettings:
    """How one emulator plays Kaggle: `marsseg emulator`'s options (`make_server(**fields)` takes them by name)."""

    data_path: Path | None = None  # the competition .npz it serves; None: synthetic data under the root
    truth_path: Path | None = None  # a .npz with test_labels to score with (the synthetic data brings its own)
    profile: str | None = None  # the competition profile uploads are checked against (default: default_profile())
    kernel_preset: str = "smoke"  # the preset pushed kernels run with
    queue_seconds: float = 0.3  # how long a pushed version waits before it starts
    n_train: int = 96  # the synthetic data's size and seed
    n_test: int | None = None  # None: the profile's test-set size
    seed: int = 0
    token_user: str = "emulator-user"  # who an access token belongs to
    daily_limit: int = 5  # submissions a day
    gpu_quota_hours: float = 30.0  # the weekly GPU quota, and the hours used before the first push
    gpu_quota_used: float = 0.0
    canary_seconds: float = 90.0  # a canary's budget here: no GPU, so its 10 minutes are cut to fit


class EmulatorState:
    def __init__(self, root: Path, settings: EmulatorSettings | None = None, log=print):
        settings = settings or EmulatorSettings()
        data_path, truth_path = settings.data_path, settings.truth_path
        n_train, n_test, seed = settings.n_train, settings.n_test, settings.seed
        self.root = Path(root)
        # The profile is what uploads are validated against; its name is what `--print-env` hands the kit.
        self.profile = settings.profile or default_profile()
        self.competition = get_competition(self.profile)
        self.kernel_preset, self.queue_seconds = settings.kernel_preset, settings.queue_seconds
        self.canary_seconds = settings.canary_seconds
        self.token_user, self.daily_limit = settings.token_user, settings.daily_limit
        self.gpu_quota_hours, self.gpu_quota_used = settings.gpu_quota_hours, settings.gpu_quota_used
        self.log = log
        self.lock = threading.Lock()
        self.faults: list[Fault] = []
        self.kernels: dict[str, KernelRun] = {}
        self.runs: list[KernelRun] = []  # every version ever pushed, replaced ones too: they all used quota
        self.versions: dict[str, int] = {}
        self.blobs: dict[str, bytes] = {}
        self.blobs_meta: dict[str, dict] = {}
        self.submissions: list[dict] = []
        self.tick = 0
        self.requests: list[str] = []
        expected = self.competition.test_images
        if data_path is None:
            n_test = n_test or expected or 32
            # One cache file per size, so a root reused with another profile never serves the wrong test set.
            stem = f"synthetic_{n_train}x{n_test}_seed{seed}"
            data_path, truth_path = self.root / f"{stem}_mars.npz", self.root / f"{stem}_truth.npz"
            if not (data_path.exists() and truth_path.exists()):
                log(f"[emulator] generating synthetic data ({n_train} train, {n_test} test images) under {self.root}")
            self.root.mkdir(parents=True, exist_ok=True)
            ensure_synthetic(data_path, truth_path, n_train, n_test, seed, log=lambda *_: None)
        self.data_path = Path(data_path)
        served = stored_rows(self.data_path, self.competition.test_key)
        if expected is not None and served is not None and served != expected:
            log(
                f"[emulator] warning: {self.data_path} has {served} test images, profile {self.profile} expects "
                f"{expected}: a kernel's submission from it will be scored ERROR (pass --profile to match)"
            )
        self.truth, self.public, self.unscored = self._load_truth(truth_path)
        if self.unscored:
            log(f"[emulator] submissions are validated but not scored: {self.unscored}")

    def _load_truth(self, truth_path) -> tuple[np.ndarray | None, np.ndarray | None, str]:
        """(truth, public rows, '') when there is truth of the profile's size, else (None, None, why not)."""
        expected = self.competition.test_images
        if not truth_path or not Path(truth_path).is_file():
            return None, None, "no test labels to score with (pass --truth)"
        try:
            with np.load(truth_path) as stored:
                truth = stored["test_labels"]
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(f"{truth_path}: not a truth file with test_labels ({exc})") from None
        if expected is not None and len(truth) != expected:
            return None, None, f"the truth holds {len(truth)} test images, profile {self.profile} has {expected}"
        order = np.random.default_rng(12345).permutation(len(truth))
        return truth, np.sort(order[: max(1, len(order) // 2)]), ""

    # ---------------------------------------------------------------------------- faults
    def add_fault(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def take_fault(self, target: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.times > 0 and (fault.target == target or (fault.target == "*" and target != "kernel-error")):
                    fault.times -= 1
                    return fault
        return None

    # --------------------------------------------------------------------------- kernels
    def save_kernel(self, user: str, body: dict) -> dict:
        slug = str(body.get("slug") or "")
        owner, _, name = slug.partition("/")
        if not owner or not name:
            return {"error": f"slug {slug!r} is not 'owner/kernel-slug'"}
        if owner != user:
            return {"error": f"you are {user!r} and cannot push to {owner!r}'s kernel {slug!r}"}
        if body.get("language", "python") != "python" or body.get("kernelType", "script") != "script":
            return {"error": "the emulator runs python scripts only"}
        invalid = [c for c in body.get("competitionDataSources", []) if c != self.competition.slug]
        corrupt = self.take_fault("kernel-error") is not None
        gpu = bool(body.get("enableGpu")) or str(body.get("machineShape", "")).startswith("Nvidia")
        text = str(body.get("text", ""))
        try:
            canary = bool(settings_from_text(text).get("CANARY"))
        except (SyntaxError, UserError):  # not a marsseg kernel: it runs as it is
            canary = False
        # No GPU here: every kernel may train on the CPU; a canary's budget is cut to fit (its report says so).
        overrides = ["require_gpu=false"] + ([f"canary.budget_seconds={self.canary_seconds:g}"] if canary else [])
        with self.lock:
            version = self.versions.get(slug, 0) + 1
            self.versions[slug] = version
            previous = self.kernels.get(slug)
            if previous:
                previous.stop()
            host = KernelHost(self.root, self.data_path, self.competition, self.kernel_preset, self.queue_seconds)
            self.kernels[slug] = run = KernelRun(owner, name, version, text, host, corrupt, gpu, overrides)
            self.runs.append(run)
        self.log(
            f"[emulator] {slug} v{version} pushed (internet {'on' if body.get('enableInternet') else 'off'}, "
            f"gpu {'on' if gpu else 'off'}); running it with preset {self.kernel_preset}"
            + (f" as a canary, on the CPU, cut to {self.canary_seconds:g} s" if canary else "")
        )
        return {
            "ref": f"/code/{slug}",
            "url": f"https://www.kaggle.com/code/{slug}",
            "versionNumber": version,
            "kernelId": 1000 + len(self.versions),
            "invalidCompetitionSources": invalid,
        }

    def kernel(self, body: dict) -> KernelRun | None:
        return self.kernels.get(f"{body.get('userName', '')}/{body.get('kernelSlug', '')}")

    # ------------------------------------------------------------------------ submissions
    def create_submission(self, user: str, body: dict) -> dict:
        tokens = body.get("blobFileTokens")
        token = tokens[0] if isinstance(tokens, list) and tokens else tokens
        with self.lock:
            data = self.blobs.get(str(token))
            meta = self.blobs_meta.get(str(token), {})
        if not data:
            return {"code": 400, "message": f"unknown or empty blob token {token!r}: upload the file first"}
        outcome = score_upload(data, self.competition, self.truth, self.public, self.unscored)
        with self.lock:
            ref = 50000 + len(self.submissions) + 1
            self.submissions.append(
                {
                    "ref": ref,
                    "fileName": meta.get("fileName", "submission.csv"),
                    "date": iso(datetime.now(timezone.utc)),
                    "description": body.get("submissionDescription", ""),
                    "status": outcome.status,
                    "publicScore": outcome.public,
                    "privateScore": "",
                    # Why it failed, or why it was not scored: the kit reads it; the CLI's table does not show it.
                    "errorDescription": outcome.note,
                    "totalBytes": len(data),
                    "teamName": user,
                    "submittedBy": user,
                    "url": f"/submissions/{ref}",
                }
            )
        self.log(f"[emulator] submission {ref} by {user}: {outcome.status} {outcome.public or outcome.note}")
        message = "Successfully submitted to " + self.competition.title
        if outcome.status == "COMPLETE" and outcome.note:
            message += f" (emulator: {outcome.note})"  # the CLI prints this message: the one place it shows
        return {"message": message, "ref": ref}

    def gpu_seconds(self) -> tuple[float, float]:
        """(GPU seconds used: as configured plus finished GPU runs, seconds of GPU runs still running)."""
        with self.lock:
            spans = [run.wall_seconds() for run in self.runs if run.gpu]
        return self.gpu_quota_used * 3600 + sum(s[0] for s in spans), sum(s[1] for s in spans)

    def leaderboard(self) -> list[dict]:
        with self.lock:
            self.tick += 1
            tick = self.tick
            mine: dict[str, dict] = {}
            for s in self.submissions:
                if s["status"] == "COMPLETE" and s["publicScore"]:
                    best = mine.get(s["teamName"])
                    if best is None or float(s["publicScore"]) > float(best["publicScore"]):
                        mine[s["teamName"]] = s
        rows = []
        for i, (team, start, gain, joins) in enumerate(_RIVALS):
            if tick >= joins:
                score = start + gain * (1 - 0.8 ** (tick - joins))
                rows.append(
                    {
                        "teamId": 101 + i,
                        "teamName": team,
                        "submissionDate": iso(_EPOCH + timedelta(hours=6 * tick + i)),
                        "score": f"{score:.5f}",
                    }
                )
        for j, (team, s) in enumerate(sorted(mine.items())):
            rows.append({"teamId": 900 + j, "teamName": team, "submissionDate": s["date"], "score": s["publicScore"]})
        return sorted(rows, key=lambda r: -float(r["score"]))

    def data_zip(self) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
            archive.write(self.data_path, self.competition.data_filename)
        return buffer.getvalue()

    def shutdown(self) -> None:
        for run in list(self.kernels.values()):
            run.stop()
