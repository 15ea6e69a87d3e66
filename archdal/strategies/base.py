"""What every strategy shares: the `Strategy` record, the registry, and the exact lazy
greedy engine behind Coreset and BADGE (and any other farthest-first or D²-sampling rule).

`greedy_centres` never holds an N×N matrix. Each point keeps its squared distance to the
nearest chosen centre, stale values being upper bounds; only the chunk holding the current
best candidate is brought up to date, as one matmul against the centres chosen since its
last update. Farthest-first takes the largest distance; k-means++ D² sampling becomes an
argmax through the Gumbel-max trick (argmax of log d² + Gumbel noise), so the same lazy
argmax serves both and stays exact. Distances are taken about the points' mean, so
embeddings far from the origin do not lose them to float32 cancellation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from archdal import registry
from archdal.pool import PoolView

CHUNK_ROWS = 4096


@dataclass(frozen=True)
class Strategy:
    """A registered strategy: what it needs from the pool pass, its selection, and the
    `RunConfig` fields (`options`) its selection takes as keyword arguments."""

    name: str
    needs: frozenset[str]
    select: Callable[..., torch.Tensor]
    options: tuple[str, ...] = ()

    def pick(self, view: PoolView, n: int, rng: torch.Generator, config: Any) -> torch.Tensor:
        """`select` with this strategy's options read from `config` (a `RunConfig`)."""
        return self.select(view, n, rng, **{name: getattr(config, name) for name in self.options})


REGISTRY = registry.STRATEGIES


def get_strategy(name: str) -> Strategy:
    return REGISTRY.get(name)


def row_sq_norms(x: torch.Tensor) -> torch.Tensor:
    """‖x_i‖² per row, without the N×D temporary that `(x * x).sum(1)` allocates."""
    return torch.linalg.vector_norm(x, dim=1).square()


def top_n(scores: torch.Tensor, n: int) -> torch.Tensor:
    """Positions of the n highest scores; ties keep the lower position (stable order)."""
    return torch.sort(scores, descending=True, stable=True).indices[:n]


# --- the shared greedy engine -----------------------------------------------------------

PairwiseSq = Callable[[slice, torch.Tensor], torch.Tensor]


def greedy_centres(
    pairwise_sq: PairwiseSq,
    n_points: int,
    n_select: int,
    initial_min_sq: torch.Tensor,
    noise: Callable[[], torch.Tensor] | None = None,
    first: int | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> torch.Tensor:
    """Pick `n_select` centres one at a time by the largest key.

    `pairwise_sq(rows, centres)` gives squared distances (len(rows)×len(centres)) of a
    contiguous block of points to some points; `initial_min_sq` is each point's exact
    squared distance to centres fixed beforehand (inf if none). Without `noise` the key is
    that distance (farthest-first); with it, the key is log d² plus the noise drawn for
    the pick, which with Gumbel noise samples a point with probability ∝ d². `first`, if
    given, is taken as the first centre. Stale keys are upper bounds of true keys, so the
    top key is final once its chunk is current: the result equals a full recomputation.
    """
    device = initial_min_sq.device
    min_sq = initial_min_sq.clone()
    n_chunks = (n_points + chunk_rows - 1) // chunk_rows
    synced = [0] * n_chunks  # centres already folded into each chunk's distances
    chosen = torch.empty(n_select, dtype=torch.long, device=device)
    is_chosen = torch.zeros(n_points, dtype=torch.bool, device=device)

    def key_of(block: slice, pick_noise: torch.Tensor | None) -> torch.Tensor:
        if pick_noise is None:
            return min_sq[block].masked_fill(is_chosen[block], -torch.inf)
        return (min_sq[block].log() + pick_noise[block]).masked_fill(is_chosen[block], -torch.inf)

    for t in range(n_select):
        if t == 0 and first is not None:
            pick = first
        else:
            pick_noise = noise() if noise is not None else None
            keys = key_of(slice(0, n_points), pick_noise)
            while True:
                pick = int(keys.argmax())
                c = pick // chunk_rows
                if synced[c] == t:
                    break
                rows = slice(c * chunk_rows, min(n_points, (c + 1) * chunk_rows))
                fresh = pairwise_sq(rows, chosen[synced[c] : t]).min(dim=1).values
                min_sq[rows] = torch.minimum(min_sq[rows], fresh.clamp_min(0))
                synced[c] = t
                keys[rows] = key_of(rows, pick_noise)
            if pick_noise is not None and keys[pick] == -torch.inf:  # all d² zero: duplicates
                pick = int(pick_noise.masked_fill(is_chosen, -torch.inf).argmax())
        chosen[t] = pick
        is_chosen[pick] = True
        min_sq[pick] = 0.0
    return chosen


def gumbel_noise(n: int, rng: torch.Generator, device: torch.device) -> torch.Tensor:
    """Standard Gumbel samples drawn from the CPU generator (device-independent stream)."""
    u = torch.rand(n, generator=rng, dtype=torch.float64).clamp_(1e-300, 1 - 1e-16)
    return (-(-u.log()).log()).to(device=device, dtype=torch.float32)


def mean_row(*blocks: torch.Tensor) -> torch.Tensor:
    """The mean of all rows of the blocks: the origin distances are taken about."""
    return sum(b.sum(dim=0) for b in blocks) / sum(len(b) for b in blocks)


def euclidean_pairwise(points: torch.Tensor) -> PairwiseSq:
    """‖x_i − x_j‖² = ‖x_i‖² + ‖x_j‖² − 2 x_i·x_j, for a block of rows against a few points,
    on points less their mean: the terms then cancel at the scale of the points' spread,
    not of their norm, so a large common offset (after ReLU, say) keeps float32 accurate.
    The centred copy costs N×D memory once; centring block by block at every update
    instead took about 1.4× the time."""
    points = points - mean_row(points)
    sq_norms = row_sq_norms(points)

    def pairwise(rows: slice, centres: torch.Tensor) -> torch.Tensor:
        cross = points[rows] @ points[centres].T
        return sq_norms[rows, None] + sq_norms[None, centres] - 2 * cross

    return pairwise


def min_sq_distance_to(points: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """Each point's squared distance to its nearest row of `others`, in bounded blocks,
    about the joint mean of both (as in `euclidean_pairwise`)."""
    origin = mean_row(points, others)
    others = others - origin
    best = torch.full((len(points),), torch.inf, device=points.device, dtype=points.dtype)
    other_sq = row_sq_norms(others)
    for r in range(0, len(points), CHUNK_ROWS):
        block = points[r : r + CHUNK_ROWS] - origin
        block_sq = row_sq_norms(block)
        for o in range(0, len(others), CHUNK_ROWS):
            d = block_sq[:, None] + other_sq[None, o : o + CHUNK_ROWS]
            d -= 2 * block @ others[o : o + CHUNK_ROWS].T
            best[r : r + CHUNK_ROWS] = torch.minimum(best[r : r + CHUNK_ROWS], d.min(dim=1).values)
    return best.clamp_min(0)
