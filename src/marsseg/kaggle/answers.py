"""Reading what the `kaggle` 2.2.4 CLI answers: which failures are transient or about credentials, the JSON rows
of a `--format json` listing, the one informative line of an error, and the child-Python script that lists
submissions with Kaggle's `errorDescription` (the CLI's table drops it)."""

from __future__ import annotations

import json
import re

from marsseg.kaggle.auth import KaggleError

TRANSIENT = re.compile(
    r"\b(429|500|502|503|504)\b|Too Many Requests|Internal Server Error|Service Unavailable|Bad Gateway|"
    r"Gateway Time-?out|ConnectionError|Connection refused|Connection aborted|Connection reset|RemoteDisconnected|"
    r"Max retries exceeded|ProxyError|timed out|Temporary failure in name resolution",
    re.I,
)
UNAUTHORIZED = re.compile(r"\b401\b|Unauthorized|authenticate|API credentials", re.I)

JSON_MARK = "MARSSEG-SUBMISSIONS "
# Run as `python -c CODE COMPETITION PAGE_SIZE`; attribute names from kagglesdk's ApiSubmission (2.2.4 / 0.1.37).
# It prints JSON_MARK itself, so the marker the parent looks for is written once.
LIST_SUBMISSIONS = (
    """
import json, sys
from kaggle.api.kaggle_api_extended import KaggleApi
api = KaggleApi()
api.authenticate()
rows = []
for s in api.competition_submissions(sys.argv[1], page_size=int(sys.argv[2])) or []:
    if s is None:
        continue
    rows.append({
        "ref": s.ref, "fileName": s.file_name or "", "date": s.date.isoformat() if s.date else "",
        "description": s.description or "", "status": getattr(s.status, "name", str(s.status or "")),
        "publicScore": s.public_score or "", "privateScore": s.private_score or "",
        "errorDescription": s.error_description or "", "totalBytes": s.total_bytes,
    })
"""
    + f"print({JSON_MARK!r} + json.dumps(rows))\n"
)


def json_rows(out: str, what: str) -> list[dict]:
    """The rows of a `kaggle … --format json` answer: the JSON list after whatever the CLI prints first (e.g.
    'Next Page Token = …'), non-object rows dropped; [] for 'No … found'; KaggleError for anything else."""
    start = out.find("[")
    if start < 0:
        if re.search(r"No \w+ found", out):
            return []
        raise KaggleError(f"kaggle {what}: unexpected answer: {summarise(out)}")
    try:
        value = json.loads(out[start:])
    except json.JSONDecodeError:
        raise KaggleError(f"kaggle {what}: unreadable JSON answer: {summarise(out)}") from None
    return [row for row in value if isinstance(row, dict)] if isinstance(value, list) else []


def summarise(output: str) -> str:
    """The informative last line of a CLI answer (not a traceback frame), shortened."""
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(('File "', "Traceback", "^", "~"))]
    line = (useful or lines or ["no output"])[-1]
    return line if len(line) <= 300 else line[:300] + "…"
