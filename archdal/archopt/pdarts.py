"""PDARTS (Chen et al. 2019): progressive differentiable cell search, and the derived CNN.

A supernet of cells is trained with first-order bilevel optimisation: weights by SGD on
training batches, the architecture α (one softmax per edge and cell type) by Adam on
validation batches. The search runs in stages, each on a fresh, deeper supernet whose edges
keep only the previous stage's top-weighted ops (8 → 5 → 3), which narrows the depth gap
between the searched and the evaluated network at a bounded cost. Skip-connects are
regularised by dropout after them (its rate decays linearly over each stage) and by a cap on
their number in the derived normal cell.

Decisions beyond the paper:
- 'none' competes for a place between stages like any other op (as in PDARTS's code, where
  it is only dropped when the final op is chosen); `derive_genotype` never picks it.
- The skip dropout follows the parameter-free identity only; a stride-2 skip is a learned
  factorized reduction.
- Search sees no augmentation unless `PdartsSettings.augment` (crops and flips) is set.
- The derived net has neither drop-path nor an auxiliary head, so its trunk is
  deterministic and all of its dropout is the neck's (MC dropout samples only that).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from archdal.archopt.settings import (
    CELL_KINDS,
    OPS,
    Genotype,
    PdartsSettings,
    cell_nodes,
    derive_genotype,
    edge_sources,
)
from archdal.errors import ConfigError
from archdal.models import ImageModel, normalize_images
from archdal.seeding import derive_seed, generator, global_torch_seed
from archdal.train import augment_batch, even_batches

STEM_MULTIPLIER = 3

# Operations: every one maps `channels` to `channels`; stride 2 halves H and W (ceil).


def _relu_conv_bn(c_in: int, c_out: int, affine: bool) -> nn.Sequential:
    return nn.Sequential(
        nn.ReLU(), nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out, affine=affine)
    )


def _separable(c: int, kernel: int, stride: int, dilation: int, affine: bool) -> list[nn.Module]:
    """ReLU → depthwise conv → pointwise conv → BN."""
    pad = dilation * (kernel - 1) // 2
    return [
        nn.ReLU(),
        nn.Conv2d(c, c, kernel, stride, pad, dilation=dilation, groups=c, bias=False),
        nn.Conv2d(c, c, 1, bias=False),
        nn.BatchNorm2d(c, affine=affine),
    ]


class _FactorizedReduce(nn.Module):
    """Halves the resolution with two 1×1 stride-2 convs, the second on the input shifted
    by one pixel, so that every pixel is read (odd sizes included)."""

    def __init__(self, c_in: int, c_out: int, affine: bool):
        super().__init__()
        self.even = nn.Conv2d(c_in, c_out // 2, 1, 2, bias=False)
        self.odd = nn.Conv2d(c_in, c_out - c_out // 2, 1, 2, bias=False)
        self.norm = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(x)
        shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        return self.norm(torch.cat([self.even(x), self.odd(shifted)], dim=1))


def make_op(name: str, channels: int, stride: int, affine: bool) -> nn.Module:
    """The named candidate op (not 'none', which is never built: its output is zero)."""
    c = channels
    if name == "max_pool_3x3":
        return nn.MaxPool2d(3, stride, 1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride, 1, count_include_pad=False)
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else _FactorizedReduce(c, c, affine)
    if name in ("sep_conv_3x3", "sep_conv_5x5"):  # two separable convs, as in DARTS
        kernel = int(name[-1])
        return nn.Sequential(
            *_separable(c, kernel, stride, 1, affine), *_separable(c, kernel, 1, 1, affine)
        )
    if name in ("dil_conv_3x3", "dil_conv_5x5"):
        return nn.Sequential(*_separable(c, int(name[-1]), stride, 2, affine))
    raise ConfigError(f"unknown pdarts op {name!r}; choose from: {', '.join(OPS[1:])}")


def _reduction_cells(cells: int) -> set[int]:
    """Reduction cells sit at 1/3 and 2/3 of the depth."""
    return {cells // 3, 2 * cells // 3}


def _stem(in_channels: int, channels: int) -> nn.Sequential:
    out = STEM_MULTIPLIER * channels
    return nn.Sequential(nn.Conv2d(in_channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out))


def _preprocess(c_prev_prev: int, c_prev: int, c: int, reduction_prev: bool, affine: bool):
    """Inputs of a cell brought to `c` channels and a common resolution."""
    pre0 = (
        _FactorizedReduce(c_prev_prev, c, affine)
        if reduction_prev
        else _relu_conv_bn(c_prev_prev, c, affine)
    )
    return pre0, _relu_conv_bn(c_prev, c, affine)


class _MixedOp(nn.Module):
    """An edge's candidate ops summed with their softmax(α) weights."""

    def __init__(self, candidates: Sequence[str], channels: int, stride: int):
        super().__init__()
        self.positions = [i for i, name in enumerate(candidates) if name != "none"]
        ops = []
        for i in self.positions:
            op = make_op(candidates[i], channels, stride, affine=False)
            if candidates[i].endswith("pool_3x3"):  # on the scale of the BN-ended conv ops
                op = nn.Sequential(op, nn.BatchNorm2d(channels, affine=False))
            elif isinstance(op, nn.Identity):
                op = nn.Sequential(op, nn.Dropout(0.0))  # rate set per epoch
            ops.append(op)
        self.ops = nn.ModuleList(ops)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return sum(weights[i] * op(x) for i, op in zip(self.positions, self.ops, strict=True))


