"""One Kaggle kernel script from the part of the `marsseg` package the kernel runs: `marsseg bundle`.

The script has three parts, top to bottom:
  1. the settings a user changes (PRESET, BUDGET_SECONDS, OVERRIDES) and the one place that decides
     where the data and the outputs are (Kaggle's /kaggle/input and /kaggle/working, or local ones);
  2. `main()`, which calls `marsseg.pipeline.run.run` and nothing else;
  3. a short bootstrap that unpacks the embedded package (base64 of a zip) into a temporary folder and
     puts it first on `sys.path`, so the kernel imports its own copy and never pip-installs anything.

Only the import closure of the entry code is embedded: every `import` node of the entry and of each module it
reaches, function-level ones included, resolved to files of the package (an unresolvable `marsseg` import stops
the bundle). Tooling the kernel never imports (benchmarks, tracking, the Kaggle client, the CLI) stays out, and
an edit there does not make the kernel stale.

Deterministic: entries sorted, fixed timestamps and permissions, so the same sources give a
byte-identical script. The generated kernel is committed; `tests/test_bundle.py` fails when it is
stale against `src/` (regenerate with `make bundle`). Written to its default path, the kernel gets its
`kernel-metadata.json` beside `kernels/` too (`kernel_metadata`: the accelerator is chosen there).
"""

from __future__ import annotations

import ast
import base64
import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import marsseg
from marsseg.competition import MARS
from marsseg.errors import UserError
from marsseg.files import atomic_write_text
from marsseg.kaggle.kernel_template import ENTRY, FOOTER, PAYLOAD_BEGIN, PAYLOAD_END

KERNEL_PATH = Path("kernels/marsseg_kernel.py")
METADATA_PATH = Path("kernel-metadata.json")  # the repository root; its code_file is KERNEL_PATH

# ---------------------------------------------------------------------------------- the accelerator
# Kaggle's `machine_shape` (`kernels push --accelerator NAME` overrides it for one push). Two T4s by default:
# compute capability 7.5 (tensor cores, so `mixed_precision=auto` trains in mixed float16) and two devices for the
# data-parallel path (`training/distribute.py`, MirroredStrategy). The alternative, one P100 (16 GB), has compute
# capability 6.0: no tensor cores, so "auto" trains in float32, on one device.
ACCELERATOR = "NvidiaTeslaT4"
ACCELERATORS = {
    "NvidiaTeslaT4": "two T4 GPUs (compute capability 7.5): mixed float16, data parallel",
    "NvidiaTeslaP100": "one P100 GPU (compute capability 6.0): float32, one device",
}
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)
_SKIP_DIRS = {"__pycache__", "tests", "test"}


@dataclass(frozen=True)
class Kernel:
    text: str
    files: tuple[str, ...]
    digest: str


def package_dir() -> Path:

    return Path(marsseg.__file__).resolve().parent


def collect_sources(root: Path | None = None) -> dict[str, bytes]:
    """Archive name ('marsseg/…/x.py') -> bytes of every .py file of the package, sorted; no tests, data, caches."""
    root = Path(root) if root else package_dir()
    if not (root / "__init__.py").is_file():
        raise UserError(f"{root}: not a Python package (no __init__.py); pass the src/marsseg folder")
    sources = {}
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if any(part in _SKIP_DIRS or part.startswith(".") for part in relative.parts[:-1]):
            continue
        if relative.name.startswith("test_"):
            continue
        sources[f"{root.name}/{relative.as_posix()}"] = path.read_bytes()
    return dict(sorted(sources.items()))


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> list[tuple[str, int, bool]]:
    """(dotted name, line, must be a module) of every import in `tree`, relative ones made absolute:
    `import a.b` must name a module; `from a import b` needs module `a`, and `a.b` may be a module or a name."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [(alias.name, node.lineno, True) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                anchor = parts if is_package else parts[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names.append((base, node.lineno, True))
            names += [(f"{base}.{alias.name}", node.lineno, False) for alias in node.names if alias.name != "*"]
    return names


def import_closure(entry_code: str, root: Path | None = None) -> dict[str, bytes]:
    """Archive name -> bytes of the package modules that `entry_code` imports, directly or through each other,
    with the `__init__.py` of every package on the way; an import of the package that names no module of it
    raises UserError."""
    sources = collect_sources(root)
    package = (Path(root) if root else package_dir()).name
    modules = {}  # dotted module name -> archive name
    for name in sources:
        dotted = name[:-3].replace("/", ".")
        modules[dotted.removesuffix(".__init__")] = name
    wanted, seen = [("<entry>", entry_code, "<entry>", False)], set()
    while wanted:
        where, code, module, is_package = wanted.pop()
        for dotted, line, must_be_module in _imported_names(ast.parse(code), module, is_package):
            if dotted.split(".")[0] != package:
                continue
            if dotted not in modules and must_be_module:
                raise UserError(f"{where}:{line}: `{dotted}` is not a module of {package}; cannot bundle the kernel")
            parts = dotted.split(".")
            for name in (".".join(parts[:i]) for i in range(1, len(parts) + 1)):
                if name in modules and name not in seen:  # a package's __init__ runs before any of its modules
                    seen.add(name)
                    archive = modules[name]
                    wanted.append((archive, sources[archive].decode("utf-8"), name, archive.endswith("__init__.py")))
    return {modules[name]: sources[modules[name]] for name in sorted(seen, key=lambda n: modules[n])}


def pack(sources: dict[str, bytes]) -> bytes:
    """A deterministic zip: sorted entries, fixed time and permissions, maximum deflate."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(sources):
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            info.create_system = 3  # unix, whatever machine builds it
            archive.writestr(info, sources[name], compresslevel=9)
    return buffer.getvalue()


