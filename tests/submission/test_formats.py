import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from marsseg.errors import SubmissionError
from marsseg.submission.formats import (
    decode_pixels,
    decode_rle,
    encode_pixels,
    encode_rle,
    read_submission,
    rle_runs,
)
from tests.conftest import one_line_error, run_cli

H, W = 64, 128


def _blocky(draw_blocks):
    """Masks made of a few rectangles, like real terrain regions."""
    masks = np.zeros((len(draw_blocks), H, W), np.uint8)
    for i, blocks in enumerate(draw_blocks):
        for label, y, x, h, w in blocks:
            masks[i, y : y + h, x : x + w] = label
    return masks


block = st.tuples(st.integers(0, 4), st.integers(0, H - 1), st.integers(0, W - 1), st.integers(1, H), st.integers(1, W))
blocky_masks = st.lists(st.lists(block, max_size=6), min_size=1, max_size=4).map(_blocky)
random_masks = arrays(np.uint8, st.tuples(st.integers(1, 3), st.just(H), st.just(W)), elements=st.integers(0, 4))
special = st.sampled_from([np.zeros((1, H, W), np.uint8)] + [np.full((2, H, W), c, np.uint8) for c in range(1, 5)])


@settings(max_examples=40, deadline=None)
@given(st.one_of(blocky_masks, random_masks, special))
def test_rle_round_trip(masks):
    np.testing.assert_array_equal(decode_rle(encode_rle(masks), len(masks)), masks)


@settings(max_examples=25, deadline=None)
@given(st.one_of(blocky_masks, random_masks, special))
def test_pixels_round_trip(masks):
    np.testing.assert_array_equal(decode_pixels(encode_pixels(masks), len(masks)), masks)


def test_rle_layout_is_column_major_and_one_indexed():
    mask = np.zeros((1, H, W), np.uint8)
    mask[0, 0, 0] = 1  # pixel 1
    mask[0, 1, 0] = 1  # pixel 2 (down the first column)
    mask[0, 0, 1] = 2  # pixel 65 (top of the second column)
    mask[0, 63, 127] = 4  # the last pixel, 8192
    text = encode_rle(mask).decode()
    assert text.splitlines() == ["id,EncodedPixels", "0_1,1 2", "0_2,65 1", "0_3,", "0_4,8192 1"]


def test_pixels_layout_is_row_major_with_the_notebook_header():
    mask = np.zeros((1, H, W), np.uint8)
    mask[0, 0, 1] = 3
    lines = encode_pixels(mask).decode().splitlines()
    assert lines[0] == "id," + ",".join(map(str, range(H * W)))
    assert lines[1].startswith("0,0,3,0")


def test_runs_of_the_vectorised_encoder_match_a_naive_scan(rng):
    masks = rng.integers(0, 3, (3, H, W)).astype(np.uint8)
    image, label, start, length = rle_runs(masks)
    for i in range(3):
        flat = masks[i].T.ravel()
        naive = []
        k = 0
        while k < flat.size:
            j = k
            while j < flat.size and flat[j] == flat[k]:
                j += 1
            naive.append((flat[k], k + 1, j - k))
            k = j
        ours = [(label[r], start[r], length[r]) for r in np.flatnonzero(image == i)]
        assert ours == naive


def _rle(*rows, n=1):
    body = [f"{i}_{c}," for i in range(n) for c in (1, 2, 3, 4)]
    for index, text in rows:
        body[index] = text
    return "id,EncodedPixels\n" + "\n".join(body) + "\n"