class _SearchCell(nn.Module):
    def __init__(self, candidates, c_prev_prev, c_prev, c, reduction, reduction_prev):
        super().__init__()
        self.reduction = reduction
        self.pre0, self.pre1 = _preprocess(c_prev_prev, c_prev, c, reduction_prev, affine=False)
        self.nodes = cell_nodes(len(candidates))
        self.edges = nn.ModuleList(
            _MixedOp(names, c, 2 if reduction and source < 2 else 1)
            for names, source in zip(candidates, edge_sources(self.nodes), strict=True)
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        first_edge = 0
        for _ in range(self.nodes):
            edges = range(first_edge, first_edge + len(states))
            states.append(
                sum(self.edges[e](x, weights[e]) for e, x in zip(edges, states, strict=True))
            )
            first_edge = edges.stop
        return torch.cat(states[2:], dim=1)


class Supernet(nn.Module):
    """The search network on uint8 images: stem, cells mixing each edge's candidate ops
    by softmax(α) (one α per cell type, shared by its cells), global pool, linear."""

    def __init__(
        self,
        candidates: Mapping[str, Sequence[Sequence[str]]],
        num_classes: int,
        in_channels: int,
        mean: torch.Tensor,
        std: torch.Tensor,
        channels: int,
        cells: int,
    ):
        super().__init__()
        self.register_buffer("mean", mean.reshape(1, -1, 1, 1).float())
        self.register_buffer("std", std.reshape(1, -1, 1, 1).float())
        self.stem = _stem(in_channels, channels)
        nodes = cell_nodes(len(candidates["normal"]))
        c_prev_prev = c_prev = STEM_MULTIPLIER * channels
        c, reduction_prev, body = channels, False, []
        for i in range(cells):
            reduction = i in _reduction_cells(cells)
            c = 2 * c if reduction else c
            kind = "reduce" if reduction else "normal"
            body.append(
                _SearchCell(candidates[kind], c_prev_prev, c_prev, c, reduction, reduction_prev)
            )
            c_prev_prev, c_prev, reduction_prev = c_prev, nodes * c, reduction
        self.cells = nn.ModuleList(body)
        self.classifier = nn.Linear(c_prev, num_classes)
        ops = len(candidates["normal"][0])
        self.alphas_normal = nn.Parameter(1e-3 * torch.randn(len(candidates["normal"]), ops))
        self.alphas_reduce = nn.Parameter(1e-3 * torch.randn(len(candidates["reduce"]), ops))

    def architecture_parameters(self) -> list[nn.Parameter]:
        return [self.alphas_normal, self.alphas_reduce]

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.architecture_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def op_weights(self) -> dict[str, list[list[float]]]:
        """softmax(α) per cell type, one row per edge."""
        return {
            "normal": F.softmax(self.alphas_normal.detach(), dim=-1).tolist(),
            "reduce": F.softmax(self.alphas_reduce.detach(), dim=-1).tolist(),
        }

    def set_skip_dropout(self, rate: float) -> None:
        for module in self.modules():
            if isinstance(module, nn.Dropout):
                module.p = rate

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(normalize_images(images, self.mean, self.std))
        normal = F.softmax(self.alphas_normal, dim=-1)
        reduce = F.softmax(self.alphas_reduce, dim=-1)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, reduce if cell.reduction else normal)
        return self.classifier(F.adaptive_avg_pool2d(s1, 1).flatten(1))


