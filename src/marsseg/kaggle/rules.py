"""The competition's rules, checked before anything leaves the machine: `marsseg check-rules`.

Run automatically before every push and every submit. It reads what would be uploaded — the
bundled kernel (every embedded module and the entry body) and `kernel-metadata.json` — and fails on:
  * pretrained weights and model loaders (src/marsseg/kaggle/loaders.py, names resolved through imports and
    aliases): pretrained-model packages, `weights=`/`encoder_weights=`/`pretrained=` arguments, `from_preset`,
    `from_pretrained`, `load_model`, `load_weights`, `torch.load`, hub and checkpoint loaders; the one allowed
    load is `load_run_model` from `marsseg.training.saved` (a model the run saved itself);
  * downloads at run time: `get_file`, `urlopen`, `urlretrieve`, Hub downloads, `requests.get/post`, `pip install`;
  * internet enabled in the metadata (`enable_internet` must be false: Kaggle's default is true);
  * data sources other than the competition (datasets, models, other kernels), unless allowed;
  * a machine shape that is not one of today's GPU shapes (retired ones named with their replacement), and an
    image pinning other than "original" or "latest";
  * credentials inside the bundle: kaggle.json contents, KAGGLE_KEY/KAGGLE_API_TOKEN assignments, and the
    key or token of the credentials found on this machine (compared, never printed).
A line ending in `# rules: allow` is exempt (for the kit's own tooling that never runs on Kaggle).
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path

from marsseg.competition import MARS, Competition
from marsseg.errors import UserError
from marsseg.kaggle.bundle import (
    IMAGE_PINNING,
    IMAGE_PINNINGS,
    METADATA_PATH,
    accelerator_problem,
    embedded_sources,
    entry_text,
    kernel_sources,
)
from marsseg.kaggle.client import find_credentials
from marsseg.kaggle.loaders import FIX, Names, check_loaders, literal_code

ALLOW_MARK = "# rules: allow"

# numpy has weights= too (np.average): only these say "pretrained" whatever they are given to
_WEIGHT_ARGS = ("encoder_weights", "weights_backbone", "backbone_weights")
_CHECKPOINT_ARGS = ("checkpoint_path", "ckpt_path", "resume_from_checkpoint", "pretrained_model_name_or_path")
_CHECKPOINT_ARGS += ("pretrained_cfg", "pretrained_cfg_overlay")  # timm: a file or a hub entry
_HUB_PREFIXES = ("hf-hub:", "hf_hub:", "hf://", "kaggle://", "https://tfhub.dev/", "https://huggingface.co/")
_CREDENTIAL_PATTERNS = (
    (re.compile(r"""["']key["']\s*:\s*["'][0-9a-f]{32}["']"""), "kaggle.json contents (a 32-hex API key)"),
    (
        re.compile(r"""KAGGLE_(?:KEY|API_TOKEN)["']?\]?\s*[:=,]\s*["'][A-Za-z0-9_\-]{16,}["']"""),
        "a KAGGLE_KEY / KAGGLE_API_TOKEN value",
    ),
    (re.compile(r"""\bKGAT_[A-Za-z0-9]{16,}"""), "a Kaggle API token (KGAT_…)"),
)


class RulesError(UserError):
    """The upload would break the competition's rules; the message lists why."""


@dataclass(frozen=True)
class Violation:
    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


# ----------------------------------------------------------------------------------- sources
def check_source(text: str, where: str) -> list[Violation]:
    """Pretrained weights, downloads and pip installs in one Python source."""
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        return [Violation(f"{where}:{exc.lineno}", f"does not parse ({exc.msg}); the kernel would fail")]
    lines = text.splitlines()
    found: list[Violation] = []

    def add(node, reason):
        line = lines[node.lineno - 1] if 0 < node.lineno <= len(lines) else ""
        violation = Violation(f"{where}:{node.lineno}", reason)
        if not line.rstrip().endswith(ALLOW_MARK) and violation not in found:
            found.append(violation)

    _check_tree(tree, where, add)
    return found


