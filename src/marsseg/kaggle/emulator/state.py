"""The emulator's state: pushed kernels, uploaded blobs and scored submissions, and the scripted leaderboard."""

from __future__ import annotations

import io
import threading
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from marsseg.competition import MARS, Competition
from marsseg.data.synth import ensure_synthetic
from marsseg.errors import SubmissionError
from marsseg.kaggle.emulator.faults import Fault
from marsseg.kaggle.emulator.kernel_run import KernelRun
from marsseg.submission.formats import decode
from marsseg.submission.scoring import score_masks

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


class EmulatorState:
    def __init__(
        self,
        root: Path,
        data_path: Path | None = None,
        truth_path: Path | None = None,
        competition: Competition = MARS,
        kernel_preset: str = "smoke",
        queue_seconds: float = 0.3,
        n_train: int = 96,
        n_test: int = 32,
        seed: int = 0,
        token_user: str = "emulator-user",
        daily_limit: int = 5,
        log=print,
    ):
        self.root = Path(root)
        self.competition = competition
        self.kernel_preset, self.queue_seconds = kernel_preset, queue_seconds
        self.token_user, self.daily_limit = token_user, daily_limit
        self.log = log
        self.lock = threading.Lock()
        self.faults: list[Fault] = []
        self.kernels: dict[str, KernelRun] = {}
        self.versions: dict[str, int] = {}
        self.blobs: dict[str, bytes] = {}
        self.blobs_meta: dict[str, dict] = {}
        self.submissions: list[dict] = []
        self.tick = 0
        self.requests: list[str] = []
        if data_path is None:
            data_path, truth_path = self.root / "synthetic_mars.npz", self.root / "synthetic_truth.npz"
            ensure_synthetic(data_path, truth_path, n_train, n_test, seed, log=lambda *_: None)
        self.data_path = Path(data_path)
        self.truth = None
        if truth_path and Path(truth_path).is_file():
            self.truth = np.load(truth_path)["test_labels"]
            order = np.random.default_rng(12345).permutation(len(self.truth))
            self.public = np.sort(order[: max(1, len(order) // 2)])

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
        with self.lock:
            version = self.versions.get(slug, 0) + 1
            self.versions[slug] = version
            previous = self.kernels.get(slug)
            if previous:
                previous.stop()
            self.kernels[slug] = KernelRun(
                owner,
                name,
                version,
                str(body.get("text", "")),
                self.root,
                self.data_path,
                self.competition,
                self.kernel_preset,
                self.queue_seconds,
                corrupt,
            )
        self.log(
            f"[emulator] {slug} v{version} pushed (internet {'on' if body.get('enableInternet') else 'off'}, "
            f"gpu {'on' if body.get('enableGpu') else 'off'}); running it with preset {self.kernel_preset}"
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
        status, public, error = self._score(data)
        with self.lock:
            ref = 50000 + len(self.submissions) + 1
            self.submissions.append(
                {
                    "ref": ref,
                    "fileName": meta.get("fileName", "submission.csv"),
                    "date": iso(datetime.now(timezone.utc)),
                    "description": body.get("submissionDescription", ""),
                    "status": status,
                    "publicScore": public,
                    "privateScore": "",
                    "errorDescription": error,
                    "totalBytes": len(data),
                    "teamName": user,
                    "submittedBy": user,
                    "url": f"/submissions/{ref}",
                }
            )
        self.log(f"[emulator] submission {ref} by {user}: {status} {public or error}")
        return {"message": "Successfully submitted to " + self.competition.title, "ref": ref}

    def _score(self, data: bytes) -> tuple[str, str, str]:
        try:
            info = decode(data, None if self.truth is None else len(self.truth), self.competition)
        except SubmissionError as exc:
            return "ERROR", "", f"invalid submission: {exc}"
        if info.layout != self.competition.submission_layout:
            return "ERROR", "", f"the scorer takes the {self.competition.submission_layout} layout, got {info.layout}"
        if self.truth is None:
            return "COMPLETE", "", ""
        score = score_masks(self.truth[self.public], info.masks[self.public], self.competition)["miou"]
        return "COMPLETE", f"{score:.5f}", ""

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
