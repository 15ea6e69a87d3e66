"""Sweep grids without Ray: presets, factor overrides and tuned hyperparameters → RunConfigs.

Everything is validated here, before any trial starts: unknown factor values, impossible
budgets (checked against the real splits), and hyperparameter files that do not cover the
grid.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Iterable
from typing import Any

from archdal import registry
from archdal.config import (
    ARCH_MODES,
    FACTORS,
    FROZEN,
    INIT_STRATEGIES,
    PRETRAIN,
    RunConfig,
    Runtime,
    settings_of,
)
from archdal.data import make_split
from archdal.encoders import encoder_label
from archdal.errors import ConfigError, DataError
from archdal.families import load_data
from archdal.loop import check_budget
from archdal.sweep.hparams import hparams_for
from archdal.sweep.presets import Grid, Preset

# Factors whose values are names: what each admits now (registries included).
_ALLOWED = {
    "datasets": registry.DATASETS.names,
    "archs": registry.all_archs,
    "strategies": registry.STRATEGIES.names,
    "pretrain": lambda: PRETRAIN,
    "arch_modes": lambda: ARCH_MODES,
    "init_strategies": lambda: INIT_STRATEGIES,
}
# Factors whose values belong to a modality, and the modality of a value.
_MODALITY = {
    "datasets": lambda name: registry.DATASETS.get(name).modality,
    "archs": lambda name: registry.arch_family(name).modality,
}
# `--set` keys: a field's path (`pretrain_options.lr`) or its flag's name (`pretrain-lr`).
_SETTINGS = {key: s for s in settings_of(RunConfig) for key in (s.key, s.label.replace("-", "_"))}


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{text!r} is not a boolean; use on/off, true/false, yes/no or 1/0")


def _json_object(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"{text!r} is not a JSON object")
    return value


PARSERS = {
    "int": int, "float": float, "str": str, "bool": parse_bool, "dict[str, Any]": _json_object,
    "float | None": float,
}  # fmt: skip


def parse_setting(text: str) -> tuple[str, Any]:
    """`--set KEY=VALUE` for any RunConfig field, nested options included, typed by the
    field; returns the field's path (`max_epochs`, `arch_options.filters`) and the value."""
    key, sep, raw = text.partition("=")
    setting = _SETTINGS.get(key.strip().replace("-", "_"))
    if not sep or setting is None:
        keys = sorted({s.key for s in _SETTINGS.values()})
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE with KEY one of {', '.join(keys)}")
    try:
        value: Any = PARSERS[setting.kind](raw)
    except ValueError as err:
        raise ConfigError(f"--set {text!r}: {raw!r} is not a valid {setting.kind}") from err
    return setting.key, value


def settable_fields() -> str:
    """The `--set` keys with their types, allowed values and `RunConfig` defaults, for help."""
    lines = ["--set KEY=VALUE keys (RunConfig defaults; a preset's own values: --dry-run):"]
    for s in settings_of(RunConfig):
        if s.key in FACTORS.values():
            continue
        admits = s.spec.metadata.get("admits")
        allowed = f"; {admits.describe()}" if admits is not None else ""
        text = "" if s.text_default is dataclasses.MISSING else f" (text: {s.text_default!r})"
        lines.append(f"  {s.key} ({s.kind}{allowed}; default {s.default!r}{text})")
    return "\n".join(lines)


