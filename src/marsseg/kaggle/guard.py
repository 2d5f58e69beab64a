"""What must hold before anything leaves the machine, for `make submit` and `make submit-csv`.

* The file against the competition profile (`marsseg.competition.active_competition()`: $MARSSEG_PROFILE, else
  the real competition): one row per test image (10022; `--images N` overrides), ids in order, labels in the
  class range, and the scorer's layout for what is uploaded. A file that fails is refused: exit 2, one line,
  nothing sent, and no submission recorded (a kernel attempt's record says `refused`).
* The upload zipped: one member, `submission.csv`, deflated (a 164 MB pixels CSV becomes a few MB); Kaggle
  accepts compressed submission files.
* The run's projected GPU hours against the weekly GPU quota left (`kaggle quota`): the projection of the last
  canary that passed for this kernel and machine shape, else the preset's estimate (`pipeline.canary.estimate`,
  from assumed rates), never more than the kernel's time budget (its BUDGET_SECONDS, else its preset's); the line
  says which it used. A push that would overrun the quota is refused unless forced; an unreadable quota is said
  and does not block.
"""

from __future__ import annotations

import ast
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from marsseg.competition import MARS, PROFILE_ENV, Competition
from marsseg.config import override, preset
from marsseg.errors import SubmissionError, UserError
from marsseg.kaggle.client import CredentialsError, KaggleError, KaggleSession
from marsseg.pipeline.canary import estimate
from marsseg.submission.formats import SubmissionInfo, read_submission

ZIP_MEMBER = "submission.csv"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed, so the same CSV always gives the same zip
KERNEL_SETTINGS = ("PRESET", "BUDGET_SECONDS", "OVERRIDES", "CANARY")
TRAIN_IMAGES = 2615  # the competition's training set: what an estimate without a canary is sized to


class SubmissionRefused(UserError):
    """The file would not be scored: refused before upload."""


class QuotaError(UserError):
    """The kernel's time budget exceeds the weekly GPU quota left."""


# ----------------------------------------------------------------------------------- validation
def expected_images(competition: Competition, images: int | None = None) -> int | None:
    """The row count a submission must have: `--images` when given, else the profile's test-set size."""
    return images if images is not None else competition.test_images


def check_submission(
    path: Path, competition: Competition, images: int | None = None, layout: str | None = None, what: str = ""
) -> SubmissionInfo:
    """Validate `path` as the profile's scorer would (rows, ids, class range; `layout` if given); refuse if not."""
    expected = expected_images(competition, images)
    if images is not None:
        rule = f"--images {images}"
    else:
        profile = os.environ.get(PROFILE_ENV) or competition.slug
        rule = f"the {profile} profile ({PROFILE_ENV}) has {expected} test images; --images N overrides"
    try:
        info = read_submission(path, expected, competition)
    except SubmissionError as exc:
        raise SubmissionRefused(f"refused before upload: {what}{exc} ({rule}); nothing was sent") from None
    if layout and info.layout != layout:
        raise SubmissionRefused(
            f"refused before upload: {what}{path} is in the {info.layout} layout, the scorer takes {layout}; "
            "nothing was sent"
        )
    return info


# ------------------------------------------------------------------------------------------ zip
def zip_submission(csv: Path, dest: Path | None = None) -> Path:
    """`csv` deflated into a zip with one member, `submission.csv`, written atomically and read back."""
    csv = Path(csv)
    dest = Path(dest) if dest else csv.with_suffix(".zip")
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        info = zipfile.ZipInfo(ZIP_MEMBER, date_time=_ZIP_TIME)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
            with open(csv, "rb") as src, archive.open(info, "w", force_zip64=True) as member:
                shutil.copyfileobj(src, member, 1 << 20)
        with zipfile.ZipFile(tmp) as archive:
            members = archive.infolist()
            if [m.filename for m in members] != [ZIP_MEMBER] or members[0].file_size != csv.stat().st_size:
                raise UserError(f"{dest}: the zip does not hold {csv} whole")
            if archive.testzip() is not None:
                raise UserError(f"{dest}: the zip does not read back")
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


# ---------------------------------------------------------------------------------------- quota
def kernel_settings(kernel: Path) -> dict:
    """The settings at the top of the bundled kernel (KERNEL_SETTINGS), read without running it."""
    try:
        return settings_from_text(Path(kernel).read_text(encoding="utf-8"), str(kernel))
    except (OSError, SyntaxError, UnicodeDecodeError) as exc:
        raise UserError(f"{kernel}: cannot read the kernel's settings ({exc}); run `make bundle`") from None


