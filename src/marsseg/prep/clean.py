"""Outlier cleaning at the dataset level: `marsseg clean` and the figure of the removed images.

Kept here: clean_dataset, load_truth, run_clean, bigrock_path, plot_removed. The evidence (duplicate masks,
template matching, anomaly scores) and OutlierReport live in `marsseg.prep.outliers`; the names callers
import from this module are re-exported below.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np

from marsseg.config import CleanConfig
from marsseg.data.load import _read_array, load_dataset, save_dataset
from marsseg.errors import DataError
from marsseg.files import atomic_write_bytes, atomic_write_json
from marsseg.prep.bigrock import bigrock_copies, save_bigrock
from marsseg.prep.outliers import OutlierReport as OutlierReport
from marsseg.prep.outliers import _features as _features
from marsseg.prep.outliers import anomaly_scores as anomaly_scores
from marsseg.prep.outliers import duplicate_mask_groups as duplicate_mask_groups
from marsseg.prep.outliers import find_outliers as find_outliers
from marsseg.prep.outliers import precision_recall as precision_recall
from marsseg.prep.outliers import template_correlation as template_correlation


# ------------------------------------------------------------------------- dataset level
def clean_dataset(images: np.ndarray, masks: np.ndarray, cfg: CleanConfig = CleanConfig()):
    """(kept images, kept masks, report). With cfg.enabled false nothing is removed."""
    if not cfg.enabled:
        n = len(images)
        report = OutlierReport(n, np.zeros(0, np.int64), {}, {}, [], np.zeros(0, np.int64), {"enabled": False})
        return images, masks, report
    report = find_outliers(images, masks, cfg)
    kept = report.kept
    return images[kept], masks[kept], report


def load_truth(path) -> np.ndarray:
    truth = _read_array(path, "outlier_indices")
    if truth.ndim != 1 or truth.dtype.kind not in "iu":
        raise DataError(f"{path}: outlier_indices must be a 1-D integer array, got {truth.dtype} {truth.shape}")
    return truth.astype(np.int64)


def run_clean(
    data_path, out_path, cfg, report_dir=None, truth_path=None, augment_bigrock: bool = False, log=print
) -> dict:
    """`marsseg clean`: write the cleaned dataset (test set untouched), the report and, optionally,
    offline big-rock copies next to it. Returns the report's JSON dict."""
    started = time.perf_counter()
    dataset = load_dataset(data_path)
    truth = load_truth(truth_path) if truth_path else None
    if truth is not None and len(truth) and (truth.min() < 0 or truth.max() >= dataset.n_train):
        raise DataError(
            f"{truth_path}: outlier_indices run to {truth.max()}, but {data_path} has {dataset.n_train} "
            "training images; pass the truth file written with this dataset"
        )
    images, masks, report = clean_dataset(dataset.images, dataset.masks, cfg.clean)
    save_dataset(out_path, images, masks, dataset.test_images)
    summary = report.to_json(truth)
    summary.update(
        {
            "source": str(dataset.source),
            "output": str(out_path),
            "kept_indices": report.kept.tolist(),
            "seconds": round(time.perf_counter() - started, 3),
        }
    )
    log(
        f"removed {len(report.removed)} of {report.n_images} training images "
        f"({len(report.duplicate_groups)} duplicate-mask group(s), "
        f"{len(report.suspects)} anomalous image(s) kept as suspects); "
        f"wrote {out_path} ({len(images)} train, {dataset.n_test} test) in {summary['seconds']:.1f}s"
    )
    if truth is not None:
        t = summary["truth"]
        log(
            f"against {truth_path}: precision {t['precision']:.4f}  recall {t['recall']:.4f}  "
            f"({t['true_positives']} of {len(truth)} planted outliers found, "
            f"{len(t['false_positives'])} false positives)"
        )
    if augment_bigrock:
        copies = bigrock_copies(images, masks, cfg.augment.bigrock_offline_copies, seed=cfg.seed)
        path = bigrock_path(out_path)
        save_bigrock(path, copies)
        summary["bigrock"] = {
            "path": str(path),
            "copies": int(len(copies.images)),
            "source_images": int(len(np.unique(copies.source_index))),
        }
        log(
            f"wrote {path}: {len(copies.images)} augmented copies of "
            f"{summary['bigrock']['source_images']} big-rock images"
        )
    if report_dir:
        report_dir = Path(report_dir)
        atomic_write_json(report_dir / "outliers.json", summary)
        plot_removed(dataset.images, dataset.masks, report, report_dir / "removed.png")
        log(f"report: {report_dir / 'outliers.json'}, {report_dir / 'removed.png'}")
    return summary


def bigrock_path(out_path):
    out_path = Path(out_path)
    return out_path.with_name(out_path.stem + ".bigrock.npz")


def plot_removed(images, masks, report: OutlierReport, path, limit: int = 40):
    """A grid of removed images, each above its mask; at most `limit`, the count in the title."""
    import matplotlib  # heavy: only when a report is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = report.removed[:limit]
    cols = 8
    rows = max(1, int(np.ceil(len(chosen) / cols)))
    fig, axes = plt.subplots(2 * rows, cols, figsize=(cols * 2.0, rows * 2.2), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for k, i in enumerate(chosen):
        r, c = divmod(k, cols)
        axes[2 * r, c].imshow(images[i], cmap="gray", vmin=0, vmax=255)
        axes[2 * r, c].set_title(f"#{i} {','.join(e for e in report.evidence[int(i)] if e != 'anomaly')}", fontsize=6)
        axes[2 * r + 1, c].imshow(masks[i], cmap="viridis", vmin=0, vmax=4, interpolation="nearest")
    shown = f"first {len(chosen)} of " if len(report.removed) > len(chosen) else ""
    fig.suptitle(
        f"removed training images ({shown}{len(report.removed)} of {report.n_images}): image above mask", fontsize=9
    )
    if not len(chosen):
        axes[0, 0].text(0, 0.5, "no image removed", fontsize=9)
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())
