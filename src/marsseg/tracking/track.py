"""`marsseg track`: one snapshot, or one every interval in watch mode."""

from __future__ import annotations

import time

from marsseg.errors import UserError
from marsseg.tracking.session import open_session
from marsseg.tracking.snapshot import SnapshotResult, describe_snapshot, snapshot


def track(
    competition: str,
    history_dir="submissions",
    team: str | None = None,
    watch: float | None = None,
    count: int | None = None,
    session=None,
    log=print,
    sleep=time.sleep,
) -> list[SnapshotResult]:
    """Take one snapshot, or with `watch` seconds one every interval until stopped (or `count` taken).
    In watch mode a failure after the first snapshot is reported and the next one tried."""
    session = session or open_session()
    results = []
    while True:
        try:
            result = snapshot(session, competition, history_dir, team=team)
        except UserError as exc:
            if not watch or not results:
                raise
            log(f"snapshot failed, trying again in {watch:.0f} s: {exc}")
        else:
            results.append(result)
            log(describe_snapshot(result))
        if not watch or (count and len(results) >= count):
            return results
        sleep(watch)
