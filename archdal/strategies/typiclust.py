"""TypiClust (Hacohen, Dekel & Weinshall, "Active Learning on a Budget: Opposite Strategies
Suit High and Low Budgets", ICML 2022): typical points of the clusters that labels cover
least.

The representation of labelled and unlabelled points together (L2-normalised rows, as in the
authors' code: `archdal.pool.REPRESENTATION`) is cut by a seeded k-means into min(|L| + B,
`CLUSTER_CAP`) clusters (the cap of the authors' code, 500). Each of the B picks takes the
cluster with the fewest labelled points, ties to the largest cluster (then the lower id),
preferring clusters of more than `MIN_CLUSTER_SIZE` (5) points while any has an unlabelled
point left, and from it the unlabelled point of highest typicality: the inverse mean
Euclidean distance to its K nearest other unlabelled points of the cluster, K =
min(`NEIGHBOURS`, m // 2) for m such points, as in the authors' code (labelled points are
not neighbours). The pick then counts as labelled and leaves the cluster, whose typicality
is that of the points left at its next visit (`ClusterNeighbours`: each point's nearest
members are found once, in blocks of rows, never a cluster-by-cluster matrix beyond
`clustering.BLOCK_ELEMENTS`, and kept as picks leave). Duplicated rows have distance 0 and
so infinite typicality, and are never picked twice.

Departures from the authors' code: their typicality is the inverse mean *squared* distance
(faiss returns squares) where the paper's formula has the distance; they order the clusters
once and cycle through them, where each pick here re-ranks them by the labels they hold, as
the paper describes.
"""

from __future__ import annotations

import torch

from archdal.pool import REPRESENTATION, PoolView
from archdal.strategies.base import REGISTRY, Strategy
from archdal.strategies.clustering import kmeans, pairwise_sq_blocks

CLUSTER_CAP, MIN_CLUSTER_SIZE, NEIGHBOURS = 500, 5, 20
SPARE = 10  # nearest neighbours kept beyond K, so that picks rarely force a recomputation


class ClusterNeighbours:
    """The nearest other members of one cluster's unlabelled points, kept exact as picks
    leave it: each row holds its `NEIGHBOURS` + `SPARE` nearest members, and only the rows
    that lost more than `SPARE` of them are recomputed (against the members left)."""

    def __init__(self, points: torch.Tensor):
        self.points = points
        self.alive = torch.ones(len(points), dtype=torch.bool, device=points.device)
        self.width = min(NEIGHBOURS + SPARE, len(points) - 1)
        self.distance = torch.empty(len(points), max(self.width, 0), device=points.device)
        self.index = torch.empty(len(points), max(self.width, 0), dtype=torch.long,
                                 device=points.device)  # fmt: skip
        self._refresh(torch.arange(len(points), device=points.device))

    def _refresh(self, rows: torch.Tensor) -> None:
        """Nearest alive members of `rows` (inf beyond the members left)."""
        if self.width < 1:
            return
        for block, d in pairwise_sq_blocks(self.points[rows], self.points):
            d[:, ~self.alive] = torch.inf
            d[torch.arange(len(d), device=d.device), rows[block]] = torch.inf  # not itself
            nearest = d.topk(self.width, dim=1, largest=False)
            self.distance[rows[block]] = nearest.values.sqrt()
            self.index[rows[block]] = nearest.indices

    def typicality(self) -> torch.Tensor:
        """1 / mean distance of each alive row to its K nearest alive other rows, K =
        min(`NEIGHBOURS`, alive // 2) (0 when K = 0; inf where they coincide with it);
        −inf for rows already taken."""
        k = min(NEIGHBOURS, int(self.alive.sum()) // 2)
        out = torch.full((len(self.points),), -torch.inf, device=self.points.device)
        if k == 0:
            return out.masked_fill_(self.alive, 0.0)
        valid = self.alive[self.index] & self.distance.isfinite()
        short = self.alive & (valid.sum(1) < k)
        if short.any():
            self._refresh(short.nonzero().squeeze(1))
            valid = self.alive[self.index] & self.distance.isfinite()
        used = valid & (valid.cumsum(1) <= k)  # the first k alive, nearest first
        mean = torch.where(used, self.distance, 0.0).sum(1) / k
        return torch.where(self.alive, 1 / mean, out)

    def take(self, row: int) -> None:
        self.alive[row] = False


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
    pool_labels = labels[n_labeled:].cpu()
    left = torch.bincount(pool_labels, minlength=k)
    clusters: dict[int, tuple[torch.Tensor, ClusterNeighbours]] = {}  # members, neighbours
    picks = torch.empty(n, dtype=torch.long)
    for t in range(n):
        open_ = left > 0
        if (open_ & (sizes > MIN_CLUSTER_SIZE)).any():
            open_ &= sizes > MIN_CLUSTER_SIZE
        fewest = covered.masked_fill(~open_, torch.iinfo(torch.long).max).min()
        tied = open_ & (covered == fewest)
        c = int(sizes.masked_fill(~tied, -1).argmax())  # largest, then lowest id
        if c not in clusters:
            members = (pool_labels == c).nonzero().squeeze(1)
            clusters[c] = members, ClusterNeighbours(pool[members.to(pool.device)])
        members, neighbours = clusters[c]
        row = int(neighbours.typicality().argmax())  # the first of equal maxima
        neighbours.take(row)
        picks[t] = members[row]
        left[c] -= 1
        covered[c] += 1
    return picks.to(pool.device)


def select_typiclust(view: PoolView, n: int, rng: torch.Generator) -> torch.Tensor:
    return typiclust(view.representation, view.labeled_representation, n, rng)


REGISTRY.register(Strategy("typiclust", frozenset({REPRESENTATION}), select_typiclust))
