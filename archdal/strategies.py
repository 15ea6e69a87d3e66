"""Acquisition strategies: small functions of a `PoolView`, chosen by name from a registry.

Each `select(view, n, rng)` returns `n` distinct row positions of the pool. Scores are
"higher is more informative" and ties go to the lower position, so a selection is a
pure function of the view and the generator.

To add a strategy:
1. write `select_name(view, n, rng)`, reading only the `PoolView` fields it needs and
   drawing any randomness from `rng`;
2. register it: `REGISTRY.register(Strategy("name", frozenset({PROBS}), select_name))`,
   naming those fields (`archdal.pool.NEEDS`) so the round's one pool pass computes them;
   here, or in your own module named in `$ARCHDAL_PLUGINS`;
3. `archdal run --strategy name` and a sweep's `--strategies name` now accept it.

Coreset and BADGE share one exact greedy engine (`greedy_centres`) that never holds an
N×N matrix nor BADGE's N×(classes·dim) gradient embedding. Each point keeps its squared
distance to the nearest chosen centre, stale values being upper bounds; only the chunk
holding the current best candidate is brought up to date, as one matmul against the
centres chosen since its last update. Coreset takes the farthest point (k-center
greedy); BADGE's k-means++ D² sampling becomes an argmax through the Gumbel-max trick
(argmax of log d² + Gumbel noise), so the same lazy argmax serves both and stays exact.
Distances are taken about the points' mean (for BADGE, h's mean, with float64 terms for
the offset), so embeddings far from the origin do not lose them to float32 cancellation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from archdal import registry
from archdal.pool import EMBEDDINGS, LABELED_EMBEDDINGS, MC, PROBS, PoolView, entropy

CHUNK_ROWS = 4096

# --- scores (higher = more informative) -------------------------------------------------


def least_confidence_scores(probs: torch.Tensor) -> torch.Tensor:
    """1 − p(ŷ|x): how little the model believes its own prediction."""
    return 1 - probs.max(dim=1).values


def margin_scores(probs: torch.Tensor) -> torch.Tensor:
    """1 − (p₁ − p₂): a small gap between the two most likely classes."""
    top2 = probs.topk(2, dim=1).values
    return 1 - (top2[:, 0] - top2[:, 1])


def entropy_scores(probs: torch.Tensor) -> torch.Tensor:
    """H(y|x) of the predictive distribution."""
    return entropy(probs)


def bald_scores(mc_mean_probs: torch.Tensor, mc_mean_entropy: torch.Tensor) -> torch.Tensor:
    """Mutual information between label and weights: H(E_w p) − E_w H(p) (Houlsby 2011)."""
    return entropy(mc_mean_probs) - mc_mean_entropy


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


def gradient_embedding_factors(
    probs: torch.Tensor, embeddings: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """BADGE's last-layer gradient g = a ⊗ h with a = p − onehot(ŷ), h the embedding,
    kept as its two factors (never the N×(classes·dim) outer product)."""
    a = probs.clone()
    a[torch.arange(len(a), device=a.device), probs.argmax(dim=1)] -= 1
    return a, embeddings


def gradient_pairwise(a: torch.Tensor, h: torch.Tensor) -> PairwiseSq:
    """‖g_i − g_j‖² for g = a ⊗ h, from the factors.

    ‖a_i‖²‖h_i‖² + ‖a_j‖²‖h_j‖² − 2(a_i·a_j)(h_i·h_j) cancels at the scale of ‖h‖², so
    h is split as h' + c (c its mean): with u = a_i⊗h'_i − a_j⊗h'_j and v = (a_i − a_j)⊗c,
    ‖u + v‖² = ‖u‖² + 2u·v + ‖v‖² where
      ‖u‖² = ‖a_i‖²‖h'_i‖² + ‖a_j‖²‖h'_j‖² − 2(a_i·a_j)(h'_i·h'_j),
      u·v = (‖a_i‖² − a_i·a_j)(h'_i·c) − (a_i·a_j − ‖a_j‖²)(h'_j·c),
      ‖v‖² = (‖a_i‖² + ‖a_j‖² − 2a_i·a_j)‖c‖².
    The a terms (N×classes, cheap) are float64 and their differences are taken before
    they multiply the large h'·c and ‖c‖², so ‖a_i − a_j‖² survives; the float32 matmul of
    the centred copy h' cancels only at the scale of h's spread.
    """
    a = a.double()
    origin = mean_row(h)
    centred = h - origin
    sq_a = row_sq_norms(a)
    own = sq_a * row_sq_norms(centred).double()  # ‖a_i‖²‖h'_i‖²
    offset_sq = 2 * (centred @ origin).double() + row_sq_norms(origin[None].double())

    def pairwise(rows: slice, centres: torch.Tensor) -> torch.Tensor:
        aa = a[rows] @ a[centres].T
        # 2u·v + ‖v‖² = (‖a_i‖² − a_i·a_j)(2h'_i·c + ‖c‖²) − (a_i·a_j − ‖a_j‖²)(2h'_j·c + ‖c‖²)
        out = (sq_a[rows, None] - aa).mul_(offset_sq[rows, None])
        out.sub_((aa - sq_a[None, centres]).mul_(offset_sq[None, centres]))
        out.sub_(aa.mul_(centred[rows] @ centred[centres].T), alpha=2)
        return out.add_(own[rows, None]).add_(own[None, centres])

    return pairwise


# --- strategies -------------------------------------------------------------------------


def select_random(view: PoolView, n: int, rng: torch.Generator) -> torch.Tensor:
    return torch.randperm(view.size, generator=rng)[:n]


def select_least_confidence(view: PoolView, n: int, rng: torch.Generator) -> torch.Tensor:
    return top_n(least_confidence_scores(view.probs), n)


def select_margin(view: PoolView, n: int, rng: torch.Generator) -> torch.Tensor:
    return top_n(margin_scores(view.probs), n)


def select_entropy(view: PoolView, n: int, rng: torch.Generator) -> torch.Tensor:
    return top_n(entropy_scores(view.probs), n)


def select_bald(view: PoolView, n: int, rng: torch.Generator) -> torch.Tensor:
    return top_n(bald_scores(view.mc_mean_probs, view.mc_mean_entropy), n)


def select_coreset(view: PoolView, n: int, rng: torch.Generator) -> torch.Tensor:
    """k-center greedy (Sener & Savarese 2018) from the labelled set, on embeddings."""
    x = view.embeddings
    return greedy_centres(
        euclidean_pairwise(x), len(x), n, min_sq_distance_to(x, view.labeled_embeddings)
    )


def select_badge(view: PoolView, n: int, rng: torch.Generator) -> torch.Tensor:
    """k-means++ seeding on gradient embeddings (Ash et al. 2020), first centre the
    largest gradient norm, as in the reference implementation."""
    a, h = gradient_embedding_factors(view.probs.double(), view.embeddings)
    norms = row_sq_norms(a) * row_sq_norms(h).double()
    return greedy_centres(
        gradient_pairwise(a, h),
        len(a),
        n,
        torch.full_like(norms, torch.inf),
        noise=lambda: gumbel_noise(len(a), rng, a.device),
        first=int(norms.argmax()),
    )


@dataclass(frozen=True)
class Strategy:
    """A registered strategy: what it needs from the pool pass, and its selection."""

    name: str
    needs: frozenset[str]
    select: Callable[[PoolView, int, torch.Generator], torch.Tensor]


REGISTRY = registry.STRATEGIES
for _strategy in (
    Strategy("random", frozenset(), select_random),
    Strategy("least_confidence", frozenset({PROBS}), select_least_confidence),
    Strategy("margin", frozenset({PROBS}), select_margin),
    Strategy("entropy", frozenset({PROBS}), select_entropy),
    Strategy("bald", frozenset({MC}), select_bald),
    Strategy("coreset", frozenset({EMBEDDINGS, LABELED_EMBEDDINGS}), select_coreset),
    Strategy("badge", frozenset({PROBS, EMBEDDINGS}), select_badge),
):
    REGISTRY.register(_strategy)


def get_strategy(name: str) -> Strategy:
    return REGISTRY.get(name)
