"""Shared helpers for the Kaggle-path tests: an in-process emulator on a free loopback port, an isolated
environment for the real `kaggle` CLI (HOME and KAGGLE_CONFIG_DIR in tmp, dummy credentials), a project folder."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from tests.helpers.child_process import ROOT, with_sources

DUMMY_KEY = "feedfacefeedfacefeedfacefeedface"
# Fast tests run the emulator and the kit with the 32-image profile; a full-size test passes profile="mars".
TEST_PROFILE = "mars-mini"


@contextlib.contextmanager
def running_emulator(root: Path, **options):
    from marsseg.kaggle.emulator.server import make_server

    options.setdefault("queue_seconds", 0.2)
    options.setdefault("profile", TEST_PROFILE)
    options.setdefault("log", lambda *_: None)
    server = make_server(0, root, **options)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        server.state.shutdown()
        thread.join(5)


def kit_env(tmp: Path, endpoint: str | None, credentials: bool = True, **extra) -> dict:
    """Environment for kit commands and the real client: isolated HOME/config, no ambient Kaggle settings, and
    the profile `running_emulator` serves (MARSSEG_PROFILE; pass MARSSEG_PROFILE=... in EXTRA to change it)."""
    home = tmp / "home"
    (home / ".kaggle").mkdir(parents=True, exist_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KAGGLE_", "MARSSEG_")) and k.lower() not in {"http_proxy", "https_proxy", "no_proxy"}
    }
    env = with_sources(env)
    env.update(
        HOME=str(home),
        KAGGLE_CONFIG_DIR=str(home / ".kaggle"),
        MARSSEG_KAGGLE_POLL="0.2",
        MARSSEG_KAGGLE_BACKOFF="0.05",
        MARSSEG_KAGGLE_RETRIES="3",
        MARSSEG_PROFILE=TEST_PROFILE,
    )
    env.pop("XDG_CONFIG_HOME", None)
    if endpoint:
        env["MARSSEG_KAGGLE_ENDPOINT"] = endpoint
    if credentials:
        env.update(KAGGLE_USERNAME="tester", KAGGLE_KEY=DUMMY_KEY)
    env.update(extra)
    return env


def make_project(tmp: Path) -> Path:
    """A folder that looks like the repository root to the kit (metadata; the kernel is built into it)."""
    project = tmp / "project"
    project.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ROOT / "kernel-metadata.json", project / "kernel-metadata.json")
    return project


def endpoint_of(server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def kaggle_cli(env: dict, *args, timeout: float = 180) -> subprocess.CompletedProcess:
    """The real `kaggle` client as a user runs it, in env. The timeout only stops a hung client: a busy 2-core
    machine (a benchmark beside the tests) starts it slowly."""
    return subprocess.run(
        [sys.executable, "-m", "kaggle", *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout
    )
