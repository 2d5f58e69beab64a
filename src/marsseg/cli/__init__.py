"""The `marsseg` command: argument parsing and one-line errors."""
