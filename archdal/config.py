"""Typed configuration of one active-learning trajectory, validated once at the edge.

`RunConfig` holds everything that changes what a trajectory computes; it is what
`config.json` records and what a resumed run must match. Where the data lives and
which device runs it are `Runtime` options: moving data or hardware does not make a
checkpoint foreign.

Every field is declared once, by `option`: its default, its help text, what it admits (an
interval, a fixed set of names or a registry's names) and, where the text protocol differs,
its default for text. `check_fields` validates any config from those declarations; `archdal
run` makes its flags from them and sweeps' `--set` parses by them. Rules that relate two
fields stay as code in `RunConfig.validate`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archdal import registry
from archdal.encoders import check_encoder
from archdal.errors import ConfigError

# fixed: the architecture as built; joint: architecture and weights optimized again every
# round on the labelled set; spo / upo: optimized once before active learning on the initial
# labelled pool / on unlabelled data with cluster pseudo-labels, then kept fixed.
ARCH_MODES = ("fixed", "joint", "spo", "upo")
PRE_OPTIMIZED = ("spo", "upo")
PRETRAIN = ("none", "unsupervised")
OPTIMIZERS = ("sgd", "adam", "adamw")
DEVICES = ("auto", "cpu", "cuda")
BN_STATS = ("pass", "epoch")
PRECISIONS = ("fp32", "bf16")
MODALITIES = ("image", "text")
# How `archdal.data.make_split` draws validation and pool. 1: both from the front of one
# shuffled order (rare classes short in validation); 2: stratified validation, uniform pool.
SPLIT_VERSION = 2
SPLIT_VERSIONS = {
    1: "validation and pool from the front of one shuffled order (rare classes short in "
    "validation)",
    2: "stratified validation, uniform pool",
}
FROZEN = "frozen"  # the arch whose models are heads on a frozen encoder's embeddings
HEADS = ("linear", "mlp")
# How the initial labelled pool is chosen (`archdal.data.make_split`): the paper's
# class-balanced random draw, or by the acquisition representation.
INIT_STRATEGIES = ("random", "kmeans", "typiclust", "probcover")
# `acq_representation` values besides an encoder's name: the default per data and arch, and
# the round's model's own penultimate embedding.
AUTO_REPRESENTATION, MODEL_REPRESENTATION = "auto", "model"

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
    "encoders": "encoder",
    "init_strategies": "init_strategy",
}


def default_data_dir() -> Path:
    """`$ARCHDAL_DATA`, else the user's cache directory."""
    if os.environ.get("ARCHDAL_DATA"):
        return Path(os.environ["ARCHDAL_DATA"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "archdal" / "data"


# --- what a field admits --------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """low ≤ value ≤ high, either end open or absent."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def admits(self, value: float) -> bool:
        if self.low is not None and not (value > self.low if self.low_open else value >= self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self) -> str:
        if self.high is None:
            if self.low == 0:
                return "positive" if self.low_open else "zero or positive"
            return f"at least {self.low:g}" if not self.low_open else f"above {self.low:g}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"in {left}{self.low:g}, {self.high:g}{right}"

    def problem(self, label: str, value: Any) -> str | None:
        return None if self.admits(value) else f"{label} must be {self.describe()}, got {value}"


@dataclass(frozen=True)
class OneOf:
    """One of fixed names, or of the names `names()` gives now (a registry's)."""

    names: tuple[str, ...] | Callable[[], tuple[str, ...]]

    def allowed(self) -> tuple[str, ...]:
        return self.names() if callable(self.names) else self.names

    def describe(self) -> str:
        return ", ".join(self.allowed())

    def problem(self, label: str, value: Any) -> str | None:
        if value in self.allowed():
            return None
        return f"unknown {label} {value!r}; choose from: {self.describe()}"


@dataclass(frozen=True)
class NotEmpty:
    def describe(self) -> str:
        return "not empty"

    def problem(self, label: str, value: Any) -> str | None:
        return None if value else f"{label} must not be empty"


@dataclass(frozen=True)
class Checked:
    """Whatever `check(value)` accepts (it raises a ConfigError naming the problem)."""

    check: Callable[[Any], Any]
    description: str

    def describe(self) -> str:
        return self.description

    def problem(self, label: str, value: Any) -> str | None:
        try:
            self.check(value)
        except ConfigError as err:
            return str(err)
        return None


POSITIVE = Interval(0, low_open=True)
NON_NEGATIVE = Interval(0)
FRACTION = Interval(0, 1, low_open=True, high_open=True)  # (0, 1)
RATE = Interval(0, 1, high_open=True)  # [0, 1)


def at_least(low: int) -> Interval:
    return Interval(low)


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",
    admits: Interval | OneOf | NotEmpty | Checked | None = None,
    *,
    text: Any = dataclasses.MISSING,
    flag: str | None = None,
    factory: Callable[[], Any] | None = None,
) -> Any:
    """A config field with its help, what it admits, its text-protocol default (`text`) and
    its flag when not derived from the name."""
    metadata = {"help": help, "admits": admits, "flag": flag}
    if text is not dataclasses.MISSING:
        metadata["text"] = text
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "bool": (bool,),
    "dict[str, Any]": (dict,),
    "Path | None": (Path, str, type(None)),
    "float | None": (int, float, type(None)),
}


