"""The optimizer and the learning-rate schedule (`training.optimizer`)."""

import pytest

from marsseg.config import TrainConfig
from marsseg.errors import ConfigError
from marsseg.training.optimizer import make_optimizer, schedule_callbacks, warmup_cosine


def test_warmup_cosine_ramps_up_then_decays_to_the_floor():
    lrs = [warmup_cosine(e, 1e-3, warmup=2, total=10) for e in range(12)]
    assert lrs[0] < lrs[1] < lrs[2] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:]))
    assert lrs[10] == pytest.approx(1e-5) and lrs[11] == pytest.approx(1e-5)


def test_an_unknown_optimizer_or_schedule_is_a_config_error():
    with pytest.raises(ConfigError):
        make_optimizer(TrainConfig(optimizer="sgd"))
    with pytest.raises(ConfigError):
        schedule_callbacks(TrainConfig(schedule="step"), "val_miou")
