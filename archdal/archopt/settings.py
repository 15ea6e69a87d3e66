"""PDARTS's settings and genotypes, without torch: what a config validates and a result file
stores. The search and the networks are in `archdal.archopt.pdarts`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from archdal.errors import ConfigError

OPS = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
CELL_KINDS = ("normal", "reduce")


@dataclass(frozen=True)
class PdartsSettings:
    """Search and derived-network sizes; defaults are PDARTS's CIFAR-10 search."""

    channels: int = 16
    cells: tuple[int, ...] = (5, 11, 17)  # per stage
    ops_kept: tuple[int, ...] = (8, 5, 3)  # candidate ops per edge in each stage
    skip_dropout: tuple[float, ...] = (0.1, 0.4, 0.7)  # the paper's text; PDARTS's code: 0.0 first
    epochs: int = 25  # per stage
    warmup_epochs: int = 10  # weights only, at the start of every stage
    batch_size: int = 64
    weight_lr: float = 0.025  # SGD, cosine schedule over each stage
    weight_momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    arch_lr: float = 6e-4  # Adam
    arch_betas: tuple[float, float] = (0.5, 0.999)
    arch_weight_decay: float = 1e-3
    skip_cap: int = 2  # most skip-connects in the derived normal cell
    nodes: int = 4  # intermediate nodes per cell
    augment: bool = False
    derived_channels: int = 36
    derived_cells: int = 20

    def validate(self) -> PdartsSettings:
        def require(ok: bool, field: str, allowed: str) -> None:
            if not ok:
                raise ConfigError(f"pdarts {field} must be {allowed}, got {getattr(self, field)!r}")

        stages = len(self.cells)
        require(
            stages >= 1 and all(c >= 3 for c in self.cells),
            "cells",
            "one count ≥ 3 per stage (so both cell types occur)",
        )
        require(len(self.ops_kept) == stages, "ops_kept", f"one count per stage ({stages})")
        require(self.ops_kept[0] == len(OPS), "ops_kept", f"{len(OPS)} (every op) in stage 1")
        require(
            all(a > b for a, b in zip(self.ops_kept, self.ops_kept[1:], strict=False)),
            "ops_kept",
            "strictly decreasing",
        )
        require(
            self.ops_kept[-1] >= 3,
            "ops_kept",
            "≥ 3 in the last stage (an op besides none and skip_connect on every edge)",
        )
        require(
            len(self.skip_dropout) == stages and all(0 <= p < 1 for p in self.skip_dropout),
            "skip_dropout",
            f"one rate in [0, 1) per stage ({stages})",
        )
        require(self.epochs >= 1, "epochs", "≥ 1")
        require(0 <= self.warmup_epochs <= self.epochs, "warmup_epochs", "in [0, epochs]")
        for field in ("channels", "batch_size", "nodes", "derived_channels"):
            require(getattr(self, field) >= 1, field, "≥ 1")
        for field in ("weight_lr", "grad_clip", "arch_lr"):
            require(getattr(self, field) > 0, field, "> 0")
        for field in ("weight_decay", "arch_weight_decay", "skip_cap"):
            require(getattr(self, field) >= 0, field, "≥ 0")
        require(0 <= self.weight_momentum < 1, "weight_momentum", "in [0, 1)")
        require(
            len(self.arch_betas) == 2 and all(0 <= b < 1 for b in self.arch_betas),
            "arch_betas",
            "two values in [0, 1)",
        )
        require(self.derived_cells >= 3, "derived_cells", "≥ 3 (so both cell types occur)")
        return self