_TYPE_NAMES = {"dict[str, Any]": "JSON object", "Path | None": "path", "float | None": "float"}


def scalar_type(f: dataclasses.Field) -> str:
    """The field's annotation as written (`from __future__ import annotations`)."""
    return f.type if isinstance(f.type, str) else f.type.__name__


@dataclass(frozen=True)
class Setting:
    """One leaf of a config: its path (`pretrain_options.lr`), flag and declaration."""

    path: tuple[str, ...]
    flag: str
    spec: dataclasses.Field
    owner: type

    @property
    def label(self) -> str:
        return self.flag.removeprefix("--")

    @property
    def key(self) -> str:
        return ".".join(self.path)

    @property
    def kind(self) -> str:
        return scalar_type(self.spec)

    @property
    def default(self) -> Any:
        return getattr(self.owner(), self.spec.name)

    @property
    def text_default(self) -> Any:
        return self.spec.metadata.get("text", dataclasses.MISSING)

    def check(self, value: Any) -> None:
        """One line naming the flag and what it admits, when `value` is not admitted."""
        allowed = _TYPES.get(self.kind)
        if allowed is not None and (
            not isinstance(value, allowed) or (bool not in allowed and isinstance(value, bool))
        ):
            kind = _TYPE_NAMES.get(self.kind, self.kind)
            raise ConfigError(f"{self.label} must be a {kind}, got {value!r}")
        if value is None:  # an optional field left unset
            return
        admits = self.spec.metadata.get("admits")
        problem = admits.problem(self.label, value) if admits is not None else None
        if problem:
            raise ConfigError(problem)


def settings_of(cls: type, path: tuple[str, ...] = (), prefix: str = "") -> Iterator[Setting]:
    """Every leaf field of a config class, nested options flattened (`--pretrain-lr`)."""
    for f in dataclasses.fields(cls):
        nested = f.metadata.get("nested")
        if nested is not None:
            yield from settings_of(nested, (*path, f.name), f.metadata["prefix"])
            continue
        flag = f.metadata.get("flag") or f"--{prefix}{f.name.replace('_', '-')}"
        yield Setting((*path, f.name), flag, f, cls)


def nested(cls: type, prefix: str, help: str) -> Any:
    """A field holding an options dataclass, whose fields become flags `--PREFIX-NAME`."""
    return field(default_factory=cls, metadata={"nested": cls, "prefix": prefix, "help": help})


def check_fields(config: Any) -> None:
    """Each field of `config` (nested options included) against its declaration."""
    for setting in settings_of(type(config)):
        value = config
        for name in setting.path:
            value = getattr(value, name)
        setting.check(value)


# --- the configs ------------------------------------------------------------------------


def _pdarts_overrides(value: dict[str, Any]) -> None:
    from archdal.archopt.settings import pdarts_settings  # torch-free

    pdarts_settings(value)


