"""Emulated faults: the `--fault SPEC` grammar, parsed into what the handler and state consume."""

from __future__ import annotations

from dataclasses import dataclass

from marsseg.errors import UserError

GRAMMAR = (
    "METHOD:STATUS[:TIMES], METHOD:STATUS:TIMES:after (processed, then answered STATUS), "
    "METHOD:slow=SECONDS[:TIMES] or kernel-error[:TIMES]"
)


@dataclass
class Fault:
    target: str  # API method name, '*', 'blob-upload', 'output-file', 'data-file' or 'kernel-error'
    status: int = 0
    delay: float = 0.0
    times: int = 1
    # The request is carried out first and only its answer is replaced by STATUS: the case a client that
    # retries blindly turns into a duplicate (a submission created twice).
    after: bool = False


def parse_fault(spec: str) -> Fault:
    parts = spec.strip().split(":")
    try:
        if parts[0] == "kernel-error" and len(parts) <= 2:
            return Fault("kernel-error", times=int(parts[1]) if len(parts) > 1 else 1)
        target, what = parts[0], parts[1]
        times = int(parts[2]) if len(parts) > 2 else 1
        after = len(parts) == 4 and parts[3] == "after"
        if not target or len(parts) > 4 or (len(parts) == 4 and not after) or times < 0:
            raise ValueError
        if what.startswith("slow="):
            if after:
                raise ValueError  # a late answer has nothing to come after
            return Fault(target, delay=float(what[5:]), times=times)
        status = int(what)
        if not 100 <= status <= 599:
            raise ValueError
        return Fault(target, status=status, times=times, after=after)
    except (IndexError, ValueError):
        raise UserError(
            f"fault {spec!r}: expected {GRAMMAR} (e.g. SaveKernel:429:2, CreateSubmission:503:1:after)"
        ) from None
