"""Registries by name: the strategies, datasets and model families a config may name.

Each registry is filled by the modules that implement its entries (`archdal.strategies`,
`archdal.data` and `archdal.textdata`, `archdal.families`), which `import archdal` loads, so
the names a config accepts are always the ones that exist. This module imports nothing
heavy: `archdal.config` validates against it without pulling in torch models.

Your own entries, outside archdal's source: put them in a module that registers them and
name it in `$ARCHDAL_PLUGINS` (comma-separated module names, importable on `PYTHONPATH`); the
first look-up in any registry imports it, in every process, Ray workers included, so `archdal
run` and sweeps both know the new names.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from archdal.errors import ConfigError


class Named(Protocol):
    name: str


T = TypeVar("T", bound=Named)
PLUGINS_VARIABLE = "ARCHDAL_PLUGINS"
ANY_MODALITY = "any"


class Registry(Generic[T]):
    """Entries by their `name`, in registration order; a name is registered once."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, entry: T) -> T:
        if entry.name in self._entries:
            raise ValueError(f"{self.kind} {entry.name!r} is registered already")
        self._entries[entry.name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Drop an entry (tests that register a toy entry put things back)."""
        del self._entries[name]

    def names(self) -> tuple[str, ...]:
        load_plugins()
        return tuple(self._entries)

    def get(self, name: str) -> T:
        load_plugins()
        if name not in self._entries:
            raise ConfigError(f"unknown {self.kind} {name!r}; choose from: {', '.join(self)}")
        return self._entries[name]

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def items(self) -> list[tuple[str, T]]:
        load_plugins()
        return list(self._entries.items())

    def __contains__(self, name: object) -> bool:
        load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        load_plugins()
        return iter(tuple(self._entries))


@dataclass(frozen=True)
class Dataset:
    """A dataset by name: its modality ("image" or "text") and how to load it, on the CPU,
    as `ImageData` or `TextData`, from `(RunConfig, Runtime)`."""

    name: str
    modality: str
    load: Callable[[Any, Any], Any]


@dataclass(frozen=True)
class ModelFamily:
    """Architectures built the same way: their modality ("image", "text", or `ANY_MODALITY`
    for models of embeddings of either), the names of those whose architecture is optimized
    (Focus 2 modes apply to them), and `adapter(config, data)`, the object through which the
    loop makes the models (`archdal.families.ModelAdapter`).

    `load(config, runtime)`, when given, replaces the dataset's own loader (the frozen
    family reads cached embeddings, not images or tokens); `protocol` holds the training
    defaults of its archs where they differ from the modality's (`RunConfig.for_dataset`)."""

    name: str
    modality: str
    archs: tuple[str, ...]
    adapter: Callable[[Any, Any], Any]
    optimized: tuple[str, ...] = ()
    load: Callable[[Any, Any], Any] | None = None
    protocol: dict[str, Any] = field(default_factory=dict)


STRATEGIES: Registry = Registry("strategy")
DATASETS: Registry = Registry("dataset")
MODEL_FAMILIES: Registry = Registry("model family")


def arch_family(arch: str) -> ModelFamily:
    """The model family that builds `arch`; a ConfigError listing every arch otherwise."""
    for family in _families():
        if arch in family.archs:
            return family
    raise ConfigError(f"unknown arch {arch!r}; choose from: {', '.join(all_archs())}")


def _families() -> Iterator[ModelFamily]:
    return (MODEL_FAMILIES.get(name) for name in MODEL_FAMILIES)


def all_archs() -> tuple[str, ...]:
    return tuple(arch for family in _families() for arch in family.archs)


def archs_of(modality: str) -> tuple[str, ...]:
    """Every registered arch of a modality ("image", "text"), in registration order."""
    return tuple(arch for f in _families() if f.modality == modality for arch in f.archs)


def optimized_archs() -> tuple[str, ...]:
    """The archs whose architecture is optimized (Focus 2 modes joint, spo, upo)."""
    return tuple(arch for family in _families() for arch in family.optimized)


_loaded_plugins: set[str] = set()


def load_plugins() -> None:
    """Import the modules named in `$ARCHDAL_PLUGINS` (each once), which register entries of
    their own; called by every look-up, so an unimportable name is a ConfigError where a
    name is checked, which the command lines report as one line."""
    names = os.environ.get(PLUGINS_VARIABLE, "").split(",")
    for module in filter(None, (name.strip() for name in names)):
        if module in _loaded_plugins:
            continue
        _loaded_plugins.add(module)  # before importing: the module's own look-ups skip it
        try:
            importlib.import_module(module)
        except ImportError as err:
            _loaded_plugins.discard(module)
            raise ConfigError(
                f"${PLUGINS_VARIABLE} names module {module!r}, which cannot be imported ({err})"
            ) from err
