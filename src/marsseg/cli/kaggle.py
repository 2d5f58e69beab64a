"""The Kaggle path: `bundle`, `check-rules`, `submit`, `status`, `data`, `emulator`."""

from __future__ import annotations

from pathlib import Path

from marsseg.competition import active_competition
from marsseg.errors import UserError
from marsseg.kaggle.bundle import (
    ACCELERATORS,
    KERNEL_PATH,
    METADATA_PATH,
    check_accelerator,
    stale_reason,
    write_kernel,
)
from marsseg.kaggle.canaries import run_canary
from marsseg.kaggle.download import fetch_data
from marsseg.kaggle.emulator.server import print_env, serve
from marsseg.kaggle.flow import show_status, submit_csv, submit_kernel
from marsseg.kaggle.push import PushOptions
from marsseg.kaggle.rules import RulesError, check_rules


def add_bundle(sub):
    p = sub.add_parser("bundle", help="bundle src/marsseg into the one Kaggle kernel script kernels/marsseg_kernel.py")
    p.add_argument("--out", type=Path, default=KERNEL_PATH)
    p.add_argument("--check", action="store_true", help="only check that the file is up to date (exit 2 if stale)")
    p.set_defaults(func=cmd_bundle)


def cmd_bundle(args) -> int:

    if args.check:
        reason = stale_reason(args.out)
        if reason:
            raise UserError(reason)
        print(f"{args.out}: up to date")
        return 0
    write_kernel(args.out)
    return 0


def add_check_rules(sub):
    p = sub.add_parser("check-rules", help="check the kernel and kernel-metadata.json against the competition rules")
    p.add_argument("--kernel", type=Path, default=KERNEL_PATH)
    p.add_argument("--metadata", type=Path, default=METADATA_PATH)
    p.add_argument(
        "--allow-source",
        action="append",
        default=[],
        metavar="SLUG",
        help="a data source besides the competition that the rules allow (repeatable)",
    )
    p.set_defaults(func=cmd_check_rules)


def cmd_check_rules(args) -> int:

    found = check_rules(args.kernel, args.metadata, tuple(args.allow_source))
    for violation in found:
        print(f"  {violation}")
    if found:
        raise RulesError(f"{len(found)} rule violation(s), listed above; fix them before pushing or submitting")
    print("rules check passed: no pretrained weights or downloads, internet off, competition data only, no credentials")
    return 0


def add_submit(sub):
    p = sub.add_parser(
        "submit", help="bundle, rules check, push the kernel, wait, fetch, validate, convert, submit, record"
    )
    p.add_argument("--file", type=Path, help="submit this local CSV instead of running the kernel (make submit-csv)")
    p.add_argument("--preset", help="with --file: the preset that made it (default: from its config.json)")
    p.add_argument(
        "--images",
        type=int,
        help="expected number of test images, overriding the competition profile's ($MARSSEG_PROFILE; 10022)",
    )
    p.add_argument("--allow-source", action="append", default=[], metavar="SLUG")
    p.add_argument("--skip-push", action="store_true", help="use the kernel's latest run instead of pushing again")
    p.add_argument("--poll", type=float, help="first status poll interval in seconds (then backs off; default 10)")
    p.add_argument(
        "--force", action="store_true", help="push even when the kernel's budget exceeds the weekly GPU quota left"
    )
    p.add_argument(
        "--models",
        action="store_true",
        help="also fetch the run's saved models (*.keras), so its output folder can join `marsseg ensemble`",
    )
    p.add_argument(
        "--canary",
        action="store_true",
        help="push the kernel as a ~10-minute canary on the same machine shape, report its speeds and the full "
        "run's projected time, record it (submissions/canaries.csv); submits nothing (make canary)",
    )
    p.add_argument(
        "--accelerator",
        metavar="SHAPE",
        help=f"Kaggle machine shape for this push (default: kernel-metadata.json's); one of {', '.join(ACCELERATORS)}",
    )
    p.set_defaults(func=cmd_submit)


