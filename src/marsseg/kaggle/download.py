"""`make data`: the competition files with Kaggle credentials; without them, how to get them and a stand-in."""

from __future__ import annotations

import re
import shutil
import zipfile
from pathlib import Path

from marsseg.competition import MARS, Competition
from marsseg.data.load import load_dataset
from marsseg.data.synth import ensure_synthetic
from marsseg.kaggle.client import HOW_TO_CREDENTIALS, KaggleError, KaggleSession, find_credentials


def fetch_data(
    directory: Path,
    competition: Competition = MARS,
    synthetic_train: int = 2615,
    synthetic_test: int = 10022,
    session: KaggleSession | None = None,
    log=print,
) -> Path:
    """`make data`: the competition files with credentials; else say how to get them and make synthetic data."""
    directory = Path(directory)
    target = directory / competition.data_filename
    if target.is_file():
        log(f"{target}: already there")
        return target
    session = session or KaggleSession(log=log)
    if find_credentials(session.env, require=False) is None:
        log(
            "no Kaggle credentials found, so the competition data cannot be downloaded. "
            f"To get it: {_how_to_data(competition)}"
        )
        data, truth = directory / "synthetic_mars.npz", directory / "synthetic_truth.npz"
        ensure_synthetic(data, truth, synthetic_train, synthetic_test, log=log)
        log(f"synthetic stand-in ready: {data} (pass --data {data}); test labels in {truth}")
        return data
    try:
        archive = session.retrying(
            "competitions download", lambda: session.download_competition(competition.slug, directory)
        )
    except KaggleError as exc:
        if re.search(r"\b403\b|Forbidden", str(exc)):
            raise KaggleError(
                f"{exc} — accept the competition's rules at "
                f"https://www.kaggle.com/competitions/{competition.slug}/rules, then run `make data` again"
            ) from None
        raise
    with zipfile.ZipFile(archive) as bundle:
        names = [n for n in bundle.namelist() if not n.endswith("/")]
        for name in names:
            out = directory / Path(name).name  # flat: never write outside the data folder
            with bundle.open(name) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)
    archive.unlink()
    if not target.is_file():
        raise KaggleError(
            f"the competition download held {', '.join(names) or 'nothing'}, not {competition.data_filename}"
        )
    dataset = load_dataset(target, competition)
    log(f"downloaded {target} from {session.where}: {dataset.n_train} training and {dataset.n_test} test images")
    return target


def _how_to_data(competition: Competition) -> str:
    return (
        f"{HOW_TO_CREDENTIALS}; accept the rules at kaggle.com/competitions/{competition.slug}; "
        "then run `make data` again"
    )
