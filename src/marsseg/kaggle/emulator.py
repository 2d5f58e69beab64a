"""A loopback Kaggle for tests and dry runs: `marsseg emulator [--port 7777] [--print-env]`.

The unmodified `kaggle` 2.2.4 client talks to it when routed as ../shared/kaggle-api.md describes
(KAGGLE_API_ENVIRONMENT=LOCALHOST, HTTP_PROXY=http_proxy=http://127.0.0.1:PORT, NO_PROXY=no_proxy empty), so
requests arrive in absolute form (`POST http://localhost/api/v1/<service>/<Method>`). It binds 127.0.0.1 only.

What it implements: SaveKernel, GetKernelSessionStatus, ListKernelSessionOutput (+ the output file GETs),
StartSubmissionUpload (+ the blob PUT), CreateSubmission, GetSubmissionLimits, ListSubmissions, GetLeaderboard,
DownloadLeaderboard, ListDataFiles, DownloadDataFiles (302 to a .zip), IntrospectToken.

A pushed kernel really runs: the script is executed in a subprocess, as Kaggle would, with the competition data
under an input folder and an empty working folder handed to it through the kernel's one path switch
(MARSSEG_KAGGLE_INPUT / MARSSEG_KAGGLE_WORKING) and a small preset (MARSSEG_KERNEL_PRESET, default smoke); its status
follows the process (QUEUED → RUNNING → COMPLETE/ERROR) and the files it wrote are its output. Submissions are
scored against the synthetic truth (public score on a fixed half of the test images). The leaderboard is scripted:
other teams improve with every leaderboard call, a late team appears, and the user's best score is on it.

Faults (`--fault SPEC`, repeatable, or POST /_emulator/faults {"spec": SPEC}):
  METHOD:STATUS[:TIMES]        answer METHOD (e.g. SaveKernel, CreateSubmission, `*`, or blob-upload /
                               output-file / data-file for the plain transfers) with HTTP STATUS, TIMES times (default 1)
  METHOD:slow=SECONDS[:TIMES]  answer late
  kernel-error[:TIMES]         the next pushed kernels get a corrupt data file and end in ERROR
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from marsseg.competition import MARS, Competition
from marsseg.errors import UserError

DEFAULT_PORT = 7777
_REASONS = {
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
}
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


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def print_env(port: int) -> str:
    """Shell lines that route the kit (and a plain `kaggle` command) to an emulator on PORT."""
    endpoint = f"http://127.0.0.1:{port}"
    return "\n".join(
        [
            f"export MARSSEG_KAGGLE_ENDPOINT={endpoint}",
            "export KAGGLE_API_ENVIRONMENT=LOCALHOST",
            f"export HTTP_PROXY={endpoint} http_proxy={endpoint}",
            "export NO_PROXY= no_proxy=",
            "# any credentials work, e.g.: export KAGGLE_USERNAME=me KAGGLE_KEY=dummy-key",
        ]
    )


@dataclass
class Fault:
    target: str  # API method name, '*', 'blob-upload', 'output-file', 'data-file' or 'kernel-error'
    status: int = 0
    delay: float = 0.0
    times: int = 1


def parse_fault(spec: str) -> Fault:
    parts = spec.strip().split(":")
    try:
        if parts[0] == "kernel-error":
            return Fault("kernel-error", times=int(parts[1]) if len(parts) > 1 else 1)
        target, what = parts[0], parts[1]
        times = int(parts[2]) if len(parts) > 2 else 1
        if what.startswith("slow="):
            return Fault(target, delay=float(what[5:]), times=times)
        return Fault(target, status=int(what), times=times)
    except (IndexError, ValueError):
        raise UserError(
            f"fault {spec!r}: expected METHOD:STATUS[:TIMES], METHOD:slow=SECONDS[:TIMES] "
            "or kernel-error[:TIMES] (e.g. SaveKernel:429:2)"
        ) from None


class KernelRun:
    """One pushed version, executed in a subprocess; status follows the process."""

    def __init__(
        self,
        owner: str,
        slug: str,
        version: int,
        text: str,
        root: Path,
        data_path: Path,
        competition: Competition,
        preset: str,
        queue_seconds: float,
        corrupt: bool,
    ):
        self.owner, self.slug, self.version = owner, slug, version
        self.folder = root / "kernels" / owner / slug / f"v{version}"
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
                os.link(data_path, target)
            except OSError:
                shutil.copyfile(data_path, target)
        self.status, self.failure = "QUEUED", ""
        self.preset, self.queue_seconds = preset, queue_seconds
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
            self.status = "RUNNING"
            code = self.process.wait()
        if code == 0:
            self.status = "COMPLETE"
        else:
            tail = [l for l in self.log_path.read_text("utf-8", "replace").splitlines() if l.strip()]
            self.failure = (tail[-1].strip() if tail else f"exit status {code}")[:500]
            self.status = "ERROR"

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
            from marsseg.data.synth import ensure_synthetic

            data_path, truth_path = self.root / "synthetic_mars.npz", self.root / "synthetic_truth.npz"
            ensure_synthetic(data_path, truth_path, n_train, n_test, seed, log=lambda *_: None)
        self.data_path = Path(data_path)
        self.truth = None
        if truth_path and Path(truth_path).is_file():
            import numpy as np

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
        from marsseg.errors import SubmissionError
        from marsseg.submission.formats import decode
        from marsseg.submission.scoring import score_masks

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


def _page(items: list, body: dict, default_size: int = 20) -> tuple[list, str]:
    size = int(body.get("pageSize") or default_size)
    start = int(body.get("pageToken") or 0)
    end = start + size
    return items[start:end], (str(end) if end < len(items) else "")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "marsseg-kaggle-emulator"
    state: EmulatorState  # set on the subclass made by `make_server`

    def log_message(self, format, *args):  # the state logs what matters
        pass

    # ------------------------------------------------------------------------ plumbing
    def _path(self) -> str:
        return urlsplit(self.path).path  # absolute-form targets (through the proxy route) carry scheme and host

    def _base(self) -> str:
        split = urlsplit(self.path)
        host = split.netloc or self.headers.get("Host") or f"127.0.0.1:{self.server.server_address[1]}"
        return f"http://{host}"

    def _send(self, status: int, body: bytes, content_type: str = "application/json", headers: dict | None = None):
        self.send_response(status, _REASONS.get(status))
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj: dict, status: int = 200):
        self._send(status, json.dumps(obj).encode("utf-8"))

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _fault(self, target: str) -> bool:
        fault = self.state.take_fault(target)
        if fault is None:
            return False
        if fault.delay:
            time.sleep(fault.delay)
        if fault.status:
            self.state.log(f"[emulator] fault: {target} -> {fault.status}")
            reason = _REASONS.get(fault.status, "Error")
            self._send(fault.status, f"{fault.status} {reason} (emulated fault)".encode(), "text/plain")
            return True
        return False

    def _user(self) -> str | None:
        header = self.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                user, _, key = base64.b64decode(header[6:]).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            return user if user and key else None
        if header.startswith("Bearer ") and header[7:].strip():
            return self.state.token_user
        return None

    # ------------------------------------------------------------------------- methods
    def do_POST(self):
        path, body = self._path(), self._body()
        self.state.requests.append(f"POST {path}")
        if path.startswith("/_emulator/"):
            return self._control(path, body)
        parts = path.strip("/").split("/")
        if len(parts) != 4 or parts[:2] != ["api", "v1"]:
            return self._json({"code": 404, "message": f"no such endpoint {path}"}, 404)
        method = parts[3]
        if self._fault(method):
            return
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            return self._json({"code": 400, "message": "the body is not JSON"}, 400)
        if method == "IntrospectToken":
            return self._json({"active": bool(request.get("token")), "username": self.state.token_user})
        user = self._user()
        if user is None:
            return self._json({"code": 401, "message": "Unauthorized: no valid credentials"}, 401)
        handler = getattr(self, f"api_{method}", None)
        if handler is None:
            return self._json({"code": 404, "message": f"the emulator does not implement {method}"}, 404)
        if method != "DownloadDataFiles" and method != "DownloadLeaderboard":
            competition = request.get("competitionName")
            if competition is not None and competition != self.state.competition.slug:
                return self._json({"code": 404, "message": f"no competition {competition!r}"}, 404)
        return handler(user, request)

    def do_GET(self):
        path = self._path()
        self.state.requests.append(f"GET {path}")
        parts = path.strip("/").split("/")
        if parts[:2] == ["_emulator", "kernels"] and len(parts) >= 6 and parts[4] == "output":
            if self._fault("output-file"):
                return
            run = self.state.kernels.get(f"{parts[2]}/{parts[3]}")
            name = "/".join(parts[5:])
            files = {p.relative_to(run.working).as_posix(): p for p in run.output_files()} if run else {}
            if name not in files:
                return self._send(404, b"404 Not Found", "text/plain")
            return self._send(200, files[name].read_bytes(), "application/octet-stream")
        if parts[:2] == ["_emulator", "data"]:
            if self._fault("data-file"):
                return
            return self._send(200, self.state.data_zip(), "application/zip")
        if path == "/_emulator/state":
            return self._json(self._summary())
        return self._send(404, b"404 Not Found", "text/plain")

    def do_PUT(self):
        path, data = self._path(), self._body()
        self.state.requests.append(f"PUT {path}")
        if path.startswith("/_emulator/blobs/"):
            if self._fault("blob-upload"):
                return
            token = path.rsplit("/", 1)[1]
            with self.state.lock:
                if token not in self.state.blobs:
                    return self._send(404, b"404 Not Found", "text/plain")
                self.state.blobs[token] = data
            return self._json({})
        return self._send(404, b"404 Not Found", "text/plain")

    def _control(self, path: str, body: bytes):
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            return self._json({"code": 400, "message": "the body is not JSON"}, 400)
        if path == "/_emulator/faults":
            try:
                for spec in [request["spec"]] if isinstance(request.get("spec"), str) else request.get("specs", []):
                    self.state.add_fault(parse_fault(spec))
            except UserError as exc:
                return self._json({"code": 400, "message": str(exc)}, 400)
            return self._json({"faults": len(self.state.faults)})
        if path == "/_emulator/clear-faults":
            with self.state.lock:
                self.state.faults.clear()
            return self._json({"faults": 0})
        return self._json({"code": 404, "message": f"no such control {path}"}, 404)

    def _summary(self) -> dict:
        return {
            "kernels": {
                k: {"version": r.version, "status": r.status, "failure": r.failure}
                for k, r in self.state.kernels.items()
            },
            "submissions": self.state.submissions,
            "tick": self.state.tick,
            "faults": [vars(f) for f in self.state.faults if f.times > 0],
            "requests": len(self.state.requests),
        }

    # ------------------------------------------------------------------------- kernels
    def api_SaveKernel(self, user, request):
        return self._json(self.state.save_kernel(user, request))

    def api_GetKernelSessionStatus(self, user, request):
        run = self.state.kernel(request)
        if run is None:
            return self._json({"code": 404, "message": "Kernel not found"}, 404)
        answer = {"status": run.status}
        if run.failure:
            answer["failureMessage"] = run.failure
        return self._json(answer)

    def api_ListKernelSessionOutput(self, user, request):
        run = self.state.kernel(request)
        if run is None:
            return self._json({"code": 404, "message": "Kernel not found"}, 404)
        base = self._base()
        files = [
            {
                "fileName": p.relative_to(run.working).as_posix(),
                "url": f"{base}/_emulator/kernels/{run.owner}/{run.slug}/output/{p.relative_to(run.working).as_posix()}",
            }
            for p in run.output_files()
        ]
        page, token = _page(files, request)
        answer = {"files": page, "nextPageToken": token}
        if not request.get("pageToken"):
            answer["log"] = run.log_text()
        return self._json(answer)

    # -------------------------------------------------------------------- competitions
    def api_StartSubmissionUpload(self, user, request):
        token = f"blob-{len(self.state.blobs) + 1}-{int(time.time() * 1000) % 100000}"
        with self.state.lock:
            self.state.blobs[token] = b""
            self.state.blobs_meta[token] = {"fileName": request.get("fileName", "submission.csv")}
        return self._json({"token": token, "createUrl": f"{self._base()}/_emulator/blobs/{token}"})

    def api_CreateSubmission(self, user, request):
        answer = self.state.create_submission(user, request)
        return self._json(answer, answer.get("code", 200))

    def api_GetSubmissionLimits(self, user, request):
        used = sum(1 for s in self.state.submissions if s["submittedBy"] == user)
        return self._json(
            {"numAllowedNow": max(0, self.state.daily_limit - used), "numAllowedPerDay": self.state.daily_limit}
        )

    def api_ListSubmissions(self, user, request):
        mine = [s for s in reversed(self.state.submissions) if s["submittedBy"] == user]
        page, token = _page(mine, request)
        return self._json({"submissions": page, "nextPageToken": token})

    def api_GetLeaderboard(self, user, request):
        page, token = _page(self.state.leaderboard(), request, 50)
        return self._json({"submissions": page, "nextPageToken": token})

    def api_DownloadLeaderboard(self, user, request):
        rows = self.state.leaderboard()
        csv = "Rank,TeamId,TeamName,LastSubmissionDate,Score\n" + "".join(
            f"{i + 1},{r['teamId']},{r['teamName']},{r['submissionDate']},{r['score']}\n" for i, r in enumerate(rows)
        )
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr(f"{self.state.competition.slug}-publicleaderboard.csv", csv)
        return self._send(200, buffer.getvalue(), "application/zip")

    def api_ListDataFiles(self, user, request):
        data = self.state.data_path
        files = [
            {
                "name": self.state.competition.data_filename,
                "totalBytes": data.stat().st_size,
                "creationDate": iso(_EPOCH),
            }
        ]
        page, token = _page(files, request)
        return self._json({"files": page, "nextPageToken": token})

    def api_DownloadDataFiles(self, user, request):
        slug = self.state.competition.slug
        return self._send(302, b"", "text/plain", {"Location": f"{self._base()}/_emulator/data/{slug}.zip"})


def make_server(port: int = DEFAULT_PORT, root: Path | None = None, **state_options) -> ThreadingHTTPServer:
    """A started-on-demand server bound to 127.0.0.1:PORT (0 picks a free port); `server.state` is its state."""
    root = Path(root) if root else Path(tempfile.mkdtemp(prefix="marsseg_emulator_"))
    state = EmulatorState(root, **state_options)
    handler = type("BoundHandler", (Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    server.state = state
    return server


def serve(
    port: int = DEFAULT_PORT, root: Path | None = None, faults: tuple[str, ...] = (), log=print, **state_options
) -> None:
    """`marsseg emulator`: serve until interrupted (Ctrl-C or SIGTERM), then stop any running kernel."""
    import functools
    import signal

    if log is print:
        log = functools.partial(print, flush=True)  # a pipe must see the address at once

    def interrupt(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    scratch = None if root else Path(tempfile.mkdtemp(prefix="marsseg_emulator_"))
    try:
        server = make_server(port, root or scratch, log=log, **state_options)
    except OSError as exc:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        raise UserError(f"cannot listen on 127.0.0.1:{port} ({exc.strerror}); pick another --port") from None
    for spec in faults:
        server.state.add_fault(parse_fault(spec))
    actual = server.server_address[1]
    state = server.state
    log(
        f"Kaggle emulator on http://127.0.0.1:{actual} (competition {state.competition.slug}, data {state.data_path}, "
        f"kernels run with preset {state.kernel_preset}); route the kit with:"
    )
    log(print_env(actual))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        state.shutdown()
        if scratch:  # the kernel runs and synthetic data of this session only
            shutil.rmtree(scratch, ignore_errors=True)
