"""Read Ray Tune experiment directories into one tidy table: a row per trajectory × round.

Reads the files Tune writes into every trial folder (`params.json`: the trial's config,
`result.json`: one JSON line per report), so it works on a finished experiment, on one
still running, and without Ray. A round reported twice (a trial replayed after its driver
was restored from an older snapshot) appears once: the last report wins.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from archdal.config import FACTORS, FROZEN, RunConfig
from archdal.encoders import encoder_label
from archdal.errors import DataError

FACTOR_COLUMNS = tuple(FACTORS.values())
SWEEP_FILE = "archdal_sweep.json"  # the grid a sweep script ran, beside its trials
SWEEP_FORMAT = "archdal-sweep/1"


def read_sweep_file(path: Path) -> dict[str, Any]:
    try:
        document = json.loads((path / SWEEP_FILE).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"{path / SWEEP_FILE} is unreadable ({err})") from err
    if document.get("format") != SWEEP_FORMAT:
        raise DataError(f"{path / SWEEP_FILE} is not an archdal sweep file")
    return document


def trial_dirs(experiment: Path) -> list[Path]:
    return sorted(p.parent for p in experiment.glob("*/params.json"))


def _read_results(path: Path) -> list[dict]:
    """`result.json` lines; a last line cut short by a crash is skipped."""
    rows = []
    if not path.exists():
        return rows
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def _factors(run: dict[str, Any]) -> dict[str, Any]:
    config = RunConfig.from_dict(run).to_dict()
    config.pop("pretrain_options")
    if config["arch"] == FROZEN:  # the encoder is the architecture factor
        config["arch"] = f"{FROZEN}-{encoder_label(config['encoder'])}-{config['head']}"
    return config


def _trial_frames(experiment: Path, trial: Path) -> list[pd.DataFrame]:
    """A frame per trajectory of a trial folder, its config's fields as columns. A trial of
    several trajectories (`runs` in params.json) gives each its own `trial` name, the
    folder's with `/t` and its index, so every trajectory is a trial of the table."""
    params = json.loads((trial / "params.json").read_text())
    rows = _read_results(trial / "result.json")
    if not rows:
        return []
    table = pd.DataFrame(rows).drop(columns="config", errors="ignore")
    if "runs" not in params:
        parts = [(trial.name, params["run"], table)]
    else:
        index = table["trajectory"]
        parts = [(f"{trial.name}/t{i}", run, table[index == i].copy())
                 for i, run in enumerate(params["runs"]) if (index == i).any()]  # fmt: skip
    frames = []
    for name, run, frame in parts:
        for key, value in _factors(run).items():
            frame[key] = value
        frame["experiment"] = experiment.name
        frame["trial"] = name
        frames.append(frame)
    return frames


def load_rounds(experiments: Path | str | Iterable[Path | str]) -> pd.DataFrame:
    """One row per (experiment, trial, round) with the trial's factors and settings as columns."""
    paths = (
        [Path(experiments)]
        if isinstance(experiments, (str, Path))
        else list(map(Path, experiments))
    )
    frames = []
    for experiment in paths:
        if not experiment.is_dir():
            raise DataError(f"experiment directory {experiment} does not exist")
        trials = trial_dirs(experiment)
        if not trials:
            raise DataError(
                f"{experiment} holds no Ray Tune trials (no */params.json); pass the folder "
                "sweeps/focus1.py printed"
            )
        for trial in trials:
            frames.extend(_trial_frames(experiment, trial))
    if not frames:
        raise DataError(f"no trial in {', '.join(map(str, paths))} has reported a round yet")
    table = pd.concat(frames, ignore_index=True)
    table = table.drop_duplicates(["experiment", "trial", "round"], keep="last")
    leading = ["experiment", "trial", *FACTOR_COLUMNS, "round", "n_labeled", "test_acc"]
    leading = [c for c in leading if c in table.columns]  # stage-one trials test nothing
    ordered = leading + [c for c in table.columns if c not in leading]
    return table[ordered].sort_values(["experiment", "trial", "round"]).reset_index(drop=True)
