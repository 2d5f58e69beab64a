"""The emulator's HTTP handler: routes each Kaggle API method (and the emulator's own control and transfer
paths) to the state, and answers as Kaggle's server would, emulated faults included."""

from __future__ import annotations

import base64
import io
import json
import time
import zipfile
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from marsseg.errors import UserError
from marsseg.kaggle.emulator.faults import Fault, parse_fault
from marsseg.kaggle.emulator.quota import quota_answer
from marsseg.kaggle.emulator.state import _EPOCH, EmulatorState, iso

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


def _page(items: list, body: dict, default_size: int = 20) -> tuple[list, str]:
    size = int(body.get("pageSize") or default_size)
    start = int(body.get("pageToken") or 0)
    end = start + size
    return items[start:end], (str(end) if end < len(items) else "")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "marsseg-kaggle-emulator"
    state: EmulatorState  # set on the subclass made by `make_server`
    _muted = False  # True while an `after` fault lets a request run but replaces its answer
    _pending: Fault | None = None  # that fault, taken when the request came in

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
        if self._muted:
            return
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

    def _fault(self, target: str, after_ok: bool = False) -> bool:
        """Answer with the next fault for TARGET; True if answered. An `after` fault is left to `_processed` where
        the request changes something (AFTER_OK); a plain GET changes nothing, so there it answers at once."""
        fault = self.state.take_fault(target)
        if fault is None:
            return False
        if fault.after and after_ok:
            self._pending = fault
            return False
        if fault.delay:
            time.sleep(fault.delay)
        if fault.status:
            self._fail(target, fault)
            return True
        return False

    def _fail(self, target: str, fault: Fault, when: str = ""):
        self.state.log(f"[emulator] fault: {target} -> {fault.status}{when}")
        reason = _REASONS.get(fault.status, "Error")
        self._send(fault.status, f"{fault.status} {reason} (emulated fault)".encode(), "text/plain")

    def _processed(self, target: str, work) -> None:
        """Run WORK (which answers the request); under an `after` fault, keep its effect but answer the fault."""
        fault, self._pending = self._pending, None
        if fault is None:
            return work()
        self._muted = True
        try:
            work()
        finally:
            self._muted = False
        self._fail(target, fault, " after processing it")

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
        if self._fault(method, after_ok=True):
            return
        return self._processed(method, lambda: self._api(method, body))

    def _api(self, method: str, body: bytes):
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
            if self._fault("blob-upload", after_ok=True):
                return
            return self._processed("blob-upload", lambda: self._store_blob(path.rsplit("/", 1)[1], data))
        return self._send(404, b"404 Not Found", "text/plain")

    def _store_blob(self, token: str, data: bytes):
        with self.state.lock:
            if token not in self.state.blobs:
                return self._send(404, b"404 Not Found", "text/plain")
            self.state.blobs[token] = data
        return self._json({})

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
                "url": f"{base}/_emulator/kernels/{run.owner}/{run.slug}/output/"
                f"{p.relative_to(run.working).as_posix()}",
            }
            for p in run.output_files()
        ]
        page, token = _page(files, request)
        answer = {"files": page, "nextPageToken": token}
        if not request.get("pageToken"):
            answer["log"] = run.log_text()
        return self._json(answer)

    def api_GetAcceleratorQuotaStatistics(self, user, request):
        used, running = self.state.gpu_seconds()
        return self._json(quota_answer(self.state.gpu_quota_hours, used, running, datetime.now(timezone.utc)))

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
