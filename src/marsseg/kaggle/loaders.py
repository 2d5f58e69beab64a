"""Pretrained weights and model loaders in a kernel's source, for `marsseg check-rules`: training is from scratch.

Every way to load a model or weights is refused but one: `load_run_model` imported from `marsseg.training.saved`,
which loads a model the run itself saved (the folds of an ensemble). Names are resolved through imports
(`import torch as T`, `from keras.saving import load_model as lm`, relative ones), simple assignments
(`f = torch.load`, `m = importlib.import_module("torch")`) and `getattr(x, "load")`; a literal given to
exec/eval/compile is code too (see `literal_code`).
"""

from __future__ import annotations

import ast

ALLOWED_LOADER = "marsseg.training.saved.load_run_model"
HELPER_MODULE = "marsseg/training/saved.py"
# the helper has to call Keras' own loader; it alone may, and that loader only
_HELPER_MAY_USE = {"keras.saving.load_model", "keras.models.load_model"}
FIX = "train from scratch; the one allowed load is load_run_model from marsseg.training.saved (the run's own model)"
OFFLINE = "Kaggle runs kernels offline"

PRETRAINED_MODULES = tuple(
    "keras.applications tensorflow_hub kagglehub huggingface_hub torch.hub torch.utils.model_zoo torchvision.models"
    " timm transformers open_clip pretrainedmodels segmentation_models".split()
)
# these names load weights whatever they hang on (`model.load_weights`, `Net.from_preset`, a bare import)
_LOADS = {
    "from_preset": "a keras_hub/keras_cv preset (pretrained weights)",
    "from_pretrained": "a from_pretrained() loader (pretrained weights)",
    "from_pretrained_keras": "a Hugging Face Hub model loader",
    "load_pretrained": "a pretrained-weights loader",
    "load_state_dict_from_url": "a download of pretrained weights",
    "KerasLayer": "a TF-Hub KerasLayer (pretrained weights)",
    "TFSMLayer": "reloads a SavedModel as a layer",
    "load_state_dict": "loads weights into a model",
    **dict.fromkeys(("load_model", "load_from_saved_model"), "loads a saved model"),
    **dict.fromkeys(("load_weights", "load_own_variables"), "loads saved weights"),
    **dict.fromkeys(
        ("load_from_checkpoint", "load_checkpoint", "load_variable", "init_from_checkpoint"), "reads a checkpoint"
    ),
}
_DOWNLOADS = {
    **dict.fromkeys(("hf_hub_download", "snapshot_download", "cached_download"), "a Hugging Face Hub download"),
    **dict.fromkeys(("model_download", "dataset_download"), "a kagglehub download"),
    "download_url_to_file": "a download at run time",
    "get_file": "keras get_file(), a download at run time",
    "urlopen": "urlopen(), a download at run time",
    "urlretrieve": "urlretrieve(), a download at run time",
}
# module.verb pairs that read a saved model or weights (torch.load, pickle.load, safetensors.torch.load_file, …)
_LOAD_MODULES = tuple(
    "torch torch.jit torch.export tensorflow.saved_model tensorflow.saved_model.loader pickle joblib dill cloudpickle"
    " onnx safetensors safetensors.torch safetensors.tensorflow safetensors.numpy safetensors.flax".split()
)
_LOAD_VERBS = ("load", "loads", "load_file", "safe_open", "Unpickler")
_FULL = {
    **dict.fromkeys(("torch.hub.load", "tensorflow_hub.load"), "a hub loader (pretrained weights)"),
    "tensorflow_hub.resolve": "a hub download",
    "tensorflow_hub.Module": "a TF-Hub module (pretrained weights)",
    "torch.utils.model_zoo.load_url": "a download of pretrained weights",
    "torch.package.PackageImporter": "loads a packaged model",
    "torchvision.models.get_weight": "pretrained torchvision weights",
    "transformers.pipeline": "a pretrained Hugging Face pipeline",
    **dict.fromkeys(("onnxruntime.InferenceSession", "tensorflow.lite.Interpreter"), "loads a saved model"),
}
_CHECKPOINTS = ("Checkpoint()", "CheckpointManager()", "Saver()")
_RESTORES = ("restore", "read", "restore_or_initialize")
# conventional names, so a snippet that does not import them still resolves
_USUAL = {
    "tf": "tensorflow",
    "hub": "tensorflow_hub",
    "smp": "segmentation_models_pytorch",
    "sm": "segmentation_models",
}
# one spelling per API: tf.keras, tensorflow.keras, keras.src and tf.compat.v1 name the same functions
_SAME = (
    ("tensorflow.compat.v1.", "tensorflow."),
    ("tensorflow.compat.v2.", "tensorflow."),
    ("tensorflow.python.keras.", "keras."),
    ("tensorflow.keras.", "keras."),
    ("tf_keras.", "keras."),
    ("keras.src.", "keras."),
    ("keras.api.", "keras."),
)
_NOT_A_PATH = ("http://", "https://", "hf://", "kaggle://", "gs://", "s3://", "/kaggle/input")


