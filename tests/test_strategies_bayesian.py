"""PowerBALD & co., BatchBALD and BAIT against brute-force references on small inputs."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from archdal import Runtime, run
from archdal.frozen import FrozenHead
from archdal.pool import MC, MC_JOINT, PROBS, PoolView, SharedDropout, compute_view
from archdal.strategies import REGISTRY
from archdal.strategies import bait as T
from archdal.strategies import batchbald as B
from archdal.strategies import classic as S
from archdal.strategies import stochastic as P

from .conftest import tiny_config


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


# --- BatchBALD ----------------------------------------------------------------------------


def _sample_probs(n, samples, classes, seed=0, sharp=2.0):
    g = torch.Generator().manual_seed(seed)
    return (sharp * torch.randn(n, samples, classes, generator=g, dtype=torch.float64)).softmax(2)


def _enumerated_joint_entropy(probs):
    """H(y₁…y_n) by summing over all Cⁿ label configurations."""
    n, samples, classes = probs.shape
    total = 0.0
    for config in itertools.product(range(classes), repeat=n):
        per_sample = torch.ones(samples, dtype=torch.float64)
        for i, c in enumerate(config):
            per_sample = per_sample * probs[i, :, c]
        p = float(per_sample.mean())
        total -= p * math.log(p) if p > 0 else 0.0
    return total


@pytest.mark.parametrize("n,classes", [(1, 4), (3, 3), (4, 2), (2, 5)])
def test_batchbald_joint_entropy_equals_enumeration(n, classes):
    probs = _sample_probs(n, 6, classes, seed=n)
    got = B.joint_entropy(probs, configs=10**6, rng=torch.Generator())
    assert got == pytest.approx(_enumerated_joint_entropy(probs), rel=1e-9)


def test_batchbald_sampled_joint_entropy_is_close_to_enumeration():
    probs = _sample_probs(6, 8, 3, seed=11)  # 3⁵ = 243 configurations > M = 100 on step 6
    exact = _enumerated_joint_entropy(probs)
    estimates = [B.joint_entropy(probs, 100, torch.Generator().manual_seed(s)) for s in range(20)]
    assert np.mean(estimates) == pytest.approx(exact, rel=0.01)
    assert np.std(estimates) > 0  # really sampled


def _brute_force_batchbald(probs, n):
    """Greedy on the enumerated joint mutual information of each candidate batch."""
    own = [float(B.mean_sample_entropy(probs[i : i + 1])) for i in range(len(probs))]
    picks = []
    for _ in range(n):
        gains = [
            -math.inf
            if i in picks
            else _enumerated_joint_entropy(probs[[*picks, i]]) - sum(own[j] for j in [*picks, i])
            for i in range(len(probs))
        ]
        picks.append(int(np.argmax(gains)))
    return picks


def test_batchbald_equals_brute_force_greedy_and_its_first_pick_is_balds():
    probs = _sample_probs(12, 5, 3, seed=3)
    got = B.batchbald(probs, 4, torch.Generator(), configs=10**4).tolist()
    assert got == _brute_force_batchbald(probs, 4)
    mean = probs.mean(1)
    view = PoolView(
        12,
        mc_mean_probs=mean,
        mc_mean_entropy=B.mean_sample_entropy(probs),
        mc_joint=probs.float(),
    )
    assert got[0] == int(S.select_bald(view, 1, None)[0])
    assert B.select_batchbald(view, 1, torch.Generator()).tolist() == [got[0]]


def test_batchbald_takes_fewer_copies_of_a_duplicated_point_than_bald():
    probs = _sample_probs(30, 8, 4, seed=5)
    mean_h = B.mean_sample_entropy(probs)
    best = int(S.bald_scores(probs.mean(1), mean_h).argmax())
    pool = torch.cat([probs[best : best + 1].expand(5, -1, -1), probs])  # 5 copies + the rest
    copies = set(range(5)) | {5 + best}
    view = PoolView(
        len(pool), mc_mean_probs=pool.mean(1), mc_mean_entropy=B.mean_sample_entropy(pool)
    )
    assert set(S.select_bald(view, 6, None).tolist()) == copies  # top-B takes every copy
    view = PoolView(len(pool), mc_joint=pool.float())
    for configs in (10**4, 20):  # exact and sampled joint entropies
        got = B.select_batchbald(view, 6, torch.Generator().manual_seed(0), configs).tolist()
        assert len(set(got)) == 6
        assert len(copies & set(got)) <= 2, configs


def test_batchbald_is_deterministic_and_candidates_restrict_to_top_bald():
    probs = _sample_probs(60, 6, 4, seed=8).float()
    view = PoolView(60, mc_joint=probs)
    runs = [B.select_batchbald(view, 8, torch.Generator().manual_seed(1), 10) for _ in range(2)]
    assert runs[0].tolist() == runs[1].tolist()
    top = set(S.top_n(S.bald_scores(probs.mean(1), B.mean_sample_entropy(probs)), 12).tolist())
    filtered = B.select_batchbald(view, 8, torch.Generator(), 10, batchbald_candidates=12)
    assert set(filtered.tolist()) <= top and len(set(filtered.tolist())) == 8


def test_shared_dropout_masks_do_not_depend_on_the_batch():
    torch.manual_seed(0)
    dim = 6
    model = FrozenHead(dim, 3, "mlp", 16, 0.5, torch.zeros(dim), torch.ones(dim))
    rows = torch.randn(10, dim)
    needs = frozenset({MC_JOINT, MC, PROBS})
    torch.manual_seed(4)
    small = compute_view(model, rows, needs, batch_size=3, mc_samples=4)
    torch.manual_seed(4)
    whole = compute_view(model, rows, needs, batch_size=10, mc_samples=4)
    assert small.mc_joint.shape == (10, 4, 3)
    torch.testing.assert_close(small.mc_joint, whole.mc_joint)
    # one model per sample: row 7 (in the third batch of 3) as every row of a pass
    torch.manual_seed(4)
    alone = compute_view(model, rows[7:8].expand(10, -1), needs, 3, 4)
    torch.testing.assert_close(alone.mc_joint, whole.mc_joint[7:8].expand(10, -1, -1))
    assert not torch.allclose(whole.mc_joint[:, 0], whole.mc_joint[:, 1])  # samples differ
    torch.testing.assert_close(whole.mc_mean_probs, whole.mc_joint.mean(1))
    torch.testing.assert_close(small.probs, whole.probs)  # dropout is off for probs


def test_shared_dropout_grows_masks_keeping_their_prefix():
    shared = SharedDropout()
    layer = torch.nn.Dropout(0.5)
    torch.manual_seed(0)
    short = shared._mask(layer, torch.Size([3, 4]))
    longer = shared._mask(layer, torch.Size([5, 4]))
    assert torch.equal(longer[:3], short) and longer.shape == (5, 4)
    assert set(longer.unique().tolist()) <= {0.0, 2.0}


# --- BAIT ------------------------------------------------------------------------------


def _dense_fisher(p, h):
    """I(x) = Σ_y p_y g_y g_yᵀ with g_y = (e_y − p) ⊗ h, the log-likelihood's gradient."""
    out = torch.zeros(p.numel() * h.numel(), p.numel() * h.numel(), dtype=torch.float64)
    for y in range(len(p)):
        g = torch.kron(torch.eye(len(p), dtype=torch.float64)[y] - p, h)
        out += p[y] * torch.outer(g, g)
    return out


