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
another pseudo-label, and δ is the ⌈α·N⌉-th largest r(x).

Pools of up to `EXACT_MAX` (10,000) points take the exact path: k-means on all points,
r(x) for every point, the δ-graph from all pairs; O(N²·D) time (one-off timings on one
core here: 11 s for 10,000 × 512, 39 s for 20,000, against 1.8 s and 3.4 s for the
approximate path, which is why the threshold sits at 10,000). Larger pools take that
approximate path, with all points, labelled and unlabelled, in one set:
- Pseudo-labels: the k-means is fitted on `PSEUDO_LABEL_SAMPLE_PER_CLASS` (256) sampled
  points per class (as faiss samples for its k-means); each point gets its nearest centre.
- δ from `PURITY_SAMPLE` (1,000) sampled points' exact r(x), against all points: the
  realised purity is α ± √(α(1−α)/m), ±0.007 (one s.d.). On MNIST pixels (60,000 × 64,
  3 seeds) δ came out 2.41-2.60 against 2.55 exact; on the tests' pool, −1.6% (5 seeds).
- The δ-graph and the labelled points' coverage from an inverted-file (IVF) search:
  `IVF_LISTS_PER_ROOT`·√N cells, the centres from a seeded faiss k-means on a sample; each
  point is compared only with the points living in its `IVF_PROBES` (4) nearest cells; an
  edge found either way is kept both ways. A cell holds at most `IVF_CELL_CAPACITY` times
  its share of points (the rest live in their next probed cell with room, else in any):
  k-means on 512-d noise leaves hub cells that would otherwise cost 12× the balanced
  search. Every edge found is a true one (distances in full, as on the exact path) and every
  point keeps its self edge, but neighbours living in unprobed cells are missed, so balls,
  and the labelled points' coverage, can only shrink. Recall of the exact graph's edges,
  from one-off scripts during development (not a committed benchmark; the tests assert ≥
  0.97 on their clustered points): 0.992 on MNIST pixels (60,000 × 64, δ = 2.55, 31 edges
  per point); 0.982 on the tests' 3,000 points in 32 dimensions, whose 100 picks cover as
  much as the exact path's; on structureless 512-d noise (30,000, 1.07 edges per point)
  0.971, but only 0.54 of the rare edges between distinct points. Rows duplicated far beyond
  a cell's capacity spill into other cells and lose edges (3 distinct rows × 1,000: 0.69).
  faiss's own IVF search (`IndexIVFFlat.range_search`) was not used: its scan compares
  vector by vector, 25× slower per flop here than matrix products (an estimated 355 s for
  the benchmark's 100,000 × 512 graph).

Memory: never N×N. Distances come in blocks of `clustering.BLOCK_ELEMENTS`; the δ-graph is
kept as its edges (two int32 per edge, twice: by source and by target), at most
`MAX_EDGES`; the approximate path holds one centred float32 copy of all points.
"""

from __future__ import annotations

import math

import torch

from archdal.errors import ConfigError
from archdal.pool import REPRESENTATION, PoolView
from archdal.strategies.base import (
    REGISTRY,
    Strategy,
    mean_row,
    min_sq_distance_to,
    row_sq_norms,
)
from archdal.strategies.clustering import (
    block_rows,
    draw_seed,
    faiss_threads,
    fill_random,
    kmeans,
    pairwise_sq_blocks,
)

PURITY, MAX_EDGES = 0.95, 50_000_000
# Pools of more points take the approximate path (see the module's docstring).
EXACT_MAX = 10_000
PURITY_SAMPLE, PSEUDO_LABEL_SAMPLE_PER_CLASS = 1_000, 256
# IVF cells: IVF_LISTS_PER_ROOT·√N of them, trained on IVF_TRAIN_PER_LIST points each for
# IVF_TRAIN_ITERATIONS; each point searched in its IVF_PROBES nearest; at most
# IVF_CELL_CAPACITY·N/lists points live in one cell.
IVF_LISTS_PER_ROOT, IVF_TRAIN_PER_LIST, IVF_TRAIN_ITERATIONS = 1, 16, 10
IVF_PROBES, IVF_CELL_CAPACITY = 4, 2.0

Balls = tuple[float, torch.Tensor, torch.Tensor, torch.Tensor]


def nearest_other_label(
    points: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor | None = None
) -> torch.Tensor:
    """Squared distance from each point (or each of `rows`) to its nearest point of
    another label."""
    rows = torch.arange(len(points), device=points.device) if rows is None else rows
    nearest = torch.empty(len(rows), device=points.device)
    for block, d in pairwise_sq_blocks(points[rows], points):
        d.masked_fill_(labels[rows[block], None] == labels[None, :], torch.inf)
        nearest[block] = d.min(dim=1).values
    return nearest


def pure_radius(nearest_other: torch.Tensor, purity: float = PURITY) -> float:
    """The largest δ below which ≥ `purity` of the points have no other label: the
    ⌈purity·n⌉-th largest distance to another label."""
    ranked = torch.sort(nearest_other, descending=True).values
    return float(ranked[math.ceil(purity * len(ranked)) - 1].sqrt())


def purity_radius(
    points: torch.Tensor, num_classes: int, rng: torch.Generator, purity: float = PURITY
) -> float:
    """The largest δ whose balls are ≥ `purity` pure against k-means pseudo-labels."""
    labels, _ = kmeans(points, num_classes, rng)
    return pure_radius(nearest_other_label(points, labels), purity)


def _check_edges(count: int, delta: float) -> None:
    if count > MAX_EDGES:
        raise ConfigError(
            f"probcover: δ = {delta:.4g} puts more than {MAX_EDGES:,} pairs of points in "
            "one ball; give a smaller --probcover-delta"
        )


def exact_ball_graph(points: torch.Tensor, delta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Edges i → j with ‖x_i − x_j‖ < δ (and i → i), sorted by i: (sources, targets)."""
    sources, targets, count = [], [], 0
    for block, d in pairwise_sq_blocks(points):
        hit = d < delta * delta
        rows = torch.arange(block.stop - block.start, device=points.device)
        hit[rows, rows + block.start] = True
        i, j = hit.nonzero(as_tuple=True)
        count += len(i)
        _check_edges(count, delta)
        sources.append((i + block.start).int())
        targets.append(j.int())
    return torch.cat(sources), torch.cat(targets)


def exact_balls(
    pool: torch.Tensor,
    labeled: torch.Tensor,
    num_classes: int,
    delta: float | None,
    rng: torch.Generator,
) -> Balls:
    """(δ, the δ-graph's sources and targets, which pool points a labelled one covers),
    all from all pairs."""
    if delta is None:
        delta = purity_radius(torch.cat([labeled, pool]), num_classes, rng)
    sources, targets = exact_ball_graph(pool, delta)
    covered = torch.zeros(len(pool), dtype=torch.bool, device=pool.device)
    if len(labeled):
        covered = min_sq_distance_to(pool, labeled) < delta * delta
    return delta, sources, targets, covered


def ivf_lists(size: int) -> int:
    return max(1, min(size, round(IVF_LISTS_PER_ROOT * math.sqrt(size))))


def ivf_cells(
    x: torch.Tensor, probes: int, rng: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's `probes` nearest cells (nearest first) and squared distances to their
    centres: the centres of a seeded faiss k-means with `ivf_lists` cells fitted on
    `IVF_TRAIN_PER_LIST` sampled points per cell; the distances by matrix products (3× faster
    here than faiss's flat search)."""
    lists = ivf_lists(len(x))
    seed = draw_seed(rng)
    sample = torch.randperm(len(x), generator=rng)[: IVF_TRAIN_PER_LIST * lists]
    with faiss_threads() as faiss:
        quantizer = faiss.Kmeans(
            x.shape[1], lists, niter=IVF_TRAIN_ITERATIONS, seed=seed, min_points_per_centroid=1
        )
        quantizer.train(x[sample].numpy())
    centres = torch.from_numpy(quantizer.centroids)
    nearest = [d.topk(probes, dim=1, largest=False) for _, d in pairwise_sq_blocks(x, centres)]
    return torch.cat([n.indices for n in nearest]), torch.cat([n.values for n in nearest])


def home_cells(
    cells: torch.Tensor, sq_distances: torch.Tensor, lists: int, capacity: int
) -> torch.Tensor:
    """Each point's home cell, none holding more than `capacity`: the nearest of its probed
    cells with room (points nearest a cell's centre go first), else the first cell with
    room. k-means on a small sample can leave a few hub cells nearest most points (on 512-d
    noise, 10,261 of 100,000 points in one of 316 cells); capped cells bound the search by
    N·probes·capacity pairs whatever the partition."""
    home, load = torch.empty(len(cells), dtype=torch.long), torch.zeros(lists, dtype=torch.long)
    waiting = torch.arange(len(cells))
    for rank in range(cells.shape[1]):
        cell = cells[waiting, rank]
        order = torch.sort(sq_distances[waiting, rank], stable=True).indices
        order = order[torch.sort(cell[order], stable=True).indices]  # by cell, nearest first
        in_cell = torch.arange(len(order)) - torch.searchsorted(cell[order], cell[order])
        fits = in_cell < (capacity - load)[cell[order]]
        home[waiting[order[fits]]] = cell[order[fits]]
        load += torch.bincount(cell[order[fits]], minlength=lists)
        waiting = waiting[order[~fits]]
    room = torch.repeat_interleave(torch.arange(lists), capacity - load)
    home[waiting] = room[: len(waiting)]
    return home


def probed_blocks(x: torch.Tensor, cells: torch.Tensor, home: torch.Tensor):
    """Yield (rows, columns, squared distances): each row of x against the points living in
    each of its probed `cells`, in blocks of at most `clustering.BLOCK_ELEMENTS`; x centred."""
    lists = int(home.max()) + 1
    bounds = torch.arange(lists + 1)
    members = torch.sort(home, stable=True).indices
    member_ptr = torch.searchsorted(home[members], bounds).tolist()
    by_cell = torch.sort(cells.flatten(), stable=True).indices
    query_ptr = torch.searchsorted(cells.flatten()[by_cell], bounds).tolist()
    probing = by_cell // cells.shape[1]  # the rows probing each cell, by cell
    sq = row_sq_norms(x)
    for cell in range(lists):
        inside = members[member_ptr[cell] : member_ptr[cell + 1]]
        ends, step = query_ptr[cell + 1], block_rows(len(inside))
        for r in range(query_ptr[cell], ends, step):
            rows = probing[r : min(r + step, ends)]
            d = torch.addmm(sq[None, inside], x[rows], x[inside].T, alpha=-2)
            yield rows, inside, d.add_(sq[rows, None])


def pseudo_labels(x: torch.Tensor, num_classes: int, rng: torch.Generator) -> torch.Tensor:
    """Nearest-centre labels of a seeded k-means (one cluster per class) fitted on
    `PSEUDO_LABEL_SAMPLE_PER_CLASS` sampled points per class."""
    sample = torch.randperm(len(x), generator=rng)[: PSEUDO_LABEL_SAMPLE_PER_CLASS * num_classes]
    _, centres = kmeans(x[sample], num_classes, rng)
    return torch.cat([d.argmin(dim=1) for _, d in pairwise_sq_blocks(x, centres)])


def sampled_purity_radius(x: torch.Tensor, num_classes: int, rng: torch.Generator) -> float:
    """`purity_radius` from `PURITY_SAMPLE` sampled points' exact distances to another
    pseudo-label (over all points), the pseudo-labels from `pseudo_labels`."""
    labels = pseudo_labels(x, num_classes, rng)
    rows = torch.randperm(len(x), generator=rng)[:PURITY_SAMPLE]
    return pure_radius(nearest_other_label(x, labels, rows))


def ivf_balls(
    pool: torch.Tensor,
    labeled: torch.Tensor,
    num_classes: int,
    delta: float | None,
    rng: torch.Generator,
) -> Balls:
    """`exact_balls` from an inverted-file search over labelled and pool points together:
    each point is compared only with the points living in its `IVF_PROBES` nearest cells.
    Edges found either way are kept both ways; a point always covers itself."""
    x = torch.cat([labeled, pool]).detach().float().cpu()
    x -= mean_row(x)  # about the mean, as `pairwise_sq_blocks`
    if delta is None:
        delta = sampled_purity_radius(x, num_classes, rng)
    lists, start = ivf_lists(len(x)), len(labeled)
    cells, sq_distances = ivf_cells(x, min(IVF_PROBES, lists), rng)
    home = home_cells(cells, sq_distances, lists, math.ceil(IVF_CELL_CAPACITY * len(x) / lists))
    size = len(x)
    keys, count = [torch.arange(start, size) * (size + 1)], len(pool)
    for rows, columns, d in probed_blocks(x, cells, home):
        i, j = (d < delta * delta).nonzero(as_tuple=True)
        i, j = rows[i], columns[j]
        keys.append(i * size + j)
        count += int(((i >= start) & (j >= start) & (i != j)).sum())  # as the final graph
        _check_edges(count, delta)
    forward = torch.cat(keys)
    keys = torch.unique(torch.cat([forward, forward % size * size + forward // size]))
    sources, targets = keys // size - start, keys % size - start
    covered = torch.zeros(len(pool), dtype=torch.bool)
    covered[targets[(sources < 0) & (targets >= 0)]] = True
    in_pool = (sources >= 0) & (targets >= 0)
    sources, targets = sources[in_pool], targets[in_pool]
    _check_edges(len(sources), delta)
    device = pool.device
    return delta, sources.int().to(device), targets.int().to(device), covered.to(device)


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
    balls = exact_balls if len(pool) <= EXACT_MAX else ivf_balls
    delta, sources, targets, covered = balls(pool, labeled, num_classes, delta, rng)
    size = len(pool)
    sources, targets = sources.long(), targets.long()
    by_target = torch.sort(targets, stable=True).indices
    out_ptr = torch.searchsorted(sources, torch.arange(size + 1, device=pool.device))
    in_ptr = torch.searchsorted(targets[by_target], torch.arange(size + 1, device=pool.device))
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
