"""Find, load and strictly validate the competition's npz file."""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from marsseg.competition import MARS, Competition
from marsseg.errors import DataError
from marsseg.files import atomic_save_npz

KAGGLE_INPUT = Path("/kaggle/input")


@dataclass(frozen=True)
class Dataset:
    images: np.ndarray  # (N, H, W) uint8
    masks: np.ndarray  # (N, H, W) uint8, values 0..num_classes-1
    test_images: np.ndarray  # (M, H, W) uint8
    source: Path

    @property
    def n_train(self) -> int:
        return len(self.images)

    @property
    def n_test(self) -> int:
        return len(self.test_images)


def find_data(
    explicit: str | os.PathLike | None = None,
    competition: Competition = MARS,
    search_dirs: tuple[Path, ...] = (Path("data"), KAGGLE_INPUT),
) -> Path:
    """An explicit path, else `data/<file>`, else anywhere under /kaggle/input."""
    if explicit:
        path = Path(explicit)
        if not path.exists():
            raise DataError(
                f"{path}: no such file; pass the path of {competition.data_filename} (make data fetches it)"
            )
        if path.is_dir():
            return find_data(None, competition, (path,))
        return path
    for directory in search_dirs:
        direct = directory / competition.data_filename
        if direct.is_file():
            return direct
        if directory.is_dir():
            found = sorted(directory.rglob(competition.data_filename))
            if found:
                return found[0]
    where = ", ".join(str(d) for d in search_dirs)
    raise DataError(
        f"{competition.data_filename} not found in {where}; put it in data/ or pass --data PATH "
        f"(`make data` downloads it with Kaggle credentials, `marsseg synth` makes a synthetic stand-in)"
    )


def load_dataset(path: str | os.PathLike, competition: Competition = MARS) -> Dataset:
    """Load and validate; every problem raises DataError naming the file and the fault."""
    path = Path(path)
    train = _read_array(path, competition.train_key)
    test = _read_array(path, competition.test_key)
    h, w = competition.shape
    expected_train = f"(N, 2, {h}, {w})"
    if train.ndim != 4 or train.shape[1:] != (2, h, w):
        raise DataError(f"{path}: {competition.train_key} has shape {train.shape}, expected {expected_train}")
    if test.ndim != 3 or test.shape[1:] != (h, w):
        raise DataError(f"{path}: {competition.test_key} has shape {test.shape}, expected (M, {h}, {w})")
    if len(train) == 0:
        raise DataError(f"{path}: {competition.train_key} is empty (0 images)")
    if len(test) == 0:
        raise DataError(f"{path}: {competition.test_key} is empty (0 images)")
    images = _as_uint8(path, competition.train_key + " images", train[:, 0], 255)
    masks = _as_uint8(path, competition.train_key + " labels", train[:, 1], competition.num_classes - 1)
    test_images = _as_uint8(path, competition.test_key, test, 255)
    return Dataset(images=images, masks=masks, test_images=test_images, source=path)


def train_sha256(images: np.ndarray, masks: np.ndarray) -> str:
    """sha256 of the training images and masks (shapes, then bytes): the same training set gives the same value
    whatever the file's name, compression or test set (40 ms for 2615 images)."""
    digest = hashlib.sha256(repr((images.shape, masks.shape)).encode())
    for array in (images, masks):
        digest.update(memoryview(np.ascontiguousarray(array, np.uint8)).cast("B"))
    return digest.hexdigest()


def _read_array(path: Path, key: str) -> np.ndarray:
    _check_zip_magic(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            if key not in archive.files:
                have = ", ".join(archive.files) or "nothing"
                raise DataError(f"{path}: missing key {key!r} (the file has {have})")
            return archive[key]
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, not an npz file") from None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as exc:
        # np.load raises ValueError for a non-npz file and BadZipFile/EOFError/OSError for a truncated one.
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: not a readable npz file ({reason}); download it again or regenerate it") from None


def _check_zip_magic(path: Path) -> None:
    """np.load would try to unpickle a non-zip file; name the real problem instead."""
    try:
        with open(path, "rb") as handle:
            magic = handle.read(6)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, not an npz file") from None
    if magic.startswith(b"\x93NUMPY"):
        raise DataError(f"{path}: is a single-array .npy file, expected an .npz archive with named arrays")
    if not magic.startswith(b"PK"):
        what = "empty" if not magic else "not a zip archive"
        raise DataError(f"{path}: not an npz file ({what}); download it again or regenerate it")


def _as_uint8(path: Path, what: str, array: np.ndarray, maximum: int) -> np.ndarray:
    kind = array.dtype.kind
    if kind not in "uif":
        raise DataError(f"{path}: {what} have dtype {array.dtype}, expected uint8 (or numbers 0–{maximum})")
    if kind == "f":
        if not np.isfinite(array).all():
            raise DataError(f"{path}: {what} contain NaN or infinite values")
        if not np.array_equal(array, np.round(array)):
            raise DataError(f"{path}: {what} contain non-integer values, expected whole numbers 0–{maximum}")
    low, high = array.min(), array.max()
    if low < 0 or high > maximum:
        what_range = "labels" if maximum < 255 else "pixel values"
        raise DataError(f"{path}: {what} have {what_range} {low:g}..{high:g}, outside 0–{maximum}")
    return np.ascontiguousarray(array, dtype=np.uint8)


def save_dataset(path, images, masks, test_images, competition: Competition = MARS) -> Path:
    """Write the competition's schema: training_set (N,2,H,W) uint8, test_set (M,H,W) uint8."""

    train = np.stack([images, masks], axis=1).astype(np.uint8)
    return atomic_save_npz(path, **{competition.train_key: train, competition.test_key: test_images.astype(np.uint8)})


def load_masks(path: str | os.PathLike, key: str = "masks", competition: Competition = MARS) -> np.ndarray:
    """(N, H, W) integer label masks for `marsseg encode`, validated like the dataset's labels."""
    path = Path(path)
    masks = _read_array(path, key)
    h, w = competition.shape
    if masks.ndim != 3 or masks.shape[1:] != (h, w):
        raise DataError(f"{path}: {key} has shape {masks.shape}, expected (N, {h}, {w})")
    if len(masks) == 0:
        raise DataError(f"{path}: {key} is empty (0 masks)")
    return _as_uint8(path, key, masks, competition.num_classes - 1)
