"""Kaggle credentials, found the way the `kaggle` 2.2.4 client finds them, and the kit's Kaggle errors.

Order: an access token (KAGGLE_API_TOKEN, or ~/.kaggle/access_token), then username+key from kaggle.json in
KAGGLE_CONFIG_DIR (else ~/.kaggle, else $XDG_CONFIG_HOME/kaggle), overridden by KAGGLE_USERNAME/KAGGLE_KEY.
Missing ones stop the kit with one line saying how to provide them; keys never appear in a repr or a message.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from marsseg.errors import UserError

HOW_TO_CREDENTIALS = (
    "create an API token at kaggle.com → Settings → API and either save kaggle.json to ~/.kaggle/kaggle.json "
    "(chmod 600; or the folder KAGGLE_CONFIG_DIR names), or set KAGGLE_USERNAME and KAGGLE_KEY, or set KAGGLE_API_TOKEN"
)


class KaggleError(UserError):
    """A Kaggle call failed for good (after retries), or Kaggle answered something the kit cannot trust."""

    retryable = True  # False once the transport retries are spent: an outer retry loop must not multiply them

    def __init__(self, message: str, retryable: bool = True):
        super().__init__(message)
        self.retryable = retryable


class CredentialsError(KaggleError):
    """No Kaggle credentials on this machine."""


@dataclass(frozen=True)
class Credentials:
    source: str  # where they came from, safe to print
    username: str | None
    key: str = field(default="", repr=False)
    token: str = field(default="", repr=False)

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.key, self.token) if s)


def _read_token(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def find_credentials(env: dict | None = None, require: bool = True) -> Credentials | None:
    """The credentials the `kaggle` client would use, in its order; CredentialsError (exit 2) when none."""
    env = os.environ if env is None else env
    home = Path(env.get("HOME") or Path.home())
    token, source = env.get("KAGGLE_API_TOKEN", "").strip(), "KAGGLE_API_TOKEN"
    if token and Path(token).is_file():
        token = _read_token(Path(token))
    if not token:
        for name in ("access_token", "access_token.txt"):
            token, source = _read_token(home / ".kaggle" / name), f"~/.kaggle/{name}"
            if token:
                break
    username, key, json_source = None, "", ""
    for directory in _config_dirs(env, home):
        path = directory / "kaggle.json"
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                username, key = data.get("username") or None, data.get("key") or ""
            except (OSError, ValueError, AttributeError):
                raise CredentialsError(
                    f"{path}: not a readable kaggle.json; download a new one ({HOW_TO_CREDENTIALS})"
                ) from None
            json_source = str(path)
            break
    if env.get("KAGGLE_USERNAME"):
        username = env["KAGGLE_USERNAME"]
    if env.get("KAGGLE_KEY"):
        key, json_source = env["KAGGLE_KEY"], "KAGGLE_USERNAME/KAGGLE_KEY"
    if token:
        return Credentials(source, env.get("KAGGLE_USERNAME") or None, key=key, token=token)
    if username and key:
        return Credentials(json_source, username, key=key)
    if require:
        raise CredentialsError(f"no Kaggle credentials found: {HOW_TO_CREDENTIALS}")
    return None


def _config_dirs(env, home: Path) -> list[Path]:
    if env.get("KAGGLE_CONFIG_DIR"):
        return [Path(env["KAGGLE_CONFIG_DIR"])]
    dirs = [home / ".kaggle"]
    if env.get("XDG_CONFIG_HOME"):
        dirs.append(Path(env["XDG_CONFIG_HOME"]) / "kaggle")
    return dirs
