"""The Kaggle side of a snapshot: the kit's Kaggle session, with the leaderboard and submission
listings read page by page from the CLI's JSON output."""

from __future__ import annotations

import re
import sys

from marsseg.kaggle.answers import json_rows
from marsseg.kaggle.client import KaggleSession


class PagedKaggle:
    """The fetcher `snapshot` uses: a KaggleSession's leaderboard and submission listings with every page.
    The 2.2.4 CLI asks for 20 rows unless told otherwise, which would hide a team ranked below 20th; it
    prints 'Next Page Token = …' before the JSON when the leaderboard has more."""

    def __init__(self, session, page_size: int = 100, max_pages: int = 100):
        self.session, self.page_size, self.max_pages = session, page_size, max_pages

    @property
    def endpoint(self):
        return getattr(self.session, "endpoint", None)

    def username(self) -> str:
        return self.session.username()

    def leaderboard(self, competition: str) -> list[dict]:
        rows, token = [], ""
        for _ in range(self.max_pages):
            args = [
                "competitions",
                "leaderboard",
                "-c",
                competition,
                "--show",
                "--format",
                "json",
                "--page-size",
                str(self.page_size),
            ] + (["--page-token", token] if token else [])
            out = self.session.kaggle(*args, what="competitions leaderboard")
            rows += json_rows(out, "competitions leaderboard")
            found = re.search(r"Next Page Token = (\S+)", out)
            if not found or found.group(1) == token:
                break
            token = found.group(1)
        return rows

    def submissions(self, competition: str) -> list[dict]:
        # Newest first; older ones are in the history already, and a scored submission does not change.
        out = self.session.kaggle(
            "competitions",
            "submissions",
            "-c",
            competition,
            "--format",
            "json",
            "--page-size",
            str(self.page_size),
            what="competitions submissions",
        )
        return json_rows(out, "competitions submissions")


def open_session() -> PagedKaggle:
    """The kit's Kaggle session (real Kaggle, or the emulator MARSSEG_KAGGLE_ENDPOINT names), paged."""
    return PagedKaggle(KaggleSession(log=lambda line: print(line, file=sys.stderr)))
