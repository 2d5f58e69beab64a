import numpy as np
import pytest

from marsseg.data.load import find_data, load_dataset, load_masks
from marsseg.errors import DataError
from tests.conftest import one_line_error, run_cli


def _write(path, **arrays):
    np.savez(path, **arrays)
    return path


def _good(n=3, m=2):
    rng = np.random.default_rng(0)
    train = np.stack([rng.integers(0, 256, (n, 64, 128)), rng.integers(0, 5, (n, 64, 128))], 1).astype(np.uint8)
    return train, rng.integers(0, 256, (m, 64, 128)).astype(np.uint8)


def test_loads_a_valid_file(tmp_path):
    train, test = _good()
    ds = load_dataset(_write(tmp_path / "ok.npz", training_set=train, test_set=test))
    assert ds.images.shape == (3, 64, 128) and ds.masks.max() <= 4 and ds.test_images.shape == (2, 64, 128)
    np.testing.assert_array_equal(ds.masks, train[:, 1])


def test_accepts_whole_number_floats(tmp_path):
    train, test = _good()
    ds = load_dataset(
        _write(tmp_path / "f.npz", training_set=train.astype(np.float32), test_set=test.astype(np.float64))
    )
    assert ds.images.dtype == np.uint8


train, test = _good()
BAD = {
    "missing key": (dict(training_set=train), "missing key 'test_set'"),
    "wrong rank": (dict(training_set=train[:, 0], test_set=test), "training_set has shape (3, 64, 128)"),
    "wrong shape": (dict(training_set=train[..., :64], test_set=test), "expected (N, 2, 64, 128)"),
    "wrong test shape": (dict(training_set=train, test_set=test[:, :32]), "test_set has shape (2, 32, 128)"),
    "wrong dtype": (dict(training_set=train.astype(bool), test_set=test), "dtype bool"),
    "labels out of range": (dict(training_set=np.where(train == 4, 7, train), test_set=test), "outside 0–4"),
    "nan": (dict(training_set=np.where(train == 1, np.nan, train.astype(float)), test_set=test), "NaN"),
    "inf": (dict(training_set=train, test_set=np.where(test == 3, np.inf, test.astype(float))), "NaN or infinite"),
    "fractional": (dict(training_set=train + 0.5, test_set=test), "non-integer"),
    "empty train": (dict(training_set=train[:0], test_set=test), "training_set is empty"),
    "empty test": (dict(training_set=train, test_set=test[:0]), "test_set is empty"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_every_bad_array_names_file_and_fault(case, tmp_path):
    arrays, message = BAD[case]
    path = _write(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError) as info:
        load_dataset(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_truncated_file(tmp_path):
    train, test = _good(20, 20)
    path = _write(tmp_path / "full.npz", training_set=train, test_set=test)
    cut = tmp_path / "cut.npz"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match="not a readable npz file"):
        load_dataset(cut)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty"),
        (b"hello, this is text", "not a zip archive"),
        (b"\x93NUMPY\x01\x00", "single-array .npy"),
    ],
)
def test_non_npz_files(tmp_path, content, message):
    path = tmp_path / "x.npz"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        load_dataset(path)


def test_find_data_search_order(tmp_path):
    with pytest.raises(DataError, match="mars_for_students.npz not found"):
        find_data(None, search_dirs=(tmp_path / "data", tmp_path / "kaggle"))
    nested = tmp_path / "kaggle" / "an-2-dl" / "mars_for_students.npz"
    nested.parent.mkdir(parents=True)
    nested.write_bytes(b"PK")
    assert find_data(None, search_dirs=(tmp_path / "data", tmp_path / "kaggle")) == nested
    with pytest.raises(DataError, match="no such file"):
        find_data(tmp_path / "nope.npz")


def test_load_masks_validates(tmp_path):
    path = _write(tmp_path / "m.npz", masks=np.full((2, 64, 128), 9, np.uint8))
    with pytest.raises(DataError, match="outside 0–4"):
        load_masks(path)


@pytest.mark.parametrize("case", ["missing key", "labels out of range", "wrong shape"])
def test_cli_reports_bad_data_on_one_line(case, tmp_path):
    arrays, message = BAD[case]
    path = _write(tmp_path / "bad.npz", **arrays)
    line = one_line_error(run_cli("inspect", path))
    assert message in line and str(path) in line


def test_cli_corrupt_npz_one_line(tmp_path):
    path = tmp_path / "corrupt.npz"
    path.write_bytes(b"PK\x03\x04garbage")
    line = one_line_error(run_cli("inspect", path))
    assert "not a readable npz file" in line