def canonical(name: str) -> str:
    """`name` as the API's one spelling (`tensorflow.keras.models.load_model` -> `keras.models.load_model`)."""
    name += "."
    changed = True
    while changed:
        changed = False
        for old, new in _SAME:
            if name.startswith(old):
                name, changed = new + name[len(old) :], True
    return name[:-1]


def is_pretrained_module(name: str) -> bool:
    name = canonical(name)
    return any(name == m or name.startswith(m + ".") for m in PRETRAINED_MODULES)


class Names:
    """What each name of one source may stand for: its imports, simple assignments and top-level definitions."""

    def __init__(self, tree: ast.AST, module: str = "", is_package: bool = False, parent: Names | None = None):
        self.bound: dict[str, list] = {}
        self.stars: list[str] = []
        self.parent = parent
        self._memo: dict[str, list[str]] = {}
        self._busy: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    top = alias.name.split(".")[0]
                    self._bind(alias.asname or top, alias.name if alias.asname else top)
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(node, module, is_package)
                for alias in node.names:
                    if alias.name == "*":
                        self.stars.append(base)
                    else:
                        self._bind(alias.asname or alias.name, f"{base}.{alias.name}")
            elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if isinstance(target, ast.Name):
                        self._bind(target.id, node.value)
        for node in getattr(tree, "body", []) if module else []:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self._bind(node.name, f"{module}.{node.name}")

    def _bind(self, name: str, what) -> None:
        self.bound.setdefault(name, []).append(what)

    def resolve(self, node) -> list[str]:
        """Dotted names `node` may stand for ('?' where unknown), at most a few."""
        if isinstance(node, ast.Name):
            return self.name(node.id)
        if isinstance(node, ast.Attribute):
            return _few(f"{base}.{node.attr}" for base in self.resolve(node.value))
        if isinstance(node, ast.Call):
            func = self.resolve(node.func)
            text = _string(node.args[1]) if len(node.args) > 1 else None
            if "getattr" in func and text:
                return _few(f"{base}.{text}" for base in self.resolve(node.args[0]))
            text = _string(node.args[0]) if node.args else None
            if text and ("importlib.import_module" in func or "__import__" in func):
                return [text if "importlib.import_module" in func else text.split(".")[0]]
            return _few(f"{base}()" for base in func)
        return ["?"]

    def name(self, name: str) -> list[str]:
        if name in self._memo:
            return self._memo[name]
        if name not in self.bound:
            if self.parent is not None:
                return self.parent.name(name)
            return _few([_USUAL.get(name, name)] + [f"{star}.{name}" for star in self.stars])
        if name in self._busy:  # `x = x.parent`: stop where it loops
            return ["?"]
        self._busy.add(name)
        out = []
        for what in self.bound[name]:
            out += [what] if isinstance(what, str) else self.resolve(what)
        self._busy.discard(name)
        self._memo[name] = _few(out)
        return self._memo[name]


def check_loaders(tree: ast.AST, where: str, add, parent: Names | None = None) -> Names:
    """Call add(node, reason) for every pretrained-weights import, loader and download in `tree`; its names."""
    module, is_package = _module_of(where)
    names = Names(tree, module, is_package, parent)
    called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    module_lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if is_pretrained_module(alias.name):
                    add(node, f"imports {alias.name}: pretrained models are forbidden; {FIX}")
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, is_package)
            bad = next((n for n in [base] + [f"{base}.{a.name}" for a in node.names] if is_pretrained_module(n)), None)
            if bad:
                add(node, f"imports {bad}: pretrained models are forbidden; {FIX}")
        elif _is_reference(node, names):
            resolved = names.resolve(node)
            found, shown = [canonical(c) for c in resolved], _shown(node, resolved)
            verb = "calls" if id(node) in called else "uses"
            if isinstance(node, ast.Attribute) and node.lineno not in module_lines:
                if any(is_pretrained_module(c) for c in found):  # `a.b.c` also visits `a.b`: a line once
                    module_lines.add(node.lineno)
                    add(node, f"uses {shown}: pretrained models are forbidden; {FIX}")
            reason = _loader_reason(found, where)
            if reason:
                add(node, f"{verb} {shown}: {reason}")
        if isinstance(node, ast.Call):
            _check_call(node, names, add)
    return names


