"""Run figures (matplotlib Agg, no display): training curves and sample predictions."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from marsseg.files import atomic_write_bytes

# Class colours: background black, soil brown, bedrock grey, sand yellow, big rock red.
PALETTE = np.array([[0, 0, 0], [150, 90, 40], [140, 140, 140], [230, 200, 80], [200, 40, 40]], np.uint8)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return atomic_write_bytes(path, buffer.getvalue())


def plot_curves(histories: dict[str, dict[str, list[float]]], path, title: str = "") -> Path:
    """Loss and validation mIoU per epoch, one line per labelled history (e.g. each fold)."""
    plt = _pyplot()
    fig, (ax_loss, ax_miou) = plt.subplots(1, 2, figsize=(10, 3.5))
    for label, history in histories.items():
        for key, ax, style in (("loss", ax_loss, "-"), ("val_loss", ax_loss, "--")):
            if history.get(key):
                ax.plot(range(1, len(history[key]) + 1), history[key], style, label=f"{label} {key}")
        miou = next((k for k in ("val_main_miou", "val_miou") if history.get(k)), None)
        if miou:
            ax_miou.plot(range(1, len(history[miou]) + 1), history[miou], marker="o", label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_miou.set(xlabel="epoch", ylabel="mIoU (classes 1-4)", title="validation mIoU")
    for ax in (ax_loss, ax_miou):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    out = _save(fig, Path(path))
    plt.close(fig)
    return out


def plot_samples(images, truth, columns: dict[str, np.ndarray], path, limit: int = 6) -> Path:
    """Rows of image | truth | each labelled prediction, for the first `limit` images."""
    plt = _pyplot()
    n = min(limit, len(images))
    names = ["image", "truth", *columns]
    fig, axes = plt.subplots(n, len(names), figsize=(2.6 * len(names), 1.5 * n), squeeze=False)
    for row in range(n):
        panels = [images[row], PALETTE[truth[row]], *(PALETTE[p[row]] for p in columns.values())]
        for col, panel in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(panel, cmap="gray" if col == 0 else None, vmin=0, vmax=255)
            ax.set_xticks([]), ax.set_yticks([])
            if row == 0:
                ax.set_title(names[col], fontsize=9)
    out = _save(fig, Path(path))
    plt.close(fig)
    return out
