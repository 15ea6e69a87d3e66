"""PowerBALD & co., BatchBALD and BAIT against brute-force references on small inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from archdal.pool import PoolView
from archdal.strategies import REGISTRY
from archdal.strategies import classic as S
from archdal.strategies import stochastic as P


def _mc_view(n=200, classes=5, seed=7):
    g = torch.Generator().manual_seed(seed)
    mean_p = torch.randn(n, classes, generator=g).softmax(1)
    return PoolView(
        size=n,
        probs=torch.randn(n, classes, generator=g).softmax(1),
        mc_mean_probs=mean_p,
        mc_mean_entropy=S.entropy_scores(mean_p) * torch.rand(n, generator=g),
    )


@pytest.mark.parametrize("beta", [1.0, 2.5])
def test_powerbald_first_pick_is_distributed_as_bald_to_the_beta(beta):
    view = _mc_view(n=6)
    bald = S.bald_scores(view.mc_mean_probs, view.mc_mean_entropy).double()
    expected = bald**beta / (bald**beta).sum()
    draws = 6000
    rng = torch.Generator().manual_seed(0)
    firsts = [int(P.select_powerbald(view, 3, rng, power_beta=beta)[0]) for _ in range(draws)]
    observed = np.bincount(firsts, minlength=6)
    assert stats.chisquare(observed, expected.numpy() * draws).pvalue > 1e-3
    # and not uniform: the test can fail
    assert stats.chisquare(observed, np.full(6, draws / 6)).pvalue < 1e-6


def test_power_sampling_second_pick_follows_sampling_without_replacement():
    scores = torch.tensor([4.0, 2.0, 1.0, 1.0])
    rng = torch.Generator().manual_seed(1)
    pairs = [tuple(P.power_sample(scores, 2, rng, 1.0).tolist()) for _ in range(8000)]
    p = scores / scores.sum()
    # P(first=0, second=1) = p0 · p1 / (1 − p0)
    want = float(p[0] * p[1] / (1 - p[0]))
    assert pairs.count((0, 1)) / len(pairs) == pytest.approx(want, abs=0.015)


def test_power_sampling_with_zero_scores_and_duplicates_picks_distinct_positions():
    scores = torch.tensor([0.0, 0.5, 0.0, 0.5, 0.0])
    rng = torch.Generator().manual_seed(2)
    for _ in range(50):
        got = P.power_sample(scores, 4, rng, 1.0).tolist()
        assert len(set(got)) == 4 and set(got[:2]) == {1, 3}


def test_power_strategies_are_deterministic_and_large_beta_tends_to_top_b():
    view = _mc_view()
    for name in ("powerbald", "powermargin", "powerentropy"):
        select = REGISTRY[name].select
        a = select(view, 30, torch.Generator().manual_seed(3), power_beta=1.0)
        b = select(view, 30, torch.Generator().manual_seed(3), power_beta=1.0)
        c = select(view, 30, torch.Generator().manual_seed(4), power_beta=1.0)
        assert a.tolist() == b.tolist() and a.tolist() != c.tolist(), name
        assert len(set(a.tolist())) == 30, name
    top = S.select_bald(view, 10, None).tolist()
    sharp = P.select_powerbald(view, 10, torch.Generator().manual_seed(5), power_beta=1e4)
    assert sorted(sharp.tolist()) == sorted(top)
