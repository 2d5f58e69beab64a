"""The data-path sections of `make bench`: submission files written and read, augmented batches built, and the
Kaggle path (the kernel bundled, run locally, and `marsseg submit` against the emulator)."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

from marsseg.data.synth import make_synthetic, save_synthetic
from marsseg.kaggle.bundle import build_kernel
from marsseg.kaggle.emulator.server import make_server
from marsseg.prep.augment import albumentations_version, augmentation_throughput
from marsseg.submission.formats import decode_pixels, decode_rle, encode_pixels, encode_rle
from marsseg_bench.references import naive_rle_csv, naive_rle_decode, pandas_pixels_csv
from marsseg_bench.timing import median_seconds


def section_submission(repeats: int, log) -> str:
    """RLE and pixels CSVs of 10022 synthetic test masks, written and read back, against the references."""
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
    pandas_t = pandas_pixels_csv(masks, tmp / "pandas.csv")
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
            f"Median of {repeats} runs (references: median of {max(1, repeats // 2)}, pandas once). "
            f"Round trips exact: {ok}; "
            f"the per-image loop writes byte-identical RLE: {same}; "
            f"pandas writes byte-identical pixels CSV: {pandas_same}.",
            "",
            "| what | kit | reference | speed-up | target |",
            "|---|---:|---:|---:|---|",
            f"| RLE encode + write | {rle_t:.3f} s | {naive_t:.3f} s (per-image loop) | {naive_t / rle_t:.1f}× "
            "| ≤ 1 s and ≥ 4× |",
            f"| RLE read + decode | {rle_d:.3f} s | {naive_d:.3f} s (per-row loop) | {naive_d / rle_d:.1f}× | ≤ 1 s |",
            f"| pixels encode + write | {pix_t:.3f} s | {pandas_t:.3f} s (pandas `to_csv`) "
            f"| {pandas_t / pix_t:.1f}× | ≤ 5 s |",
            f"| pixels read + decode | {pix_d:.3f} s | | | ≤ 5 s |",
            "",
            f"File sizes: RLE {sizes[0] / 1e6:.1f} MB, pixels {sizes[1] / 1e6:.1f} MB.",
        ]
    )


def section_kaggle(repeats: int, log) -> str:
    """Bundle build time and size, the kernel's local smoke run, and `marsseg submit` against the emulator."""
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
            server = make_server(
                0,
                tmp / "emulator",
                log=lambda *_: None,
                data_path=data,
                truth_path=tmp / "truth.npz",
                profile="mars-mini",  # the 32 test images above
            )
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
                "MARSSEG_PROFILE": "mars-mini",
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
        f"| kernel script, local smoke run (96 train / 32 test synthetic images, fresh interpreter) "
        f"| {run_t:.2f} s | {repeats} |",
    ]
    if round_trip is not None:
        rows.append(
            f"| `marsseg submit` against the emulator: bundle, rules, push, kernel run, fetch, submit, confirm, "
            f"record (real `kaggle` 2.2.4 CLI) | {round_trip:.1f} s | {rounds} |"
        )
    return "\n".join(rows)


def section_augment(repeats: int, log) -> str:
    """Augmented samples per second of the training sequence, batch 32, per strength (one thread)."""
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
            f"albumentations {albumentations_version()}; one thread building 20 batches in order, "
            f"median of {repeats} runs. "
            "`SegmentationSequence(workers=N)` builds batches in N threads. The stage-1 training step's rate is "
            "compared against the medium row by the training section.",
            "",
            "| strength | channels | samples/s (median) | range |",
            "|---|---:|---:|---:|",
            *rows,
        ]
    )
