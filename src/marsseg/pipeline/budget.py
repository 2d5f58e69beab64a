"""One wall-clock budget for a whole run, and the one-line phase log readable in a Kaggle kernel log.

budget = Budget(cfg.budget_seconds, log)
budget.phase("stage1", fold=2, note="12 epochs")   # [marsseg] 00:01:23 stage1 fold 2 | 12 epochs | left 00:06:37
budget.remaining()                                    # seconds left
"""

from __future__ import annotations

import time


def hms(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Budget:
    """Seconds allowed for the run, counted from construction on a monotonic clock."""

    def __init__(self, seconds: float, log=print, clock=time.monotonic):
        self.seconds = float(seconds)
        self.log = log
        self.clock = clock
        self.started = clock()
        self.phase_seconds: dict[str, float] = {}
        self._current: tuple[str, float] | None = None

    def elapsed(self) -> float:
        return self.clock() - self.started

    def remaining(self) -> float:
        return self.seconds - self.elapsed()

    def deadline(self, reserve: float = 0.0) -> float:
        """The clock value by which work must end to leave `reserve` seconds."""
        return self.started + self.seconds - reserve

    def phase(self, name: str, fold: int | None = None, note: str = "") -> None:
        """Close the previous phase (its seconds go to `phase_seconds`) and log one line for this one."""
        self.end_phase()
        self._current = (name, self.clock())
        where = f"{name}" + (f" fold {fold}" if fold is not None else "")
        self.log(
            f"[marsseg] {hms(self.elapsed())} {where}"
            + (f" | {note}" if note else "")
            + f" | budget left {hms(self.remaining())}"
        )

    def end_phase(self) -> None:
        if self._current is not None:
            name, since = self._current
            self.phase_seconds[name] = self.phase_seconds.get(name, 0.0) + self.clock() - since
            self._current = None

    def note(self, message: str) -> None:
        """A log line in the same format, without starting a phase."""
        self.log(f"[marsseg] {hms(self.elapsed())} {message} | budget left {hms(self.remaining())}")
