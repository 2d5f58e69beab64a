"""Errors a user can fix. The CLI prints their message on one line and exits with status 2."""


class UserError(Exception):
    """Bad input or environment: the message says what is wrong and how to fix it."""

    exit_code = 2


class DataError(UserError):
    """A dataset file is missing, unreadable or violates the competition schema."""


class SubmissionError(UserError):
    """A submission CSV is malformed; the message names the row."""


class ConfigError(UserError):
    """An unknown preset, key or value in the configuration."""


class EnsembleError(UserError):
    """A run folder cannot be combined: missing, incomplete, or on another hold-out than the others."""
