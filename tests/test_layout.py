"""The house: imports run one way along the data flow, files stay small, light commands stay light."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Rows of README's layout, top to bottom: a module imports only from its own row or the rows above it.
LAYERS = [
    (
        "marsseg",
        "marsseg.errors",
        "marsseg.competition",
        "marsseg.files",
        "marsseg.config",
        "marsseg.stamps",
        "marsseg.quiet",
        "marsseg.versions",
    ),
    ("marsseg.data",),
    ("marsseg.submission",),
    ("marsseg.prep",),
    ("marsseg.models",),
    ("marsseg.training",),
    ("marsseg.pipeline",),
    ("marsseg.kaggle",),
    ("marsseg.tracking",),
    ("marsseg.cli", "marsseg.__main__"),
    ("marsseg_bench",),
]


def layer_of(module: str) -> int:
    """The deepest row that names `module` or one of its packages."""
    best = None
    for index, row in enumerate(LAYERS):
        for prefix in row:
            if module == prefix or (prefix != "marsseg" and module.startswith(prefix + ".")):
                best = index
    if best is None and module.split(".")[0] in ("marsseg", "marsseg_bench"):
        raise AssertionError(f"{module} is in no row of the layout: add it to README's layout and LAYERS")
    return best


def modules():
    for path in sorted(SRC.rglob("*.py")):
        dotted = ".".join(path.relative_to(SRC).with_suffix("").parts)
        yield dotted.removesuffix(".__init__"), path


# The one upward import: `marsseg bench` loads the benchmarks, lazily, inside its command.
LAZY_UPWARD = {("marsseg.cli", "marsseg_bench")}


def imports(path: Path, module: str, top_level_only: bool = False):
    """(imported module, line) for every import node, function-level ones included, relative ones resolved."""
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text())
    for node in tree.body if top_level_only else ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".") if is_package else module.split(".")[:-1]
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            yield base, node.lineno


def test_every_module_has_a_row():
    for module, _ in modules():
        layer_of(module)


def test_imports_run_one_way_along_the_data_flow():
    upward = []
    for module, path in modules():
        mine = layer_of(module)
        top_level = set(imports(path, module, top_level_only=True))
        for imported, line in imports(path, module):
            if imported.split(".")[0] not in ("marsseg", "marsseg_bench") or imported == "marsseg":
                continue
            theirs = layer_of(imported)
            lazy_exception = any(module.startswith(a) and imported.startswith(b) for a, b in LAZY_UPWARD)
            if lazy_exception and (imported, line) not in top_level:
                continue
            if theirs > mine:
                upward.append(f"{path.relative_to(SRC)}:{line} imports {imported} (row {theirs} > {mine})")
    assert not upward, "\n".join(upward)


def test_the_walk_sees_function_level_and_relative_imports(tmp_path):
    path = tmp_path / "x.py"
    path.write_text("def f():\n    from ..pipeline import run\n    import marsseg.cli.main\n")
    assert list(imports(path, "marsseg.data.x")) == [("marsseg.pipeline", 2), ("marsseg.cli.main", 3)]


def test_no_source_file_exceeds_400_lines():
    long = [f"{path.relative_to(SRC)}: {n}" for _, path in modules() if (n := path.read_text().count("\n")) > 400]
    assert not long, long


@pytest.mark.parametrize("command", [["validate", "--help"], ["score", "--help"], ["--help"]])
def test_light_commands_import_no_keras(command):
    probe = (
        "import sys, runpy; sys.argv = ['marsseg', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('marsseg', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('keras', 'tensorflow', 'matplotlib', 'albumentations', 'kaggle', 'sklearn')"
        " if m in sys.modules)\nprint('HEAVY', heavy, file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", probe, *command], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in result.stderr, result.stderr[-2000:]


# ----------------------------------------------------------------------------------- short signatures
MAX_PARAMETERS = 10  # more travel together: group them in a small declared object (a dataclass of options)


def parameter_count(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Parameters a caller may pass: a leading self/cls not counted, *args and **kwargs one each."""
    args = node.args
    positional = args.posonlyargs + args.args
    count = len(positional) + len(args.kwonlyargs) + (args.vararg is not None) + (args.kwarg is not None)
    return count - (1 if positional and positional[0].arg in ("self", "cls") else 0)


def long_signatures(path: Path, root: Path) -> list[str]:
    """'file:function:count' for every function (methods and nested ones too) over MAX_PARAMETERS."""
    return [
        f"{path.relative_to(root)}:{node.name}:{count}"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and (count := parameter_count(node)) > MAX_PARAMETERS
    ]


def test_no_function_takes_more_than_10_parameters():
    package = SRC / "marsseg"
    found = [line for path in sorted(package.rglob("*.py")) for line in long_signatures(path, SRC)]
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    "source, expected",
    [
        ("def f(a, b, c, d, e, f, g, h, i, j):\n    pass\n", []),
        ("def f(a, b, c, d, e, f, g, h, i, j, k):\n    pass\n", ["x.py:f:11"]),
        ("class C:\n    def m(self, a, b, c, d, e, f, g, h, i, j):\n        pass\n", []),
        ("class C:\n    def m(self, a, b, c, d, e, f, g, h, i, j, k):\n        pass\n", ["x.py:m:11"]),
        ("def f(a, /, b, *args, c, d, e, f, g, h, i, **kwargs):\n    pass\n", ["x.py:f:11"]),
        ("def outer():\n    async def inner(a, b, c, d, e, f, g, h, i, j, *, k=0):\n        pass\n", ["x.py:inner:11"]),
    ],
)
def test_the_parameter_walk_counts_as_the_rule_says(tmp_path, source, expected):
    path = tmp_path / "x.py"
    path.write_text(source)
    assert long_signatures(path, tmp_path) == expected
