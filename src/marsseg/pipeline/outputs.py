"""What a run leaves in its folder, and nothing else (the Kaggle kernel's /kaggle/working is that folder):

    submission.csv          the competition profile's layout (`pixels` here): what Kaggle's Submit button takes
    submission_rle.csv      the same labels run-length encoded (a fraction of the size)
    model_stage1_fold<k>.keras, model_stage2.keras   one per trained fold model, and stage 2 when trained
    config.json, metrics.json, curves_stage1.png, curves_stage2.png, samples.png

Both CSVs are read back and validated after every write. `submission.format` names the layout of the copy kept
under `submissions/` (the local history; RLE by default, a seventh of the pixels file). If stage 1 itself crashes,
`fallback_submission` writes both CSVs from the network-free nearest-centroid model first, and `run` then raises
`Stage1Failed`, so a crash never looks like a finished run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from marsseg.competition import MARS, Competition
from marsseg.files import atomic_write_bytes
from marsseg.submission.formats import read_submission, write_submission

SUBMISSION = "submission.csv"
SUBMISSION_RLE = "submission_rle.csv"
STAGE2_MODEL = "model_stage2.keras"
FIGURES = ("curves_stage1.png", "curves_stage2.png", "samples.png")
RECORDS = ("config.json", "metrics.json")


class Stage1Failed(RuntimeError):
    """Stage 1 crashed; the fallback submission (if `submission` is not None) and metrics.json are written."""

    def __init__(self, message: str, metrics: dict, submission: Path | None):
        super().__init__(message)
        self.metrics, self.submission = metrics, submission


def stage1_model_name(fold: int) -> str:
    """File name of fold `fold`'s (0-based) stage-1 model."""
    return f"model_stage1_fold{fold + 1}.keras"


def expected_names(folds: list[int], stage2: bool) -> set[str]:
    """Every file a finished run may write: the contract the tests hold a run folder to."""
    names = {SUBMISSION, SUBMISSION_RLE, *RECORDS, *FIGURES, *map(stage1_model_name, folds)}
    return names | ({STAGE2_MODEL} if stage2 else set())


def write_submissions(out_dir: Path, labels: np.ndarray, competition: Competition = MARS) -> dict[str, str]:
    """submission.csv in the profile's layout and submission_rle.csv, each read back and validated against the
    number of test images; returns {file name: layout}."""
    written = {SUBMISSION: competition.submission_layout, SUBMISSION_RLE: "rle"}
    for name, layout in written.items():
        path = write_submission(Path(out_dir) / name, labels, layout, competition)
        info = read_submission(path, len(labels), competition)
        if info.layout != layout:  # the header decides the layout a reader sees
            raise AssertionError(f"{path}: wrote {layout}, reads back as {info.layout}")
    return written


def copy_submission(out_dir: Path, submissions_dir, layout: str, name: str, competition: Competition = MARS) -> Path:
    """A copy of the run's submission in `layout` (`submission.format`) as `submissions_dir/name`."""
    source = Path(out_dir) / (SUBMISSION if layout == competition.submission_layout else SUBMISSION_RLE)
    return atomic_write_bytes(Path(submissions_dir) / name, source.read_bytes())


def save_models(out_dir: Path, named_models: dict) -> list[str]:
    """Each model as `out_dir/<name>` through `training.saved` (atomic); returns the names written."""
    from marsseg.training.saved import save_run_model

    for name, model in named_models.items():
        save_run_model(model, Path(out_dir) / name)
    return list(named_models)


def output_files(out_dir: Path) -> dict:
    """{file name: bytes} of the run folder, and the total (metrics.json, written last, holds this table and is
    not in it)."""
    files = {p.name: p.stat().st_size for p in sorted(Path(out_dir).iterdir()) if p.is_file()}
    files.pop("metrics.json", None)
    return {"files": files, "total_bytes": int(sum(files.values()))}


def fallback_submission(
    images: np.ndarray, masks: np.ndarray, test_images: np.ndarray, out_dir: Path, competition: Competition = MARS
) -> dict[str, str]:
    """The network-free nearest-centroid model (`baseline`) fitted on the cleaned training images, its test-set
    labels written as both submissions and validated."""
    from marsseg.pipeline.baseline import fit_centroids, predict_centroids

    model = fit_centroids(images, masks, competition)
    return write_submissions(out_dir, predict_centroids(test_images, model, competition), competition)