@dataclass(frozen=True)
class SearchResult:
    genotype: Genotype
    candidates: list[dict[str, list[list[str]]]]  # per stage: each cell type's ops per edge
    alphas_normal: list[list[float]]  # softmax(α) of the last stage, aligned with its candidates
    alphas_reduce: list[list[float]]
    seconds: float

    def to_dict(self) -> dict:
        return {
            "genotype": self.genotype.to_dict(),
            "candidates": self.candidates,
            "alphas_normal": self.alphas_normal,
            "alphas_reduce": self.alphas_reduce,
            "seconds": self.seconds,
        }


def _cycling_batches(n: int, batch_size: int, rng: torch.Generator) -> Iterator[torch.Tensor]:
    """Near-equal batches of a fresh permutation of range(n), pass after pass: a small
    validation set serves as many α steps as the training set has batches."""
    while True:
        yield from torch.randperm(n, generator=rng).tensor_split(even_batches(n, batch_size))


def train_supernet(
    net: Supernet,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    settings: PdartsSettings,
    skip_dropout: float,
    rng: torch.Generator,
    say: Callable[[str], None],
) -> None:
    """One stage: `warmup_epochs` of weight steps only, then per training batch an α step
    on a validation batch followed by a weight step (first-order DARTS)."""
    s = settings
    weights = net.weight_parameters()
    sgd = torch.optim.SGD(
        weights, lr=s.weight_lr, momentum=s.weight_momentum, weight_decay=s.weight_decay
    )
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(sgd, s.epochs)
    adam = torch.optim.Adam(
        net.architecture_parameters(),
        lr=s.arch_lr,
        betas=s.arch_betas,
        weight_decay=s.arch_weight_decay,
    )
    val_batches = _cycling_batches(len(val_x), s.batch_size, rng)
    device = train_x.device
    for epoch in range(s.epochs):
        net.set_skip_dropout(skip_dropout * (1 - epoch / s.epochs))
        net.train()
        search_arch = epoch >= s.warmup_epochs
        correct = val_correct = val_seen = 0
        order = torch.randperm(len(train_x), generator=rng)
        for idx in order.tensor_split(even_batches(len(order), s.batch_size)):
            if search_arch:
                v = next(val_batches).to(device)
                logits = net(val_x[v])
                adam.zero_grad(set_to_none=True)
                F.cross_entropy(logits, val_y[v]).backward()
                adam.step()
                val_correct += (logits.argmax(1) == val_y[v]).sum().item()
                val_seen += len(v)
            idx = idx.to(device)
            x = augment_batch(train_x[idx], rng) if s.augment else train_x[idx]
            logits = net(x)
            sgd.zero_grad(set_to_none=True)
            F.cross_entropy(logits, train_y[idx]).backward()
            nn.utils.clip_grad_norm_(weights, s.grad_clip)
            sgd.step()
            correct += (logits.argmax(1) == train_y[idx]).sum().item()
        cosine.step()
        line = f"epoch {epoch + 1}/{s.epochs}: train acc {correct / len(train_x):.3f}"
        say(line + (f", val acc {val_correct / val_seen:.3f}" if search_arch else " (warm-up)"))


def _keep_top(weights: Sequence[float], names: Sequence[str], k: int) -> list[str]:
    """The k ops of highest weight, in their original order."""
    top = sorted(range(len(names)), key=lambda i: -weights[i])[:k]
    return [names[i] for i in sorted(top)]