def _check_tree(tree: ast.AST, where: str, add, names: Names | None = None) -> None:
    names = check_loaders(tree, where, add, names)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            _check_call(node, add)
            code = literal_code(node, names)
            if code is not None:  # reported at the exec/eval line, the only line there is
                _check_tree(
                    code, where, lambda _inner, reason, at=node: add(at, f"in the code it runs: {reason}"), names
                )


def _check_call(node: ast.Call, add) -> None:
    name = _dotted(node.func) or ""
    short = name.rsplit(".", 1)[-1]
    if name in {"requests.get", "requests.post", "requests.request", "wget.download", "httpx.get"}:
        add(node, f"calls {name}: a download at run time (Kaggle runs kernels offline)")
    if short in {"system", "run", "call", "check_call", "check_output", "Popen", "popen"}:
        words = " ".join(_strings(node))
        if re.search(r"\bpip3?\b.*\binstall\b", words):
            add(node, "runs pip install: Kaggle runs kernels offline; use what its image ships")
    for value in list(node.args) + [k.value for k in node.keywords]:
        text = _string(value)
        if text and text.startswith(_HUB_PREFIXES):
            add(node, f"{short}({text!r}) names a model on a hub (pretrained weights); {FIX}")
    for key, value in ((k.arg, k.value) for k in node.keywords if k.arg):
        _check_argument(node, short, key, value, add)


def _check_argument(node: ast.Call, short: str, key: str, value, add) -> None:
    """Keyword arguments that ask for pretrained weights or a checkpoint."""
    if _is_off(value):
        return
    if key == "weights" or key in _WEIGHT_ARGS:
        text = _string(value)
        if text is not None or "Weights" in ast.unparse(value):  # a string, or a torchvision `X_Weights.DEFAULT`
            shown = repr(text) if text is not None else ast.unparse(value)[:60]
            add(node, f"{key}={shown}: pretrained weights are forbidden (use {key}=None)")
        elif key in _WEIGHT_ARGS or short[:1].isupper():
            add(node, f"{short}({key}=…): pretrained weights are forbidden (use {key}=None)")
    elif key in ("pretrained", "pretrained_backbone"):
        add(node, f"{short}({key}=…): pretrained weights are forbidden (use {key}=False)")
    elif key in _CHECKPOINT_ARGS:
        add(node, f"{short}({key}=…) loads weights from a file or a hub; {FIX}")
    elif key == "allow_pickle":
        add(node, f"{short}(allow_pickle=…) can unpickle a saved model; {FIX}")


def _dotted(node) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _string(node) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _is_off(node) -> bool:
    return isinstance(node, ast.Constant) and node.value in (None, False, "")


def _strings(node) -> list[str]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


# -------------------------------------------------------------------------------- credentials
def check_credentials(text: str, where: str, secrets: tuple[str, ...] = ()) -> list[Violation]:
    found = []
    for pattern, what in _CREDENTIAL_PATTERNS:
        match = pattern.search(text)
        if match and not _line_of(text, match.start()).rstrip().endswith(ALLOW_MARK):
            found.append(
                Violation(
                    f"{where}:{text.count(chr(10), 0, match.start()) + 1}", f"contains {what}: never bundle credentials"
                )
            )
    for secret in secrets:
        if secret and len(secret) >= 8 and secret in text:
            line = text.count("\n", 0, text.index(secret)) + 1
            found.append(
                Violation(
                    f"{where}:{line}",
                    "contains your Kaggle API key or token (from this machine's credentials): remove it",
                )
            )
    return found


def _line_of(text: str, index: int) -> str:
    start = text.rfind("\n", 0, index) + 1
    end = text.find("\n", index)
    return text[start : end if end >= 0 else len(text)]


