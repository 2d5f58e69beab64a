"""Every results file a bench section stores is kept by git: a series of seeds continues over sessions and machines,
and a rendered block can be rendered again from its records (the converged horizon's first two records were lost:
.gitignore did not keep converged.jsonl)."""

import re
import shutil
import subprocess

import pytest

from tests.conftest import ROOT


def _results_files() -> set[str]:
    names = set()
    for path in (ROOT / "src" / "marsseg_bench").glob("*.py"):
        names |= set(re.findall(r"[\"']([a-z0-9_]+\.jsonl)[\"']", path.read_text()))
    return names


def test_the_bench_names_its_results_files():
    assert {"quality.jsonl", "paired.jsonl", "converged.jsonl"} <= _results_files()


@pytest.mark.parametrize("name", sorted(_results_files()))
def test_each_results_file_is_kept_by_git(name):
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = subprocess.run(["git", "check-ignore", "-q", f".bench/{name}"], cwd=ROOT, check=False)
    assert ignored.returncode == 1, f".gitignore drops .bench/{name}: add !/.bench/{name}"