def with_settings(values: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """RunConfig keyword arguments with `settings` (field paths → values) applied; a nested
    path replaces one field of its options."""
    values = dict(values)
    for key, value in settings.items():
        head, _, leaf = key.partition(".")
        if not leaf:
            values[head] = value
            continue
        options = values.get(head) or _NESTED[head]()
        values[head] = dataclasses.replace(options, **{leaf: value})
    return values


_NESTED = {f.name: f.metadata["nested"] for f in dataclasses.fields(RunConfig)
           if "nested" in f.metadata}  # fmt: skip


def factor_values(name: str, values: Iterable[Any]) -> tuple[Any, ...]:
    """Check one factor's values (unknown names, duplicates) and give them their type."""
    values = tuple(values)
    if not values:
        raise ConfigError(f"--{name.replace('_', '-')} needs at least one value")
    if name in _ALLOWED:
        allowed = _ALLOWED[name]()
        for value in values:
            if value not in allowed:
                raise ConfigError(
                    f"unknown {FACTORS[name]} {value!r} in --{name}; choose from: "
                    f"{', '.join(allowed)}"
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
            fits = (grid.modality, registry.ANY_MODALITY)
            values = tuple(v for v in values if _MODALITY[name](v) in fits)
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
    overlap = {key.partition(".")[0] for key in settings or {}} & set(FACTORS.values())
    if overlap:
        raise ConfigError(f"--set cannot change a sweep factor ({', '.join(sorted(overlap))})")
    names = list(FACTORS)
    optimized = registry.optimized_archs()
    configs = []
    for grid in preset.grids:
        chosen = _grid_factors(preset, grid, overrides)
        if chosen is None:
            continue
        base = with_settings(grid.base | (grid.resolve() if grid.resolve else {}), settings or {})
        for combo in itertools.product(*(chosen[n] for n in names)):
            values = base | {FACTORS[n]: v for n, v in zip(names, combo, strict=True)}
            if (values["arch"] in optimized) != (values["arch_mode"] != "fixed"):
                continue  # fixed architectures have one mode, optimized ones the other three
            if hparams is not None:
                values |= hparams_for(hparams, values["dataset"], values["arch"])
            configs.append(RunConfig(**values).validate())
    if not configs:
        raise ConfigError(f"the overrides leave no trial in preset {preset.name!r}")
    return configs


def _data_key(config: RunConfig) -> tuple[Any, ...]:
    """What a trial's data depends on: text also on its tokenizer and held-out test split,
    frozen embeddings on their encoder and its settings."""
    c = config
    frozen = (c.encoder, c.encoder_options) if c.arch == FROZEN else ()
    if not config.is_text:
        return (c.dataset, *frozen)
    return (c.dataset, c.arch, c.model_path, c.max_length, c.seed, c.test_fraction, c.csv_options,
            *frozen)  # fmt: skip


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
            key = (c.seed, c.init_size, c.pool_size, c.val_fraction, c.split_version,
                   c.acq_size, c.rounds)  # fmt: skip
            if key in seen:
                continue
            seen.add(key)
            split = make_split(data.train_y, data.num_classes, c.init_size, c.pool_size,
                               c.val_fraction, c.seed, c.split_version)  # fmt: skip
            check_budget(c, split)


def trial_name(config: RunConfig, seeds: str = "") -> str:
    """Readable and unique within a grid: every factor's value (an encoder by its label);
    `seeds` stands for the seed of a trial of several (`0to9`)."""
    aug = "-aug" if config.augment else ""
    mode = "" if config.arch_mode == "fixed" else f"-{config.arch_mode}"
    encoder = f"-{encoder_label(config.encoder)}" if config.encoder else ""
    init = "" if config.init_strategy == "random" else f"-{config.init_strategy}"
    return (
        f"{config.dataset}-{config.arch}{encoder}{mode}-{config.strategy}-{config.pretrain}"
        f"-s{seeds or config.seed}-i{config.init_size}{init}-a{config.acq_size}{aug}"
    )


def group_seeds(configs: list[RunConfig], seeds_per_trial: int) -> list[list[RunConfig]]:
    """The trials of a sweep that runs `seeds_per_trial` trajectories a trial: the configs
    that differ only in their seed, in grid order, cut into runs of that many seeds (the
    last of a setting may be shorter). One seed a trial gives one config a trial."""
    settings: dict[str, list[RunConfig]] = {}
    for config in configs:
        key = json.dumps(dataclasses.replace(config, seed=0).to_dict(), sort_keys=True)
        settings.setdefault(key, []).append(config)
    return [
        same[i : i + seeds_per_trial]
        for same in settings.values()
        for i in range(0, len(same), seeds_per_trial)
    ]


def group_name(configs: list[RunConfig]) -> str:
    """A trial's name: its one config's, or the shared setting's with its seed range."""
    if len(configs) == 1:
        return trial_name(configs[0])
    return trial_name(configs[0], f"{configs[0].seed}to{configs[-1].seed}")
