"""The competition's rules, checked before anything leaves the machine: `marsseg check-rules`.

Run automatically before every push and every submit. It reads what would be uploaded — the
bundled kernel (every embedded module and the entry body) and `kernel-metadata.json` — and fails on:
  * pretrained weights: a `weights=` argument that is a string (e.g. 'imagenet', a file) or any non-None value
    given to a class (`SomeNet(weights=w)`), `keras.applications`, TF-Hub / kagglehub / torch.hub loaders,
    `from_pretrained(...)`, `pretrained=True`;
  * downloads at run time: `get_file`, `urlopen`, `urlretrieve`, `requests.get/post`, `pip install`;
  * internet enabled in the metadata (`enable_internet` must be false: Kaggle's default is true);
  * data sources other than the competition (datasets, models, other kernels), unless allowed;
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
from marsseg.kaggle.bundle import embedded_sources, entry_text, kernel_sources
from marsseg.kaggle.client import find_credentials

METADATA_PATH = Path("kernel-metadata.json")
ALLOW_MARK = "# rules: allow"

_PRETRAINED_MODULES = (
    "keras.applications",
    "tensorflow.keras.applications",
    "tf.keras.applications",
    "tensorflow_hub",
    "kagglehub",
    "torch.hub",
    "torchvision.models",
    "timm",
    "transformers",
    "segmentation_models",
)
_LOADER_CALLS = {
    "from_pretrained": "a from_pretrained() loader (pretrained weights)",
    "KerasLayer": "a TF-Hub KerasLayer (pretrained weights)",
    "load_state_dict_from_url": "a download of pretrained weights",
    "get_file": "keras get_file(), a download at run time",
    "urlopen": "urlopen(), a download at run time",
    "urlretrieve": "urlretrieve(), a download at run time",
    "model_download": "a kagglehub model download",
    "dataset_download": "a kagglehub dataset download",
}
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
    found = []
    attribute_lines = set()

    def add(node, reason):
        line = lines[node.lineno - 1] if 0 < node.lineno <= len(lines) else ""
        if not line.rstrip().endswith(ALLOW_MARK):
            found.append(Violation(f"{where}:{node.lineno}", reason))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _is_pretrained_module(alias.name):
                    add(node, f"imports {alias.name} (pretrained models are forbidden)")
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            bad = next((n for n in names if _is_pretrained_module(n)), None)
            if bad:
                add(node, f"imports {bad} (pretrained models are forbidden)")
        elif isinstance(node, ast.Attribute):
            dotted = _dotted(node)
            if (
                dotted
                and any(dotted == m or dotted.startswith(m + ".") for m in _PRETRAINED_MODULES if m.count(".") >= 1)
                and not isinstance(getattr(node, "ctx", None), ast.Store)
            ):
                if node.lineno not in attribute_lines:  # `a.b.c` also visits `a.b`: report a line once
                    attribute_lines.add(node.lineno)
                    add(node, f"uses {dotted} (pretrained models are forbidden)")
        elif isinstance(node, ast.Call):
            _check_call(node, add)
    return found


def _check_call(node: ast.Call, add) -> None:
    name = _dotted(node.func) or ""
    short = name.rsplit(".", 1)[-1]
    if short in _LOADER_CALLS:
        add(node, f"calls {name or short}: {_LOADER_CALLS[short]}")
    if name in {"hub.load", "tensorflow_hub.load", "torch.hub.load"}:
        add(node, f"calls {name}: a hub loader (pretrained weights)")
    if name in {"requests.get", "requests.post", "requests.request", "wget.download", "httpx.get"}:
        add(node, f"calls {name}: a download at run time (Kaggle runs kernels offline)")
    for keyword in node.keywords:
        value = keyword.value
        if keyword.arg == "weights":
            is_none = isinstance(value, ast.Constant) and value.value is None
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                add(node, f"weights={value.value!r}: pretrained weights are forbidden (use weights=None)")
            elif not is_none and short[:1].isupper():
                add(node, f"{short}(weights=…): pretrained weights are forbidden (use weights=None)")
        if keyword.arg == "pretrained" and not (isinstance(value, ast.Constant) and value.value in (False, None)):
            add(node, f"{short}(pretrained=…): pretrained weights are forbidden")
    if short in {"system", "run", "call", "check_call", "check_output", "Popen", "popen"}:
        words = " ".join(_strings(node))
        if re.search(r"\bpip3?\b.*\binstall\b", words):
            add(node, "runs pip install: Kaggle runs kernels offline; use what its image ships")


def _is_pretrained_module(name: str) -> bool:
    return any(name == m or name.startswith(m + ".") for m in _PRETRAINED_MODULES) or name in {
        "keras.applications",
        "tensorflow.keras.applications",
    }


def _dotted(node) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


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
