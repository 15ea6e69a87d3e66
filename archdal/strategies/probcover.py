"""ProbCover (Yehuda, Dekel, Hacohen & Weinshall, "Active Learning Through a Covering Lens",
NeurIPS 2022): greedy maximum coverage of δ-balls on the representation.

A point covers the unlabelled points closer than δ to it (itself included). Points within δ
of a labelled point start covered. Each pick is the unlabelled point that covers the most
still-uncovered points (ties: the lower position); once everything is covered the rest of
the batch is drawn uniformly (seeded), as in the paper.

δ, unless given (`--probcover-delta`), is the largest radius whose balls are at least
α = `PURITY` (0.95) pure: a ball is pure when every point in it has its centre's k-means
pseudo-label (k = the task's classes, on labelled and unlabelled points together), so a
point's ball is pure exactly while δ is at most the distance r(x) to its nearest point of
another pseudo-label, and δ is the ⌈α·N⌉-th largest r(x). Above `PURITY_SAMPLE` points,
r(x) is taken for a seeded sample of that many points (each still against all points).

Memory: never N×N. Distances come in blocks of `clustering.BLOCK_ELEMENTS`; the δ-graph is
kept as its edges (two int32 per edge, twice: by source and by target), at most
`MAX_EDGES`. Time is one pass of all pairs for the graph (plus one for δ): O(N²·D).
"""

from __future__ import annotations

import math

import torch

from archdal.errors import ConfigError
from archdal.pool import REPRESENTATION, PoolView
from archdal.strategies.base import REGISTRY, Strategy, min_sq_distance_to
from archdal.strategies.clustering import fill_random, kmeans, pairwise_sq_blocks

PURITY, PURITY_SAMPLE, MAX_EDGES = 0.95, 20_000, 50_000_000


def purity_radius(
    points: torch.Tensor, num_classes: int, rng: torch.Generator, purity: float = PURITY
) -> float:
    """The largest δ whose balls are ≥ `purity` pure against k-means pseudo-labels."""
    labels, _ = kmeans(points, num_classes, rng)
    rows = torch.arange(len(points), device=points.device)
    if len(points) > PURITY_SAMPLE:
        rows = torch.randperm(len(points), generator=rng)[:PURITY_SAMPLE].to(points.device)
    nearest_other = torch.empty(len(rows), device=points.device)
    for block, d in pairwise_sq_blocks(points[rows], points):
        d.masked_fill_(labels[rows[block], None] == labels[None, :], torch.inf)
        nearest_other[block] = d.min(dim=1).values
    ranked = torch.sort(nearest_other, descending=True).values
    return float(ranked[math.ceil(purity * len(rows)) - 1].sqrt())


def ball_graph(points: torch.Tensor, delta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Edges i → j with ‖x_i − x_j‖ < δ (and i → i), sorted by i: (sources, targets)."""
    sources, targets, count = [], [], 0
    for block, d in pairwise_sq_blocks(points):
        hit = d < delta * delta
        rows = torch.arange(block.stop - block.start, device=points.device)
        hit[rows, rows + block.start] = True
        i, j = hit.nonzero(as_tuple=True)
        count += len(i)
        if count > MAX_EDGES:
            raise ConfigError(
                f"probcover: δ = {delta:.4g} puts more than {MAX_EDGES:,} pairs of points in "
                "one ball; give a smaller --probcover-delta"
            )
        sources.append((i + block.start).int())
        targets.append(j.int())
    return torch.cat(sources), torch.cat(targets)


def _neighbours(ptr: torch.Tensor, ends: torch.Tensor, nodes: torch.Tensor) -> torch.Tensor:
    """Positions in an edge list grouped by node (`ptr`) of all edges of `nodes`."""
    starts = ptr[nodes]
    lengths = ends[nodes] - starts
    offsets = torch.repeat_interleave(starts - (torch.cumsum(lengths, 0) - lengths), lengths)
    return offsets + torch.arange(int(lengths.sum()), device=ptr.device)


def probcover(
    pool: torch.Tensor,
    labeled: torch.Tensor,
    n: int,
    rng: torch.Generator,
    num_classes: int,
    delta: float | None = None,
) -> torch.Tensor:
    """n distinct pool positions by greedy δ-ball coverage (δ from purity unless given)."""
    if delta is None:
        delta = purity_radius(torch.cat([labeled, pool]), num_classes, rng)
    size = len(pool)
    sources, targets = ball_graph(pool, delta)
    sources, targets = sources.long(), targets.long()
    by_target = torch.sort(targets, stable=True).indices
    out_ptr = torch.searchsorted(sources, torch.arange(size + 1, device=pool.device))
    in_ptr = torch.searchsorted(targets[by_target], torch.arange(size + 1, device=pool.device))
    covered = torch.zeros(size, dtype=torch.bool, device=pool.device)
    if len(labeled):
        covered = min_sq_distance_to(pool, labeled) < delta * delta
    degree = torch.bincount(sources[~covered[targets]], minlength=size)
    picks = []
    for _ in range(n):
        pick = int(degree.argmax())  # the first of equal maxima
        if degree[pick] == 0:
            break
        picks.append(pick)
        ball = targets[_neighbours(out_ptr, out_ptr[1:], torch.tensor([pick], device=pool.device))]
        newly = ball[~covered[ball]]
        covered[newly] = True
        # every edge into a newly covered point no longer counts for its source
        into = sources[by_target[_neighbours(in_ptr, in_ptr[1:], newly)]]
        degree -= torch.bincount(into, minlength=size)
    chosen = torch.tensor(picks, dtype=torch.long, device=pool.device)
    return fill_random(chosen, size, n, rng)  # once all is covered, the rest uniformly


def select_probcover(view: PoolView, n: int, rng: torch.Generator) -> torch.Tensor:
    return probcover(view.representation, view.labeled_representation, n, rng,
                     view.num_classes, view.coverage_radius)  # fmt: skip


REGISTRY.register(Strategy("probcover", frozenset({REPRESENTATION}), select_probcover))
