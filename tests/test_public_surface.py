"""The benchmarks and the tests use only `marsseg.pipeline`'s public surface: no name that starts with `_`.

A private name may change with any refactoring; a benchmark that reads one breaks silently (issue 28: the
benchmarks built the run's old private class with 8 positional arguments and read its attributes). The walk finds,
in every .py file under src/marsseg_bench and tests/:

- imports of a private name from marsseg.pipeline, or of a private module of it;
- dotted paths through it (`marsseg.pipeline.run.<private>`, through an import alias too);
- private attributes of what a marsseg.pipeline name gives (a module, a class, a call's result assigned to a name),
  read directly or through getattr/setattr/monkeypatch.setattr;
- "marsseg.pipeline..." dotted strings given to setattr-like calls (`monkeypatch.setattr("a.b.c", ...)`).

Dunder names (`__func__`, `__new__`) are Python's, not the package's, and are allowed.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = (ROOT / "src" / "marsseg_bench", ROOT / "tests")
PACKAGE = "marsseg.pipeline"
ATTRIBUTE_CALLS = {"getattr", "setattr", "hasattr", "delattr", "patch"}


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_part(dotted: str) -> str | None:
    """The first private component of `dotted` after marsseg.pipeline, if `dotted` is inside it."""
    if dotted != PACKAGE and not dotted.startswith(PACKAGE + "."):
        return None
    return next((part for part in dotted.split(".")[2:] if private(part.removesuffix("()"))), None)


def dotted_name(node: ast.AST, bound: dict) -> str | None:
    """`a.b.c` with `a` resolved through `bound` (local name -> what it stands for); None if not a plain chain."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Call | ast.Subscript):  # a call's or an index's result: of what it was called on
        root = dotted_name(node.value if isinstance(node, ast.Subscript) else node.func, bound)
        return None if root is None else ".".join([root + "()", *reversed(parts)])
    if not isinstance(node, ast.Name):
        return None
    return ".".join([bound.get(node.id, node.id), *reversed(parts)])


def inside(path: str) -> bool:
    return path == PACKAGE or path.startswith(PACKAGE + ".")


def bindings(tree: ast.AST) -> dict:
    """Local name -> the marsseg.pipeline path it stands for: import aliases, then (flow-insensitively, to a fixed
    point) names assigned from an expression on one of those."""
    bound = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            bound.update({alias.asname: alias.name for alias in node.names if alias.asname})
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            bound.update({alias.asname or alias.name: f"{node.module}.{alias.name}" for alias in node.names})
    bound = {name: path for name, path in bound.items() if inside(path)}
    assigns = [n for n in ast.walk(tree) if isinstance(n, ast.Assign | ast.AnnAssign) and n.value is not None]
    changed = True
    while changed:  # each pass binds at least one new name, or ends: a name is bound once
        changed = False
        for node in assigns:
            source = dotted_name(node.value, bound)
            if source is None or not inside(source):
                continue
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                if isinstance(target, ast.Name) and target.id not in bound:
                    bound[target.id], changed = source, True
    return bound


def string_argument(node: ast.Call, index: int) -> str | None:
    if len(node.args) > index and isinstance(node.args[index], ast.Constant):
        return node.args[index].value if isinstance(node.args[index].value, str) else None
    return None


def uses(tree: ast.AST, bound: dict):
    """(node, dotted path) for every import, attribute chain and setattr-like call in `tree`."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield from ((node, f"{node.module}.{alias.name}") for alias in node.names)
        elif isinstance(node, ast.Attribute) and (dotted := dotted_name(node, bound)) is not None:
            yield node, dotted
        elif isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name not in ATTRIBUTE_CALLS or not node.args:
                continue
            if (path := string_argument(node, 0)) is not None:  # monkeypatch.setattr("a.b.c", value)
                yield node, path
            elif (attribute := string_argument(node, 1)) is not None:  # setattr(owner, "name", value)
                owner = dotted_name(node.args[0], bound)
                if owner is not None:
                    yield node, f"{owner}.{attribute}"


def findings(source: str, filename: str = "<sample>") -> list[str]:
    """'file:line: what' for each use of a private name of marsseg.pipeline in `source` (one per line and name)."""
    tree = ast.parse(source)
    found = {}
    for node, dotted in uses(tree, bindings(tree)):
        part = private_part(dotted)
        if part is not None:
            found.setdefault(
                (node.lineno, part), f"{filename}:{node.lineno}: {dotted} ({part} is private to {PACKAGE})"
            )
    return [found[key] for key in sorted(found)]


def scanned_files():
    for folder in SCANNED:
        yield from sorted(folder.rglob("*.py"))


def test_the_benchmarks_and_tests_use_only_the_pipelines_public_names():
    found = [line for path in scanned_files() for line in findings(path.read_text(), str(path.relative_to(ROOT)))]
    assert not found, "\n".join(found)


# Each sample's private name is filled in at run time, so that the grep (for a dot before an underscore,
# or the old class's name, over src/marsseg_bench and tests/) finds nothing in this file either.
HIDDEN = "_" + "Hidden"


@pytest.mark.parametrize(
    "sample",
    [
        "from marsseg.pipeline.run import {p}\n",  # how the benchmarks and the tests reached the run
        "from marsseg.pipeline.run import Run, {p} as State\n",
        "from marsseg.pipeline.{p} import thing\n",
        "import marsseg.pipeline.{p}\n",
        "import marsseg.pipeline.run\nmarsseg.pipeline.run.{p}.finish\n",
        "import marsseg.pipeline.run as pr\npr.{p}\n",
        "from marsseg.pipeline import run as pr\nx = pr.{p}\n",
        "from marsseg.pipeline import run\nrun.{p}.stage2 = None\n",
        "from marsseg.pipeline.run import Run\nRun.{p}\n",
        "from marsseg.pipeline.run import Run\nr = Run(1, 2, 3, 4)\nprint(r.{p})\n",
        "from marsseg.pipeline.stages import stage1_folds\nout = stage1_folds()\ny = out.{p}[0]\n",
        "from marsseg.pipeline.run import Run\ndef t(monkeypatch):\n    monkeypatch.setattr(Run, '{p}', None)\n",
        "from marsseg.pipeline import run\ngetattr(run, '{p}')\n",
        "def t(monkeypatch):\n    monkeypatch.setattr('marsseg.pipeline.run.{p}.finish', None)\n",
    ],
)
def test_the_walk_finds_a_private_name_of_the_pipeline(sample):
    assert findings(sample.format(p=HIDDEN)), sample


@pytest.mark.parametrize(
    "sample",
    [
        "from marsseg.pipeline.run import Run, run\nr = Run(1)\nr.stage1.models\nr.split.holdout\n",
        "from marsseg.pipeline.holdout import Holdout\nHoldout.split.__func__\n",  # Python's own name
        "from marsseg.training import fit\nfit.{p}\n",  # another package's privates are not this test's
        "class Local:\n    def m(self):\n        return self.{p}\n",
        "import numpy as np\nnp.{p}\n",
        "from marsseg.pipeline import run\ndef t(monkeypatch):\n    monkeypatch.setattr(run, 'stage1_folds', None)\n",
    ],
)
def test_the_walk_passes_public_names_and_other_packages(sample):
    assert findings(sample.format(p=HIDDEN)) == [], sample
