"""Finding, loading and validating the competition file; synthetic Mars data."""
