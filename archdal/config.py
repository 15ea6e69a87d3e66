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

IMAGE_DATASETS = ("mnist", "fashion_mnist", "cifar10", "svhn", "digits", "synthetic")
TEXT_DATASETS = ("ag_news", "banking77", "dbpedia", "qnli", "csv")
DATASETS = IMAGE_DATASETS + TEXT_DATASETS
IMAGE_ARCHS = ("vgg11", "vgg16", "vgg19", "resnet18", "resnet34", "resnet50")
TEXT_ARCHS = ("bert", "distilbert", "roberta")
# Focus 2: fixed CNNs of 1, 5 and 9 layers, and CNNs whose architecture is optimized.
FIXED_CNNS = ("cnn1", "cnn5", "cnn9")
OPTIMIZED_ARCHS = ("depth_dropout", "bbdropout", "pdarts")
CNN_ARCHS = FIXED_CNNS + OPTIMIZED_ARCHS
ARCHS = IMAGE_ARCHS + CNN_ARCHS + TEXT_ARCHS
# fixed: the architecture as built; joint: architecture and weights optimized again every
# round on the labelled set; spo / upo: optimized once before active learning on the initial
# labelled pool / on unlabelled data with cluster pseudo-labels, then kept fixed.
ARCH_MODES = ("fixed", "joint", "spo", "upo")
PRE_OPTIMIZED = ("spo", "upo")
STRATEGIES = ("random", "least_confidence", "margin", "entropy", "bald", "coreset", "badge")
PRETRAIN = ("none", "unsupervised")
OPTIMIZERS = ("sgd", "adam", "adamw")
DEVICES = ("auto", "cpu", "cuda")

# The paper's text protocol (section 3.2: 100 initial labels, 25 rounds of 100, 5 epochs as in
# Devlin et al. 2018) with BERT fine-tuning's usual AdamW settings. `RunConfig`'s own defaults
# are the image protocol; `RunConfig.for_dataset` and the CLI apply these to text datasets.
TEXT_PROTOCOL: dict[str, Any] = {
    "arch": "bert",
    "init_size": 100,
    "acq_size": 100,
    "max_epochs": 5,
    "patience": 5,
    "train_acc_stop": 1.0,
    "optimizer": "adamw",
    "lr": 2e-5,
    "weight_decay": 0.01,
    "batch_size": 16,
    "dropout": 0.1,
}
TEXT_PRETRAIN_LR = 2e-5


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
    lr: float = 0.01

    def validate(self) -> None:
        if self.clusters < 2:
            raise ConfigError(f"pretrain clusters must be at least 2, got {self.clusters}")
        _positive("pretrain epochs", self.epochs)
        _non_negative("pretrain max images", self.max_images)
        _positive("pretrain lr", self.lr)


@dataclass(frozen=True)
class ArchOptions:
    """Sizes and priors of the Focus 2 CNNs (paper, section 4.2: K = 20 layers of 64 filters).

    `pdarts` overrides fields of `archdal.archopt.pdarts.PdartsSettings` (channels, cells,
    epochs per stage, ...), e.g. {"channels": 8, "epochs": 2}.
    """

    filters: int = 64
    truncation: int = 20  # Depth-Dropout's K; BBDropout's number of gated layers
    structure_samples: int = 2  # Depth-Dropout structures averaged per prediction
    depth_prior_alpha: float = 1.0  # Beta(α, β) of the stick-breaking depth prior
    depth_prior_beta: float = 10.0
    filter_prior_alpha: float = 1e-4  # BBDropout's Beta(α, 1) prior over filters
    lr: float = 0.01  # of the architecture parameters
    pdarts: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        for name in ("filters", "truncation", "structure_samples"):
            if getattr(self, name) < 1:
                raise ConfigError(f"arch {name.replace('_', '-')} must be at least 1, got "
                                  f"{getattr(self, name)}")  # fmt: skip
        for name in ("depth_prior_alpha", "depth_prior_beta", "filter_prior_alpha", "lr"):
            _positive(f"arch {name.replace('_', '-')}", getattr(self, name))
        from archdal.archopt.pdarts import pdarts_settings

        pdarts_settings(self.pdarts)


