"""Stand-ins for training, shared by the pipeline tests."""

from typing import NamedTuple

import numpy as np


class FitResult(NamedTuple):
    """What `stage1_folds` reads from a fit: the model (any stand-in), its seconds and epochs."""

    model: object = None
    seconds: float = 0.0
    epochs_run: int = 1


def seeded_fake_fit(monkeypatch, calls=None):
    """Replace training with an untrained network, initialised from the fit's seed (so two runs build the same
    models); each call's arguments are appended to `calls` where given. A residual stage 2 then returns its input
    probabilities unchanged."""
    import keras

    import marsseg.training.fit as train
    from marsseg.models import build_unet

    def fit(stage_cfg, data, **kwargs):
        if calls is not None:
            calls.append(
                {
                    "train_images": data.train_images,
                    "train_masks": data.train_masks,
                    "val_x": data.val_x,
                    "train_extras": data.train_extras,
                    "train_weights": data.train_weights,
                }
            )
            calls[-1].update(kwargs)
        keras.utils.set_random_seed(kwargs["seed"])
        model = build_unet(stage_cfg.model, data.val_x.shape[-1], name=kwargs.get("name", "stage"))
        return train.StageResult(
            model, {"loss": [1.0], "val_miou": [0.1]}, 0.1, 1, 1, 0.01, 100.0, "epochs", extra={"epoch_seconds": [0.01]}
        )

    monkeypatch.setattr(train, "fit_stage", fit)


def flip_tta(predict, x):
    """The mean of predict(x) and the unflipped predict(flip(x)), written out independently of the package."""
    return 0.5 * (predict(x) + predict(np.ascontiguousarray(x[:, :, ::-1]))[:, :, ::-1])


def capture_state(monkeypatch):
    """The run's `Run` object, appended to the returned list when it reaches `finish`."""
    from marsseg.pipeline.run import Run

    runs = []
    finish = Run.finish
    monkeypatch.setattr(Run, "finish", lambda self: (runs.append(self), finish(self)))
    return runs