def pdarts_settings(overrides: dict) -> PdartsSettings:
    """`PdartsSettings` with the fields of a JSON-friendly dict replaced (lists → tuples),
    validated; an unknown field is an error naming the allowed ones."""
    allowed = {f.name for f in dataclasses.fields(PdartsSettings)}
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise ConfigError(f"unknown pdarts settings {unknown}; allowed: {sorted(allowed)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return PdartsSettings(**values).validate()


@dataclass(frozen=True)
class Genotype:
    """A discrete cell pair. States 0 and 1 are the two previous cells' outputs, state k ≥ 2
    is intermediate node k − 2, the sum of ops 2(k − 2) and 2(k − 2) + 1, each an
    (op name, input state) pair; a cell outputs its `concat` states, concatenated."""

    normal: tuple[tuple[str, int], ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[tuple[str, int], ...]
    reduce_concat: tuple[int, ...]

    def __post_init__(self) -> None:
        for kind in CELL_KINDS:
            ops, concat = getattr(self, kind), getattr(self, f"{kind}_concat")
            if not ops or len(ops) % 2:
                raise ConfigError(f"genotype {kind} needs two ops per node, got {len(ops)} ops")
            for i, (name, source) in enumerate(ops):
                if name not in OPS[1:] or not 0 <= source < i // 2 + 2:
                    raise ConfigError(
                        f"genotype {kind} op {i} {(name, source)!r} needs one of "
                        f"{', '.join(OPS[1:])} on an earlier state"
                    )
            if not concat or not all(0 <= s < len(ops) // 2 + 2 for s in concat):
                raise ConfigError(f"genotype {kind}_concat {concat!r} names a missing state")

    @property
    def skip_connects(self) -> int:
        """Skip-connects in the normal cell (the ones PDARTS caps)."""
        return sum(name == "skip_connect" for name, _ in self.normal)

    def to_dict(self) -> dict:
        return {
            "normal": [[name, source] for name, source in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [[name, source] for name, source in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> Genotype:
        def ops(kind: str) -> tuple[tuple[str, int], ...]:
            return tuple((str(name), int(source)) for name, source in data[kind])

        def concat(kind: str) -> tuple[int, ...]:
            return tuple(int(s) for s in data[f"{kind}_concat"])

        return cls(ops("normal"), concat("normal"), ops("reduce"), concat("reduce"))


def edge_sources(nodes: int) -> list[int]:
    """The input state of every edge of a search cell, node by node: 0, 1, 0, 1, 2, …"""
    return [source for node in range(nodes) for source in range(node + 2)]


def cell_nodes(edges: int) -> int:
    nodes = 0
    while len(edge_sources(nodes)) < edges:
        nodes += 1
    if len(edge_sources(nodes)) != edges:
        raise ConfigError(f"{edges} edges is no whole number of cell nodes (4 nodes: 14 edges)")
    return nodes


def _derive_cell(
    weights: Sequence[Sequence[float]], candidates: Sequence[Sequence[str]]
) -> list[tuple[str, int, int]]:
    """(op, source, edge) of the two edges into each node whose best non-'none' op weighs
    most, in source order; ties go to the earlier op or source."""
    picked: list[tuple[str, int, int]] = []
    first_edge = 0
    for node in range(cell_nodes(len(weights))):
        options = []
        for source in range(node + 2):
            edge = first_edge + source
            names, row = candidates[edge], weights[edge]
            best = max((i for i, name in enumerate(names) if name != "none"), key=row.__getitem__)
            options.append((row[best], source, names[best], edge))
        strongest = sorted(options, key=lambda option: -option[0])[:2]
        strongest.sort(key=lambda option: option[1])
        picked += [(name, source, edge) for _, source, name, edge in strongest]
        first_edge += node + 2
    return picked


def derive_genotype(
    alphas_normal: Sequence[Sequence[float]],
    alphas_reduce: Sequence[Sequence[float]],
    candidates: Mapping[str, Sequence[Sequence[str]]],
    skip_cap: int,
) -> Genotype:
    """The discrete cells of softmaxed α's (one row per edge, aligned with that edge's
    `candidates[kind]` list): 'none' is ignored, each node keeps its two incoming edges whose
    best op weighs most, and each kept edge that op. While the normal cell then has more than
    `skip_cap` skip-connects, the one of least weight loses skip_connect (its weight set to 0)
    and the cell is derived again (PDARTS's rule), so a weak edge may lose its place."""
    normal_weights = [[float(w) for w in row] for row in alphas_normal]
    while True:
        normal = _derive_cell(normal_weights, candidates["normal"])
        skips = [
            (normal_weights[edge][candidates["normal"][edge].index("skip_connect")], edge)
            for name, _, edge in normal
            if name == "skip_connect"
        ]
        if len(skips) <= skip_cap:
            break
        weight, edge = min(skips)
        if weight <= 0:
            raise ConfigError(
                f"cannot cap skip-connects at {skip_cap}: edge {edge} offers no other op"
            )
        normal_weights[edge][candidates["normal"][edge].index("skip_connect")] = 0.0
    reduce = _derive_cell([[float(w) for w in row] for row in alphas_reduce], candidates["reduce"])
    concat = tuple(range(2, cell_nodes(len(normal_weights)) + 2))
    return Genotype(
        tuple((name, source) for name, source, _ in normal),
        concat,
        tuple((name, source) for name, source, _ in reduce),
        concat,
    )
