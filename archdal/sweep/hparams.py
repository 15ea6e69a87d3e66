"""Tuned hyperparameters per dataset × architecture: the file `sweeps/tune_hparams.py`
writes and `sweeps/focus1.py --hparams` reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from archdal.errors import ConfigError, DataError
from archdal.io import atomic_write

TUNED_FIELDS = ("lr", "weight_decay", "batch_size")
HPARAMS_FORMAT = "archdal-hparams/1"


def hparams_key(dataset: str, arch: str) -> str:
    return f"{dataset}/{arch}"


def hparams_for(hparams: dict[str, dict[str, Any]], dataset: str, arch: str) -> dict[str, Any]:
    key = hparams_key(dataset, arch)
    if key not in hparams:
        raise ConfigError(
            f"the hyperparameter file has no entry for {key} (it has: "
            f"{', '.join(sorted(hparams)) or 'none'}); tune it or drop it from the grid"
        )
    return {k: hparams[key][k] for k in TUNED_FIELDS}


def save_hparams(path: Path, best: dict[str, dict[str, Any]], search: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"format": HPARAMS_FORMAT, "search": search, "best": best}
    atomic_write(path, lambda fh: fh.write(json.dumps(document, indent=2, sort_keys=True) + "\n"))


def load_hparams(path: Path) -> dict[str, dict[str, Any]]:
    """The `best` table of a file written by `sweeps/tune_hparams.py`, checked."""
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"hyperparameter file {path} is unreadable ({err})") from err
    if not isinstance(document, dict) or document.get("format") != HPARAMS_FORMAT:
        raise DataError(
            f"{path} is not an archdal hyperparameter file (expected format {HPARAMS_FORMAT!r}, "
            "as written by sweeps/tune_hparams.py)"
        )
    best = document.get("best")
    if not isinstance(best, dict) or not best:
        raise DataError(f"{path} holds no tuned entries")
    for key, entry in best.items():
        missing = [k for k in TUNED_FIELDS if k not in entry]
        if missing:
            raise DataError(f"{path}: entry {key} lacks {', '.join(missing)}")
    return best
