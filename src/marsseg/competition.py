"""The competition's facts in one profile, so a similar competition needs a new profile, not edits."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from marsseg.errors import ConfigError

SCORING_RULES = ("keras", "scored")


@dataclass(frozen=True)
class Competition:
    slug: str
    title: str
    height: int
    width: int
    class_names: tuple[str, ...]
    ignored_class: int | None
    # The layout the competition's scorer takes: "pixels" (id,0..H*W-1) or "rle" (id,EncodedPixels).
    submission_layout: str
    data_filename: str
    # How the scorer averages (see `submission/scoring.py`): "keras" is `keras.metrics.MeanIoU(num_classes,
    # ignore_class=ignored_class)`, the course's starter code; "scored" is the mean over the scored classes alone.
    scoring_rule: str = "keras"
    # Images in the competition's test set: a submission with any other count is refused before upload.
    test_images: int | None = None
    train_key: str = "training_set"
    test_key: str = "test_set"

    def __post_init__(self):
        if self.scoring_rule not in SCORING_RULES:
            raise ConfigError(f"scoring_rule {self.scoring_rule!r}: use one of {', '.join(SCORING_RULES)}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def scored_classes(self) -> tuple[int, ...]:
        return tuple(c for c in range(self.num_classes) if c != self.ignored_class)

    @property
    def pixels(self) -> int:
        return self.height * self.width

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)


MARS = Competition(
    slug="an-2-dl-2024-2025-homework-2",
    title="Mars terrain segmentation (AN2DL 2024-2025, homework 2)",
    height=64,
    width=128,
    class_names=("background", "soil", "bedrock", "sand", "big rock"),
    ignored_class=0,
    # The course's starter notebook and every public solution wrote this layout.
    submission_layout="pixels",
    data_filename="mars_for_students.npz",
    # The course's starter code scores with keras.metrics.MeanIoU(num_classes=5, ignore_class=0): the
    # leaderboard's most likely rule (shared/kaggle-api.md, "The scorer").
    scoring_rule="keras",
    test_images=10022,
)


# The same competition with a 32-image test set: what the emulator serves to fast tests (its small synthetic data).
# A dry run selects it with MARSSEG_PROFILE=mars-mini (`marsseg emulator --profile mars-mini --print-env` says so).
MARS_MINI = replace(MARS, test_images=32)

PROFILES = {MARS.slug: MARS, "mars": MARS, "mars-mini": MARS_MINI}
PROFILE_ENV = "MARSSEG_PROFILE"


def get_competition(name: str) -> Competition:
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(f"unknown competition profile {name!r}; known: {', '.join(sorted(PROFILES))}") from None


def active_competition() -> Competition:
    """The profile the Kaggle commands check submissions against: $MARSSEG_PROFILE, else the real competition."""
    return get_competition(os.environ.get(PROFILE_ENV) or MARS.slug)
