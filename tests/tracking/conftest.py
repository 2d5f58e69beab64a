"""The tracking tests' shared fixture: a history of three scripted snapshots."""

import pytest

from tests.helpers.tracking_fakes import ScriptedKaggle, take, three_steps


@pytest.fixture
def three_snapshots(tmp_path):
    fake = ScriptedKaggle(three_steps())
    results = [take(fake, tmp_path, 1), take(fake.advance(), tmp_path, 2), take(fake.advance(), tmp_path, 3)]
    return tmp_path, results
