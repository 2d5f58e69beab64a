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
byte-identical script. The generated kernel is committed; `tests/kaggle/test_bundle.py` fails when it is
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
# Kaggle's `machine_shape` (`marsseg submit --accelerator NAME` overrides it for one push): today's names (kaggle-cli
# docs, September 2026). Two T4s by default: compute capability 7.5 (tensor cores, so `mixed_precision=auto` trains
# in mixed float16) and two devices for the data-parallel path (`training/distribute.py`). Several shapes are open
# only to some competitions; Kaggle says so at push time.
ACCELERATOR = "NvidiaTeslaT4"
ACCELERATORS = {
    "NvidiaTeslaT4": "GPU T4 x2 (compute capability 7.5): mixed float16, data parallel over both",
    "NvidiaL4": "L4 GPUs (compute capability 8.9): mixed float16, data parallel over every GPU Kaggle gives",
    "NvidiaL4X1": "one L4 GPU (compute capability 8.9): mixed float16, one device",
    "NvidiaTeslaA100": "A100 (compute capability 8.0): mixed float16; data parallel only where there are several",
    "NvidiaH100": "H100 (compute capability 9.0): mixed float16; data parallel only where there are several",
    "NvidiaRtxPro6000": "RTX PRO 6000 (compute capability 12.0): mixed float16; data parallel only with several",
}
# Offered by Kaggle but not by the kit: it trains on GPUs (MirroredStrategy / DataParallel), not TPUs.
TPU_SHAPES = ("TpuV5E8", "TpuV6E8")
# Retired by Kaggle in September 2026 (kaggle-cli PR #1192): the server silently runs them on the replacement.
RETIRED = {
    "NvidiaTeslaP100": "NvidiaTeslaT4",
    "Gpu": "NvidiaTeslaT4",
    "TpuV38": "TpuV5E8",
    "Tpu1VmV38": "TpuV5E8",
    "TpuV232": "TpuV5E8",
    "TpuV2256": "TpuV5E8",
}
# "original": a kernel's later versions keep the image its earlier ones ran on, so a passed canary stays valid
# (`docker_image_pinning_type`, forwarded by the kaggle client since 1.5.8); "latest" moves to Kaggle's newest.
IMAGE_PINNING = "original"
IMAGE_PINNINGS = ("original", "latest")


def accelerator_problem(name: str) -> str | None:
    """Why `name` cannot be the kernel's machine shape (retired: the replacement named), or None if it can."""
    if name in ACCELERATORS:
        return None
    if name in RETIRED:
        return (
            f"machine shape {name!r} is retired (Kaggle would silently run it on {RETIRED[name]}); "
            f"use {ACCELERATOR if RETIRED[name] in TPU_SHAPES else RETIRED[name]}"
        )
    if name in TPU_SHAPES:
        return (
            f"machine shape {name!r} is a TPU; the kit trains on GPUs: use {ACCELERATOR} (or {', '.join(ACCELERATORS)})"
        )
    return f"machine shape {name!r} is not one of today's GPU shapes: {', '.join(ACCELERATORS)}"


def check_accelerator(name: str) -> str:
    """`name` if it is one of today's GPU shapes; else UserError (one line, the replacement named)."""
    problem = accelerator_problem(name)
    if problem:
        raise UserError(problem)
    return name


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
    digest = sources_digest(sources)
    encoded = base64.b64encode(pack(sources)).decode("ascii")
    lines = "\n".join(encoded[i : i + 100] for i in range(0, len(encoded), 100))
    head = ENTRY.format(n_files=len(sources), digest=digest[:16], kernel_name=KERNEL_PATH.as_posix())
    text = head + PAYLOAD_BEGIN + lines + "\n" + PAYLOAD_END + FOOTER
    return Kernel(text=text, files=tuple(sources), digest=digest)


def sources_digest(sources: dict[str, bytes]) -> str:
    """sha256 of the embedded files (names and bytes): the kernel's identity, as its docstring shows the first 16."""
    return hashlib.sha256(b"".join(name.encode() + b"\0" + data + b"\0" for name, data in sources.items())).hexdigest()


def kernel_digest(path: Path = KERNEL_PATH) -> str:
    """The first 16 hex digits of `sources_digest` of the kernel script at `path` (what a canary is recorded for)."""
    try:
        return sources_digest(embedded_sources(Path(path).read_text(encoding="utf-8")))[:16]
    except OSError as exc:
        raise UserError(f"{path}: cannot read the kernel ({exc}); run `make bundle`") from None


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
    """`kernel-metadata.json`: the kernel on `accelerator` (a key of ACCELERATORS), offline, competition data only,
    its image pinned (IMAGE_PINNING).
    `id` keeps the `{username}` placeholder that `marsseg submit` fills in."""
    check_accelerator(accelerator)
    return {
        "id": "{username}/mars-segmentation-kit",
        "title": "Mars Segmentation Kit",
        "code_file": KERNEL_PATH.as_posix(),
        "language": "python",
        "kernel_type": "script",
        "is_private": True,
        "enable_gpu": True,
        "machine_shape": accelerator,
        "docker_image_pinning_type": IMAGE_PINNING,
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
