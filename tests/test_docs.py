"""The documentation's rules: README stays short, every relative link resolves, every command it names exists.

Fast and light: the commands come from the Makefile's `target: ## …` lines (what `make help` lists) and from
`marsseg --help` in a subprocess, so this file imports neither TensorFlow nor Keras.
"""

import re
import subprocess
import sys
from collections import Counter
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_MAX_LINES = 300
DOCUMENTS = [README, ROOT / "BENCHMARKS.md", ROOT / "submissions" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^[ \t]*```.*?^[ \t]*```[ \t]*$", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`]+`")  # a span may wrap onto the next line
LINK = re.compile(r"!?\[[^\]\n]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)
MAKE_HELP_LINE = re.compile(r"^([a-zA-Z0-9_-]+):.*## ", re.M)  # the Makefile's `help` target prints these
MAKE_COMMAND = re.compile(r"(?<![\w.-])make[ \t]+([a-z][a-z0-9_-]*)")
MARSSEG_COMMAND = re.compile(r"(?<![\w.-])marsseg[ \t]+([a-z][a-z0-9-]*)")
HELP_COMMAND = re.compile(r"^ {4}([a-z][a-z0-9-]*)(?:\s|$)", re.M)  # argparse's list of subcommands


def prose(text: str) -> str:
    """`text` without code: fenced blocks and inline code spans say nothing about links or headings."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def code(text: str) -> str:
    """Only the code of `text`: its fenced blocks and inline code spans, one per line."""
    fenced = FENCE.findall(text)
    spans = [" ".join(span.split()) for span in CODE_SPAN.findall(FENCE.sub("", text))]
    return "\n".join(fenced + spans)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: a link's text kept, lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading's anchor in a markdown text; a repeated heading gets -1, -2, … as on GitHub."""
    seen, found = Counter(), set()
    for heading in HEADING.findall(prose(text)):
        base = slug(heading)
        found.add(base if not seen[base] else f"{base}-{seen[base]}")
        seen[base] += 1
    return found


def broken_links(text: str, where: Path) -> list[str]:
    """The relative links of `text` (a document at `where`) whose file or heading does not exist."""
    problems, name = [], where.relative_to(ROOT) if where.is_relative_to(ROOT) else where
    for target in LINK.findall(prose(text)):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: … are not checked here
            continue
        file_part, _, anchor = target.partition("#")
        destination = (where.parent / file_part).resolve() if file_part else where
        if not destination.exists():
            problems.append(f"{name}: {target}: no file {file_part}")
            continue
        if anchor and destination.suffix == ".md":
            headings = anchors(destination.read_text() if file_part else text)
            if anchor not in headings:
                problems.append(f"{name}: {target}: no heading #{anchor} in {destination.name}")
    return problems


@cache
def make_targets() -> frozenset[str]:
    return frozenset(MAKE_HELP_LINE.findall((ROOT / "Makefile").read_text()))


@cache
def marsseg_commands() -> frozenset[str]:
    result = subprocess.run(
        [sys.executable, "-m", "marsseg", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return frozenset(HELP_COMMAND.findall(result.stdout))


def unknown_commands(text: str) -> list[str]:
    """`make X` and `marsseg X` named in the code of `text` that `make help` or `marsseg --help` does not list."""
    snippets = code(text)
    unknown = [f"make {name}" for name in MAKE_COMMAND.findall(snippets) if name not in make_targets()]
    unknown += [f"marsseg {name}" for name in MARSSEG_COMMAND.findall(snippets) if name not in marsseg_commands()]
    return sorted(set(unknown))


def test_readme_is_a_short_front_page():
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"
    assert "make demo" in code(README.read_text()) and "make test" in code(README.read_text())  # .ci/run runs it


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_resolves(document):
    assert broken_links(document.read_text(), document) == []


@pytest.mark.parametrize("document", [README, *sorted((ROOT / "docs").glob("*.md"))], ids=lambda path: path.name)
def test_every_command_named_exists(document):
    assert unknown_commands(document.read_text()) == []


def test_the_command_lists_are_read():
    assert {"help", "demo", "test", "data", "canary", "submit", "status", "track", "plot"} <= make_targets()
    assert {"train", "demo", "submit", "ensemble", "bench", "validate"} <= marsseg_commands()


@pytest.mark.parametrize(
    "snippet, problems",
    [
        ("see [the method](docs/method.md)", 0),
        ("see [nothing](docs/no-such-page.md)", 1),
        ("## A heading\n\nsee [it](#a-heading)", 0),
        ("## A heading\n\nsee [it](#another-heading)", 1),
        ("see [the phases](docs/method.md#the-phases)", 0),
        ("see [the phases](docs/method.md#no-such-phase)", 1),
        ("`[not a link](no-such-file.md)` and\n```\n[nor this](no-such-file.md)\n```", 0),
        ("[the competition](https://www.kaggle.com/competitions/x)", 0),
    ],
)
def test_the_link_check_finds_broken_links(snippet, problems):
    assert len(broken_links(snippet, README)) == problems


@pytest.mark.parametrize(
    "snippet, unknown",
    [
        ("`make demo`, then `make submit FORCE=1`", []),
        ("`make frobnicate`", ["make frobnicate"]),
        ("```bash\nmarsseg train --preset cpu\n.venv/bin/marsseg emulator --print-env\n```", []),
        ("```bash\nmarsseg frobnicate --now\n```", ["marsseg frobnicate"]),
        ("make frobnicate and marsseg frobnicate outside code name nothing; `marsseg.config` is a module", []),
    ],
)
def test_the_command_check_finds_unknown_commands(snippet, unknown):
    assert unknown_commands(snippet) == unknown


@pytest.mark.parametrize(
    "heading, anchor",
    [
        ("The presets, and why", "the-presets-and-why"),
        ("What `make demo` shows", "what-make-demo-shows"),
        ("Combining runs: `marsseg ensemble`", "combining-runs-marsseg-ensemble"),
        ("On a GPU", "on-a-gpu"),
    ],
)
def test_anchors_are_githubs(heading, anchor):
    assert slug(heading) == anchor
