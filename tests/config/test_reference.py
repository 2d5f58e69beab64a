"""`marsseg config show` and `marsseg config docs`; the rules and presets they print; the package's import drawing."""

import ast
import json
from pathlib import Path

import pytest

from marsseg.config import PRESET_SPECS, PRESETS, Config, allowed, flatten, keys, preset
from marsseg.config.reference import keys_block, presets_block, write_blocks
from tests.conftest import ROOT, one_line_error, run_cli

PACKAGE = ROOT / "src" / "marsseg" / "config"


def test_readme_and_docs_blocks_are_what_the_generator_writes():
    stale = write_blocks(ROOT, check=True)
    assert not stale, f"stale config blocks in {[str(p) for p in stale]}: run `marsseg config docs`"


def test_every_key_has_a_meaning_and_its_default_passes_its_rule():
    for k in keys():
        assert k.rule.doc.strip() and "\n" not in k.rule.doc, k.name
        assert k.rule.admits(k.default), k.name
    assert allowed("stage2.train.optimizer") == ("adam", "adamw") and allowed("post.tta") == ("auto", "on", "off")


def test_every_preset_setting_has_a_one_line_reason_and_every_preset_a_description():
    for name, spec in PRESET_SPECS.items():
        assert spec.name == name and spec.description.strip() and "\n" not in spec.description
        for key, (_, reason) in spec.settings.items():
            assert reason.strip() and "\n" not in reason, (name, key)
    assert set(PRESETS) == set(PRESET_SPECS) == {"smoke", "cpu", "gpu", "kaggle"}


def test_a_preset_differs_from_the_defaults_only_where_it_says_why():
    defaults = flatten(Config())
    for name, spec in PRESET_SPECS.items():
        differ = {k for k, v in flatten(preset(name)).items() if v != defaults[k]} - {"preset"}
        assert differ <= set(spec.settings), (name, differ - set(spec.settings))


def test_show_prints_every_key_with_its_rule_and_the_presets_reasons():
    result = run_cli("config", "show", "--preset", "kaggle", "--set", "stage1.train.epochs=7")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for k in keys():
        assert any(line.startswith(f"{k.name} = ") for line in lines), k.name
    assert any(line.startswith("stage1.train.epochs = 7 ") and "(int; a value >= 1)" in line for line in lines)
    assert any(line.startswith("augment.strength = flips ") and "one of none, flips" in line for line in lines)
    reason = PRESET_SPECS["kaggle"].settings["augment.copy_paste_rate"][1]
    assert f"    kaggle: {reason}" in lines


def test_show_json_has_every_key_with_the_configs_values():
    result = run_cli("config", "show", "--preset", "cpu", "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    values = flatten(preset("cpu"))
    assert [row["key"] for row in shown["keys"]] == list(values)
    assert {row["key"]: row["value"] for row in shown["keys"]} == values
    assert shown["preset"] == "cpu" and all(row["meaning"] for row in shown["keys"])
    assert {row["key"] for row in shown["keys"] if "reason" in row} == set(PRESET_SPECS["cpu"].settings)


@pytest.mark.parametrize(
    "args, named",
    [
        (["--preset", "huge"], "unknown preset 'huge'"),
        (["--set", "stage1.train.epoch=3"], "unknown setting 'stage1.train.epoch'"),
        (["--preset", "smoke", "--set", "stage1.train.epochs=0"], "stage1.train.epochs is 0; use a value >= 1"),
    ],
)
def test_show_refuses_a_bad_preset_or_setting_in_one_line(args, named):
    assert named in one_line_error(run_cli("config", "show", *args))


def _tree(root: Path, readme: str) -> Path:
    (root / "docs").mkdir(parents=True)
    (root / "README.md").write_text(readme)
    (root / "docs" / "x.md").write_text("# X\n\n<!-- config:keys -->\nold\n<!-- /config:keys -->\ntail\n")
    return root


def test_docs_check_names_the_stale_file_and_docs_rewrites_only_the_blocks(tmp_path):
    root = _tree(tmp_path, f"# R\n<!-- config:presets -->\n{presets_block()}\n<!-- /config:presets -->\nend\n")
    check = run_cli("config", "docs", "--check", "--root", root)
    assert check.returncode == 1 and "x.md" in check.stderr and "README" not in check.stderr
    assert "old" in (root / "docs" / "x.md").read_text(), "--check changes nothing"
    assert run_cli("config", "docs", "--root", root).returncode == 0
    assert (root / "docs" / "x.md").read_text() == (
        f"# X\n\n<!-- config:keys -->\n{keys_block()}\n<!-- /config:keys -->\ntail\n"
    )
    assert run_cli("config", "docs", "--check", "--root", root).returncode == 0


def test_docs_refuse_an_unknown_block_and_a_folder_without_readme(tmp_path):
    root = _tree(tmp_path / "repo", "<!-- config:colours -->\n<!-- /config:colours -->\n")
    assert "unknown block <!-- config:colours -->" in one_line_error(run_cli("config", "docs", "--root", root))
    assert "no README.md" in one_line_error(run_cli("config", "docs", "--root", tmp_path))


# The package's modules in the order they may import each other: each only from those before it.
DRAWING = ["fields", "schema", "keys", "store", "presets", "validation", "reference", "__init__"]


def test_the_config_package_imports_one_way():
    assert sorted(p.stem for p in PACKAGE.glob("*.py")) == sorted(DRAWING), "add a new module to DRAWING"
    backwards, imports = [], {}
    for position, module in enumerate(DRAWING):
        for node in ast.walk(ast.parse((PACKAGE / f"{module}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("marsseg.config"):
                imported = node.module.removeprefix("marsseg.config").lstrip(".") or "__init__"
                imports.setdefault(module, set()).add(imported)
                if DRAWING.index(imported) >= position:
                    backwards.append(f"{module} imports {imported}")
    assert not backwards, backwards
    assert "reference" not in imports["__init__"], "the kernel does not need the doc tables"
