"""DropQuery (Gupte, Aklilu, Nirschl & Yeung-Levy, "Revisiting Active Learning in the Era of
Vision Foundation Models", TMLR 2024): uncertain candidates by feature dropout, made diverse
by k-means.

The pool pass (`archdal.pool.dropout_flips`) classifies each point's penultimate embedding
M = 3 times with dropout of rate 0.75 on it; a point whose prediction changes in more than
half of the passes is a candidate. k-means with B centres on the candidates' representation
(seeded), and the candidate nearest each centre, give the batch. With at most B candidates
(a confident model, or a small pool) every candidate is taken, and the rest of the batch is
chosen by the same rule, B' centres on the other points; any shortfall (duplicated points
make fewer distinct clusters) is filled uniformly at random. Memory is the k-means' and
N × D for the distances to the centres, in blocks.
"""

from __future__ import annotations

import torch

from archdal.pool import DROPOUT_FLIPS, FEATURE_DROPOUT_PASSES, REPRESENTATION, PoolView
from archdal.strategies.base import REGISTRY, Strategy
from archdal.strategies.clustering import centre_picks, fill_random


def dropquery_candidates(flips: torch.Tensor) -> torch.Tensor:
    """Positions whose prediction changed in more than half of the dropout passes."""
    return (2 * flips > FEATURE_DROPOUT_PASSES).nonzero().squeeze(1)


def dropquery(x: torch.Tensor, flips: torch.Tensor, n: int, rng: torch.Generator) -> torch.Tensor:
    """n distinct positions of the rows of `x` by DropQuery."""
    candidates = dropquery_candidates(flips)
    if len(candidates) > n:
        return fill_random(candidates[centre_picks(x[candidates], n, rng)], len(x), n, rng)
    others = torch.ones(len(x), dtype=torch.bool, device=x.device)
    others[candidates] = False
    others = others.nonzero().squeeze(1)
    rest = others[centre_picks(x[others], n - len(candidates), rng)]
    return fill_random(torch.cat([candidates, rest]), len(x), n, rng)


def select_dropquery(view: PoolView, n: int, rng: torch.Generator) -> torch.Tensor:
    return dropquery(view.representation, view.dropout_flips, n, rng)


REGISTRY.register(
    Strategy("dropquery", frozenset({REPRESENTATION, DROPOUT_FLIPS}), select_dropquery)
)
