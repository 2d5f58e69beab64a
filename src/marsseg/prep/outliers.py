"""Automatic outlier detection for the training set, with a report that says why each image went.

No index lists: the evidence is computed from the data.

1. Duplicate masks: a non-trivial label mask shared exactly by >= `min_duplicate_masks` images
   marks all of them (the real set's 110 'alien' images share one mask).
2. Template matching: the mean image of each duplicate group, restricted to the pixels where the group
   agrees with itself far more than ordinary images do, is correlated with every image; a normalised
   correlation >= `template_threshold` marks an image even when its mask differs.
3. Image-space anomaly scores (PCA reconstruction error and k-NN distance to the unmarked images,
   on downsampled, per-image standardised pixels). They never remove an image on their own (unusual
   but genuine terrain scores high too); they only lower the template bar by `template_support_margin`
   for images that are also anomalous, and they are reported as suspects.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from marsseg.config import CleanConfig

_DOWNSAMPLE = 4  # 64x128 -> 16x32 for the anomaly scores
_REGION_STD_RATIO = 0.5  # template pixels: group spread below half the ordinary images' spread
_MIN_REGION_SHARE = 0.02  # fewer template pixels than this share -> use the whole image
_TEMPLATE_ROUNDS = 3


@dataclass
class OutlierReport:
    n_images: int
    removed: np.ndarray  # sorted indices into the input images
    evidence: dict[int, list[str]]  # removed index -> the evidence that fired
    scores: dict[str, np.ndarray]  # per image: template_corr, pca_error, knn_distance, anomaly
    duplicate_groups: list[dict]  # {"mask_sha1", "size", "indices", "template_pixels"}
    suspects: np.ndarray  # anomalous images that were kept (reported only)
    thresholds: dict = field(default_factory=dict)

    @property
    def kept(self) -> np.ndarray:
        return np.setdiff1d(np.arange(self.n_images), self.removed)

    def to_json(self, truth: np.ndarray | None = None) -> dict:
        out = {
            "n_images": self.n_images,
            "n_removed": int(len(self.removed)),
            "n_kept": int(self.n_images - len(self.removed)),
            "thresholds": self.thresholds,
            "duplicate_groups": self.duplicate_groups,
            "removed": [
                {
                    "index": int(i),
                    "evidence": self.evidence[int(i)],
                    **{name: _finite(values[i]) for name, values in self.scores.items()},
                }
                for i in self.removed
            ],
            "suspects_kept": [
                {"index": int(i), **{name: _finite(values[i]) for name, values in self.scores.items()}}
                for i in self.suspects
            ],
        }
        if truth is not None:
            out["truth"] = precision_recall(self.removed, truth)
        return out


def _finite(value) -> float | None:
    value = float(value)
    return round(value, 5) if np.isfinite(value) else None


def precision_recall(found, truth) -> dict:
    found, truth = set(map(int, found)), set(map(int, truth))
    hits = len(found & truth)
    precision = hits / len(found) if found else (1.0 if not truth else 0.0)
    recall = hits / len(truth) if truth else 1.0
    return {
        "precision": precision,
        "recall": recall,
        "true_positives": hits,
        "false_positives": sorted(found - truth),
        "missed": sorted(truth - found),
    }


def find_outliers(images: np.ndarray, masks: np.ndarray, cfg: CleanConfig = CleanConfig()) -> OutlierReport:
    """Outliers of a training set (images, masks: (N, H, W)); see the module docstring for the rules."""
    n = len(images)
    groups = duplicate_mask_groups(masks, cfg.min_duplicate_masks)
    by_mask = np.zeros(n, bool)
    for group in groups:
        by_mask[group["indices"]] = True

    template_corr = np.zeros(n, np.float32)
    for group in groups:
        # Rebuild the template from everything it has matched so far: a few seed images make a noisy
        # template, the matches make a clean one. Stops when the set of matches stops changing.
        members = group["indices"]
        for _ in range(_TEMPLATE_ROUNDS):
            corr, region = template_correlation(images, members, ~by_mask)
            matched = np.union1d(group["indices"], np.flatnonzero(corr >= cfg.template_threshold))
            if np.array_equal(matched, members):
                break
            members = matched
        group["template_pixels"] = int(region.sum())
        group["template_matches"] = int((corr >= cfg.template_threshold).sum())
        template_corr = np.maximum(template_corr, corr)

    reference = ~(by_mask | (template_corr >= cfg.template_threshold))
    pca_error, knn_distance = anomaly_scores(images, reference, cfg.pca_components, cfg.knn_neighbours)
    anomaly = _robust_z(pca_error, reference) + _robust_z(knn_distance, reference)
    anomaly_cut = float(np.quantile(anomaly[reference], cfg.anomaly_quantile)) if reference.any() else np.inf
    anomalous = anomaly > anomaly_cut

    by_template = template_corr >= cfg.template_threshold
    by_support = (template_corr >= cfg.template_threshold - cfg.template_support_margin) & anomalous & ~by_template
    removed_mask = by_mask | by_template | by_support
    evidence = {}
    for i in np.flatnonzero(removed_mask):
        fired = [
            name
            for name, hit in (
                ("duplicate_mask", by_mask[i]),
                ("template", by_template[i]),
                ("template+anomaly", by_support[i]),
                ("anomaly", anomalous[i]),
            )
            if hit
        ]
        evidence[int(i)] = fired
    for group in groups:
        group["indices"] = [int(i) for i in group["indices"]]
    return OutlierReport(
        n_images=n,
        removed=np.flatnonzero(removed_mask),
        evidence=evidence,
        scores={
            "template_corr": template_corr,
            "pca_error": pca_error,
            "knn_distance": knn_distance,
            "anomaly": anomaly,
        },
        duplicate_groups=groups,
        suspects=np.flatnonzero(anomalous & ~removed_mask),
        thresholds={
            "min_duplicate_masks": cfg.min_duplicate_masks,
            "template": cfg.template_threshold,
            "template_with_anomaly": cfg.template_threshold - cfg.template_support_margin,
            "anomaly": anomaly_cut,
            "anomaly_quantile": cfg.anomaly_quantile,
        },
    )


def duplicate_mask_groups(masks: np.ndarray, min_count: int) -> list[dict]:
    """Groups of >= min_count images with byte-identical masks, skipping one-class masks.

    A mask of a single label (all soil, all background) repeats by chance, not by copying.
    """
    buckets: dict[str, list[int]] = {}
    for i, mask in enumerate(masks):
        if mask.min() == mask.max():
            continue
        digest = hashlib.sha1(np.ascontiguousarray(mask).tobytes()).hexdigest()
        buckets.setdefault(digest, []).append(i)
    groups = [
        {"mask_sha1": digest, "size": len(idx), "indices": np.asarray(idx, np.int64)}
        for digest, idx in buckets.items()
        if len(idx) >= max(2, min_count)
    ]
    return sorted(groups, key=lambda g: -g["size"])


def template_correlation(images: np.ndarray, members, ordinary: np.ndarray, chunk: int = 512):
    """Normalised correlation of every image with the mean of `members`, over the group's stable pixels.

    Returns (corr (N,), region (H, W) bool).
    """
    group = images[members].astype(np.float32)
    template = group.mean(axis=0)
    ordinary_idx = np.flatnonzero(ordinary)
    if len(ordinary_idx) >= 2:
        spread = images[ordinary_idx[:2048]].astype(np.float32).std(axis=0)
        region = group.std(axis=0) < _REGION_STD_RATIO * np.maximum(spread, 1e-3)
    else:
        region = np.ones(template.shape, bool)
    if region.mean() < _MIN_REGION_SHARE:
        region = np.ones(template.shape, bool)
    t = template[region]
    t = t - t.mean()
    t /= np.linalg.norm(t) + 1e-6
    corr = np.empty(len(images), np.float32)
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk][:, region].astype(np.float32)
        x -= x.mean(axis=1, keepdims=True)
        x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-6
        corr[start : start + chunk] = x @ t
    return corr, region


def _features(images: np.ndarray) -> np.ndarray:
    n, h, w = images.shape
    f = _DOWNSAMPLE
    small = images[:, : h // f * f, : w // f * f].astype(np.float32)
    small = small.reshape(n, h // f, f, w // f, f).mean(axis=(2, 4)).reshape(n, -1)
    # Remove the exposure offset only: dividing by each image's spread would hide a large bright sprite.
    small -= small.mean(axis=1, keepdims=True)
    return small


def anomaly_scores(images: np.ndarray, reference: np.ndarray, components: int, neighbours: int):
    """PCA reconstruction error and mean distance to the k nearest reference images (self excluded).

    Both are fitted on the reference images only and scaled per feature (divided by sqrt(#features)).
    """
    # Imported here: scikit-learn is heavy, and commands that clean nothing (validate, score) must start fast.
    from sklearn.decomposition import PCA
    from sklearn.neighbors import NearestNeighbors

    x = _features(images)
    ref = np.flatnonzero(reference)
    if len(ref) < 3:
        return np.zeros(len(images), np.float32), np.zeros(len(images), np.float32)
    scale = np.sqrt(x.shape[1])
    k = int(min(components, len(ref) - 1, x.shape[1]))
    # The exact LAPACK solver: deterministic with no seed to carry, and quick on (N, 512) features.
    pca = PCA(n_components=k, svd_solver="full").fit(x[ref])
    pca_error = np.linalg.norm(x - pca.inverse_transform(pca.transform(x)), axis=1) / scale

    kk = int(min(neighbours, len(ref) - 1))
    # Brute force: exact at 512 dimensions, and scikit-learn bounds its memory by working in chunks.
    index = NearestNeighbors(n_neighbors=kk, algorithm="brute").fit(x[ref])
    knn = np.empty(len(images), np.float32)
    knn[ref] = index.kneighbors()[0].mean(axis=1)  # no query: a reference point is not its own neighbour
    others = np.flatnonzero(~np.asarray(reference, bool))
    if len(others):
        knn[others] = index.kneighbors(x[others])[0].mean(axis=1)
    return pca_error.astype(np.float32), knn / np.float32(scale)


def _robust_z(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(values - median) / (1.4826 MAD), both over the reference images. Plain numpy: scikit-learn's RobustScaler
    scales by the interquartile range, not the MAD, and these four lines need no library."""
    ref = values[reference] if reference.any() else values
    median = np.median(ref)
    mad = np.median(np.abs(ref - median)) * 1.4826 + 1e-6
    return ((values - median) / mad).astype(np.float32)
