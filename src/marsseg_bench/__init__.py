"""`make bench`: the runner, its sections and reference implementations (not part of the kit)."""
