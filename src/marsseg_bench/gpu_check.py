"""`make gpu-check`: the GPU measurement, prepared to run in minutes on a lent GPU (JAX, no TensorFlow, offline).

    KERAS_BACKEND=jax python -m marsseg_bench.gpu_check            # the kaggle preset's canary -> BENCHMARKS gpu
    python -m marsseg_bench.gpu_check --dry --out /tmp/B.md         # the same path on the CPU, in seconds

It runs the `kaggle` preset as a canary (`gpu.section_gpu`) on full-size synthetic data and writes the
BENCHMARKS.md `gpu` block: images/s per stage, compile seconds, JAX compilations per epoch, peak GPU memory and
the projected full run. Without a GPU it refuses (exit 2) unless `--dry`, which runs the smoke preset on a few
images on the CPU and writes to `--out`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from marsseg.errors import UserError

BUDGET_SECONDS = 300.0  # the canary's own budget; with data, start-up and compilation the check ends within 8 min


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu-check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    parser.add_argument("--budget", type=float, default=BUDGET_SECONDS, help="the canary's budget in seconds")
    parser.add_argument("--dry", action="store_true", help="the smoke preset on a few images, on the CPU")
    args = parser.parse_args(argv)
    from marsseg_bench.gpu import section_gpu
    from marsseg_bench.runner import stamped_block, write_block

    def log(message):
        print(f"[gpu-check] {message}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    try:
        if args.dry:
            body = section_gpu(1, log, preset_name="smoke", budget=min(args.budget, 60), n_train=64, n_test=16,
                               require_gpu=False)  # fmt: skip
        else:
            body = section_gpu(1, log, budget=args.budget)
            if body is None:
                raise UserError(
                    "gpu-check: the Keras backend sees no GPU (KERAS_BACKEND=jax on a GPU machine; `--dry` runs "
                    "the same path on the CPU)"
                )
    except UserError as exc:
        print(f"marsseg: error: {exc}", file=sys.stderr)
        return 2
    command = "make gpu-check" + (" (--dry)" if args.dry else "")
    write_block(args.out, "gpu", stamped_block("gpu", body, command, time.perf_counter() - started))
    print(body)
    print(f"gpu-check: wrote the gpu block of {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
