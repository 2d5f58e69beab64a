"""Serving the emulator: make_server (bound to 127.0.0.1), serve (`marsseg emulator`) and print_env (the routing)."""

from __future__ import annotations

import functools
import shutil
import signal
import tempfile
from http.server import ThreadingHTTPServer
from pathlib import Path

from marsseg.competition import get_competition
from marsseg.errors import UserError
from marsseg.kaggle.emulator.faults import parse_fault
from marsseg.kaggle.emulator.handler import Handler
from marsseg.kaggle.emulator.state import EmulatorSettings, EmulatorState, default_profile

DEFAULT_PORT = 7777


def print_env(port: int, profile: str | None = None) -> str:
    """Shell lines that route the kit (and a plain `kaggle` command) to an emulator on PORT, and make the kit
    check submissions against the emulator's competition PROFILE (default: the one `marsseg emulator` picks)."""
    endpoint = f"http://127.0.0.1:{port}"
    profile = profile or default_profile()
    get_competition(profile)  # an unknown name fails here, in one line, not later in the kit
    return "\n".join(
        [
            f"export MARSSEG_KAGGLE_ENDPOINT={endpoint}",
            f"export MARSSEG_PROFILE={profile}",
            "export KAGGLE_API_ENVIRONMENT=LOCALHOST",
            f"export HTTP_PROXY={endpoint} http_proxy={endpoint}",
            "export NO_PROXY= no_proxy=",
            "# any credentials work, e.g.: export KAGGLE_USERNAME=me KAGGLE_KEY=dummy-key",
        ]
    )


def make_server(port: int = DEFAULT_PORT, root: Path | None = None, log=print, **settings) -> ThreadingHTTPServer:
    """A started-on-demand server bound to 127.0.0.1:PORT (0 picks a free port); `server.state` is its state.
    `settings` are EmulatorSettings' fields, by name."""
    root = Path(root) if root else Path(tempfile.mkdtemp(prefix="marsseg_emulator_"))
    state = EmulatorState(root, EmulatorSettings(**settings), log=log)
    handler = type("BoundHandler", (Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    server.state = state
    return server


def serve(
    port: int = DEFAULT_PORT, root: Path | None = None, faults: tuple[str, ...] = (), log=print, **settings
) -> None:
    """`marsseg emulator`: serve until interrupted (Ctrl-C or SIGTERM), then stop any running kernel. `settings` are
    EmulatorSettings' fields, by name."""
    if log is print:
        log = functools.partial(print, flush=True)  # a pipe must see the address at once

    def interrupt(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    scratch = None if root else Path(tempfile.mkdtemp(prefix="marsseg_emulator_"))
    try:
        server = make_server(port, root or scratch, log=log, **settings)
    except OSError as exc:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        raise UserError(f"cannot listen on 127.0.0.1:{port} ({exc.strerror}); pick another --port") from None
    for spec in faults:
        server.state.add_fault(parse_fault(spec))
    actual = server.server_address[1]
    state = server.state
    log(
        f"Kaggle emulator on http://127.0.0.1:{actual} (competition {state.competition.slug}, profile "
        f"{state.profile} with {state.competition.test_images} test images, data {state.data_path}, "
        f"kernels run with preset {state.kernel_preset}); route the kit with:"
    )
    log(print_env(actual, state.profile))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        state.shutdown()
        if scratch:  # the kernel runs and synthetic data of this session only
            shutil.rmtree(scratch, ignore_errors=True)
