import json
import shutil
from pathlib import Path

import pytest

from marsseg.kaggle.bundle import write_kernel
from marsseg.kaggle.rules import check_credentials, check_metadata, check_rules, check_source, load_metadata
from tests.conftest import one_line_error, run_cli

ROOT = Path(__file__).resolve().parents[2]
GOOD_META = load_metadata(ROOT / "kernel-metadata.json")


@pytest.mark.parametrize(
    "code, words",
    [
        ("keras.applications.ResNet50(weights='imagenet')", "weights='imagenet'"),
        ("m = ResNet50(include_top=False, weights=path)", "ResNet50(weights=…)"),
        ("from keras.applications import EfficientNetB0", "keras.applications"),
        ("from keras import applications", "keras.applications"),
        ("import tensorflow as tf\nnet = tf.keras.applications.MobileNetV2()", "tf.keras.applications"),
        ("import tensorflow_hub as hub", "tensorflow_hub"),
        ("layer = hub.KerasLayer(handle)", "KerasLayer"),
        ("model = hub.load(handle)", "hub.load"),
        ("import kagglehub", "kagglehub"),
        ("model = AutoModel.from_pretrained('unet')", "from_pretrained"),
        ("net = create_model('unet', pretrained=True)", "pretrained"),
        ("path = keras.utils.get_file('w.h5', origin)", "get_file"),
        ("data = urllib.request.urlopen(url).read()", "urlopen"),
        ("r = requests.get(url)", "requests.get"),
        ("subprocess.run(['pip', 'install', 'segmentation-models'])", "pip install"),
        ("os.system('pip install timm')", "pip install"),
    ],
)
def test_each_forbidden_pattern_is_caught_with_a_reason(code, words):
    found = check_source(code + "\n", "model.py")
    assert found, code
    assert found[0].where == f"model.py:{code.count(chr(10)) + 1}"
    assert any(words in v.reason for v in found), [str(v) for v in found]


@pytest.mark.parametrize(
    "code",
    [
        "m = build_unet(weights=None)",
        "m = UNet(weights=None)",
        "mean = np.average(x, weights=w)",
        "counts = np.bincount(y, weights=w)",
        "loss = Loss(class_weights='auto')",
        "text = 'keras.applications is forbidden'",
        "keras.utils.get_file('x', url)  # rules: allow",
    ],
)
def test_allowed_code_passes(code):
    assert check_source(code + "\n", "ok.py") == []


def test_a_file_that_does_not_parse_is_reported():
    assert "does not parse" in check_source("def broken(:\n", "x.py")[0].reason


def test_credentials_inside_the_bundle_are_caught_without_printing_them():
    secret = "0f" * 16
    assert check_credentials('CREDS = {"username": "me", "key": "' + secret + '"}\n', "x.py")
    assert check_credentials('os.environ["KAGGLE_KEY"] = "abcdefghijklmnop1234"\n', "x.py")
    assert check_credentials("token = 'KGAT_abcdefghijklmnopqrstuv'\n", "x.py")
    found = check_credentials(f"x = 1\nTOKEN = 'zz{secret}zz'\n", "x.py", secrets=(secret,))
    assert found and found[-1].where == "x.py:2" and secret not in str(found[-1])
    assert check_credentials("sha = '" + "ab" * 32 + "'\n", "x.py") == []


def test_metadata_rules():
    assert check_metadata(GOOD_META) == []
    missing_internet = {k: v for k, v in GOOD_META.items() if k != "enable_internet"}
    assert "enable_internet" in check_metadata(missing_internet)[0].reason  # Kaggle's default is on
    assert "enable_internet" in check_metadata({**GOOD_META, "enable_internet": True})[0].reason
    other = {**GOOD_META, "dataset_sources": ["someone/imagenet-weights"]}
    assert "someone/imagenet-weights" in check_metadata(other)[0].reason
    assert check_metadata(other, allowed_sources=("someone/imagenet-weights",)) == []
    assert check_metadata({**GOOD_META, "model_sources": ["google/unet/keras/1/1"]})
    assert "competition_sources" in check_metadata({**GOOD_META, "competition_sources": []})[0].reason


def test_committed_metadata_is_a_template_without_anyones_name():
    assert GOOD_META["id"].startswith("{username}/")
    assert GOOD_META["code_file"] == "kernels/marsseg_kernel.py"
    assert (
        GOOD_META["kernel_type"],
        GOOD_META["language"],
        GOOD_META["is_private"],
        GOOD_META["enable_gpu"],
        GOOD_META["enable_internet"],
    ) == ("script", "python", True, True, False)


def test_the_kit_itself_passes():
    assert check_rules(ROOT / "kernels" / "marsseg_kernel.py", ROOT / "kernel-metadata.json", secrets=()) == []


def _bundle_with(tmp_path, extra_code: str) -> Path:
    package = tmp_path / "src" / "marsseg"
    shutil.copytree(ROOT / "src" / "marsseg", package, ignore=shutil.ignore_patterns("__pycache__"))
    (package / "sneaky.py").write_text(extra_code)
    errors = package / "errors.py"  # the kernel embeds only what it imports: make it import the sneaky module
    errors.write_text(errors.read_text() + "\n\ndef _sneaky():\n    import marsseg.sneaky  # noqa: F401\n")
    kernel = tmp_path / "kernel.py"
    write_kernel(kernel, package, log=lambda *_: None)
    return kernel


def test_violations_inside_the_bundled_package_are_found(tmp_path):
    kernel = _bundle_with(tmp_path, "import keras\nnet = keras.applications.ResNet50(weights='imagenet')\n")
    found = check_rules(kernel, ROOT / "kernel-metadata.json", secrets=())
    assert found and all(v.where.startswith("marsseg/sneaky.py:2") for v in found)


def test_cli_check_rules_lists_violations_and_exits_2_in_one_line(tmp_path):
    kernel = _bundle_with(tmp_path, "import tensorflow_hub\n")
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({**GOOD_META, "enable_internet": True}))
    result = run_cli("check-rules", "--kernel", kernel, "--metadata", meta, env={"PYTHONPATH": str(ROOT / "src")})
    line = one_line_error(result)
    assert "2 rule violation(s)" in line
    assert "tensorflow_hub" in result.stdout and "enable_internet" in result.stdout


def test_cli_check_rules_passes_on_the_kit():
    result = run_cli(
        "check-rules",
        "--kernel",
        ROOT / "kernels" / "marsseg_kernel.py",
        "--metadata",
        ROOT / "kernel-metadata.json",
        env={"PYTHONPATH": str(ROOT / "src"), "KAGGLE_CONFIG_DIR": "/nonexistent"},
    )
    assert result.returncode == 0, result.stderr
    assert "rules check passed" in result.stdout