@dataclass(frozen=True)
class PretrainConfig:
    """DeepCluster-style unsupervised pretraining (Siméoni et al. 2021)."""

    clusters: int = option(50, "k-means clusters", at_least(2))
    epochs: int = option(10, "cluster-then-train alternations", POSITIVE)
    max_images: int = option(0, "images it sees (0: every training image of the split)",
                             NON_NEGATIVE)  # fmt: skip
    lr: float = option(0.01, "learning rate", POSITIVE, text=2e-5)
    augment: bool = option(False, "images: DeepCluster trains each epoch on random views (the "
                           "simclr encoder's resized crops and jitter), not the images "
                           "themselves")  # fmt: skip
    temperature: float = option(0.5, "the simclr encoder's NT-Xent temperature", POSITIVE)


@dataclass(frozen=True)
class ArchOptions:
    """Sizes and priors of the Focus 2 CNNs (paper, section 4.2: K = 20 layers of 64 filters)."""

    filters: int = option(64, "filters per layer", at_least(1))
    truncation: int = option(20, "Depth-Dropout's K; BBDropout's gated layers", at_least(1))
    structure_samples: int = option(2, "Depth-Dropout structures averaged per prediction",
                                    at_least(1))  # fmt: skip
    depth_prior_alpha: float = option(1.0, "α of the Beta(α, β) stick-breaking depth prior",
                                      POSITIVE)  # fmt: skip
    depth_prior_beta: float = option(10.0, "β of the depth prior", POSITIVE)
    filter_prior_alpha: float = option(1e-4, "BBDropout's Beta(α, 1) prior over filters",
                                       POSITIVE)  # fmt: skip
    lr: float = option(0.01, "learning rate of the architecture parameters", POSITIVE)
    pdarts: dict[str, Any] = option(
        help='PDARTS settings to override, as JSON (e.g. {"channels": 8, "epochs": 2}); see '
        "archdal.archopt.settings.PdartsSettings",
        admits=Checked(_pdarts_overrides, "fields of PdartsSettings"),
        factory=dict,
    )


@dataclass(frozen=True)
class CsvOptions:
    """A researcher's own corpus (`dataset="csv"`): one CSV/TSV file, one row per example."""

    path: str = option("", "a .csv or .tsv file with a header row", flag="--csv-path")
    text_column: str = option("text", "column of the texts", NotEmpty(), flag="--text-column")
    pair_column: str = option("", "column of second texts (sentence pairs; '' for single texts)",
                              flag="--pair-column")  # fmt: skip
    label_column: str = option("label", "column of the labels", NotEmpty(), flag="--label-column")


@dataclass(frozen=True)
class EncoderOptions:
    """How the frozen family's encoder embeds (`--arch frozen`); each setting is part of the
    representation cache's key."""

    normalize: bool = option(False, "L2-normalise every embedding (text: after the model's own "
                             "pooling)")  # fmt: skip
    dims: int = option(64, "pixels: PCA components", POSITIVE)
    seed: int = option(0, "seeds the encoder's own randomness (PCA), shared by every AL seed",
                       NON_NEGATIVE)  # fmt: skip
    weights: str = option("", "torchvision:<arch>: a file holding the architecture's state "
                          "dict (without one, --download fetches torchvision's default "
                          "weights)")  # fmt: skip
    image_size: int = option(224, "torchvision:<arch>: images are resized to this side",
                             POSITIVE)  # fmt: skip
    threads: int = option(2, "deepcluster, simclr: CPU threads the encoder trains on (the "
                          "order of its float sums, so the encoder itself, depends on the "
                          "count)", POSITIVE)  # fmt: skip


def _datasets() -> tuple[str, ...]:
    return registry.DATASETS.names()


