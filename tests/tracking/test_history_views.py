"""The history's views: the leaderboard and submission tables, their commands, and what they do not import."""

import subprocess
import sys

from marsseg.kaggle.records import append_record
from marsseg.tracking.store import SNAPSHOTS, read_history
from marsseg.tracking.views import format_history, format_leaderboard
from tests.conftest import one_line_error, run_cli
from tests.helpers.tracking_fakes import COMP, ScriptedKaggle, subprocess_env, take, three_steps


def test_leaderboard_table_shows_top_n_rank_and_best(three_snapshots):
    directory, _ = three_snapshots
    text = format_leaderboard(read_history(directory, COMP), top=2)
    lines = text.splitlines()
    assert "snapshot 3" in lines[0] and "4 teams" in lines[0]
    assert lines[3].split()[:4] == [">", "1", "us", "0.7400"]
    assert lines[4].split()[:3] == ["2", "alpha", "0.7100"]
    assert len(lines) == 6  # header line, table header, rule, two teams, the team line
    assert lines[-1] == "team us: rank 1 of 4 (was 3), best public score 0.7400"


def test_history_table_shows_local_and_public_scores(tmp_path):
    append_record(
        {
            "id": "r102",
            "kaggle_ref": "102",
            "preset": "gpu",
            "git_commit": "0123456789abc",
            "val_miou_stage1": 0.7,
            "val_miou_stage2": 0.72,
            "val_miou_final": 0.73,
        },
        tmp_path / "records.csv",
    )
    fake = ScriptedKaggle(three_steps())
    take(fake, tmp_path, 1)
    take(fake.advance().advance(), tmp_path, 3)
    lines = format_history(read_history(tmp_path)).splitlines()
    by_ref = {line.split()[-1]: line for line in lines[2:-1]}
    assert by_ref["102"].split()[:8] == ["*", "2025-01-02", "12:00", "complete", "0.7400", "0.7000", "0.7200", "0.7300"]
    assert "gpu" in by_ref["102"] and "0123456789" in by_ref["102"]
    assert by_ref["103"].split()[2] == "error"
    assert lines[-1].startswith("3 submission(s), 2 scored, best public 0.7400")


def test_cli_views_print_tables_and_fail_cleanly_on_an_empty_history(three_snapshots, tmp_path_factory):
    directory, _ = three_snapshots
    result = run_cli("leaderboard", "--top", "3", "--history-dir", directory, "--competition", COMP)
    assert result.returncode == 0, result.stderr
    assert "team us: rank 1 of 4 (was 3), best public score 0.7400" in result.stdout
    assert "delta" not in result.stdout and "beta" in result.stdout
    result = run_cli("history", "--history-dir", directory, "--competition", COMP)
    assert result.returncode == 0, result.stderr
    assert "0.7400" in result.stdout and "pending" not in result.stdout
    empty = tmp_path_factory.mktemp("empty")
    assert "marsseg track" in one_line_error(run_cli("leaderboard", "--history-dir", empty))
    assert "marsseg track" in one_line_error(run_cli("plot", "--history-dir", empty))


def test_a_foreign_csv_is_a_one_line_error(tmp_path):
    (tmp_path / SNAPSHOTS).write_text("a,b\n1,2\n")
    assert "not a marsseg history file" in one_line_error(run_cli("history", "--history-dir", tmp_path))


def test_views_import_neither_pandas_nor_matplotlib(three_snapshots):
    directory, _ = three_snapshots
    code = (
        "import sys; from marsseg.cli.main import main; main(['history', '--history-dir', sys.argv[1], "
        "'--competition', 'test-comp']); import marsseg.tracking.plots; "
        "print(sorted(m for m in ('pandas', 'matplotlib', 'tensorflow', 'keras') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(directory)], capture_output=True, text=True, env=subprocess_env(), timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