def local_secrets() -> tuple[str, ...]:
    """The key and token of the credentials on this machine, to look for (never to print)."""
    try:
        return find_credentials(require=False).secrets()
    except Exception:  # the check must not fail because credentials are unreadable
        return ()


# ----------------------------------------------------------------------------------- metadata
def check_metadata(
    meta: dict, where: str = str(METADATA_PATH), competition: Competition = MARS, allowed_sources: tuple[str, ...] = ()
) -> list[Violation]:
    found = []
    if meta.get("enable_internet", True) is not False:
        found.append(
            Violation(where, "enable_internet must be false (Kaggle's default is true; the competition runs offline)")
        )
    competitions = meta.get("competition_sources", [])
    if competition.slug not in competitions:
        found.append(Violation(where, f"competition_sources must include {competition.slug!r}"))
    for key in ("competition_sources", "dataset_sources", "kernel_sources", "model_sources"):
        for source in meta.get(key, []) or []:
            if source != competition.slug and source not in allowed_sources:
                found.append(
                    Violation(
                        where,
                        f"{key} lists {source!r}: only the competition's own data is allowed "
                        "(allow one with --allow-source SLUG)",
                    )
                )
    for key, want in (("kernel_type", "script"), ("language", "python")):
        if meta.get(key) != want:
            found.append(Violation(where, f"{key} must be {want!r}, not {meta.get(key)!r}"))
    shape = meta.get("machine_shape")
    problem = accelerator_problem(str(shape)) if shape else "machine_shape is missing (Kaggle would pick its default)"
    if problem:
        found.append(Violation(where, f"{problem} (in machine_shape)"))
    pinning = meta.get("docker_image_pinning_type")
    if pinning not in IMAGE_PINNINGS:
        found.append(
            Violation(
                where,
                f"docker_image_pinning_type is {pinning!r}; use {IMAGE_PINNING!r} (later versions keep the image the "
                "canary passed on) or 'latest' (to move to Kaggle's newest image; run `make canary` on it first)",
            )
        )
    return found


def load_metadata(path: Path = METADATA_PATH) -> dict:
    path = Path(path)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RulesError(f"{path}: no such file; the kit ships one at the repository root") from None
    except json.JSONDecodeError as exc:
        raise RulesError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(meta, dict):
        raise RulesError(f"{path}: expected a JSON object")
    return meta


# ---------------------------------------------------------------------------------- the check
def check_rules(
    kernel: Path | None = None,
    metadata: Path = METADATA_PATH,
    allowed_sources: tuple[str, ...] = (),
    secrets: tuple[str, ...] | None = None,
) -> list[Violation]:
    """Every violation in the kernel script (or, with none given or found, the package's sources) and the metadata."""

    secrets = local_secrets() if secrets is None else secrets
    found: list[Violation] = []
    if kernel is not None and Path(kernel).is_file():
        kernel = Path(kernel)
        text = kernel.read_text(encoding="utf-8")
        found += check_credentials(text, str(kernel), secrets)
        files = embedded_sources(text)
        found += check_source(entry_text(text), str(kernel))
    else:
        files = kernel_sources()
    for name, data in files.items():
        source = data.decode("utf-8", "replace")
        found += check_source(source, name)
        found += check_credentials(source, name, secrets)
    meta = load_metadata(metadata)
    found += check_metadata(meta, str(metadata), allowed_sources=allowed_sources)
    return found


def enforce_rules(
    kernel: Path | None = None, metadata: Path = METADATA_PATH, allowed_sources: tuple[str, ...] = (), log=print
) -> None:
    """Raise RulesError (exit 2) naming the first violations; log a one-line pass otherwise."""
    found = check_rules(kernel, metadata, allowed_sources)
    if found:
        more = f" (and {len(found) - 3} more: run `marsseg check-rules`)" if len(found) > 3 else ""
        raise RulesError("competition rules check failed: " + "; ".join(map(str, found[:3])) + more)
    log("rules check passed: no pretrained weights or downloads, internet off, competition data only, no credentials")
