"""Stochastic batch acquisition (Kirsch et al. 2023, "Stochastic Batch Acquisition: A
Simple Baseline for Deep Active Learning"): instead of the top-B scores, a batch sampled
without replacement with probability ∝ score^β ("power" acquisition).

Top-B of log s + Gumbel(0, 1/β) noise is exactly that sample (the Gumbel-top-k trick),
so a power strategy costs its score plus one sort. Scores must be non-negative: BALD,
entropy, and margin as 1 − (p₁ − p₂), the margin score `classic` already uses.
"""

from __future__ import annotations

import torch

from archdal.pool import MC, PROBS, PoolView
from archdal.strategies.base import REGISTRY, Strategy, gumbel_noise, top_n
from archdal.strategies.classic import bald_scores, entropy_scores, margin_scores


def power_sample(scores: torch.Tensor, n: int, rng: torch.Generator, beta: float) -> torch.Tensor:
    """n distinct positions drawn ∝ score^β without replacement. Zero scores (a point
    the model is certain of) come last, in random order, once the positive ones run out."""
    noise = gumbel_noise(len(scores), rng, scores.device).double()
    keys = scores.clamp_min(0).double().log() + noise / beta
    picks = top_n(keys, n)
    zero = keys[picks] == -torch.inf
    if zero.any():  # fewer positive scores than n: the rest uniformly among the zeros
        zeros = (keys == -torch.inf).nonzero().squeeze(1)
        picks[zero] = zeros[top_n(noise[zeros], int(zero.sum()))]
    return picks


def select_powerbald(
    view: PoolView, n: int, rng: torch.Generator, power_beta: float = 1.0
) -> torch.Tensor:
    return power_sample(bald_scores(view.mc_mean_probs, view.mc_mean_entropy), n, rng, power_beta)


def select_powermargin(
    view: PoolView, n: int, rng: torch.Generator, power_beta: float = 1.0
) -> torch.Tensor:
    return power_sample(margin_scores(view.probs), n, rng, power_beta)


def select_powerentropy(
    view: PoolView, n: int, rng: torch.Generator, power_beta: float = 1.0
) -> torch.Tensor:
    return power_sample(entropy_scores(view.probs), n, rng, power_beta)


for _strategy in (
    Strategy("powerbald", frozenset({MC}), select_powerbald, ("power_beta",)),
    Strategy("powermargin", frozenset({PROBS}), select_powermargin, ("power_beta",)),
    Strategy("powerentropy", frozenset({PROBS}), select_powerentropy, ("power_beta",)),
):
    REGISTRY.register(_strategy)