def search(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    num_classes: int,
    mean: torch.Tensor,
    std: torch.Tensor,
    settings: PdartsSettings,
    seed: int,
    progress: Callable[[str], None] | None = None,
) -> SearchResult:
    """PDARTS on uint8 images (N×C×H×W, on the device to search on): one fresh supernet per
    stage, each edge keeping the previous stage's `ops_kept[stage]` top-weighted ops; the
    genotype comes from the last stage's α. Initial weights, α, dropout masks and batch
    orders all derive from `seed`."""
    settings.validate()
    if len(train_x) == 0 or len(val_x) == 0:
        raise ConfigError(
            f"pdarts search needs training and validation images, got "
            f"{len(train_x)} and {len(val_x)}"
        )
    start = time.perf_counter()
    say = progress or (lambda _: None)
    edges = len(edge_sources(settings.nodes))
    candidates = {kind: [list(OPS)] * edges for kind in CELL_KINDS}
    stage_candidates, stages = [], len(settings.cells)
    weights: dict[str, list[list[float]]] = {}
    for stage, (cells, kept) in enumerate(zip(settings.cells, settings.ops_kept, strict=True)):
        if stage:
            candidates = {
                kind: [
                    _keep_top(w, names, kept) for w, names in zip(weights[kind], ops, strict=True)
                ]
                for kind, ops in candidates.items()
            }
        stage_candidates.append(candidates)
        with global_torch_seed(derive_seed(seed, f"pdarts stage {stage}")):
            net = Supernet(
                candidates, num_classes, train_x.shape[1], mean, std, settings.channels, cells
            ).to(train_x.device)
            header = f"pdarts stage {stage + 1}/{stages} ({cells} cells, {kept} ops per edge) "
            train_supernet(
                net,
                train_x,
                train_y,
                val_x,
                val_y,
                settings,
                settings.skip_dropout[stage],
                generator(derive_seed(seed, f"pdarts batches {stage}")),
                lambda line, header=header: say(header + line),
            )
        weights = net.op_weights()
    genotype = derive_genotype(weights["normal"], weights["reduce"], candidates, settings.skip_cap)
    return SearchResult(
        genotype,
        stage_candidates,
        weights["normal"],
        weights["reduce"],
        time.perf_counter() - start,
    )


class _DerivedCell(nn.Module):
    def __init__(self, ops, concat, c_prev_prev, c_prev, c, reduction, reduction_prev):
        super().__init__()
        self.pre0, self.pre1 = _preprocess(c_prev_prev, c_prev, c, reduction_prev, affine=True)
        self.sources = [source for _, source in ops]
        self.ops = nn.ModuleList(
            make_op(name, c, 2 if reduction and source < 2 else 1, affine=True)
            for name, source in ops
        )
        self.concat = concat

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        for a in range(0, len(self.ops), 2):
            b = a + 1
            states.append(
                self.ops[a](states[self.sources[a]]) + self.ops[b](states[self.sources[b]])
            )
        return torch.cat([states[i] for i in self.concat], dim=1)


class PdartsNet(ImageModel):
    """The derived CNN of a genotype on uint8 images: normalise → stem → cells (reduction
    at 1/3 and 2/3 of the depth) → global pool (the trunk) → dropout (the neck) → linear."""

    def __init__(
        self,
        genotype: Genotype,
        num_classes: int,
        in_channels: int,
        mean: torch.Tensor,
        std: torch.Tensor,
        channels: int = 36,
        cells: int = 20,
        dropout: float = 0.5,
    ):
        stem = _stem(in_channels, channels)
        c_prev_prev = c_prev = STEM_MULTIPLIER * channels
        c, reduction_prev, body = channels, False, []
        for i in range(cells):
            reduction = i in _reduction_cells(cells)
            c = 2 * c if reduction else c
            ops = genotype.reduce if reduction else genotype.normal
            concat = genotype.reduce_concat if reduction else genotype.normal_concat
            body.append(
                _DerivedCell(ops, concat, c_prev_prev, c_prev, c, reduction, reduction_prev)
            )
            c_prev_prev, c_prev, reduction_prev = c_prev, len(concat) * c, reduction
        super().__init__(c_prev, mean, std)
        self.genotype, self.channels = genotype, channels
        self.stem = stem
        self.cells = nn.ModuleList(body)
        self.neck = nn.Dropout(dropout)
        self.classifier = nn.Linear(c_prev, num_classes)

    def trunk(self, images: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(self.normalize(images))
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return F.adaptive_avg_pool2d(s1, 1).flatten(1)

    def architecture_record(self) -> dict:
        return {
            "genotype": self.genotype.to_dict(),
            "skip_connects": self.genotype.skip_connects,
            "channels": self.channels,
            "cells": len(self.cells),
        }
