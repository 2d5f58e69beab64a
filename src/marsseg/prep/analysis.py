"""Class statistics of a label set: pixel shares, image presence, intensity per class, loss weights."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from marsseg.competition import MARS, Competition
from marsseg.files import atomic_write_bytes, atomic_write_json


def class_stats(images: np.ndarray, masks: np.ndarray, competition: Competition = MARS) -> dict:
    """Per class: pixel share, share of images containing it, and intensity mean/std/quantiles."""
    k = competition.num_classes
    counts = np.bincount(masks.ravel(), minlength=k).astype(np.int64)
    present = np.stack([(masks == c).any(axis=(1, 2)) for c in range(k)], axis=1)
    sums = np.bincount(masks.ravel(), weights=images.ravel().astype(np.float64), minlength=k)
    squares = np.bincount(masks.ravel(), weights=images.ravel().astype(np.float64) ** 2, minlength=k)
    out = {"n_images": int(len(masks)), "n_pixels": int(masks.size), "classes": {}}
    for c in range(k):
        n = counts[c]
        mean = sums[c] / n if n else float("nan")
        std = np.sqrt(max(squares[c] / n - mean**2, 0.0)) if n else float("nan")
        out["classes"][competition.class_names[c]] = {
            "label": c,
            "pixel_share": float(n / masks.size),
            "image_share": float(present[:, c].mean()),
            "pixels": int(n),
            "intensity_mean": float(mean),
            "intensity_std": float(std),
        }
    return out


def class_weights(
    masks: np.ndarray,
    competition: Competition = MARS,
    power: float = 0.5,
    cap: float = 10.0,
    max_ratio: float | None = None,
) -> np.ndarray:
    """Inverse-frequency loss weights over the scored classes (ignored class 0), normalised to mean 1.

    The square root (power 0.5) tempers big rock's ~1% share so it is weighted up, not allowed to dominate.
    `max_ratio` caps the largest weight at that many times the smallest (the write-ups capped big rock at ~10x).
    """
    counts = np.bincount(masks.ravel(), minlength=competition.num_classes).astype(np.float64)
    return _weights_from_counts(counts, competition, power, cap, max_ratio)


def _weights_from_counts(
    counts: np.ndarray, competition: Competition, power: float, cap: float, max_ratio: float | None = None
) -> np.ndarray:
    scored = list(competition.scored_classes)
    freq = counts[scored] / max(counts[scored].sum(), 1)
    raw = np.where(freq > 0, (1.0 / np.maximum(freq, 1e-12)) ** power, 0.0)
    if max_ratio is not None and (raw > 0).any():
        raw = np.where(raw > 0, np.minimum(raw, raw[raw > 0].min() * max_ratio), 0.0)
    raw = np.minimum(raw / raw[raw > 0].mean(), cap) if (raw > 0).any() else np.ones(len(scored))
    weights = np.zeros(competition.num_classes)
    weights[scored] = raw / raw[raw > 0].mean()
    return weights


def format_table(stats: dict) -> str:
    lines = [f"{'class':<10} {'label':>5} {'pixels %':>9} {'images %':>9} {'mean':>7} {'std':>7}"]
    for name, row in stats["classes"].items():
        lines.append(
            f"{name:<10} {row['label']:>5} {100 * row['pixel_share']:>9.2f} {100 * row['image_share']:>9.1f} "
            f"{row['intensity_mean']:>7.1f} {row['intensity_std']:>7.1f}"
        )
    return "\n".join(lines)


def plot_class_stats(stats: dict, path, title: str = "") -> Path:
    """Bar chart PNG: pixel share and image share per class, side by side."""
    import matplotlib  # heavy: only when a chart is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(stats["classes"])
    pixel = [100 * stats["classes"][c]["pixel_share"] for c in names]
    image = [100 * stats["classes"][c]["image_share"] for c in names]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(7, 3.6))
    bars_p = ax.bar(x - 0.2, pixel, 0.4, label="pixels %")
    bars_i = ax.bar(x + 0.2, image, 0.4, label="images containing it %")
    for bars in (bars_p, bars_i):
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(x, [f"{c} ({stats['classes'][c]['label']})" for c in names])
    ax.set_ylabel("%")
    ax.set_ylim(0, 110)
    ax.legend(fontsize=8)
    ax.set_title(title or f"class distribution of {stats['n_images']} training images", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def write_class_report(stats: dict, directory, title: str = "") -> tuple:
    """class_stats.json and class_stats.png (with the loss weights) in `directory`."""
    directory = Path(directory)
    weights = class_weights_from_stats(stats)
    names = list(stats["classes"])
    json_path = atomic_write_json(
        directory / "class_stats.json",
        {**stats, "loss_weights": {names[c]: float(weights[c]) for c in range(len(names))}},
    )
    return json_path, plot_class_stats(stats, directory / "class_stats.png", title)


def class_weights_from_stats(
    stats: dict, competition: Competition = MARS, power: float = 0.5, cap: float = 10.0
) -> np.ndarray:
    """The same weights as `class_weights`, from a saved class analysis (pixel counts per class)."""
    counts = np.zeros(competition.num_classes)
    for row in stats["classes"].values():
        counts[row["label"]] = row["pixels"]
    return _weights_from_counts(counts, competition, power, cap)