def _is_reference(node, names: Names) -> bool:
    """A name read, an attribute read, or `getattr(x, "name")` (the same read, spelled as a string)."""
    if isinstance(node, (ast.Name, ast.Attribute)):
        return isinstance(node.ctx, ast.Load)
    named = isinstance(node, ast.Call) and len(node.args) > 1 and _string(node.args[1]) is not None
    return named and "getattr" in names.resolve(node.func)


def _loader_reason(found: list[str], where: str) -> str | None:
    if all(c == ALLOWED_LOADER for c in found):
        return None
    if where == HELPER_MODULE and all(c in _HELPER_MAY_USE for c in found):
        return None
    for name in found:
        parts = name.split(".")
        last = parts[-1]
        if last == "load_run_model":
            return "load_run_model is allowed only as imported from marsseg.training.saved; import it from there"
        if last in _LOADS or last in _DOWNLOADS:
            return f"{_LOADS[last]}; {FIX}" if last in _LOADS else f"{_DOWNLOADS[last]}; {OFFLINE}"
        head = ".".join(parts[:-1])
        if name in _FULL or (head in _LOAD_MODULES and last in _LOAD_VERBS):
            return f"{_FULL.get(name, 'loads a saved model or weights')}; {FIX}"
        if last in _RESTORES and len(parts) > 1 and parts[-2].endswith(_CHECKPOINTS):
            return f"restores a checkpoint; {FIX}"
    return None


def _check_call(node: ast.Call, names: Names, add) -> None:
    func = [canonical(c) for c in names.resolve(node.func)]
    short = func[0].rsplit(".", 1)[-1].rstrip("()")
    args = {k.arg: k.value for k in node.keywords if k.arg}
    if ALLOWED_LOADER in func:
        for value in list(node.args[:1]) + [args[k] for k in ("path", "filepath") if k in args]:
            text = _string(value)
            if text and text.startswith(_NOT_A_PATH):
                add(node, f"load_run_model({text!r}): it loads only what this run saved; pass a path under its output")
    smp = _smp_builder(func)
    if smp and "encoder_weights" not in args and None not in (k.arg for k in node.keywords):
        # smp's builders take (encoder_name, encoder_depth, encoder_weights, …)
        third = node.args[2] if smp == "segmentation_models_pytorch" and len(node.args) > 2 else None
        if third is None:
            add(node, f"{short}(…) without encoder_weights=None: its default is 'imagenet' (pass encoder_weights=None)")
        elif not _is_off(third):
            add(node, f"{short}(…, {ast.unparse(third)[:40]}): that is encoder_weights; use encoder_weights=None")


def literal_code(node: ast.Call, names: Names) -> ast.Module | None:
    """The code of `exec("…")`, `eval("…")` or `compile("…", …)`: code in a string literal is code too."""
    func = names.resolve(node.func)
    text = _string(node.args[0]) if node.args and {"exec", "eval", "compile"} & set(func) else None
    try:
        return ast.parse(text) if text else None
    except SyntaxError:
        return None


def _smp_builder(func: list[str]) -> str | None:
    """'segmentation_models_pytorch' (or the Keras 'segmentation_models') for a model builder: those default to
    encoder_weights='imagenet'."""
    for name in func:
        parts = name.split(".")
        if len(parts) == 2 and parts[0] in ("segmentation_models_pytorch", "segmentation_models"):
            if parts[1][:1].isupper() or parts[1] == "create_model":
                return parts[0]
    return None


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    base = node.module or ""
    if not node.level:
        return base
    if not module:  # unresolvable here: keep the dots, so it never passes for the kit's own helper
        return "." * node.level + base
    parts = module.split(".")
    anchor = parts if is_package else parts[:-1]
    anchor = anchor[: len(anchor) - (node.level - 1)]
    return ".".join(anchor + ([base] if base else []))


def _module_of(where: str) -> tuple[str, bool]:
    """('marsseg.training.saved', is a package) for a file of the bundled package; ('', False) for anything else."""
    if not (where.startswith("marsseg/") and where.endswith(".py")):
        return "", False
    dotted = where[:-3].replace("/", ".")
    if dotted.endswith(".__init__"):
        return dotted[: -len(".__init__")], True
    return dotted, False


def _shown(node, resolved: list[str]) -> str:
    text = ast.unparse(node)
    text = text if len(text) <= 60 else text[:57] + "..."
    other = [r for r in resolved if r != text and "?" not in r]
    return f"{text} ({other[0]})" if other else text


def _few(names) -> list[str]:
    return list(dict.fromkeys(names))[:8] or ["?"]


def _string(node) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _is_off(node) -> bool:
    return isinstance(node, ast.Constant) and node.value in (None, False, "")