@dataclass(frozen=True)
class RunConfig:
    """One trajectory: data, model, strategy, budget and training protocol (paper defaults)."""

    dataset: str = option("mnist", "image or text dataset", OneOf(_datasets))
    arch: str = option("resnet18", "CIFAR-style CNN or Focus 2 CNN for images, transformer for "
                       "text", OneOf(registry.all_archs), text="bert")  # fmt: skip
    strategy: str = option("random", "acquisition strategy", OneOf(registry.STRATEGIES.names))
    seed: int = option(0, "seeds the split and everything random", NON_NEGATIVE)
    width: float = option(1.0, "channel multiplier of the CNNs; 1.0 = paper", POSITIVE)
    pretrain: str = option("none", "initialise every round from DeepCluster pretraining",
                           OneOf(PRETRAIN))  # fmt: skip
    init_size: int = option(1000, "class-balanced initial labels", POSITIVE, text=100)
    acq_size: int = option(1000, "labels acquired per round", POSITIVE, text=100)
    rounds: int = option(25, "acquisition rounds", NON_NEGATIVE)
    pool_size: int = option(30000, "cap on the unlabelled pool", POSITIVE)
    val_fraction: float = option(0.1, "share of the non-initial data for validation", FRACTION)
    split_version: int = option(
        SPLIT_VERSION,
        "how validation and pool are drawn: 2 stratified (this version); 1 the split of "
        "archdal before 2026-12, only to finish runs started with it",
        Interval(1, SPLIT_VERSION),
    )
    max_epochs: int = option(500, "epochs per round at most", POSITIVE, text=5)
    patience: int = option(50, "epochs without validation gain before stopping", POSITIVE, text=5)
    train_acc_stop: float = option(0.99, "stop once training accuracy reaches this",
                                   Interval(0, 1, low_open=True), text=1.0)  # fmt: skip
    optimizer: str = option("sgd", "sgd: momentum + cosine schedule; adamw: linear warmup and "
                            "decay", OneOf(OPTIMIZERS), text="adamw")  # fmt: skip
    lr: float = option(0.05, "learning rate", POSITIVE, text=2e-5)
    momentum: float = option(0.9, "SGD momentum", RATE)
    weight_decay: float = option(1e-6, "L2 penalty (AdamW: decoupled)", NON_NEGATIVE, text=0.01)
    batch_size: int = option(64, "training batch size (epochs use near-equal batches)", POSITIVE,
                             text=16)  # fmt: skip
    augment: bool = option(False, "random crop + horizontal flip (images)")
    dropout: float = option(0.5, "CNNs: dropout before the classifier; transformers: hidden and "
                            "head dropout", RATE, text=0.1)  # fmt: skip
    mc_samples: int = option(10, "dropout passes of BALD, PowerBALD and BatchBALD", at_least(2))
    power_beta: float = option(1.0, "powerbald, powermargin, powerentropy: picks sampled ∝ "
                               "score^β without replacement (large β: top scores)",
                               POSITIVE)  # fmt: skip
    batchbald_configs: int = option(1000, "batchbald: label configurations M of the joint "
                                    "entropy; exact while classes^(n-1) <= M, sampled beyond",
                                    at_least(1))  # fmt: skip
    batchbald_candidates: int = option(1000, "batchbald: score only the pool's top BALD points "
                                       "(0: the whole pool)", NON_NEGATIVE)  # fmt: skip
    bait_lambda: float = option(1.0, "bait: λ, the ridge added to the labelled Fisher", POSITIVE)
    bait_dim: int = option(2048, "bait: cap on classes × embedding dim, the Fisher's side; "
                           "beyond it embeddings are projected to their top cap/classes "
                           "principal directions", at_least(1))  # fmt: skip
    bait_classes: int = option(10, "bait: each point's Fisher from its k most probable classes "
                               "(exact when k >= classes)", at_least(1))  # fmt: skip
    # Protocol knobs that cut a round's time outside its training steps; off by default.
    validate_every: int = option(1, "validate (and recalibrate BatchNorm) every k epochs and at "
                                 "the last; patience still counts epochs", POSITIVE)  # fmt: skip
    val_subsample: int = option(0, "early stopping reads this many validation examples, one "
                                "seeded subset for the whole trajectory; val_acc is theirs (0: "
                                "all)", NON_NEGATIVE)  # fmt: skip
    bn_stats: str = option("pass", "BatchNorm statistics before evaluation: pass (a pass over the "
                           "labelled set) or epoch (the average of the epoch's own training "
                           "batches, no extra pass)", OneOf(BN_STATS))  # fmt: skip
    precision: str = option("fp32", "fp32, or bf16: the GPU fast path (bfloat16 autocast, "
                            "channels_last, fused optimizer); not bit-identical to fp32",
                            OneOf(PRECISIONS))  # fmt: skip
    # Text only: tokens per example (pairs together), the model's weights (a local directory
    # instead of the arch's hub id: other weights, other results), AdamW's linear warmup as a
    # share of a round's steps, and the share of a single-split dataset held out as its test set.
    max_length: int = option(128, "text: tokens per example (pairs: both)", POSITIVE)
    model_path: str = option("", "text: local model directory (config, weights, tokenizer) "
                             "instead of the arch's hub id")  # fmt: skip
    warmup_fraction: float = option(0.1, "text: AdamW's linear warmup, as a share of a round's "
                                    "steps", RATE)  # fmt: skip
    test_fraction: float = option(0.2, "text: share of a single-split dataset held out (seeded) "
                                  "as its test set", FRACTION)  # fmt: skip
    pretrain_options: PretrainConfig = nested(
        PretrainConfig,
        "pretrain-",
        "unsupervised pretraining (--pretrain unsupervised) and the "
        "frozen family's deepcluster and simclr encoders (epochs, images, lr)",
    )
    csv_options: CsvOptions = nested(CsvOptions, "csv-", "your own text data (--dataset csv)")
    # Focus 2: how the CNN's architecture is optimized, its sizes, and (spo/upo) the file a
    # stage-one optimization wrote; "" optimizes in the trajectory itself.
    arch_mode: str = option("fixed", "Focus 2: how a depth_dropout/bbdropout/pdarts "
                            "architecture is optimized", OneOf(ARCH_MODES))  # fmt: skip
    arch_options: ArchOptions = nested(ArchOptions, "arch-", "Focus 2 CNNs (cnn*, depth_dropout, "
                                       "bbdropout, pdarts)")  # fmt: skip
    arch_source: str = option("", "spo/upo: a stage-one architecture file to load")
    # Frozen encoders (arch frozen): every round trains only a head on cached embeddings.
    encoder: str = option("", "frozen: the encoder: pixels, deepcluster, simclr or "
                          "torchvision:<arch> (images); minilm, mpnet or a local model directory "
                          "(text)")  # fmt: skip
    head: str = option("linear", "frozen: linear (logistic regression) or mlp (one hidden layer "
                       "with dropout); heads train with the frozen family's own protocol "
                       "(archdal.frozen.PROTOCOL)", OneOf(HEADS))  # fmt: skip
    head_hidden: int = option(256, "frozen mlp: hidden units", POSITIVE)
    encoder_options: EncoderOptions = nested(EncoderOptions, "encoder-", "frozen encoders "
                                             "(--arch frozen)")  # fmt: skip
    # What typiclust, probcover and dropquery (and the non-random initial pools) read. auto:
    # arch frozen's own features; otherwise a frozen encoder of the data, cached once per
    # dataset (archdal.representations): minilm for text, and pixels (a seeded PCA) for
    # images, because deepcluster and simclr, the self-supervised choices, train a
    # ResNet-18 for minutes on a CPU before the first round (name one to use it).
    acq_representation: str = option(
        AUTO_REPRESENTATION,
        "the embedding typiclust, probcover, dropquery and the kmeans/typiclust/probcover "
        "initial pools read: auto (arch frozen: its features; images: pixels; text: "
        "minilm), an encoder (pixels, deepcluster, simclr, minilm or a text model "
        "directory), or "
        "model (the round's model's penultimate embedding)",
        NotEmpty(),
    )
    init_strategy: str = option(
        "random",
        "the initial labelled pool: random (class-balanced, the paper's), kmeans (an equal "
        "share of each k-means cluster of the representation, one cluster per class), or "
        "typiclust / probcover run from an empty labelled set",
        OneOf(INIT_STRATEGIES),
    )
    probcover_delta: float | None = option(
        None,
        "ProbCover's ball radius δ on the representation (default: the largest δ whose balls "
        "are 95% pure against k-means pseudo-labels)",
        POSITIVE,
    )

    @property
    def modality(self) -> str:
        return registry.DATASETS.get(self.dataset).modality

    @property
    def is_text(self) -> bool:
        return self.dataset in registry.DATASETS and self.modality == "text"

    @classmethod
    def for_dataset(cls, dataset: str, **overrides: Any) -> RunConfig:
        """The paper's protocol for the dataset's modality, then the protocol of the family
        of the arch in `overrides` (frozen heads train their own way), then `overrides`."""
        values: dict[str, Any] = {"dataset": dataset}
        if registry.DATASETS.get(dataset).modality == "text":
            values |= TEXT_PROTOCOL | {"pretrain_options": PretrainConfig(lr=TEXT_PRETRAIN_LR)}
        if "arch" in overrides:
            values |= registry.arch_family(overrides["arch"]).protocol
        return cls(**(values | overrides))

    def validate(self) -> RunConfig:
        """Check every field, then the rules between fields; return self for chaining."""
        check_fields(self)
        family = registry.arch_family(self.arch)
        if family.modality not in (self.modality, registry.ANY_MODALITY):
            raise ConfigError(
                f"arch {self.arch!r} does not fit the {self.modality} dataset {self.dataset!r}; "
                f"choose from: {', '.join(registry.archs_of(self.modality))}"
            )
        if self.is_text:
            if self.augment or self.pretrain_options.augment:
                raise ConfigError("augment and pretrain-augment (crops of images) are for "
                                  "images, not text datasets")  # fmt: skip
            if self.width != 1.0:
                raise ConfigError(f"width scales the CNNs only; text takes 1.0, got {self.width}")
        elif self.model_path:
            raise ConfigError("model-path loads transformer weights; it needs a text dataset")
        self._validate_frozen()
        self._validate_acquisition()
        if self.dataset == "csv":
            if not self.csv_options.path:
                raise ConfigError("dataset 'csv' needs --csv-path (a .csv or .tsv file)")
        elif self.csv_options != CsvOptions():
            raise ConfigError(f"csv options apply to dataset 'csv', not {self.dataset!r}")
        self._validate_architecture(family)
        return self

    def _validate_frozen(self) -> None:
        if self.arch != FROZEN:
            default = RunConfig()
            for name in ("encoder", "head", "head_hidden", "encoder_options"):
                if getattr(self, name) != getattr(default, name):
                    raise ConfigError(f"{name.replace('_', '-')} applies to arch frozen, not "
                                      f"{self.arch!r}")  # fmt: skip
            return
        check_encoder(self.encoder, self.modality, self.dataset)
        # archdal.pool.MC and MC_JOINT, the needs of strategies that sample dropout (torch-free)
        if (
            self.head == "linear"
            and {"mc", "mc_joint"} & registry.STRATEGIES.get(self.strategy).needs
        ):
            raise ConfigError(f"strategy {self.strategy!r} samples dropout, which the linear head "
                              "has none of; use --head mlp")  # fmt: skip
        if self.pretrain != "none" or self.augment:
            raise ConfigError("arch frozen trains a head on fixed embeddings; it takes pretrain "
                              "none and no augment")  # fmt: skip
        if self.model_path:
            raise ConfigError("model-path is a transformer's weights; arch frozen reads "
                              "--encoder")  # fmt: skip

    @property
    def acquisition_encoder(self) -> str:
        """The encoder whose representation acquisition reads, or `model`."""
        if self.acq_representation != AUTO_REPRESENTATION:
            return self.acq_representation
        if self.arch == FROZEN:
            return self.encoder
        return "pixels" if self.modality == "image" else "minilm"

    @property
    def reads_representation(self) -> bool:
        """Whether the strategy or the initial pool reads the acquisition representation."""
        # "representation" is archdal.pool.REPRESENTATION (torch-free here)
        needs = registry.STRATEGIES.get(self.strategy).needs
        return "representation" in needs or self.init_strategy != "random"

    def _validate_acquisition(self) -> None:
        name = self.acquisition_encoder
        if name == MODEL_REPRESENTATION:
            if self.init_strategy != "random":
                raise ConfigError(f"init-strategy {self.init_strategy!r} chooses the initial pool "
                                  "before any model exists; give --acq-representation an "
                                  "encoder (or auto)")  # fmt: skip
            return
        if self.arch == FROZEN and name != self.encoder:
            raise ConfigError(f"arch frozen acquires on its encoder's features: "
                              f"acq-representation takes auto, model or {self.encoder!r}, "
                              f"not {name!r}")  # fmt: skip
        if self.acq_representation != AUTO_REPRESENTATION or (
            self.reads_representation and self.arch != FROZEN
        ):
            try:
                check_encoder(name, self.modality, self.dataset)
            except ConfigError as err:
                raise ConfigError(f"acq-representation {name!r}: {err}") from err

    def _validate_architecture(self, family: registry.ModelFamily) -> None:
        optimized = self.arch in family.optimized
        if optimized and self.arch_mode == "fixed":
            raise ConfigError(
                f"arch {self.arch!r} optimizes its architecture; choose arch-mode from: "
                f"{', '.join(m for m in ARCH_MODES if m != 'fixed')}"
            )
        if not optimized and self.arch_mode != "fixed":
            raise ConfigError(
                f"arch-mode {self.arch_mode!r} needs an architecture to optimize; choose arch "
                f"from: {', '.join(registry.optimized_archs())} (or arch-mode fixed)"
            )
        if self.arch_source and self.arch_mode not in PRE_OPTIMIZED:
            raise ConfigError(f"arch-source is a pre-optimized architecture; arch-mode "
                              f"{self.arch_mode!r} does not load one")  # fmt: skip
        if self.arch_mode == "upo" and self.pretrain != "none":
            raise ConfigError("arch-mode upo already pretrains on unlabelled data; use "
                              "pretrain none")  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; allowed: {sorted(known)}")
        values = dict(raw)
        values.setdefault("split_version", 1)  # saved before splits had versions
        for f in dataclasses.fields(cls):
            options = f.metadata.get("nested")
            if options is not None and f.name in values:
                values[f.name] = options(**values[f.name])
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