def _dense_bait(probs, h, lprobs, lh, n, lam, top=None):
    """Forward 2n / backward n greedy on tr(M_S⁻¹ F) with dense Fishers and inverses."""
    if top is not None:  # keep the top classes' terms only

        def fisher(p, x):
            out = 0
            for y in p.topk(top).indices.tolist():
                g = torch.kron(torch.eye(len(p), dtype=torch.float64)[y] - p, x)
                out = out + p[y] * torch.outer(g, g)
            return out
    else:
        fisher = _dense_fisher
    each = [fisher(p, x) for p, x in zip(probs, h, strict=True)]
    labeled_each = [fisher(p, x) for p, x in zip(lprobs, lh, strict=True)]
    pool_f = sum(each + labeled_each) / (len(h) + len(lh))  # over labelled and pool points
    w = 1 / (len(lh) + n)
    base = lam * torch.eye(len(pool_f), dtype=torch.float64)
    base = base + w * sum(labeled_each, torch.zeros_like(base))

    def objective(chosen):  # a pick weighs n labelled points, as in the authors' code
        m = base + n * w * sum((each[i] for i in chosen), torch.zeros_like(base))
        return float(torch.trace(torch.linalg.solve(m, pool_f)))

    chosen = []
    for _ in range(2 * n):
        rest = [i for i in range(len(h)) if i not in chosen]
        chosen.append(min(rest, key=lambda i: objective([*chosen, i])))
    for _ in range(n):
        drop = min(chosen, key=lambda i: objective([j for j in chosen if j != i]))
        chosen.remove(drop)
    return chosen, objective(chosen)


