import base64
import json
import shutil
from pathlib import Path

import pytest

from marsseg.kaggle.bundle import PAYLOAD_BEGIN, PAYLOAD_END, pack, write_kernel
from marsseg.kaggle.loaders import HELPER_MODULE
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


def _kernel_with(tmp_path, code: str, entry: str = "import os\n") -> Path:
    """A kernel the way `marsseg bundle` writes one: entry code, then the package as base64 of a zip."""
    blob = base64.b64encode(pack({"marsseg/__init__.py": b"", "marsseg/model.py": code.encode()})).decode()
    kernel = tmp_path / "kernel.py"
    kernel.write_text(entry + PAYLOAD_BEGIN + blob + "\n" + PAYLOAD_END + "\nmain()\n")
    return kernel


# (kernel code, the line refused, words of the reason): what the docs of Keras, keras_hub/keras_cv, PyTorch,
# torchvision, timm, segmentation_models_pytorch, Hugging Face and TensorFlow show for loading weights
LOADER_CASES = [
    ('import keras_hub\nnet = keras_hub.models.ResNetBackbone.from_preset("resnet_50_imagenet")', 2, "from_preset"),
    ('import keras_cv\nnet = keras_cv.models.DeepLabV3Plus.from_preset("deeplab_v3_plus", num_classes=5)', 2, "preset"),
    ('import keras_hub as kh\nseg = kh.models.ImageSegmenter.from_preset("hf://someone/unet")', 2, "from_preset"),
    ('net = build_backbone().from_preset("x", load_weights=False)', 1, "from_preset"),
    (
        'import segmentation_models_pytorch as smp\nnet = smp.Unet("resnet34", encoder_weights="imagenet")',
        2,
        "'imagenet'",
    ),
    ('import segmentation_models_pytorch as seg\nnet = seg.FPN("resnet34", encoder_weights="ssl")', 2, "'ssl'"),
    ('from segmentation_models_pytorch import Unet\nnet = Unet(encoder_name="resnet34")', 2, "default is 'imagenet'"),
    ('import segmentation_models_pytorch as smp\nnet = smp.create_model("unet", "resnet34", "imagenet")', 2, "that is"),
    ('net = smp.Unet("resnet34", encoder_weights=w)', 1, "encoder_weights=…"),
    ("model.load_weights(path)", 1, "model.load_weights: loads saved weights"),
    ('import keras\nkeras.saving.load_weights(net, "w.weights.h5")', 2, "load_weights"),
    ('import keras\nnet = keras.saving.load_model("fold0.keras")', 2, "keras.saving.load_model: loads a saved model"),
    ('import keras\nnet = keras.models.load_model("best.h5")', 2, "keras.models.load_model"),
    ('import tensorflow as tf\nnet = tf.keras.models.load_model("saved")', 2, "tf.keras.models.load_model"),
    ('from tensorflow import keras\nnet = keras.models.load_model("saved")', 2, "(tensorflow.keras.models.load_model)"),
    ('from keras.saving import load_model as lm\nnet = lm("x.keras")', 2, "lm (keras.saving.load_model)"),
    ('from tensorflow.keras.models import load_model\nnet = load_model("x.h5")', 2, "load_model"),
    ('from keras import layers\nlayer = layers.TFSMLayer("export", call_endpoint="serve")', 2, "TFSMLayer"),
    ('import tensorflow as tf\nnet = tf.keras.experimental.load_from_saved_model("d")', 2, "load_from_saved_model"),
    ('import keras\nnet = keras.applications.ResNet50(weights="imagenet")', 2, "weights='imagenet'"),
    ('import torch\nstate = torch.load("/kaggle/input/w/resnet.pth")', 2, "torch.load: loads a saved model"),
    ('import torch as T\nstate = T.load("w.pt", map_location="cpu")', 2, "T.load (torch.load)"),
    ('from torch import load\nstate = load("w.pt")', 2, "load (torch.load)"),
    ('from torch import *\nstate = load("w.pt")', 2, "torch.load"),
    ('import torch\nnet.load_state_dict(torch.load("w.pt"))', 2, "net.load_state_dict"),
    ('import torch\nnet = torch.jit.load("scripted.pt")', 2, "torch.jit.load"),
    ('import torch\nnet = torch.hub.load("pytorch/vision", "resnet50")', 2, "a hub loader"),
    ("import torch\nstate = torch.hub.load_state_dict_from_url(url)", 2, "load_state_dict_from_url"),
    ("from torch.utils import model_zoo\nstate = model_zoo.load_url(url)", 2, "(torch.utils.model_zoo.load_url)"),
    ("net = resnet50(weights=ResNet50_Weights.DEFAULT)", 1, "weights=ResNet50_Weights.DEFAULT"),
    ('net = resnet50(weights="IMAGENET1K_V2")', 1, "weights='IMAGENET1K_V2'"),
    ("net = deeplabv3_resnet50(weights=None, weights_backbone=ResNet50_Weights.IMAGENET1K_V1)", 1, "weights_backbone"),
    ('net = torchvision.models.get_model("resnet50", weights="DEFAULT")', 1, "weights='DEFAULT'"),
    ("import torchvision\nnet = torchvision.models.resnet50(pretrained=True)", 2, "pretrained=…"),
    ('import timm\nnet = timm.create_model("resnet50", pretrained=True)', 2, "pretrained=…"),
    ('net = create_model("resnet50", checkpoint_path="w.pth")', 1, "checkpoint_path=…"),
    ('net = create_model("hf-hub:timm/resnet50.a1_in1k")', 1, "names a model on a hub"),
    ('from transformers import AutoModel\nnet = AutoModel.from_pretrained("nvidia/mit-b0")', 2, "from_pretrained"),
    ('net = SegformerForSemanticSegmentation.from_pretrained("./segformer")', 1, "from_pretrained"),
    ('from transformers import pipeline\nseg = pipeline("image-segmentation")', 2, "pretrained Hugging Face pipeline"),
    ('from huggingface_hub import hf_hub_download as get\npath = get("a/b", "w.h5")', 2, "get (huggingface_hub.hf_hub"),
    ('import huggingface_hub\nfolder = huggingface_hub.snapshot_download("a/b")', 2, "snapshot_download"),
    ('from huggingface_hub import from_pretrained_keras\nnet = from_pretrained_keras("a/b")', 2, "Hub model loader"),
    ('from safetensors.torch import load_file\nstate = load_file("w.safetensors")', 2, "(safetensors.torch.load_file)"),
    ('import safetensors\nwith safetensors.safe_open("w.safetensors", "pt") as f:\n    pass', 2, "safe_open"),
    ('import tensorflow as tf\nnet = tf.saved_model.load("export")', 2, "(tensorflow.saved_model.load)"),
    ("import tensorflow as tf\ntf.train.Checkpoint(model=net).restore(path)", 2, "restores a checkpoint"),
    ("import tensorflow as tf\nckpt = tf.train.Checkpoint(model=net)\nckpt.restore(path)", 3, "restores a checkpoint"),
    ("import tensorflow as tf\nreader = tf.train.load_checkpoint(folder)", 2, "reads a checkpoint"),
    ("import tensorflow_hub as th\nnet = th.load(handle)", 2, "th.load (tensorflow_hub.load)"),
    ('import tensorflow as tf\npath = tf.keras.utils.get_file("w.h5", url)', 2, "get_file"),
    ('import kagglehub\npath = kagglehub.model_download("google/unet/keras/1")', 2, "kagglehub download"),
    ('net = SegModel.load_from_checkpoint("last.ckpt")', 1, "load_from_checkpoint"),
    ('trainer.fit(net, ckpt_path="last.ckpt")', 1, "ckpt_path=…"),
    ('import pickle\nnet = pickle.load(open("net.pkl", "rb"))', 2, "pickle.load"),
    ('import joblib\nnet = joblib.load("net.joblib")', 2, "joblib.load"),
    ('weights = np.load("w.npz", allow_pickle=True)', 1, "allow_pickle"),
    ('import torch\nread = torch.load\nstate = read("w.pt")', 3, "read (torch.load)"),
    ('import importlib\nt = importlib.import_module("torch")\nstate = t.load("w.pt")', 3, "t.load (torch.load)"),
    ('import torch\nstate = getattr(torch, "load")("w.pt")', 2, "(torch.load)"),
    ('getattr(net, "load_weights")("w.h5")', 1, "load_weights"),
    ("import torch as T\nexec(\"state = T.load('w.pt')\")", 2, "in the code it runs: calls T.load (torch.load)"),
    ("exec(\"net = smp.Unet('resnet34', encoder_weights='imagenet')\")", 1, "in the code it runs: encoder_weights"),
    # the one allowed loader, under another name or from elsewhere
    (
        'from mylib import load_run_model\nnet = load_run_model("fold0.keras")',
        2,
        "load_run_model (mylib.load_run_model)",
    ),
    ('from marsseg.training.other import load_run_model\nnet = load_run_model("f.keras")', 2, "only as imported"),
    ('def load_run_model(path):\n    return path\n\nnet = load_run_model("fold0.keras")', 4, "only as imported"),
    ('from .saved import load_run_model\nnet = load_run_model("f.keras")', 2, "(marsseg.saved.load_run_model)"),
    (
        'from marsseg.training.saved import load_run_model\nnet = load_run_model("/kaggle/input/x/unet.keras")',
        2,
        "run saved",
    ),
    ('from marsseg.training import saved\nnet = saved.load_run_model("https://x.org/unet.keras")', 2, "run saved"),
]
# what a refusal says to do instead
FIXES = ("train from scratch", "=None", "=False", "offline", "import it from there", "a path under its output")


