"""The Kaggle-path tests' emulator: in process, on a free loopback port, the 32-image profile."""

import pytest

from tests.helpers.kaggle_support import running_emulator


@pytest.fixture
def emulator(tmp_path):
    with running_emulator(tmp_path / "emulator") as server:  # synthetic data and truth
        yield server
