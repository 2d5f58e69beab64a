"""Leaderboard history: the store and its lock, snapshots, links to runs, views, plots."""
