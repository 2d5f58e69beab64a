"""Emulated faults: the `--fault SPEC` grammar, parsed into what the handler and state consume."""

from __future__ import annotations

from dataclasses import dataclass

from marsseg.errors import UserError


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
