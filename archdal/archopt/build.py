"""Focus 2 CNNs inside the active-learning loop.

`cnn_builder` makes the model a config names. Its architecture is optimized in one of
three ways (paper, section 4.1):

- `joint`: every round builds a fresh model whose architecture parameters train with its
  weights on the current labelled set (Depth-Dropout, BBDropout), or searches a new PDARTS
  genotype on it (architecture weights on the validation split) and trains that network.
- `spo`: once, before active learning, on the initial labelled pool; `upo`: once, on the
  unlabelled images with DeepCluster pseudo-labels (head sized to the clusters, dropped).
  The result (weights, architecture, genotype) is saved; every round then starts from those
  weights with the architecture frozen. `pre_optimize` computes it, in the trajectory itself
  or as a stage-one sweep trial whose file the AL trials load (`RunConfig.arch_source`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from archdal.archopt.cnn import BBDropoutCNN, DepthDropoutCNN, FixedCNN
from archdal.archopt.pdarts import PdartsNet, search
from archdal.archopt.settings import Genotype, pdarts_settings
from archdal.config import PRE_OPTIMIZED, RunConfig
from archdal.data import ImageData, Split
from archdal.errors import ConfigError, DataError
from archdal.io import atomic_write
from archdal.models import ALModel
from archdal.pretrain import cluster_labels, pretrain_backbone, pretraining_images
from archdal.seeding import derive_seed, generator, global_torch_seed
from archdal.train import train_model

# Fixed CNNs of 1, 5 and 9 layers, and CNNs whose architecture is optimized.
FIXED_CNNS = ("cnn1", "cnn5", "cnn9")
OPTIMIZED_ARCHS = ("depth_dropout", "bbdropout", "pdarts")
ARCHOPT_FORMAT = "archdal-archopt/1"
# What a pre-optimization does not depend on: the strategy and the acquisitions after it.
_NOT_IN_PRE_OPTIMIZATION = ("strategy", "acq_size", "rounds", "mc_samples", "arch_source")

ModelBuilder = Callable[..., ALModel]


def cnn_builder(config: RunConfig, data: ImageData) -> ModelBuilder:
    """`build(genotype=None)` → the config's Focus 2 CNN on the CPU (PDARTS needs the
    genotype its search found)."""
    mean, std = data.channel_stats()
    c, o = config, config.arch_options
    shape = (data.num_classes, data.channels, mean, std)

    def build(genotype: Genotype | None = None) -> ALModel:
        if c.arch.startswith("cnn"):
            return FixedCNN(*shape, layers=int(c.arch[3:]), filters=o.filters, dropout=c.dropout)
        if c.arch == "depth_dropout":
            return DepthDropoutCNN(*shape, truncation=o.truncation, filters=o.filters,
                                   structure_samples=o.structure_samples,
                                   prior_alpha=o.depth_prior_alpha,
                                   prior_beta=o.depth_prior_beta, dropout=c.dropout)  # fmt: skip
        if c.arch == "bbdropout":
            return BBDropoutCNN(*shape, layers=o.truncation, filters=o.filters,
                                prior_alpha=o.filter_prior_alpha, dropout=c.dropout)  # fmt: skip
        if genotype is None:
            raise ValueError("a PDARTS network is built from the genotype its search found")
        s = pdarts_settings(o.pdarts)
        return PdartsNet(genotype, *shape, channels=s.derived_channels, cells=s.derived_cells,
                         dropout=c.dropout)  # fmt: skip

    return build


def search_genotype(
    config: RunConfig, data: ImageData, x, y, val_x, val_y, seed: int, num_classes: int = 0
) -> Genotype:
    """The genotype a PDARTS search with the config's settings finds on these images
    (`num_classes`: of `y`, when not the dataset's classes)."""
    mean, std = data.channel_stats()
    settings = pdarts_settings(config.arch_options.pdarts)
    classes = num_classes or data.num_classes
    return search(x, y, val_x, val_y, classes, mean, std, settings, seed).genotype


def freeze_architecture(model: ALModel) -> ALModel:
    for parameter in model.architecture_parameters():
        parameter.requires_grad_(False)
    return model


def pre_optimization_key(config: RunConfig) -> dict[str, Any]:
    """Everything a pre-optimization's result depends on; AL trials that differ only in
    strategy or acquisitions share one."""
    key = config.to_dict()
    for name in _NOT_IN_PRE_OPTIMIZATION:
        key.pop(name)
    return key


def pre_optimization_name(config: RunConfig) -> str:
    """A readable file name per distinct pre-optimization (the digest tells apart sizes and
    protocols that the name leaves out)."""
    key = json.dumps(pre_optimization_key(config), sort_keys=True)
    c = config
    return (f"{c.dataset}-{c.arch}-{c.arch_mode}-s{c.seed}-i{c.init_size}-"
            f"{hashlib.sha1(key.encode()).hexdigest()[:8]}")  # fmt: skip


def _backbone(model: ALModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()
            if not k.startswith("classifier.")}  # fmt: skip


def pre_optimize(
    config: RunConfig,
    data: ImageData,
    split: Split,
    build: ModelBuilder,
    device: torch.device,
    eval_batch_size: int,
) -> dict[str, Any]:
    """Optimize architecture and weights once: on the initial labelled pool (spo) or on
    the unlabelled images with cluster pseudo-labels (upo). Returns what `save_result`
    writes: weights without the classifier, the architecture record, the genotype."""
    if config.arch_mode not in PRE_OPTIMIZED:
        raise ConfigError(f"arch-mode {config.arch_mode!r} is not a pre-optimization")
    start = time.perf_counter()
    seed = derive_seed(config.seed, "architecture")
    val = split.val.to(device)
    val_x, val_y = data.train_x[val], data.train_y[val]
    genotype = None
    if config.arch_mode == "spo":
        labeled = split.initial.to(device)
        x, y = data.train_x[labeled], data.train_y[labeled]
        if config.arch == "pdarts":
            genotype = search_genotype(config, data, x, y, val_x, val_y, seed)
        with global_torch_seed(seed):  # dropout and relaxed masks draw from it while training
            model = build(genotype).to(device)
            train_model(model, x, y, val_x, val_y, config, derive_seed(seed, "batches"),
                        eval_batch_size)  # fmt: skip
        state = _backbone(model)
    else:
        images = data.train_x[torch.cat([split.initial, split.pool]).to(device)]
        if config.arch == "pdarts":
            genotype = _search_on_clusters(config, data, images, seed)
        state = pretrain_backbone(lambda: build(genotype).to(device), images, config,
                                  eval_batch_size)  # fmt: skip
        state = {k: v.detach().cpu() for k, v in state.items()}
        model = build(genotype)
        model.load_state_dict(state | model.classifier_state())
    return {
        "format": ARCHOPT_FORMAT,
        "key": pre_optimization_key(config),
        "state": state,
        "record": model.architecture_record(),
        "genotype": None if genotype is None else genotype.to_dict(),
        "seconds": time.perf_counter() - start,
    }


def _search_on_clusters(
    config: RunConfig, data: ImageData, images: torch.Tensor, seed: int
) -> Genotype:
    """A PDARTS search needs fixed labels: k-means ids of the images' pixels (PCA-reduced),
    half of the images training the weights and half the architecture."""
    images = pretraining_images(images, config)
    k = min(config.pretrain_options.clusters, len(images))
    pixels = images.flatten(1).float().cpu().double().numpy() / 255
    labels = torch.from_numpy(cluster_labels(pixels, k, derive_seed(seed, "clusters")))
    labels = labels.long().to(images.device)
    order = torch.randperm(len(images), generator=generator(derive_seed(seed, "halves")))
    order = order.to(images.device)
    train, val = order[: len(order) // 2], order[len(order) // 2 :]
    return search_genotype(config, data, images[train], labels[train], images[val],
                           labels[val], seed, num_classes=k)  # fmt: skip


def round_model(
    config: RunConfig,
    data: ImageData,
    build: ModelBuilder,
    pre_optimized: dict[str, Any] | None,
    labeled: torch.Tensor,
    val: torch.Tensor,
    seed: int,
) -> ALModel:
    """The untrained model of one round, on the CPU, built under the caller's torch seed."""
    if config.arch_mode in PRE_OPTIMIZED:
        genotype = pre_optimized["genotype"]
        model = build(None if genotype is None else Genotype.from_dict(genotype))
        model.load_state_dict(pre_optimized["state"] | model.classifier_state())
        return freeze_architecture(model)
    if config.arch_mode == "joint" and config.arch == "pdarts":
        x, y = data.train_x[labeled], data.train_y[labeled]
        genotype = search_genotype(config, data, x, y, data.train_x[val], data.train_y[val],
                                   derive_seed(seed, "pdarts"))  # fmt: skip
        return build(genotype)
    return build()


def save_result(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda fh: torch.save(result, fh), "wb")


def load_result(path: str | Path, config: RunConfig) -> dict[str, Any]:
    """A stage-one result for `config`, checked: its format, and that it was optimized for
    this config's data, split, architecture and protocol."""
    try:
        result = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise DataError(f"arch-source {path} is unreadable ({err})") from err
    if not isinstance(result, dict) or result.get("format") != ARCHOPT_FORMAT:
        raise DataError(f"arch-source {path} is not an archdal architecture-optimization file")
    expected = pre_optimization_key(config)
    if result["key"] != expected:
        differ = sorted(k for k in expected if result["key"].get(k) != expected[k])
        raise DataError(f"arch-source {path} was optimized for another config (differs in: "
                        f"{', '.join(differ)})")  # fmt: skip
    return result
