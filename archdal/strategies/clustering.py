"""Seeded k-means and bounded nearest-neighbour helpers that the representation-based
strategies (TypiClust, ProbCover, DropQuery) and the initial pools share.

k-means is scikit-learn's `KMeans` (Lloyd, one k-means++ start) up to `FULL_KMEANS_MAX`
clusters, and faiss's Lloyd k-means (`FAISS_ITERATIONS` iterations from random points, each
centre trained on at most 256 points, empty clusters split) beyond, where a k-means++ start
is too slow (scikit-learn's seeding of 500 centres on 4,000 × 512 points took 60-70 s
here). scikit-learn's `MiniBatchKMeans`, which TypiClust's authors use, stops early and on
512-dimensional embeddings without strong cluster structure leaves a few clusters holding
most points and the rest near empty (11,000 points, 500 centres: 17 clusters of more than
5 points, the largest 2,030); faiss's are even (all 500 of 5 to 34 points, 1.6 s on one
thread). Seeds are drawn from the trajectory's generator and faiss runs on torch's thread
count, so a selection stays a pure function of view, generator and threads. The number of
clusters is capped by the number of distinct rows, so duplicated points never leave
clusters empty.
"""

from __future__ import annotations

import contextlib
import warnings

import torch

from archdal.strategies.base import CHUNK_ROWS, mean_row, row_sq_norms

FULL_KMEANS_MAX, FAISS_ITERATIONS = 50, 10  # 10: what faiss trains its own IVF cells with
# Elements of one block of distances (64 MiB of float32): what any chunked loop holds.
BLOCK_ELEMENTS = 1 << 24


def draw_seed(rng: torch.Generator) -> int:
    """A seed for a library that takes its own (scikit-learn's `random_state`)."""
    return int(torch.randint(2**31 - 1, (1,), generator=rng))


def block_rows(columns: int) -> int:
    """Rows per block so that rows × columns stays within `BLOCK_ELEMENTS`."""
    return max(1, min(CHUNK_ROWS, BLOCK_ELEMENTS // max(columns, 1)))


def distinct_rows(x: torch.Tensor) -> int:
    """How many different rows `x` has, by an exact float64 projection of each row on a
    fixed direction (rows that differ and project equally are vanishingly rare, and only
    lower a cluster count)."""
    weights = torch.arange(1, x.shape[1] + 1, dtype=torch.float64, device=x.device).add_(0.5).sqrt()
    keys = [x[r : r + CHUNK_ROWS].double() @ weights for r in range(0, len(x), CHUNK_ROWS)]
    return len(torch.unique(torch.cat(keys)))


def kmeans(x: torch.Tensor, k: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster ids (N, on x's device) and centres (k'×D) of a seeded k-means with
    k' = min(k, distinct rows) clusters; ids are 0..k'−1, every cluster non-empty."""
    from sklearn.cluster import KMeans

    k = max(1, min(k, distinct_rows(x)))
    seed = draw_seed(rng)
    points = x.detach().float().cpu().contiguous().numpy()
    if k <= FULL_KMEANS_MAX:
        estimator = KMeans(n_clusters=k, n_init=1, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence notes on tiny or degenerate inputs
            labels = torch.from_numpy(estimator.fit_predict(points)).long()
        found = estimator.cluster_centers_
    else:
        labels, found = faiss_kmeans(points, k, seed)
    # renumber the non-empty clusters 0..k'−1 (their ids in order)
    used, labels = torch.unique(labels, return_inverse=True)
    centres = torch.from_numpy(found[used.numpy()]).float()
    return labels.to(x.device), centres.to(x.device)


@contextlib.contextmanager
def faiss_threads():
    """faiss's OpenMP threads set to torch's for the block (restored after), so that its
    results depend on the same thread count as torch's."""
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(torch.get_num_threads())
    try:
        yield faiss
    finally:
        faiss.omp_set_num_threads(threads)


def faiss_kmeans(points, k: int, seed: int):
    """(labels, centres) of faiss's Lloyd k-means on float32 rows, on torch's threads."""
    with faiss_threads() as faiss:
        estimator = faiss.Kmeans(points.shape[1], k, niter=FAISS_ITERATIONS, seed=seed,
                                 min_points_per_centroid=1)  # fmt: skip
        estimator.train(points)
        _, nearest = estimator.index.search(points, 1)
    return torch.from_numpy(nearest[:, 0]).long(), estimator.centroids


def nearest_members(x: torch.Tensor, labels: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """For each cluster, the position of its member nearest its centre (ties: the lower
    position), in cluster order; clusters are disjoint, so the positions are distinct."""
    sq = torch.cat([
        row_sq_norms(x[r : r + CHUNK_ROWS] - centres[labels[r : r + CHUNK_ROWS]])
        for r in range(0, len(x), CHUNK_ROWS)
    ])  # fmt: skip
    by_distance = torch.sort(sq, stable=True).indices
    by_cluster = by_distance[torch.sort(labels[by_distance], stable=True).indices]
    first = torch.ones(len(x), dtype=torch.bool, device=x.device)
    first[1:] = labels[by_cluster[1:]] != labels[by_cluster[:-1]]
    return by_cluster[first]


def centre_picks(x: torch.Tensor, k: int, rng: torch.Generator) -> torch.Tensor:
    """Up to k distinct positions: the member nearest each centre of a seeded k-means with k
    clusters (fewer when x has fewer distinct rows)."""
    if k <= 0 or len(x) == 0:
        return torch.empty(0, dtype=torch.long, device=x.device)
    labels, centres = kmeans(x, k, rng)
    return nearest_members(x, labels, centres)


def fill_random(picks: torch.Tensor, size: int, n: int, rng: torch.Generator) -> torch.Tensor:
    """`picks` completed to n distinct positions of range(size) by uniform draws."""
    if len(picks) >= n:
        return picks[:n]
    taken = torch.zeros(size, dtype=torch.bool)
    taken[picks.cpu()] = True
    rest = (~taken).nonzero().squeeze(1)
    extra = rest[torch.randperm(len(rest), generator=rng)[: n - len(picks)]]
    return torch.cat([picks, extra.to(picks.device)])


def pairwise_sq_blocks(points: torch.Tensor, columns: torch.Tensor | None = None):
    """Yield (row slice, squared distances of those rows to every column point) in blocks
    of at most `BLOCK_ELEMENTS`, about the points' mean (as `base.euclidean_pairwise`)."""
    columns = points if columns is None else columns
    origin = mean_row(points, columns) if columns is not points else mean_row(points)
    rows_c, cols_c = points - origin, columns - origin
    rows_sq, cols_sq = row_sq_norms(rows_c), row_sq_norms(cols_c)
    step = block_rows(len(columns))
    for r in range(0, len(points), step):
        block = slice(r, min(len(points), r + step))
        d = rows_sq[block, None] + cols_sq[None, :] - 2 * rows_c[block] @ cols_c.T
        yield block, d.clamp_min_(0)
