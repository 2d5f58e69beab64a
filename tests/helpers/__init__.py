"""Helpers shared by the tests (and `make test-kaggle-image`)."""
