"""The real `kaggle` 2.2.4 client behind one class, `KaggleSession`: routing, credentials, retries.

Every call runs the unmodified `kaggle` CLI in a subprocess (`python -m kaggle …`), so the kit never
imports it in-process (its import authenticates and may exit) and never patches its private tables. The one
listing the CLI cannot give whole (submissions: its table drops `errorDescription`) runs the client's public
`KaggleApi.competition_submissions` in a child Python instead, routed the same way.

* Routing: `MARSSEG_KAGGLE_ENDPOINT=http://127.0.0.1:PORT` sends every call to a loopback emulator
  (`marsseg emulator`): the subprocess gets KAGGLE_API_ENVIRONMENT=LOCALHOST, HTTP_PROXY/http_proxy set to
  the endpoint and NO_PROXY/no_proxy empty (the only routing 2.2.4 honours; see ../shared/kaggle-api.md).
  Unset means real Kaggle.
* Credentials: found the way the client finds them (`auth.py`); missing ones stop the kit with one line saying
  how to provide them. Keys are never printed or logged: they are masked out of every message.
* Retries: 2.2.4 sends each call once, so 429, 5xx, connection errors and time-outs are retried here with
  exponential backoff (MARSSEG_KAGGLE_RETRIES, default 5; MARSSEG_KAGGLE_BACKOFF seconds, default 2). Except
  `competitions submit`: a 503 may come after Kaggle created the submission, so it is never re-run blindly; its
  caller looks at the submissions list before any re-send (`send.py`).
* Distrust: 2.2.4 exits 0 after a failed upload or push and writes HTTP error bodies into downloaded files,
  so callers confirm submits by listing and validate every downloaded file.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from urllib.parse import urlparse

from marsseg.errors import UserError
from marsseg.kaggle.answers import JSON_MARK, LIST_SUBMISSIONS, TRANSIENT, UNAUTHORIZED, json_rows, summarise
from marsseg.kaggle.auth import HOW_TO_CREDENTIALS, Credentials, CredentialsError, KaggleError, find_credentials

__all__ = [  # the credentials part lives in auth.py; callers import it from here as before
    "HOW_TO_CREDENTIALS",
    "Credentials",
    "CredentialsError",
    "KaggleError",
    "KaggleSession",
    "find_credentials",
    "json_rows",
    "routing_env",
]

ENDPOINT_VAR = "MARSSEG_KAGGLE_ENDPOINT"


def routing_env(endpoint: str | None, base: dict | None = None) -> dict:
    """The environment for a `kaggle` subprocess: unchanged for real Kaggle, rerouted for an emulator."""
    env = dict(os.environ if base is None else base)
    if endpoint:
        parsed = urlparse(endpoint)
        if parsed.scheme != "http" or not parsed.hostname or not parsed.port:
            raise UserError(
                f"{ENDPOINT_VAR}={endpoint!r}: expected http://127.0.0.1:PORT (the address `marsseg emulator` prints)"
            )
        endpoint = f"http://{parsed.hostname}:{parsed.port}"
        env.update(
            KAGGLE_API_ENVIRONMENT="LOCALHOST", HTTP_PROXY=endpoint, http_proxy=endpoint, NO_PROXY="", no_proxy=""
        )
    return env


class KaggleSession:
    """One user's conversation with Kaggle (or an emulator) through the real client."""

    def __init__(
        self,
        endpoint: str | None = None,
        env: dict | None = None,
        retries: int | None = None,
        backoff: float | None = None,
        max_backoff: float = 60.0,
        timeout: float = 1800.0,
        log=print,
        sleep=time.sleep,
    ):
        base = dict(os.environ if env is None else env)
        self.endpoint = endpoint if endpoint is not None else (base.get(ENDPOINT_VAR) or None)
        self.env = routing_env(self.endpoint, base)
        self.retries = int(base.get("MARSSEG_KAGGLE_RETRIES", 5)) if retries is None else retries
        self.backoff = float(base.get("MARSSEG_KAGGLE_BACKOFF", 2.0)) if backoff is None else backoff
        self.max_backoff = max_backoff
        self.timeout = timeout
        self.log = log
        self.sleep = sleep
        self._credentials: Credentials | None = None
        self._username: str | None = None

    @property
    def where(self) -> str:
        return f"the Kaggle emulator at {self.endpoint}" if self.endpoint else "Kaggle"

    # ------------------------------------------------------------------------- credentials
    def credentials(self) -> Credentials:
        if self._credentials is None:
            self._credentials = find_credentials(self.env)
        return self._credentials

    def username(self) -> str:
        if self._username is None:
            credentials = self.credentials()
            self._username = credentials.username or self._introspect_username()
        return self._username

    def _introspect_username(self) -> str:
        # A bare token: ask the client whom it belongs to (it calls IntrospectToken while authenticating).
        code = (
            "from kaggle.api.kaggle_api_extended import KaggleApi\n"
            "api = KaggleApi(); api.authenticate(); print(api.config_values.get('username', ''))"
        )
        out = self._run([sys.executable, "-c", code], "token introspection")
        name = out.strip().splitlines()[-1].strip() if out.strip() else ""
        if not name:
            raise CredentialsError(f"{self.where} did not accept the access token; {HOW_TO_CREDENTIALS}")
        return name

    # ------------------------------------------------------------------------------ calls
    def kaggle(self, *args: str, what: str | None = None, retry: bool = True) -> str:
        """Run `kaggle ARGS` with retries (`retry=False`: once); the stdout of the first successful run."""
        return self._run([sys.executable, "-m", "kaggle", *args], what or " ".join(args[:2]), retry)

    def _run(self, command: list[str], what: str, retry: bool = True) -> str:
        """Run a client command. A transient failure is retried with backoff; with `retry=False` it is raised at
        once as a retryable KaggleError, for a caller that must look before it sends again."""
        self.credentials()
        attempt = 0
        while True:
            try:
                # check=False: a failed call is classified (transient or not) from its output below.
                proc = subprocess.run(command, capture_output=True, text=True, env=self.env, timeout=self.timeout)
                output, ok = proc.stdout + proc.stderr, proc.returncode == 0
            except subprocess.TimeoutExpired:
                output, ok = f"timed out after {self.timeout:.0f} s", False
            if ok:
                return proc.stdout
            summary = self.mask(summarise(output))
            if TRANSIENT.search(output) and not retry:
                raise KaggleError(f"kaggle {what}: {summary}", retryable=True)
            if TRANSIENT.search(output) and attempt < self.retries:
                delay = min(self.max_backoff, self.backoff * 2**attempt)
                attempt += 1
                self.log(f"[kaggle] {what}: {summary}; retry {attempt}/{self.retries} in {delay:.1f} s")
                self.sleep(delay)
                continue
            if UNAUTHORIZED.search(output) and not TRANSIENT.search(output):
                raise CredentialsError(
                    f"{self.where} rejected the credentials from {self.credentials().source} "
                    f"during {what}; {HOW_TO_CREDENTIALS}"
                )
            tries = f" after {attempt + 1} tries" if attempt else ""
            raise KaggleError(f"kaggle {what} failed{tries}: {summary}", retryable=False)

    def retrying(self, what: str, action, transient=lambda exc: True):
        """Run `action()`; when it raises a retryable KaggleError (an unconfirmed submit, a download that does not
        validate), back off and try again. Failed calls were already retried inside `kaggle()` and are not again."""
        attempt = 0
        while True:
            try:
                return action()
            except KaggleError as exc:
                if (
                    isinstance(exc, CredentialsError)
                    or not exc.retryable
                    or not transient(exc)
                    or attempt >= self.retries
                ):
                    raise
                delay = min(self.max_backoff, self.backoff * 2**attempt)
                attempt += 1
                self.log(f"[kaggle] {what}: {exc}; retry {attempt}/{self.retries} in {delay:.1f} s")
                self.sleep(delay)

    def mask(self, text: str) -> str:
        for secret in self._credentials.secrets() if self._credentials else ():
            text = text.replace(secret, "***")
        return text

    # ---------------------------------------------------------------------------- kernels
    def push_kernel(self, folder: Path) -> int | None:
        """`kernels push -p FOLDER`; the new version number. 2.2.4 exits 0 on a push error: read its words."""
        out = self.kaggle("kernels", "push", "-p", str(folder), what="kernels push")
        error = re.search(r"Kernel push error:\s*(.*)", out)
        if error:
            raise KaggleError(f"kaggle kernels push: {self.mask(error.group(1).strip())}")
        pushed = re.search(r"Kernel version (\d+)? ?successfully pushed", out)
        if not pushed:
            raise KaggleError(f"kaggle kernels push: unexpected answer: {self.mask(summarise(out))}")
        return int(pushed.group(1)) if pushed.group(1) else None

    def kernel_status(self, ref: str) -> tuple[str, str]:
        """(STATUS, failure message) of the kernel's latest run."""
        out = self.kaggle("kernels", "status", ref, what="kernels status")
        found = re.search(r'has status "(?:[A-Za-z]+\.)?([A-Z_]+)"', out)
        if not found:
            raise KaggleError(f"kaggle kernels status: unexpected answer: {self.mask(summarise(out))}")
        failure = re.search(r'Failure message: "(.*)"', out)
        return found.group(1), (failure.group(1) if failure else "")

    def kernel_output(self, ref: str, dest: Path, pattern: str | None = None) -> list[Path]:
        """Download the latest run's output files (those matching the regex `pattern`) and its log into DEST."""
        dest.mkdir(parents=True, exist_ok=True)
        extra = ("--file-pattern", pattern) if pattern else ()
        self.kaggle("kernels", "output", ref, "-p", str(dest), "-o", "-q", *extra, what="kernels output")
        return sorted(p for p in dest.rglob("*") if p.is_file())

    # ----------------------------------------------------------------------- competitions
    def submit(self, competition: str, path: Path, message: str) -> str:
        """Upload and create a submission, ONCE (no transport retry: a 5xx may follow a created submission);
        the client's answer. A transient failure raises a retryable KaggleError; confirm with `submissions()`."""
        out = self.kaggle(
            "competitions",
            "submit",
            "-c",
            competition,
            "-f",
            str(path),
            "-m",
            message,
            what="competitions submit",
            retry=False,
        )
        if "Could not submit" in out:
            raise KaggleError(f"kaggle competitions submit: the upload failed ({self.mask(summarise(out))})")
        return out.strip()

    def submissions(self, competition: str, page_size: int = 20) -> list[dict]:
        """The newest submissions, with Kaggle's `errorDescription` (which the CLI's table drops): read through
        the client's public `KaggleApi.competition_submissions` in a child Python, routed like the CLI."""
        command = [sys.executable, "-c", LIST_SUBMISSIONS, competition, str(page_size)]
        out = self._run(command, "competitions submissions")
        line = next((ln for ln in reversed(out.splitlines()) if ln.startswith(JSON_MARK)), None)
        if line is None:
            raise KaggleError(f"kaggle competitions submissions: unexpected answer: {self.mask(summarise(out))}")
        return json.loads(line[len(JSON_MARK) :])

    def gpu_quota(self) -> tuple[float, float]:
        """(hours used, hours allowed) of this week's GPU quota, from `kaggle quota` (GetAcceleratorQuotaStatistics);
        KaggleError when it cannot be read."""
        out = self.kaggle("quota", "--format", "json", what="quota")
        try:
            gpu = next(r for r in json_rows(out, "quota") if str(r.get("resource", "")).upper() == "GPU")
            return float(str(gpu["used"]).rstrip("h")), float(str(gpu["total"]).rstrip("h"))
        except (KaggleError, ValueError, StopIteration, KeyError, TypeError):
            raise KaggleError(f"kaggle quota: no GPU quota in the answer ({self.mask(summarise(out))})") from None

    def leaderboard(self, competition: str) -> list[dict]:
        out = self.kaggle(
            "competitions",
            "leaderboard",
            "-c",
            competition,
            "--show",
            "--format",
            "json",
            what="competitions leaderboard",
        )
        return json_rows(out, "competitions leaderboard")

    def download_competition(self, competition: str, dest: Path) -> Path:
        """The competition's files as `DEST/<competition>.zip` (validated: 2.2.4 may save an error body)."""

        dest.mkdir(parents=True, exist_ok=True)
        self.kaggle(
            "competitions", "download", "-c", competition, "-p", str(dest), "-o", "-q", what="competitions download"
        )
        archive = dest / f"{competition}.zip"
        if not archive.is_file():
            raise KaggleError(
                f"kaggle competitions download: {archive} was not written; accept the competition's "
                f"rules at kaggle.com/competitions/{competition} first"
            )
        if not zipfile.is_zipfile(archive):
            head = archive.read_bytes()[:120].decode("utf-8", "replace").strip()
            archive.unlink()
            raise KaggleError(f"kaggle competitions download: got an error page instead of a zip ({head!r})")
        return archive