# The paper's text protocol (section 3.2: 100 initial labels, 25 rounds of 100, 5 epochs as in
# Devlin et al. 2018) with BERT fine-tuning's usual AdamW settings: the fields' `text`
# defaults. `RunConfig`'s own defaults are the image protocol.
TEXT_PROTOCOL: dict[str, Any] = {
    s.spec.name: s.text_default
    for s in settings_of(RunConfig)
    if len(s.path) == 1 and s.text_default is not dataclasses.MISSING
}
TEXT_PRETRAIN_LR = next(s.text_default for s in settings_of(PretrainConfig) if s.key == "lr")


# Inference batch per device type. A ResNet-18 eval forward on one CPU thread ran at 875
# images/s at 1,024 and 1,200 at 64-256 (cache-sized activations); a GPU wants large
# batches. Predictions do not depend on it (eval mode: every row is computed alone).
EVAL_BATCH = {"cpu": 256, "cuda": 1024}


@dataclass(frozen=True)
class Runtime:
    """Where data lives and what runs it; not part of the experiment's identity."""

    data_dir: Path | None = option(None, "datasets (default: $ARCHDAL_DATA, then the cache)")
    download: bool = option(False, "fetch missing datasets (text: from the Hugging Face hub)")
    cache_dir: Path | None = option(None, "tokenized text datasets (default: $ARCHDAL_CACHE, "
                                    "then ~/.cache/archdal)")  # fmt: skip
    device: str = option("auto", "auto: cuda when available", OneOf(DEVICES))
    eval_batch_size: int = option(0, "batch size of evaluation and pool passes (0: the "
                                  "device's, see EVAL_BATCH)", NON_NEGATIVE)  # fmt: skip
    quiet: bool = option(False, "no progress: neither the per-round lines nor the epoch bar")
    compile: bool = option(False, "torch.compile each model's parts (pays on a GPU from a few "
                           "hundred epochs; the first epoch compiles)")  # fmt: skip

    def validate(self) -> Runtime:
        check_fields(self)
        return self

    def eval_batch(self, device_type: str) -> int:
        """`eval_batch_size`, or the device's fastest measured batch when it is 0."""
        return self.eval_batch_size or EVAL_BATCH.get(device_type, EVAL_BATCH["cuda"])