def settings_from_text(text: str, where: str = "the kernel") -> dict:
    """KERNEL_SETTINGS assigned at the top level of a kernel's `text` (SyntaxError if it does not parse)."""
    tree = ast.parse(text)
    settings: dict = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in KERNEL_SETTINGS:
                try:
                    settings[name] = ast.literal_eval(node.value)
                except ValueError:
                    raise UserError(f"{where}: {name} must be a literal value") from None
    return settings


def kernel_config(kernel: Path, settings: dict | None = None):
    """The configuration the kernel runs: its PRESET after CANARY's and its OVERRIDES (the order of the kernel's
    `locate`), its BUDGET_SECONDS not applied. `settings`: `kernel_settings(kernel)`, when already read."""
    settings = kernel_settings(kernel) if settings is None else settings
    overrides = (["canary.enabled=true"] if settings.get("CANARY") else []) + list(settings.get("OVERRIDES") or [])
    return override(preset(settings.get("PRESET") or "kaggle"), overrides)


def kernel_budget(kernel: Path, settings: dict | None = None) -> tuple[float, str]:
    """(seconds, where they come from): the kernel's BUDGET_SECONDS, else its preset's budget after its OVERRIDES."""
    settings = kernel_settings(kernel) if settings is None else settings
    if settings.get("BUDGET_SECONDS") is not None:
        return float(settings["BUDGET_SECONDS"]), f"BUDGET_SECONDS in {Path(kernel).name}"
    return float(kernel_config(kernel, settings).budget_seconds), f"preset {settings.get('PRESET') or 'kaggle'}"


def projected_need(kernel: Path, canary: dict | None = None, competition: Competition = MARS) -> tuple[float, str]:
    """(GPU seconds the push will use at most, what that figure is): a canary push its canary budget; else the
    projection of `canary` (a passed canary's record) or the preset's estimate, capped at the kernel's budget."""
    settings = kernel_settings(kernel)
    budget, where = kernel_budget(kernel, settings)
    cfg = kernel_config(kernel, settings)
    if cfg.canary.enabled:
        seconds = cfg.canary.budget_seconds
        return seconds, f"the canary's budget ({seconds / 60:.0f} min)"
    if canary is not None and canary.get("projected_seconds"):
        seconds, what = float(canary["projected_seconds"]), f"canary {canary['id']}'s projection"
    else:
        seconds = estimate(cfg, TRAIN_IMAGES, competition.test_images or MARS.test_images)["total"]
        what = f"preset {cfg.preset}'s estimate from assumed T4 rates (no canary passed yet)"
    if seconds > budget:
        return budget, f"{what}, {seconds / 3600:.2f} h, capped at the budget ({where})"
    return seconds, f"{what}; budget {budget / 3600:.2f} h ({where})"


def check_gpu_quota(
    session: KaggleSession, kernel: Path, metadata: dict, force: bool = False, log=print, canary: dict | None = None
) -> float | None:
    """Say the weekly GPU quota left and the run's projected need (`projected_need`); refuse (QuotaError) a need
    above what is left unless `force`. Returns the hours left, None when the quota could not be read (said, not
    blocking)."""
    need, source = projected_need(kernel, canary)
    hours = need / 3600
    if not metadata.get("enable_gpu"):
        log(f"[kaggle] GPU off in kernel-metadata.json: the run ({hours:.2f} h: {source}) uses no GPU quota")
        return None
    try:
        used, total = session.gpu_quota()
    except CredentialsError:
        raise
    except KaggleError as exc:
        log(f"[kaggle] cannot read the weekly GPU quota ({exc}); going on without the check")
        return None
    left = max(0.0, total - used)
    log(
        f"[kaggle] weekly GPU quota: {left:.2f} h left of {total:.2f} h ({used:.2f} h used); "
        f"this run needs at most {hours:.2f} h ({source})"
    )
    if hours > left:
        if force:
            log(f"[kaggle] the run's need exceeds the GPU quota left by {hours - left:.2f} h; pushing anyway (--force)")
            return left
        raise QuotaError(
            f"refused: the run needs up to {hours:.2f} h ({source}) but only {left:.2f} h of this week's "
            f"GPU quota is left ({used:.2f} of {total:.2f} h used), so Kaggle would stop it part-way; nothing was "
            "pushed. Wait for the weekly refresh (`kaggle quota`), or push anyway with `make submit FORCE=1` "
            "(`marsseg submit --force`)"
        )
    return left