@dataclass(frozen=True)
class CsvOptions:
    """A researcher's own corpus (`dataset="csv"`): one CSV/TSV file, one row per example."""

    path: str = ""
    text_column: str = "text"
    pair_column: str = ""  # second text of a sentence pair; "" for single texts
    label_column: str = "label"

    def validate(self) -> None:
        if not self.path:
            raise ConfigError("dataset 'csv' needs --csv-path (a .csv or .tsv file)")
        for name in ("text_column", "label_column"):
            if not getattr(self, name):
                raise ConfigError(f"csv {name.replace('_', '-')} must not be empty")


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
    # Text only: tokens per example (pairs together), the model's weights (a local directory
    # instead of the arch's hub id: other weights, other results), AdamW's linear warmup as a
    # share of a round's steps, and the share of a single-split dataset held out as its test set.
    max_length: int = 128
    model_path: str = ""
    warmup_fraction: float = 0.1
    test_fraction: float = 0.2
    pretrain_options: PretrainConfig = field(default_factory=PretrainConfig)
    csv_options: CsvOptions = field(default_factory=CsvOptions)
    # Focus 2: how the CNN's architecture is optimized, its sizes, and (spo/upo) the file a
    # stage-one optimization wrote; "" optimizes in the trajectory itself.
    arch_mode: str = "fixed"
    arch_options: ArchOptions = field(default_factory=ArchOptions)
    arch_source: str = ""

    @property
    def is_text(self) -> bool:
        return self.dataset in TEXT_DATASETS

    @classmethod
    def for_dataset(cls, dataset: str, **overrides: Any) -> RunConfig:
        """The paper's protocol for the dataset's modality, then `overrides`."""
        _choice("dataset", dataset, DATASETS)
        values: dict[str, Any] = {"dataset": dataset}
        if dataset in TEXT_DATASETS:
            values |= TEXT_PROTOCOL | {"pretrain_options": PretrainConfig(lr=TEXT_PRETRAIN_LR)}
        return cls(**(values | overrides))

    def validate(self) -> RunConfig:
        """Check every field that can be checked without data; return self for chaining."""
        _choice("dataset", self.dataset, DATASETS)
        _choice("arch", self.arch, ARCHS)
        archs = TEXT_ARCHS if self.is_text else IMAGE_ARCHS + CNN_ARCHS
        if self.arch not in archs:
            kind = "text" if self.is_text else "image"
            raise ConfigError(
                f"arch {self.arch!r} does not fit the {kind} dataset {self.dataset!r}; "
                f"choose from: {', '.join(archs)}"
            )
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
        _positive("max-length", self.max_length)
        if not 0 <= self.warmup_fraction < 1:
            raise ConfigError(f"warmup-fraction must be in [0, 1), got {self.warmup_fraction}")
        if not 0 < self.test_fraction < 1:
            raise ConfigError(f"test-fraction must be in (0, 1), got {self.test_fraction}")
        if self.is_text:
            if self.augment:
                raise ConfigError("augment (crops and flips) is for images, not text datasets")
            if self.width != 1.0:
                raise ConfigError(f"width scales the CNNs only; text takes 1.0, got {self.width}")
        elif self.model_path:
            raise ConfigError("model-path loads transformer weights; it needs a text dataset")
        if self.dataset == "csv":
            self.csv_options.validate()
        elif self.csv_options != CsvOptions():
            raise ConfigError(f"csv options apply to dataset 'csv', not {self.dataset!r}")
        self.pretrain_options.validate()
        self._validate_architecture()
        return self

    def _validate_architecture(self) -> None:
        _choice("arch-mode", self.arch_mode, ARCH_MODES)
        if self.arch in OPTIMIZED_ARCHS and self.arch_mode == "fixed":
            raise ConfigError(
                f"arch {self.arch!r} optimizes its architecture; choose arch-mode from: "
                f"{', '.join(m for m in ARCH_MODES if m != 'fixed')}"
            )
        if self.arch not in OPTIMIZED_ARCHS and self.arch_mode != "fixed":
            raise ConfigError(
                f"arch-mode {self.arch_mode!r} needs an architecture to optimize; choose arch "
                f"from: {', '.join(OPTIMIZED_ARCHS)} (or arch-mode fixed)"
            )
        if self.arch_source and self.arch_mode not in PRE_OPTIMIZED:
            raise ConfigError(f"arch-source is a pre-optimized architecture; arch-mode "
                              f"{self.arch_mode!r} does not load one")  # fmt: skip
        if self.arch_mode == "upo" and self.pretrain != "none":
            raise ConfigError("arch-mode upo already pretrains on unlabelled data; use "
                              "pretrain none")  # fmt: skip
        if self.arch in CNN_ARCHS:
            self.arch_options.validate()

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
        if "csv_options" in values:
            values["csv_options"] = CsvOptions(**values["csv_options"])
        if "arch_options" in values:
            values["arch_options"] = ArchOptions(**values["arch_options"])
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


@dataclass(frozen=True)
class Runtime:
    """Where data lives and what runs it; not part of the experiment's identity."""

    data_dir: Path | None = None
    download: bool = False
    cache_dir: Path | None = None  # tokenized datasets; default $ARCHDAL_CACHE, ~/.cache/archdal
    device: str = "auto"
    eval_batch_size: int = 1024
    quiet: bool = False

    def validate(self) -> Runtime:
        _choice("device", self.device, DEVICES)
        _positive("eval-batch-size", self.eval_batch_size)
        return self
