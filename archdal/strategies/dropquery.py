"""DropQuery (Gupte, Aklilu, Nirschl & Yeung-Levy, "Revisiting Active Learning in the Era of
Vision Foundation Models", TMLR 2024): uncertain candidates by feature dropout, made diverse
by k-means.

The pool pass (`archdal.pool.dropout_flips`) classifies each point's penultimate embedding
M = 3 times with dropout of rate 0.75 on it; a point whose prediction changes in more than
half of the passes is a candidate, and while that leaves fewer than `CANDIDATE_FACTOR` (25)
× B candidates the threshold is lowered one pass at a time, down to any change (the authors'
code does the same). k-means with B centres on the candidates' representation (L2-normalised
rows, seeded), and the candidate nearest each centre, give the batch. With at most B
candidates (a confident model, or a small pool) every candidate is taken and the rest of
the batch is drawn uniformly at random from the other points, as in the authors' code; so
is any shortfall when duplicated points make fewer distinct clusters. Memory is the
k-means' and N × D for the distances to the centres, in blocks.
"""

from __future__ import annotations

import torch

from archdal.pool import DROPOUT_FLIPS, FEATURE_DROPOUT_PASSES, REPRESENTATION, PoolView
from archdal.strategies.base import REGISTRY, Strategy
from archdal.strategies.clustering import centre_picks, fill_random

CANDIDATE_FACTOR = 25


def dropquery_candidates(flips: torch.Tensor, n: int) -> torch.Tensor:
    """Positions whose prediction changed in more than half of the dropout passes, or in
    fewer while that leaves under `CANDIDATE_FACTOR`·n of them (never in none)."""
    threshold = FEATURE_DROPOUT_PASSES // 2
    while threshold > 0 and int((flips > threshold).sum()) < CANDIDATE_FACTOR * n:
        threshold -= 1
    return (flips > threshold).nonzero().squeeze(1)


def dropquery(x: torch.Tensor, flips: torch.Tensor, n: int, rng: torch.Generator) -> torch.Tensor:
    """n distinct positions of the rows of `x` by DropQuery."""
    candidates = dropquery_candidates(flips, n)
    if len(candidates) > n:
        candidates = candidates[centre_picks(x[candidates], n, rng)]
    return fill_random(candidates, len(x), n, rng)


def select_dropquery(view: PoolView, n: int, rng: torch.Generator) -> torch.Tensor:
    return dropquery(view.representation, view.dropout_flips, n, rng)


REGISTRY.register(
    Strategy("dropquery", frozenset({REPRESENTATION, DROPOUT_FLIPS}), select_dropquery)
)