@pytest.mark.parametrize("code, line, words", LOADER_CASES, ids=[c[0].splitlines()[-1][:50] for c in LOADER_CASES])
def test_each_way_to_load_weights_is_refused_in_the_kernel(tmp_path, code, line, words):
    found = check_rules(_kernel_with(tmp_path, code + "\n"), ROOT / "kernel-metadata.json", secrets=())
    here = [v for v in found if v.where == f"marsseg/model.py:{line}" and words in v.reason]
    assert here, [str(v) for v in found]
    assert "\n" not in str(here[0]) and any(fix in here[0].reason for fix in FIXES), str(here[0])


@pytest.mark.parametrize(
    "entry, words",
    [
        ('import torch as T\nstate = T.load("w.pt")\n', "T.load (torch.load)"),
        ('import keras\nnet = keras.saving.load_model("x.keras")\n', "keras.saving.load_model"),
        ('from .saved import load_run_model\nnet = load_run_model("x.keras")\n', "only as imported"),
    ],
)
def test_the_entry_code_of_the_kernel_is_checked_too(tmp_path, entry, words):
    kernel = _kernel_with(tmp_path, "x = 1\n", entry=entry)
    found = check_rules(kernel, ROOT / "kernel-metadata.json", secrets=())
    assert [v.where for v in found if words in v.reason] == [f"{kernel}:2"], [str(v) for v in found]


