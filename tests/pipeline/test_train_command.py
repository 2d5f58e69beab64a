"""`marsseg train`: bad input is one line and writes nothing; the command runs end to end."""

import json

import pytest

from tests.conftest import one_line_error, run_cli


def test_train_command_rejects_bad_input_in_one_line(small_data_file, tmp_path):
    data = small_data_file[0]
    assert "--budget" in one_line_error(
        run_cli("train", "--preset", "smoke", "--data", data, "--out", tmp_path / "r", "--budget", "0")
    )
    assert "stage1.train.epoch" in one_line_error(
        run_cli("train", "--preset", "smoke", "--data", data, "--set", "stage1.train.epoch=3")
    )
    assert "preset" in one_line_error(run_cli("train", "--preset", "huge", "--data", data))
    assert "stage1_share" in one_line_error(
        run_cli("train", "--preset", "smoke", "--data", data, "--out", tmp_path / "r", "--set", "stage1_share=1.5")
    )
    assert "class_weight_power" in one_line_error(
        run_cli(
            "train",
            "--preset",
            "smoke",
            "--data",
            data,
            "--out",
            tmp_path / "r",
            "--set",
            "stage2.loss.class_weight_power=-1",
        )
    )
    assert "post.class_bias" in one_line_error(
        run_cli("train", "--preset", "smoke", "--data", data, "--out", tmp_path / "r", "--set", "post.class_bias=maybe")
    )
    assert not (tmp_path / "r").exists(), "a rejected setting writes nothing"
    assert "no such file" in one_line_error(run_cli("train", "--preset", "smoke", "--data", tmp_path / "none.npz"))


@pytest.mark.slow
def test_train_command_end_to_end(small_data_file, tmp_path):
    from marsseg.submission.formats import read_submission

    result = run_cli(
        "train",
        "--preset",
        "smoke",
        "--data",
        small_data_file[0],
        "--out",
        tmp_path / "run",
        "--set",
        "post.tta=off",
        "--quiet",
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "hold-out mIoU" in result.stdout
    assert read_submission(tmp_path / "run" / "submission.csv", 24).n_images == 24
    assert len(list((tmp_path / "submissions").glob("run-stage*.csv"))) == 1
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["post"]["stage1"]["tta"]["with"] is None and m["post"]["stage1"]["tta"]["used"] is False


@pytest.mark.slow
def test_demo_scores_the_pipeline_against_the_synthetic_truth(tmp_path):
    from marsseg.config import preset
    from marsseg.pipeline.demo import run_pipeline_demo

    lines = []
    out = run_pipeline_demo(tmp_path, preset("smoke"), n_train=80, n_test=20, log=lines.append)
    assert 0.0 <= out["test"]["miou"] <= 1.0
    assert any(line.startswith("test mIoU (leaderboard rule) against the synthetic truth") for line in lines)
