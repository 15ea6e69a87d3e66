"""Initial labelled pools chosen on the acquisition representation (`--init-strategy`).

`kmeans` (as Chandra et al., "On Initial Pools for Deep Active Learning", 2021, with
self-supervised features): a seeded k-means of the representation with one cluster per
class, and an equal share of the initial pool from each cluster, drawn uniformly within it;
the shares differ by at most one, the larger ones going to randomly ordered clusters, and a
cluster too small for its share gives the rest to the others. `typiclust` and `probcover`
run those strategies from an empty labelled set (ProbCover's δ from purity unless given).

Each is a pure function of (representation, sizes, seed), drawing from its own generator,
so every strategy and architecture of a seed starts from the same pool.
"""

from __future__ import annotations

import torch

from archdal.seeding import derive_seed, generator
from archdal.strategies.clustering import kmeans
from archdal.strategies.probcover import probcover
from archdal.strategies.typiclust import typiclust


def balanced_by_cluster(labels: torch.Tensor, n: int, rng: torch.Generator) -> torch.Tensor:
    """n positions, as equal a share of each cluster as its size allows: the clusters take
    turns (in a random order), each giving its next member in a random order."""
    k = int(labels.max()) + 1
    order = torch.randperm(len(labels), generator=rng)
    by_cluster = order[torch.sort(labels[order], stable=True).indices]
    counts = torch.bincount(labels, minlength=k)
    starts = torch.cumsum(counts, 0) - counts
    grouped = labels[by_cluster]
    rank = torch.arange(len(labels)) - starts[grouped]  # turn in which each point is taken
    turn_order = torch.randperm(k, generator=rng)
    key = rank * k + turn_order[grouped]
    return by_cluster[torch.sort(key, stable=True).indices[:n]]


def initial_pool(
    strategy: str,
    representation: torch.Tensor,
    num_classes: int,
    size: int,
    seed: int,
    coverage_radius: float | None = None,
) -> torch.Tensor:
    """`size` distinct rows of `representation` (the training set) by the init strategy."""
    rng = generator(derive_seed(seed, "initial-pool"))
    x = representation.cpu()
    none = x[:0]
    if strategy == "kmeans":
        labels, _ = kmeans(x, num_classes, rng)
        return balanced_by_cluster(labels, size, rng)
    if strategy == "typiclust":
        return typiclust(x, none, size, rng)
    if strategy == "probcover":
        return probcover(x, none, size, rng, num_classes, coverage_radius)
    raise ValueError(f"unknown init strategy {strategy!r}")