def kernel_sources(root: Path | None = None) -> dict[str, bytes]:
    """What the kernel embeds: the import closure of its entry code."""
    return import_closure(ENTRY, root)


def build_kernel(root: Path | None = None) -> Kernel:
    sources = kernel_sources(root)
    digest = hashlib.sha256(
        b"".join(name.encode() + b"\0" + data + b"\0" for name, data in sources.items())
    ).hexdigest()
    encoded = base64.b64encode(pack(sources)).decode("ascii")
    lines = "\n".join(encoded[i : i + 100] for i in range(0, len(encoded), 100))
    head = ENTRY.format(n_files=len(sources), digest=digest[:16], kernel_name=KERNEL_PATH.as_posix())
    text = head + PAYLOAD_BEGIN + lines + "\n" + PAYLOAD_END + FOOTER
    return Kernel(text=text, files=tuple(sources), digest=digest)


def embedded_sources(kernel_text: str) -> dict[str, bytes]:
    """The files packed inside a kernel script (for the staleness check and the rules check)."""
    start = kernel_text.find(PAYLOAD_BEGIN)
    if start < 0:
        raise UserError("not a marsseg kernel: no embedded package (regenerate it with `make bundle`)")
    start += len(PAYLOAD_BEGIN)
    end = kernel_text.find(PAYLOAD_END, start)
    blob = base64.b64decode(kernel_text[start:end])
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        return {name: archive.read(name) for name in sorted(archive.namelist())}


def entry_text(kernel_text: str) -> str:
    """The readable part of a kernel: everything but the embedded package."""
    start = kernel_text.find(PAYLOAD_BEGIN)
    if start < 0:
        return kernel_text
    end = kernel_text.find(PAYLOAD_END, start + len(PAYLOAD_BEGIN))
    return kernel_text[:start] + kernel_text[end + len(PAYLOAD_END) :]


def kernel_metadata(accelerator: str = ACCELERATOR) -> dict:
    """`kernel-metadata.json`: the kernel on `accelerator` (a key of ACCELERATORS), offline, competition data only.
    `id` keeps the `{username}` placeholder that `marsseg submit` fills in."""
    if accelerator not in ACCELERATORS:
        raise UserError(f"accelerator {accelerator!r} is not one of {', '.join(ACCELERATORS)}")
    return {
        "id": "{username}/mars-segmentation-kit",
        "title": "Mars Segmentation Kit",
        "code_file": KERNEL_PATH.as_posix(),
        "language": "python",
        "kernel_type": "script",
        "is_private": True,
        "enable_gpu": True,
        "machine_shape": accelerator,
        "enable_tpu": False,
        "enable_internet": False,
        "dataset_sources": [],
        "competition_sources": [MARS.slug],
        "kernel_sources": [],
        "model_sources": [],
    }


def metadata_text(accelerator: str = ACCELERATOR) -> str:
    return json.dumps(kernel_metadata(accelerator), indent=2) + "\n"


def write_metadata(path: Path = METADATA_PATH, accelerator: str = ACCELERATOR, log=print) -> tuple[Path, bool]:
    """Write `kernel-metadata.json` if its bytes would change; returns (path, changed)."""
    path, text = Path(path), metadata_text(accelerator)
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return path, False
    atomic_write_text(path, text)
    log(f"wrote {path}: machine_shape {accelerator} ({ACCELERATORS[accelerator]})")
    return path, True


def write_kernel(
    path: Path = KERNEL_PATH, root: Path | None = None, log=print, metadata: Path | None = None
) -> tuple[Path, bool]:
    """Write the kernel if its bytes would change; returns (path, changed). The metadata (`metadata`, else
    METADATA_PATH when `path` is KERNEL_PATH, whose file it names) is written too."""

    path = Path(path)
    if metadata is None and path == KERNEL_PATH:
        metadata = METADATA_PATH
    if metadata is not None:
        write_metadata(metadata, log=log)
    kernel = build_kernel(root)
    if path.is_file() and path.read_text(encoding="utf-8") == kernel.text:
        log(f"{path}: up to date ({len(kernel.files)} modules, {len(kernel.text) // 1024} KiB)")
        return path, False
    atomic_write_text(path, kernel.text)
    log(
        f"wrote {path}: {len(kernel.files)} modules, {len(kernel.text) // 1024} KiB, "
        f"sources sha256 {kernel.digest[:16]}"
    )
    return path, True


def stale_reason(path: Path = KERNEL_PATH, root: Path | None = None) -> str | None:
    """None when the kernel at `path` is exactly what `make bundle` would write, else why not."""
    path = Path(path)
    if not path.is_file():
        return f"{path} does not exist; run `make bundle`"
    text = path.read_text(encoding="utf-8")
    expected = build_kernel(root)
    if text == expected.text:
        return None
    try:
        embedded = embedded_sources(text)
    except (UserError, ValueError, zipfile.BadZipFile):
        return f"{path} is not a marsseg kernel; run `make bundle`"
    current = kernel_sources(root)
    changed = sorted(n for n in set(embedded) | set(current) if embedded.get(n) != current.get(n))
    if changed:
        shown = ", ".join(changed[:4]) + (f" and {len(changed) - 4} more" if len(changed) > 4 else "")
        return f"{path} is stale: {shown} changed since it was bundled; run `make bundle` and commit it"
    if entry_text(text) == entry_text(expected.text):
        return None  # same sources and entry; only the compressor's bytes differ (another zlib build)
    return f"{path} differs from the generated script (edited by hand?); run `make bundle` and commit it"
