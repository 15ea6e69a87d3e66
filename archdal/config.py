"""Typed configuration of one active-learning trajectory, validated once at the edge.

`RunConfig` holds everything that changes what a trajectory computes; it is what
`config.json` records and what a resumed run must match. Where the data lives and
which device runs it are `Runtime` options: moving data or hardware does not make a
checkpoint foreign.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archdal.errors import ConfigError

DATASETS = ("mnist", "fashion_mnist", "cifar10", "svhn", "digits", "synthetic")
ARCHS = ("vgg11", "vgg16", "vgg19", "resnet18", "resnet34", "resnet50")
STRATEGIES = ("random", "least_confidence", "margin", "entropy", "bald", "coreset", "badge")
PRETRAIN = ("none", "unsupervised")
OPTIMIZERS = ("sgd", "adam")
DEVICES = ("auto", "cpu", "cuda")


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"unknown {name} {value!r}; choose from: {', '.join(allowed)}")


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{name} must be positive, got {value}")


def _non_negative(name: str, value: float) -> None:
    if not value >= 0:
        raise ConfigError(f"{name} must be zero or positive, got {value}")


@dataclass(frozen=True)
class PretrainConfig:
    """DeepCluster-style unsupervised pretraining (Siméoni et al. 2021)."""

    clusters: int = 50
    epochs: int = 10
    max_images: int = 0  # 0: every training image of the split (pool, initial and validation)

    def validate(self) -> None:
        if self.clusters < 2:
            raise ConfigError(f"pretrain clusters must be at least 2, got {self.clusters}")
        _positive("pretrain epochs", self.epochs)
        _non_negative("pretrain max images", self.max_images)


@dataclass(frozen=True)
class RunConfig:
    """One trajectory: data, model, strategy, budget and training protocol (paper defaults)."""

    dataset: str = "mnist"
    arch: str = "resnet18"
    strategy: str = "random"
    seed: int = 0
    width: float = 1.0
    pretrain: str = "none"
    init_size: int = 1000
    acq_size: int = 1000
    rounds: int = 25
    pool_size: int = 30000
    val_fraction: float = 0.1
    max_epochs: int = 500
    patience: int = 50
    train_acc_stop: float = 0.99
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 1e-6
    batch_size: int = 64
    augment: bool = False
    dropout: float = 0.5
    mc_samples: int = 10
    pretrain_options: PretrainConfig = field(default_factory=PretrainConfig)

    def validate(self) -> RunConfig:
        """Check every field that can be checked without data; return self for chaining."""
        _choice("dataset", self.dataset, DATASETS)
        _choice("arch", self.arch, ARCHS)
        _choice("strategy", self.strategy, STRATEGIES)
        _choice("pretrain", self.pretrain, PRETRAIN)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        for name in ("init_size", "acq_size", "pool_size", "max_epochs", "patience", "batch_size"):
            _positive(name.replace("_", "-"), getattr(self, name))
        _non_negative("rounds", self.rounds)
        _positive("width", self.width)
        _positive("lr", self.lr)
        _non_negative("weight-decay", self.weight_decay)
        _non_negative("seed", self.seed)
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum}")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"val-fraction must be in (0, 1), got {self.val_fraction}")
        if not 0 < self.train_acc_stop <= 1:
            raise ConfigError(f"train-acc-stop must be in (0, 1], got {self.train_acc_stop}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.mc_samples < 2:
            raise ConfigError(f"mc-samples must be at least 2, got {self.mc_samples}")
        self.pretrain_options.validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; allowed: {sorted(known)}")
        values = dict(raw)
        if "pretrain_options" in values:
            values["pretrain_options"] = PretrainConfig(**values["pretrain_options"])
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


@dataclass(frozen=True)
class Runtime:
    """Where data lives and what runs it; not part of the experiment's identity."""

    data_dir: Path | None = None
    download: bool = False
    device: str = "auto"
    eval_batch_size: int = 1024
    quiet: bool = False

    def validate(self) -> Runtime:
        _choice("device", self.device, DEVICES)
        _positive("eval-batch-size", self.eval_batch_size)
        return self
