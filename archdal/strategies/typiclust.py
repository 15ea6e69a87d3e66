"""TypiClust (Hacohen, Dekel & Weinshall, "Active Learning on a Budget: Opposite Strategies
Suit High and Low Budgets", ICML 2022): typical points of the clusters that labels cover
least.

The representation of labelled and unlabelled points together is cut by a seeded k-means
into min(|L| + B, `CLUSTER_CAP`) clusters (the cap of the authors' code, 500). Each of the B
picks takes the cluster with the fewest labelled points, ties to the largest cluster (then
the lower id), preferring clusters of at least `MIN_CLUSTER_SIZE` points while any has an
unlabelled point left, and from it the unlabelled point of highest typicality: the
inverse mean Euclidean distance to its `NEIGHBOURS` (20) nearest other points of the
cluster, labelled ones included (fewer in a small cluster). The pick then counts as
labelled. Typicality is computed once per visited cluster, in blocks of rows (never a
cluster-by-cluster matrix beyond `clustering.BLOCK_ELEMENTS`); duplicated rows have
distance 0 and so infinite typicality, and are never picked twice.
"""

from __future__ import annotations

import torch

from archdal.pool import REPRESENTATION, PoolView
from archdal.strategies.base import REGISTRY, Strategy
from archdal.strategies.clustering import kmeans, pairwise_sq_blocks

CLUSTER_CAP, MIN_CLUSTER_SIZE, NEIGHBOURS = 500, 5, 20


def typicality(points: torch.Tensor, neighbours: int = NEIGHBOURS) -> torch.Tensor:
    """1 / mean distance of each row to its `neighbours` nearest other rows (0 for a lone
    row; inf where those neighbours coincide with it)."""
    k = min(neighbours, len(points) - 1)
    out = torch.zeros(len(points), device=points.device)
    if k < 1:
        return out
    for block, d in pairwise_sq_blocks(points):
        rows = torch.arange(block.stop - block.start, device=points.device)
        d[rows, rows + block.start] = torch.inf  # a point is not its own neighbour
        out[block] = 1 / d.topk(k, dim=1, largest=False).values.sqrt().mean(dim=1)
    return out


def typiclust(
    pool: torch.Tensor, labeled: torch.Tensor, n: int, rng: torch.Generator
) -> torch.Tensor:
    """n distinct pool positions chosen by TypiClust on these representation rows."""
    n_labeled = len(labeled)
    points = torch.cat([labeled, pool])
    labels, _ = kmeans(points, min(n_labeled + n, CLUSTER_CAP), rng)
    k = int(labels.max()) + 1
    sizes = torch.bincount(labels, minlength=k)
    covered = torch.bincount(labels[:n_labeled], minlength=k)
    pool_labels = labels[n_labeled:]
    left = torch.bincount(pool_labels, minlength=k)
    ranked: dict[int, torch.Tensor] = {}  # cluster → its pool positions, most typical first
    taken = torch.zeros(k, dtype=torch.long)
    picks = torch.empty(n, dtype=torch.long)
    for t in range(n):
        open_ = left > 0
        if (open_ & (sizes >= MIN_CLUSTER_SIZE)).any():
            open_ &= sizes >= MIN_CLUSTER_SIZE
        fewest = covered.masked_fill(~open_, torch.iinfo(torch.long).max).min()
        tied = open_ & (covered == fewest)
        c = int(sizes.masked_fill(~tied, -1).argmax())  # largest, then lowest id
        if c not in ranked:
            members = (labels == c).nonzero().squeeze(1)
            score = typicality(points[members])
            in_pool = members >= n_labeled
            order = torch.sort(score[in_pool], descending=True, stable=True).indices
            ranked[c] = (members[in_pool] - n_labeled)[order].cpu()
        picks[t] = ranked[c][taken[c]]
        taken[c] += 1
        left[c] -= 1
        covered[c] += 1
    return picks.to(pool.device)


def select_typiclust(view: PoolView, n: int, rng: torch.Generator) -> torch.Tensor:
    return typiclust(view.representation, view.labeled_representation, n, rng)


REGISTRY.register(Strategy("typiclust", frozenset({REPRESENTATION}), select_typiclust))