def cmd_submit(args) -> int:

    competition = active_competition()
    if args.accelerator:
        check_accelerator(args.accelerator)  # a retired or unknown shape: one line, before anything else
    if args.file and args.models:
        raise UserError("--models fetches a kernel run's models; a local --file has its run folder already")
    options = PushOptions(
        accelerator=args.accelerator,
        allowed_sources=tuple(args.allow_source),
        images=args.images,
        poll=args.poll,
        force=args.force,
    )
    if args.canary:
        if args.file or args.skip_push or args.models:
            raise UserError("--canary pushes the kernel itself; it takes no --file, --skip-push or --models")
        run_canary(options, competition=competition)
        return 0
    if args.file:
        if args.accelerator:
            raise UserError("--accelerator picks the kernel's machine; a local --file ran where it ran")
        submit_csv(
            args.file,
            preset=args.preset,
            competition=competition,
            allowed_sources=tuple(args.allow_source),
            images=args.images,
        )
    else:
        submit_kernel(options, skip_push=args.skip_push, models=args.models, competition=competition)
    return 0


def add_status(sub):
    p = sub.add_parser("status", help="the latest Kaggle kernel run and the latest recorded submission")
    p.set_defaults(func=cmd_status)


def cmd_status(args) -> int:

    show_status()
    return 0


def add_data(sub):
    p = sub.add_parser("data", help="download the competition data (Kaggle credentials), else write synthetic data")
    p.add_argument("--dir", type=Path, default=Path("data"))
    p.add_argument("--train", type=int, default=2615, help="synthetic training images when there are no credentials")
    p.add_argument("--test", type=int, default=10022, help="synthetic test images when there are no credentials")
    p.set_defaults(func=cmd_data)


def cmd_data(args) -> int:

    fetch_data(args.dir, synthetic_train=args.train, synthetic_test=args.test)
    return 0


def add_emulator(sub):
    from marsseg.competition import PROFILES

    p = sub.add_parser("emulator", help="a loopback Kaggle for dry runs (the real kaggle client talks to it)")
    p.add_argument("--port", type=int, default=7777)
    p.add_argument(
        "--print-env", action="store_true", help="print the lines that route the kit and `kaggle` here, and exit"
    )
    p.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        help="competition profile uploads are validated against and the synthetic test set is sized to "
        "(default: $MARSSEG_PROFILE, else mars: 10022 test images; mars-mini has 32)",
    )
    p.add_argument("--data", type=Path, help="competition data to serve and run kernels on (default: synthetic)")
    p.add_argument(
        "--truth", type=Path, help="test labels to score with (default: the synthetic truth; unscored without)"
    )
    p.add_argument("--kernel-preset", default="smoke", help="preset the pushed kernel runs with (default smoke)")
    p.add_argument("--gpu-quota-hours", type=float, default=30.0, help="weekly GPU quota served (default 30)")
    p.add_argument(
        "--gpu-quota-used",
        type=float,
        default=0.0,
        metavar="HOURS",
        help="GPU hours already used this week (default 0); GPU kernel runs here add their wall time",
    )
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="inject a fault: METHOD:STATUS[:TIMES], METHOD:STATUS:TIMES:after (processed, then STATUS), "
        "METHOD:slow=SECONDS[:TIMES], kernel-error[:TIMES]",
    )
    p.add_argument(
        "--canary-seconds",
        type=float,
        default=90.0,
        help="budget of a pushed canary here (default 90): there is no GPU, so the canary runs on the CPU, cut to fit",
    )
    p.add_argument("--root", type=Path, help="folder for kernel runs and synthetic data (default: a temporary one)")
    p.set_defaults(func=cmd_emulator)


def cmd_emulator(args) -> int:

    if args.print_env:
        print(print_env(args.port, args.profile))
        return 0
    for path, what in ((args.data, "a competition .npz"), (args.truth, "a .npz with test_labels")):
        if path and not path.is_file():
            raise UserError(f"{path}: no such file; pass {what} (or omit it for synthetic data)")
    if args.truth and not args.data:
        raise UserError("--truth goes with --data (the synthetic data brings its own truth)")
    if args.gpu_quota_hours <= 0 or args.gpu_quota_used < 0:
        raise UserError("--gpu-quota-hours must be above 0 and --gpu-quota-used at least 0")
    serve(
        args.port,
        args.root,
        tuple(args.fault),
        data_path=args.data,
        truth_path=args.truth,
        profile=args.profile,
        kernel_preset=args.kernel_preset,
        gpu_quota_hours=args.gpu_quota_hours,
        gpu_quota_used=args.gpu_quota_used,
        canary_seconds=args.canary_seconds,
    )
    return 0