@pytest.mark.parametrize(
    "code",
    [
        'from marsseg.training.saved import load_run_model\nnet = load_run_model(out / "model_stage1_fold1.keras")',
        "from marsseg.training.saved import load_run_model as load\nnets = [load(p) for p in fold_paths]",
        "from marsseg.training import saved\nnet = saved.load_run_model(path)",
        "import marsseg.training.saved as s\nnet = s.load_run_model(path)",
        "import marsseg.training.saved\nnet = marsseg.training.saved.load_run_model(path)",
        'import segmentation_models_pytorch as smp\nnet = smp.Unet("resnet34", encoder_weights=None, classes=5)',
        'import segmentation_models_pytorch as smp\nnet = smp.Unet("resnet34", 5, None)',
        'import segmentation_models_pytorch as smp\nloss = smp.losses.DiceLoss("multiclass")',
        "import keras_hub\nnet = keras_hub.models.ResNetBackbone(stackwise_num_filters=[64], stackwise_num_blocks=[2])",
        "net = resnet50(weights=None)",
        'net = create_model("resnet50", pretrained=False)',
        "data = np.load(path, allow_pickle=False)",
        "net.set_weights(best_weights)",
        'net.save(out / "model.keras")',
        "text = 'torch.load and from_preset are refused'",
        'import keras\nnet = keras.saving.load_model("x.keras")  # rules: allow',
    ],
)
def test_training_from_scratch_and_the_one_loader_pass(tmp_path, code):
    assert check_source(code + "\n", "marsseg/pipeline/ensemble.py") == []
    assert check_rules(_kernel_with(tmp_path, code + "\n"), ROOT / "kernel-metadata.json", secrets=()) == []


def test_the_loader_import_resolves_relative_to_the_module():
    code = "from ..training.saved import load_run_model\nnet = load_run_model(path)\n"
    assert check_source(code, "marsseg/pipeline/ensemble.py") == []
    assert "only as imported" in check_source(code, "marsseg/pipeline/sub/ensemble.py")[0].reason


HELPER = """import keras


def load_run_model(path):
    return keras.saving.load_model(str(path), compile=False)


def load_folds(paths):
    return [load_run_model(p) for p in paths]
"""


def test_only_the_helper_module_may_call_keras_loader_and_nothing_else():
    assert check_source(HELPER, HELPER_MODULE) == []
    elsewhere = check_source(HELPER, "marsseg/training/other.py")
    assert [v.where for v in elsewhere] == ["marsseg/training/other.py:5", "marsseg/training/other.py:9"]
    torch_in_helper = HELPER.replace("keras.saving.load_model(str(path), compile=False)", "torch.load(path)")
    assert "torch.load" in check_source(torch_in_helper, HELPER_MODULE)[0].reason


def test_the_kits_saved_module_passes_as_the_helper():
    path = ROOT / "src" / HELPER_MODULE
    if not path.is_file():
        pytest.skip(f"{HELPER_MODULE} is not written yet")
    assert check_source(path.read_text(), HELPER_MODULE) == []


def test_what_the_kernel_would_embed_now_passes():
    assert check_rules(None, ROOT / "kernel-metadata.json", secrets=()) == []


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


def test_cli_refuses_a_loader_in_one_line_with_where_and_how(tmp_path):
    kernel = _kernel_with(tmp_path, 'import torch\nstate = torch.load("/kaggle/input/w/unet.pth")\n')
    result = run_cli(
        "check-rules",
        "--kernel",
        kernel,
        "--metadata",
        ROOT / "kernel-metadata.json",
        env={"PYTHONPATH": str(ROOT / "src"), "KAGGLE_CONFIG_DIR": "/nonexistent"},
    )
    assert "1 rule violation(s)" in one_line_error(result)
    assert "marsseg/model.py:2: calls torch.load: " in result.stdout and "load_run_model" in result.stdout
