"""The competition's facts in one profile, so a similar competition needs a new profile, not edits."""

from __future__ import annotations

from dataclasses import dataclass

from marsseg.errors import ConfigError


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
    train_key: str = "training_set"
    test_key: str = "test_set"

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
)

PROFILES = {MARS.slug: MARS, "mars": MARS}


def get_competition(name: str) -> Competition:

    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(f"unknown competition profile {name!r}; known: {', '.join(sorted(PROFILES))}") from None