@pytest.mark.parametrize(
    "text, message",
    [
        ("id,Pixels\n", "line 1: header"),
        (_rle((0, "0_1,1 2 9")), "line 2: odd number of values"),
        (_rle((1, "0_2,0 5")), "line 3: run 'start 0 length 5' starts before pixel 1"),
        (_rle((2, "0_3,8190 5")), "runs past the last pixel (8192)"),
        (_rle((0, "0_1,10 5 12 3")), "out of order or overlaps"),
        (_rle((0, "0_1,50 5 10 3")), "out of order or overlaps"),
        (_rle((0, "0_1,10 5"), (3, "0_4,12 2")), "covered by runs of two classes"),
        (_rle((0, "0_1,1 x")), "line 2: runs must be whole numbers"),
        (_rle((0, "0_1,1  2")), "separated by single spaces"),
        (_rle((0, "0_1,-1 2")), "line 2: runs must be whole numbers"),
        (_rle((0, "0_1,1 0")), "has a length below 1"),
        (_rle((2, "0_5,")), "line 4: id '0_5', expected '0_3'"),
        (_rle((0, "0_1,1 2,3")), "more than two columns"),
        (
            _rle(
                (0, "0_1"),
            ),
            "no comma after the id",
        ),
        ("id,EncodedPixels\n0_1,\n0_2,\n", "2 rows is not a whole number of images"),
    ],
)
def test_rle_validator_names_the_row(text, message):
    with pytest.raises(SubmissionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        decode_rle(text)


def test_rle_duplicate_row_is_caught_as_wrong_id():
    text = _rle(n=2).replace("1_1,", "0_1,")
    with pytest.raises(SubmissionError, match="line 6: id '0_1', expected '1_1'"):
        decode_rle(text)


def test_rle_row_count_against_expected_images():
    with pytest.raises(SubmissionError, match="describe 2 images, expected 3"):
        decode_rle(_rle(n=2), 3)


def _pixels(rows):
    return "id," + ",".join(map(str, range(H * W))) + "\n" + "".join(f"{i},{r}\n" for i, r in enumerate(rows))


ZEROS = ",".join(["0"] * (H * W))


@pytest.mark.parametrize(
    "text, message",
    [
        (_pixels([ZEROS, ZEROS.replace("0", "7", 1)]), "line 3, column '0': '7' is not a class 0–4"),
        (_pixels([ZEROS[:-2]]), "line 2: 8191 labels, expected 8192"),
        (_pixels([ZEROS.replace("0", "1.0", 1)]), "'1.0' is not a class"),
        (_pixels([ZEROS]).replace("\n0,", "\n5,"), "line 2: id '5', expected '0'"),
    ],
)
def test_pixels_validator_names_the_row(text, message):
    with pytest.raises(SubmissionError, match=message):
        decode_pixels(text)


def test_pixels_row_count():
    with pytest.raises(SubmissionError, match="1 rows, expected 2"):
        decode_pixels(_pixels([ZEROS]), 2)


def test_read_submission_detects_layout_and_names_file(tmp_path, rng):
    masks = rng.integers(0, 5, (2, H, W)).astype(np.uint8)
    for layout, data in (("rle", encode_rle(masks)), ("pixels", encode_pixels(masks))):
        path = tmp_path / f"{layout}.csv"
        path.write_bytes(data)
        info = read_submission(path, 2)
        assert info.layout == layout
        np.testing.assert_array_equal(info.masks, masks)
    bad = tmp_path / "bad.csv"
    bad.write_text("image,label\n")
    with pytest.raises(SubmissionError, match=f"{bad}: line 1: header"):
        read_submission(bad)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(SubmissionError, match="the file is empty"):
        read_submission(tmp_path / "empty.csv")


def test_cli_encode_convert_validate_score_round_trip(tmp_path, small_data_file):
    _, truth = small_data_file
    with np.load(truth) as t:
        labels = t["test_labels"]
    np.savez(tmp_path / "masks.npz", masks=labels)
    assert run_cli("encode", tmp_path / "masks.npz", tmp_path / "sub.csv").returncode == 0
    assert run_cli("convert", tmp_path / "sub.csv", tmp_path / "pix.csv", "--format", "pixels").returncode == 0
    assert run_cli("convert", tmp_path / "pix.csv", tmp_path / "back.csv", "--format", "rle").returncode == 0
    assert (tmp_path / "back.csv").read_bytes() == (tmp_path / "sub.csv").read_bytes()
    result = run_cli("validate", tmp_path / "pix.csv", "--images", len(labels))
    assert result.returncode == 0 and "valid pixels submission" in result.stdout
    result = run_cli("score", tmp_path / "pix.csv", truth, "--json")
    assert result.returncode == 0
    score = json.loads(result.stdout)
    assert score["miou"] == score["miou_keras"] == score["miou_scored"] == 1.0 and score["rule"] == "keras"


def test_cli_malformed_csv_is_one_line_error_and_file_is_kept(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(_rle((0, "0_1,1 2 9")))
    before = path.read_bytes()
    line = one_line_error(run_cli("validate", path))
    assert "line 2: odd number of values" in line and str(path) in line
    assert path.read_bytes() == before
    line = one_line_error(run_cli("convert", path, tmp_path / "out.csv", "--format", "pixels"))
    assert not (tmp_path / "out.csv").exists()
    line = one_line_error(run_cli("validate", tmp_path / "missing.csv"))
    assert "no such file" in line


def test_model_free_commands_do_not_import_tensorflow_or_keras(tmp_path, small_data_file):
    data, truth = small_data_file
    code = (
        "import sys; from marsseg.cli.main import main\n"
        f"main(['inspect', {str(data)!r}])\n"
        f"main(['synth', {str(tmp_path / 's.npz')!r}, '--train', '3', '--test', '2'])\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'pandas', 'jax', 'torch') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