def _bait_inputs(n=24, classes=3, dim=4, labeled=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    probs = (1.5 * torch.randn(n + labeled, classes, generator=g, dtype=torch.float64)).softmax(1)
    h = torch.randn(n + labeled, dim, generator=g, dtype=torch.float64)
    return probs[:n], h[:n], probs[n:], h[n:]


@pytest.mark.parametrize("lam,labeled", [(1.0, 5), (0.1, 0)])
def test_bait_equals_dense_greedy_trace_minimisation(lam, labeled):
    probs, h, lprobs, lh = _bait_inputs(labeled=labeled, seed=int(lam * 10))
    want, _ = _dense_bait(probs, h, lprobs, lh, 4, lam)
    got = T.bait(probs, h, lprobs, lh, 4, lam, classes=10)
    assert sorted(got.tolist()) == sorted(want)


def test_bait_top_classes_equals_dense_top_class_fisher():
    probs, h, lprobs, lh = _bait_inputs(classes=5, dim=2, seed=3)
    want, _ = _dense_bait(probs, h, lprobs, lh, 3, 1.0, top=2)
    got = T.bait(probs, h, lprobs, lh, 3, 1.0, classes=2)
    assert sorted(got.tolist()) == sorted(want)


def test_bait_factors_and_blocks_equal_the_dense_fisher():
    probs, h, _, _ = _bait_inputs(n=7, classes=3, dim=4, seed=4)
    dense = sum(_dense_fisher(p, x) for p, x in zip(probs, h, strict=True))
    factors = T.fisher_factors(probs, 3)
    torch.testing.assert_close(T.summed_fisher(factors, h), dense)
    g = torch.randn(12, 12, dtype=torch.float64)
    g = g @ g.T
    v = [torch.kron(a, x[:, None]) for a, x in zip(factors, h, strict=True)]  # P×k each
    want = torch.stack([vx.T @ g @ vx for vx in v])
    torch.testing.assert_close(T.quadratic_forms(g, factors, h), want)


def test_bait_view_projects_only_beyond_the_cap_and_avoids_duplicates():
    probs, h, lprobs, lh = _bait_inputs(n=20, classes=3, dim=6, seed=5)
    probs = torch.cat([probs[:1].expand(6, -1), probs])  # six copies of point 0
    h = torch.cat([h[:1].expand(6, -1), h])
    view = PoolView(len(h), probs=probs.float(), embeddings=h.float(),
                    labeled_embeddings=lh.float(), labeled_probs=lprobs.float())  # fmt: skip
    exact = T.select_bait(view, 4, None, bait_dim=18).tolist()  # 3 × 6 = 18: no projection
    assert sorted(exact) == sorted(T.bait(probs, h, lprobs, lh, 4).tolist())
    assert len(set(exact)) == 4
    projected = T.select_bait(view, 4, None, bait_dim=9).tolist()  # d = 3
    basis = T.principal_projection([h, lh], 3)
    want = T.bait(probs, h @ basis, lprobs, lh @ basis, 4).tolist()
    assert sorted(projected) == sorted(want) and len(set(projected)) == 4
    assert T.select_bait(view, 4, None).tolist() == T.select_bait(view, 4, None).tolist()


# --- end to end -------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["powerbald", "batchbald", "bait"])
def test_run_end_to_end(strategy, tmp_path, tiny_data):
    config = tiny_config(strategy=strategy, rounds=1, max_epochs=1, patience=1, pool_size=100)
    records = run(config, tmp_path / strategy, Runtime(device="cpu"), progress=None, data=tiny_data)
    acquired = [i for r in records for i in r["acquired"]]
    assert [r["n_labeled"] for r in records] == [20, 30]
    assert len(acquired) == len(set(acquired)) == 10
