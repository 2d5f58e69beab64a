"""`make bench`: measured speed and quality, written to BENCHMARKS.md with the machine and the command.

Each section measures in one run and reports medians and ratios, never a single timing: the
machine is shared and noisy. Sections register themselves in SECTIONS; `--only NAME` runs a subset.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from marsseg.config import git_commit
from marsseg.files import atomic_write_text


def median_seconds(fn, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times


def machine_description() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kb = int(next(l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")).split()[1])
        memory = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    from marsseg_bench.gpu import nvidia_gpu_names

    names = nvidia_gpu_names()
    gpu = f", GPU {' + '.join(names)}" if names else ""
    return (
        f"{cpu}, {os.cpu_count()} cores{memory}{gpu}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, NumPy {np.__version__}"
    )


# ------------------------------------------------------------------------- submission files
def naive_rle_csv(masks: np.ndarray) -> bytes:
    """The straightforward per-image, per-class loop most notebooks use: the reference to beat."""

    def rle(binary):
        pixels = np.concatenate([[0], binary.T.flatten(), [0]])
        runs = np.where(pixels[1:] != pixels[:-1])[0] + 1
        runs[1::2] -= runs[::2]
        return " ".join(str(x) for x in runs)

    rows = ["id,EncodedPixels"]
    for i, mask in enumerate(masks):
        for c in (1, 2, 3, 4):
            rows.append(f"{i}_{c},{rle(mask == c)}")
    return ("\n".join(rows) + "\n").encode()


def naive_rle_decode(text: bytes, n: int, h: int = 64, w: int = 128) -> np.ndarray:
    masks = np.zeros((n, h * w), np.uint8)
    for line in text.decode().splitlines()[1:]:
        ident, field = line.split(",")
        image, label = map(int, ident.split("_"))
        values = list(map(int, field.split()))
        for start, length in zip(values[0::2], values[1::2]):
            masks[image, start - 1 : start - 1 + length] = label
    return masks.reshape(n, w, h).transpose(0, 2, 1)


def section_submission(repeats: int, log) -> str:
    from marsseg.data.synth import make_synthetic
    from marsseg.submission.formats import decode_pixels, decode_rle, encode_pixels, encode_rle

    masks = make_synthetic(n_train=1, n_test=10022, seed=11).test_labels
    n = len(masks)
    tmp = Path(tempfile.mkdtemp(prefix="marsseg-bench-"))
    rle_path, pix_path = tmp / "rle.csv", tmp / "pixels.csv"

    def write(path, data):
        path.write_bytes(data)

    log("submission: RLE encode+write")
    rle_t, _ = median_seconds(lambda: write(rle_path, encode_rle(masks)), repeats)
    naive_t, _ = median_seconds(lambda: write(tmp / "naive.csv", naive_rle_csv(masks)), max(1, repeats // 2))
    same = (tmp / "naive.csv").read_bytes() == rle_path.read_bytes()
    log("submission: RLE read+decode")
    rle_d, _ = median_seconds(lambda: decode_rle(rle_path.read_bytes(), n), repeats)
    naive_d, _ = median_seconds(lambda: naive_rle_decode(rle_path.read_bytes(), n), max(1, repeats // 2))
    log("submission: pixels encode+write / read+decode")
    pix_t, _ = median_seconds(lambda: write(pix_path, encode_pixels(masks)), repeats)
    pix_d, _ = median_seconds(lambda: decode_pixels(pix_path.read_bytes(), n), repeats)
    log("submission: pandas to_csv reference (once)")
    pandas_t = _pandas_reference(masks, tmp / "pandas.csv")
    pandas_same = (tmp / "pandas.csv").read_bytes() == pix_path.read_bytes()
    ok = np.array_equal(decode_rle(rle_path.read_bytes(), n), masks) and np.array_equal(
        decode_pixels(pix_path.read_bytes(), n), masks
    )
    sizes = rle_path.stat().st_size, pix_path.stat().st_size
    for path in tmp.iterdir():
        path.unlink()
    tmp.rmdir()
    return "\n".join(
        [
            "## Submission files (10022 synthetic test masks)",
            "",
            f"Median of {repeats} runs (references: median of {max(1, repeats // 2)}, pandas once). Round trips exact: {ok}; "
            f"the per-image loop writes byte-identical RLE: {same}; pandas writes byte-identical pixels CSV: {pandas_same}.",
            "",
            "| what | kit | reference | speed-up | target |",
            "|---|---:|---:|---:|---|",
            f"| RLE encode + write | {rle_t:.3f} s | {naive_t:.3f} s (per-image loop) | {naive_t / rle_t:.1f}× | ≤ 1 s and ≥ 4× |",
            f"| RLE read + decode | {rle_d:.3f} s | {naive_d:.3f} s (per-row loop) | {naive_d / rle_d:.1f}× | ≤ 1 s |",
            f"| pixels encode + write | {pix_t:.3f} s | {pandas_t:.3f} s (pandas `to_csv`) | {pandas_t / pix_t:.1f}× | ≤ 5 s |",
            f"| pixels read + decode | {pix_d:.3f} s | | | ≤ 5 s |",
            "",
            f"File sizes: RLE {sizes[0] / 1e6:.1f} MB, pixels {sizes[1] / 1e6:.1f} MB.",
        ]
    )


def _pandas_reference(masks, path) -> float:
    import pandas as pd

    started = time.perf_counter()
    frame = pd.DataFrame(masks.reshape(len(masks), -1))
    frame.insert(0, "id", np.arange(len(masks)))
    frame.to_csv(path, index=False)
    return time.perf_counter() - started


# ------------------------------------------------------------------------- networks
def section_models(
    repeats: int, log, presets=("cpu", "gpu"), batch: int = 32, device: str = "this CPU", mixed_precision: bool = False
) -> str:
    """Parameters and seconds per batch (training step = forward + backward + update; inference) of the
    presets' stage-1 and stage-2 U-Nets, compiled as training compiles them (loss on every head); with
    `mixed_precision`, under the mixed_float16 policy that training uses on a GPU."""
    import keras

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, (batch, 64, 128))
    previous_policy = keras.config.dtype_policy().name
    if mixed_precision:
        keras.config.set_dtype_policy("mixed_float16")
    try:
        rows = [
            _network_row(name, stage, channels, batch, repeats, rng, labels, log)
            for name in presets
            for stage, channels in (("stage1", 1), ("stage2", 6))
        ]
    finally:
        keras.config.set_dtype_policy(previous_policy)
    precision = "mixed_float16" if mixed_precision else "float32"
    return "\n".join(
        [
            f"## Networks on {device} (batch {batch}, {precision}, Keras backend {keras.backend.backend()})",
            "",
            f"Median of {repeats} batches ({max(2, repeats // 2)} for base width ≥ 32) after one untimed tracing call. "
            "Training step: forward + backward + AdamW update with the preset's loss on every deep-supervision head.",
            "",
            "| preset | stage | depth | base filters | input stride | parameters | train step | train img/s | "
            "inference | infer img/s |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
            *rows,
        ]
    )


def _network_row(name, stage, channels, batch, repeats, rng, labels, log) -> str:
    import keras

    from marsseg.config import preset
    from marsseg.models import aux_loss_weights, build_unet, main_head, targets_for
    from marsseg.training.losses import build_loss

    cfg = getattr(preset(name), stage)
    log(f"models: {name} {stage}")
    keras.utils.set_random_seed(0)
    model = build_unet(cfg.model, input_channels=channels, name=f"{name}_{stage}")
    model.compile(
        keras.optimizers.AdamW(1e-3),
        loss=[build_loss(cfg.loss)] * len(model.outputs),
        loss_weights=aux_loss_weights(cfg.model),
    )
    x = rng.random((batch, 64, 128, channels), dtype=np.float32)
    y = targets_for(model, labels)
    predictor = main_head(model)
    model.train_on_batch(x, y)  # the first call traces the graph: not timed
    predictor.predict_on_batch(x)
    n = max(2, repeats // 2) if cfg.model.base_filters >= 32 else repeats
    train_t, _ = median_seconds(lambda: model.train_on_batch(x, y), n)
    infer_t, _ = median_seconds(lambda: predictor.predict_on_batch(x), n)
    m = cfg.model
    return (
        f"| {name} | {stage} | {m.depth} | {m.base_filters} | {m.input_stride} | {model.count_params():,} | "
        f"{_seconds(train_t)} | {batch / train_t:.0f} | {_seconds(infer_t)} | {batch / infer_t:.0f} |"
    )


def _seconds(t: float) -> str:
    return f"{t:.2f} s" if t >= 0.1 else f"{t * 1000:.1f} ms"


# ------------------------------------------------------------------------------- Kaggle path
def section_kaggle(repeats: int, log) -> str:
    """Bundle build time and size, the kernel's local smoke run, and `marsseg submit` against the emulator."""
    import shutil
    import threading

    from marsseg.data.synth import make_synthetic, save_synthetic
    from marsseg.kaggle.bundle import build_kernel
    from marsseg.kaggle.emulator import make_server

    log("kaggle: bundle")
    build_t, _ = median_seconds(build_kernel, repeats)
    kernel = build_kernel()
    tmp = Path(tempfile.mkdtemp(prefix="marsseg-bench-kaggle-"))
    try:
        data = tmp / "data.npz"
        save_synthetic(make_synthetic(96, 32, seed=3), data, tmp / "truth.npz")
        script = tmp / "kernel.py"
        script.write_text(kernel.text)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "KAGGLE_", "MARSSEG_"))}
        log("kaggle: kernel smoke run")
        run_t, _ = median_seconds(
            lambda: subprocess.run(
                [sys.executable, str(script), "--data", str(data), "--out", str(tmp / "out"), "--preset", "smoke"],
                cwd=tmp,
                env=env,
                capture_output=True,
                check=True,
            ),
            repeats,
        )
        metadata = Path("kernel-metadata.json")
        rounds = max(1, repeats // 2)
        round_trip = None
        if metadata.is_file():
            log(f"kaggle: {rounds} emulator round trip(s) of `marsseg submit`")
            server = make_server(0, tmp / "emulator", log=lambda *_: None, data_path=data, truth_path=tmp / "truth.npz")
            threading.Thread(target=server.serve_forever, daemon=True).start()
            project = tmp / "project"
            project.mkdir()
            shutil.copyfile(metadata, project / "kernel-metadata.json")
            home = tmp / "home"
            (home / ".kaggle").mkdir(parents=True)
            src = str(Path(__file__).resolve().parents[1])
            kit_env = {
                **{k: v for k, v in env.items() if k.lower() not in {"http_proxy", "https_proxy", "no_proxy"}},
                "HOME": str(home),
                "KAGGLE_CONFIG_DIR": str(home / ".kaggle"),
                "PYTHONPATH": src,
                "KAGGLE_USERNAME": "bench",
                "KAGGLE_KEY": os.urandom(16).hex(),
                "MARSSEG_KAGGLE_POLL": "0.2",
                "MARSSEG_KAGGLE_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}",
            }
            try:
                round_trip, _ = median_seconds(
                    lambda: subprocess.run(
                        [sys.executable, "-m", "marsseg", "submit"],
                        cwd=project,
                        env=kit_env,
                        capture_output=True,
                        check=True,
                    ),
                    rounds,
                )
            finally:
                server.shutdown()
                server.server_close()
                server.state.shutdown()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = [
        "## The Kaggle path",
        "",
        f"The kernel bundles {len(kernel.files)} modules into {len(kernel.text) / 1024:.0f} KiB; building it takes "
        f"{build_t * 1000:.0f} ms (median of {repeats}).",
        "",
        "| what | median | runs |",
        "|---|---:|---:|",
        f"| bundle build | {build_t:.3f} s | {repeats} |",
        f"| kernel script, local smoke run (96 train / 32 test synthetic images, fresh interpreter) | {run_t:.2f} s | {repeats} |",
    ]
    if round_trip is not None:
        rows.append(
            f"| `marsseg submit` against the emulator: bundle, rules, push, kernel run, fetch, submit, confirm, "
            f"record (real `kaggle` 2.2.4 CLI) | {round_trip:.1f} s | {rounds} |"
        )
    return "\n".join(rows)


# ------------------------------------------------------------------------- augmentation
def section_augment(repeats: int, log) -> str:
    """Augmented samples per second of the training sequence, batch 32, per strength (one thread)."""
    from marsseg.data.synth import make_synthetic
    from marsseg.prep.augment import albumentations_version, augmentation_throughput

    synthetic = make_synthetic(n_train=512, n_test=1, seed=5)
    rows = []
    for strength, extra, elastic in (
        ("medium", 0, False),
        ("light", 0, False),
        ("strong", 0, True),
        ("medium", 5, False),
    ):
        log(f"augment: {strength}{' + elastic' if elastic else ''}, {1 + extra} channel(s)")
        rates = [
            augmentation_throughput(
                20, strength, 32, extra, elastic, seed=r, images=synthetic.images, masks=synthetic.masks
            )
            for r in range(repeats)
        ]
        rows.append(
            f"| {strength}{' + elastic/grid' if elastic else ''} | {1 + extra} | {statistics.median(rates):,.0f} | "
            f"{min(rates):,.0f}–{max(rates):,.0f} |"
        )
    return "\n".join(
        [
            "## Augmentation throughput (training sequence, batch 32)",
            "",
            f"albumentations {albumentations_version()}; one thread building 20 batches in order, median of {repeats} runs. "
            "`SegmentationSequence(workers=N)` builds batches in N threads. The stage-1 training step's rate is "
            "compared against the medium row by the training section.",
            "",
            "| strength | channels | samples/s (median) | range |",
            "|---|---:|---:|---:|",
            *rows,
        ]
    )


SECTIONS = {"submission": section_submission}
SECTIONS["augment"] = section_augment
SECTIONS["kaggle"] = section_kaggle
SECTIONS["models"] = section_models


# ------------------------------------------------------------------------------ leaderboard tracking
class _MovingLeaderboard:
    """A fetcher for `tracking.snapshot`: `teams` teams; each snapshot a few of them improve, and every fifth
    snapshot the team submits once (scored one snapshot later)."""

    def __init__(self, teams: int, movers: int, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.scores = {f"team {i:03d}": 0.35 + 0.3 * self.rng.random() for i in range(teams - 1)} | {"us": 0.4}
        self.dates = {name: "2025-01-01T00:00:00Z" for name in self.scores}
        self.movers, self.tick, self.subs = movers, 0, []

    def step(self):
        self.tick += 1
        for name in self.rng.choice(sorted(self.scores), self.movers, replace=False):
            self.scores[name] += 0.01 * self.rng.random()
        for sub in self.subs:
            if sub["status"] == "PENDING":
                sub.update(status="COMPLETE", publicScore=f"{0.4 + 0.002 * self.tick + 0.01 * self.rng.random():.5f}")
                if float(sub["publicScore"]) > self.scores["us"]:
                    self.scores["us"], self.dates["us"] = float(sub["publicScore"]), sub["date"]
        if self.tick % 5 == 0:
            self.subs.append(
                {
                    "ref": 1000 + self.tick,
                    "fileName": "submission.csv",
                    "date": f"2025-02-{1 + self.tick // 24:02d}T{self.tick % 24:02d}:00:00Z",
                    "description": f"run {self.tick}",
                    "status": "PENDING",
                    "publicScore": "",
                    "privateScore": "",
                    "teamName": "us",
                }
            )

    def leaderboard(self, competition):
        return [
            {"teamId": i, "teamName": name, "submissionDate": self.dates[name], "score": f"{score:.5f}"}
            for i, (name, score) in enumerate(self.scores.items())
        ]

    def submissions(self, competition):
        return [dict(sub) for sub in reversed(self.subs)]


def section_tracking(repeats: int, log) -> str:
    from marsseg.tracking.history import LEADERBOARD, SNAPSHOTS, SUBMISSIONS, read_history, snapshot
    from marsseg.tracking.plots import plot_history

    teams, movers, count = 200, 10, 300
    tmp = Path(tempfile.mkdtemp(prefix="marsseg-bench-"))
    fake = _MovingLeaderboard(teams, movers)
    log(f"tracking: {count} snapshots of {teams} teams, {movers} moving per snapshot")
    times = []
    started = time.perf_counter()
    for i in range(count):
        fake.step()
        t0 = time.perf_counter()
        snapshot(fake, "bench", tmp, now=f"2025-02-{1 + i // 24:02d}T{i % 24:02d}:00:00Z")
        times.append(time.perf_counter() - t0)
    total = time.perf_counter() - started
    log("tracking: read and plot")
    read_t, _ = median_seconds(lambda: read_history(tmp), repeats)
    history = read_history(tmp)
    plot_t, _ = median_seconds(lambda: plot_history(tmp), max(1, repeats // 2))
    sizes = {name: (tmp / name).stat().st_size for name in (SNAPSHOTS, LEADERBOARD, SUBMISSIONS)}
    lines = {name: len((tmp / name).read_text().splitlines()) - 1 for name in sizes}
    full = teams * count
    for path in sorted(tmp.iterdir(), reverse=True):
        path.unlink()
    tmp.rmdir()
    return "\n".join(
        [
            f"## Leaderboard tracking ({count} hourly snapshots, {teams} teams, {movers} improving per snapshot)",
            "",
            f"Every snapshot rewrites each history file whole and atomically. {len(history.submissions())} own submissions.",
            "",
            "| what | time |",
            "|---|---:|",
            f"| one snapshot, history of 10 snapshots (median of the first 10) | {statistics.median(times[:10]) * 1e3:.0f} ms |",
            f"| one snapshot, history of {count} snapshots (median of the last 10) | {statistics.median(times[-10:]) * 1e3:.0f} ms |",
            f"| all {count} snapshots | {total:.1f} s |",
            f"| read the history (replay every snapshot; median of {repeats}) | {read_t * 1e3:.0f} ms |",
            f"| draw the four plots (median of {max(1, repeats // 2)}) | {plot_t:.2f} s |",
            "",
            f"Sizes: `{LEADERBOARD}` {lines[LEADERBOARD]} rows, {sizes[LEADERBOARD] / 1e3:.0f} kB (a full copy per snapshot "
            f"would be {full} rows, {full / max(1, lines[LEADERBOARD]):.0f}× more); `{SUBMISSIONS}` {lines[SUBMISSIONS]} rows, "
            f"{sizes[SUBMISSIONS] / 1e3:.0f} kB; `{SNAPSHOTS}` {lines[SNAPSHOTS]} rows, {sizes[SNAPSHOTS] / 1e3:.0f} kB.",
        ]
    )


SECTIONS["tracking"] = section_tracking


def section_quality(repeats: int, log) -> str:
    """The kit against a plain U-Net at the same wall-clock budget (marsseg_bench.quality; ~2 x 8 minutes)."""
    from marsseg_bench.quality import section_quality as measure

    return measure(repeats, log)


SECTIONS["quality"] = section_quality


def section_quality_long(repeats: int, log) -> str:
    """The same comparison at 1200 s a side (~30 minutes): how the kit's gain grows with time."""
    from marsseg_bench.quality import QUALITY_LONG_BUDGET
    from marsseg_bench.quality import section_quality as measure

    return measure(repeats, log, budget=QUALITY_LONG_BUDGET)


SECTIONS["quality_long"] = section_quality_long


def _gpu_here(section: str, log) -> str | None:
    """The GPU a GPU section measures on; None (and a log line) where the Keras backend sees none."""
    from marsseg_bench.gpu import accelerator_name

    gpu = accelerator_name()
    if gpu is None:
        log(f"{section}: the Keras backend sees no GPU here; the section is left as it was")
    return gpu


def section_gpu(repeats: int, log) -> str | None:
    """On a GPU: the `kaggle` preset's epoch times per stage and its full run projected (marsseg_bench.gpu)."""
    from marsseg_bench.gpu import section_gpu as measure

    gpu = _gpu_here("gpu", log)
    return None if gpu is None else measure(repeats, log, gpu=gpu)


def section_quality_gpu(repeats: int, log) -> str | None:
    """On a GPU: the kit (`gpu` preset) against the plain U-Net at the same budget (marsseg_bench.quality)."""
    from marsseg_bench.quality import GPU_QUALITY_BUDGET
    from marsseg_bench.quality import section_quality as measure

    gpu = _gpu_here("quality_gpu", log)
    return None if gpu is None else measure(repeats, log, preset_name="gpu", budget=GPU_QUALITY_BUDGET, device=gpu)


# Sections that measure nothing on this machine (no GPU) return None and keep their block in the file.
SECTIONS["gpu"] = section_gpu
SECTIONS["quality_gpu"] = section_quality_gpu


def run_benchmarks(out: Path, repeats: int = 5, only: list[str] | None = None, log=None) -> Path:
    """Run the sections (all, or `only`) and write `out`. Blocks of sections not run, or that measured nothing
    here (a GPU section on a CPU machine), stay as they were in `out`."""
    log = log or (lambda message: print(f"[bench] {message}", file=sys.stderr, flush=True))
    unknown = [name for name in only or [] if name not in SECTIONS]
    if unknown:
        from marsseg.errors import UserError

        raise UserError(f"unknown benchmark section {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    names = only or list(SECTIONS)
    blocks = _read_blocks(out)
    machine = machine_description()
    for name in names:
        log(f"section {name}")
        started = time.perf_counter()
        body = SECTIONS[name](repeats, log)
        if body is None:
            continue
        stamp = (
            f"_Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC at commit {git_commit('short', cwd=Path.cwd())} "
            f"in {time.perf_counter() - started:.0f} s on {machine} (`marsseg bench --only {name}`)._"
        )
        blocks[name] = f"<!-- bench:{name} -->\n{body}\n\n{stamp}\n<!-- /bench:{name} -->"
    ordered = [blocks[name] for name in SECTIONS if name in blocks]
    header = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`marsseg bench`; one section: `marsseg bench --only NAME`). The GPU sections",
        "(`gpu`, `quality_gpu`) measure only where the Keras backend sees a GPU; elsewhere they keep their last block.",
        "",
        "Figures are medians of repeated runs inside one invocation; ratios compare timings taken in that same run.",
        "Each section says when, at which commit and on which machine it was measured.",
        "",
    ]
    atomic_write_text(out, "\n".join(header + ["\n\n".join(ordered), ""]))
    log(f"wrote {out}")
    return out


def _read_blocks(path: Path) -> dict[str, str]:
    import re

    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return {}
    pattern = re.compile(r"<!-- bench:(\w+) -->.*?<!-- /bench:\1 -->", re.S)
    return {match.group(1): match.group(0) for match in pattern.finditer(text)}
