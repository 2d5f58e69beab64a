import marsseg.bench as bench
from tests.conftest import one_line_error, run_cli


def test_only_reruns_one_section_and_keeps_the_others(tmp_path, monkeypatch):
    calls = []

    def section(name):
        def run(repeats, log):
            calls.append(name)
            return f"## {name}\n\nvalue {len(calls)}"
        return run

    monkeypatch.setattr(bench, "SECTIONS", {"a": section("a"), "b": section("b")})
    out = tmp_path / "B.md"
    bench.run_benchmarks(out, repeats=1, log=lambda m: None)
    bench.run_benchmarks(out, repeats=1, only=["b"], log=lambda m: None)
    text = out.read_text()
    assert calls == ["a", "b", "b"]
    assert "## a\n\nvalue 1" in text and "## b\n\nvalue 3" in text and "value 2" not in text
    assert text.index("## a") < text.index("## b") and "Machine:" in text


def test_unknown_section_is_a_one_line_error(tmp_path):
    line = one_line_error(run_cli("bench", "--only", "nope", "--out", tmp_path / "B.md"))
    assert "unknown benchmark section nope" in line
    assert not (tmp_path / "B.md").exists()
