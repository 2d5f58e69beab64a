"""The weekly accelerator quota (K/GetAcceleratorQuotaStatistics) as kagglesdk 0.1.37 reads it: durations are
protobuf JSON strings ("<seconds>.<fraction>s", `TimeDeltaSerializer`), the refresh time an ISO string."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from marsseg.kaggle.emulator.state import iso

TPU_QUOTA_HOURS = 20.0  # Kaggle's usual weekly TPU allowance; the kit never asks for a TPU


def duration(seconds: float) -> str:
    """SECONDS as the client's TimeDeltaSerializer parses it, to the millisecond."""
    millis = max(0, int(round(seconds * 1000)))
    return f"{millis // 1000}.{millis % 1000:03d}s"


def next_refresh(now: datetime) -> datetime:
    """Kaggle's quota week restarts on Saturday at 00:00 UTC: the next such moment after NOW."""
    midnight = now.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight + timedelta(days=(5 - midnight.weekday()) % 7 or 7)


def quota_answer(gpu_total_hours: float, gpu_used_seconds: float, gpu_running_seconds: float, now: datetime) -> dict:
    """The response body: GPU time used (finished runs) and reserved (running ones), the TPU's left untouched."""
    return {
        "quotaRefreshTime": iso(next_refresh(now)),
        "gpuQuota": {
            "timeUsed": duration(gpu_used_seconds),
            "timeReserved": duration(gpu_running_seconds),
            "totalTimeAllowed": duration(gpu_total_hours * 3600),
            "minimumTimeAllowed": duration(gpu_total_hours * 3600),
            "hasEverRun": gpu_used_seconds + gpu_running_seconds > 0,
        },
        "tpuQuota": {
            "timeUsed": duration(0),
            "totalTimeAllowed": duration(TPU_QUOTA_HOURS * 3600),
            "minimumTimeAllowed": duration(TPU_QUOTA_HOURS * 3600),
        },
    }
