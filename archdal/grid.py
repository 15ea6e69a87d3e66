"""Sweep grids without Ray: presets, factor overrides and tuned hyperparameters → RunConfigs.

A sweep is a base `RunConfig` plus a list of values per factor; its trials are the Cartesian
product. Everything is validated here, before any trial starts: unknown factor values,
impossible budgets (checked against the real splits), and hyperparameter files that do not
cover the grid.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archdal.config import ARCHS, DATASETS, PRETRAIN, STRATEGIES, RunConfig, Runtime
from archdal.data import load_dataset, make_split
from archdal.errors import ConfigError, DataError
from archdal.loop import check_budget

# Sweep factor (CLI flag without dashes) → RunConfig field.
FACTORS = {
    "datasets": "dataset",
    "archs": "arch",
    "strategies": "strategy",
    "pretrain": "pretrain",
    "seeds": "seed",
    "init_sizes": "init_size",
    "acq_sizes": "acq_size",
    "augment": "augment",
}
TUNED_FIELDS = ("lr", "weight_decay", "batch_size")
HPARAMS_FORMAT = "archdal-hparams/1"


@dataclass(frozen=True)
class Preset:
    """A named sweep: base settings shared by every trial and the values of each factor."""

    name: str
    description: str
    base: dict[str, Any] = field(default_factory=dict)
    factors: dict[str, tuple[Any, ...]] = field(default_factory=dict)


def _paper_factors(**overrides: tuple[Any, ...]) -> dict[str, tuple[Any, ...]]:
    factors: dict[str, tuple[Any, ...]] = {
        "datasets": ("mnist", "fashion_mnist", "cifar10", "svhn"),
        "archs": ARCHS,
        "strategies": STRATEGIES,
        "pretrain": PRETRAIN,
        "seeds": (0, 1, 2),
        "init_sizes": (1000,),
        "acq_sizes": (1000,),
        "augment": (False,),
    }
    return factors | overrides


PRESETS = {
    p.name: p
    for p in (
        Preset(
            "paper",
            "the paper's image grid and protocol: initial 1,000, 25 rounds of 1,000, up to "
            "500 epochs with early stopping, full-width models",
            base={},
            factors=_paper_factors(),
        ),
        Preset(
            "small",
            "a real grid for one CPU machine: MNIST, ResNet-18 and VGG-11 at width 0.125, "
            "every strategy, 2 seeds, 100 + 4 × 100 labels from a 2,000-image pool",
            base=dict(
                width=0.125,
                rounds=4,
                pool_size=2000,
                val_fraction=0.01,
                max_epochs=50,
                patience=10,
            ),
            factors=_paper_factors(
                datasets=("mnist",),
                archs=("resnet18", "vgg11"),
                pretrain=("none",),
                seeds=(0, 1),
                init_sizes=(100,),
                acq_sizes=(100,),
            ),
        ),
        Preset(
            "smoke",
            "minutes: scikit-learn digits (no download), ResNet-18 at width 0.125, three "
            "strategies, 40 + 2 × 40 labels",
            base=dict(width=0.125, rounds=2, pool_size=1000, max_epochs=10, patience=5),
            factors=_paper_factors(
                datasets=("digits",),
                archs=("resnet18",),
                strategies=("random", "margin", "badge"),
                pretrain=("none",),
                seeds=(0,),
                init_sizes=(40,),
                acq_sizes=(40,),
            ),
        ),
    )
}

_ALLOWED = {
    "datasets": DATASETS,
    "archs": ARCHS,
    "strategies": STRATEGIES,
    "pretrain": PRETRAIN,
}
_FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(RunConfig)}


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{text!r} is not a boolean; use on/off, true/false, yes/no or 1/0")


def parse_setting(text: str) -> tuple[str, Any]:
    """`--set key=value` for any scalar RunConfig field, typed by the field."""
    key, sep, raw = text.partition("=")
    key = key.strip().replace("-", "_")
    scalar = {k: t for k, t in _FIELD_TYPES.items() if t in ("int", "float", "str", "bool")}
    if not sep or key not in scalar:
        raise ConfigError(
            f"--set {text!r}: expected KEY=VALUE with KEY one of {', '.join(sorted(scalar))}"
        )
    kind = scalar[key]
    try:
        value: Any = {"int": int, "float": float, "str": str, "bool": parse_bool}[kind](raw)
    except ValueError as err:
        raise ConfigError(f"--set {text!r}: {raw!r} is not a valid {kind}") from err
    return key, value


def factor_values(name: str, values: Iterable[Any]) -> tuple[Any, ...]:
    """Check one factor's values (unknown names, duplicates) and give them their type."""
    values = tuple(values)
    if not values:
        raise ConfigError(f"--{name.replace('_', '-')} needs at least one value")
    if name in _ALLOWED:
        for value in values:
            if value not in _ALLOWED[name]:
                raise ConfigError(
                    f"unknown {FACTORS[name]} {value!r} in --{name}; choose from: "
                    f"{', '.join(_ALLOWED[name])}"
                )
    if len(set(values)) != len(values):
        raise ConfigError(f"--{name.replace('_', '-')} repeats a value: {list(values)}")
    return values


def expand(
    preset: Preset,
    factors: dict[str, tuple[Any, ...]] | None = None,
    settings: dict[str, Any] | None = None,
    hparams: dict[str, dict[str, Any]] | None = None,
) -> list[RunConfig]:
    """The trials of `preset` with some factors replaced, base fields set, tuned values applied."""
    chosen = dict(preset.factors)
    for name, values in (factors or {}).items():
        chosen[name] = factor_values(name, values)
    overlap = set(settings or {}) & set(FACTORS.values())
    if overlap:
        raise ConfigError(f"--set cannot change a sweep factor ({', '.join(sorted(overlap))})")
    base = preset.base | (settings or {})
    names = list(FACTORS)
    configs = []
    for combo in itertools.product(*(chosen[n] for n in names)):
        values = base | {FACTORS[n]: v for n, v in zip(names, combo, strict=True)}
        if hparams is not None:
            values |= hparams_for(hparams, values["dataset"], values["arch"])
        configs.append(RunConfig(**values).validate())
    return configs


def check_budgets(configs: list[RunConfig], runtime: Runtime) -> None:
    """Load each dataset once and check every trial's split and budget before any trial runs."""
    for dataset in sorted({c.dataset for c in configs}):
        try:
            data = load_dataset(dataset, runtime.data_dir, runtime.download)
        except DataError as err:
            raise DataError(f"{err} (needed by the sweep's {dataset} trials)") from err
        seen = set()
        for c in configs:
            key = (c.seed, c.init_size, c.pool_size, c.val_fraction, c.acq_size, c.rounds)
            if c.dataset != dataset or key in seen:
                continue
            seen.add(key)
            split = make_split(
                data.train_y, data.num_classes, c.init_size, c.pool_size, c.val_fraction, c.seed
            )
            check_budget(c, split)


def trial_name(config: RunConfig) -> str:
    """Readable and unique within a grid: every factor's value."""
    aug = "-aug" if config.augment else ""
    return (
        f"{config.dataset}-{config.arch}-{config.strategy}-{config.pretrain}-s{config.seed}"
        f"-i{config.init_size}-a{config.acq_size}{aug}"
    )


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
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


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
