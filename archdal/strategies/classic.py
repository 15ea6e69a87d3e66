"""The paper's seven strategies: random, least confidence, margin, entropy, BALD (MC
dropout), Coreset (k-center greedy on embeddings) and BADGE (k-means++ on gradient
embeddings), each a small function of the round's `PoolView`."""

from __future__ import annotations

import torch

from archdal.pool import EMBEDDINGS, LABELED_EMBEDDINGS, MC, PROBS, PoolView, entropy
from archdal.strategies.base import (
    REGISTRY,
    PairwiseSq,
    Strategy,
    euclidean_pairwise,
    greedy_centres,
    gumbel_noise,
    mean_row,
    min_sq_distance_to,
    row_sq_norms,
    top_n,
)

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
