"""Submission files (run-length and pixels layouts, validation, conversion) and the leaderboard metric."""
