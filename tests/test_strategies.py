"""Every strategy against a brute-force reference or a hand computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from archdal.models import build_model
from archdal.pool import (
    EMBEDDINGS,
    LABELED_EMBEDDINGS,
    MC,
    MC_BLOCK,
    PROBS,
    PoolView,
    compute_view,
)
from archdal.strategies import classic as S

PROBS_3 = torch.tensor([[0.5, 0.3, 0.2], [0.9, 0.05, 0.05], [0.34, 0.33, 0.33]])


def test_uncertainty_scores_by_hand():
    assert torch.allclose(S.least_confidence_scores(PROBS_3), torch.tensor([0.5, 0.1, 0.66]))
    assert torch.allclose(S.margin_scores(PROBS_3), torch.tensor([0.8, 0.15, 0.99]))
    h = [-sum(p * math.log(p) for p in row) for row in PROBS_3.tolist()]
    assert torch.allclose(S.entropy_scores(PROBS_3), torch.tensor(h))
    view = PoolView(size=3, probs=PROBS_3)
    rng = torch.Generator()
    assert S.select_least_confidence(view, 2, rng).tolist() == [2, 0]
    assert S.select_margin(view, 2, rng).tolist() == [2, 0]
    assert S.select_entropy(view, 1, rng).tolist() == [2]


def test_bald_by_hand():
    # Two dropout samples that disagree completely vs two that agree.
    disagree = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    agree = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    mean_p = torch.stack([disagree.mean(0), agree.mean(0)])
    mean_h = torch.stack([S.entropy_scores(disagree).mean(), S.entropy_scores(agree).mean()])
    scores = S.bald_scores(mean_p, mean_h)
    assert scores.tolist() == pytest.approx([math.log(2), 0.0], abs=1e-6)
    assert S.select_bald(
        PoolView(2, mc_mean_probs=mean_p, mc_mean_entropy=mean_h), 1, None
    ).tolist() == [0]


def test_ties_go_to_lower_position():
    scores = torch.tensor([0.2, 0.9, 0.9, 0.1, 0.9])
    assert S.top_n(scores, 3).tolist() == [1, 2, 4]


def _naive_kcenter(x, labeled, n):
    d = torch.cdist(x, labeled).min(dim=1).values
    picks = []
    for _ in range(n):
        i = int(d.argmax())
        picks.append(i)
        d = torch.minimum(d, torch.cdist(x, x[i : i + 1]).squeeze(1))
        d[i] = -1
    return picks


@pytest.mark.parametrize("chunk_rows", [7, 64, 4096])
def test_coreset_equals_naive_greedy(chunk_rows):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(300, 16, generator=g, dtype=torch.float64)
    labeled = torch.randn(20, 16, generator=g, dtype=torch.float64)
    mins = S.min_sq_distance_to(x, labeled)
    assert torch.allclose(mins, torch.cdist(x, labeled).min(dim=1).values ** 2)
    got = S.greedy_centres(S.euclidean_pairwise(x), len(x), 40, mins, chunk_rows=chunk_rows)
    assert got.tolist() == _naive_kcenter(x, labeled, 40)


def test_coreset_strategy_on_clustered_float32_embeddings():
    g = torch.Generator().manual_seed(2)
    centres = torch.randn(10, 32, generator=g) * 10
    x = centres.repeat_interleave(50, 0) + torch.randn(500, 32, generator=g)
    labeled = centres[:3] + torch.randn(3, 32, generator=g)
    view = PoolView(size=500, embeddings=x, labeled_embeddings=labeled)
    got = S.select_coreset(view, 7, g)
    # The first 7 picks land in the 7 clusters that have no labelled point.
    assert sorted(set((got // 50).tolist())) == [3, 4, 5, 6, 7, 8, 9]
    assert got.tolist() == _naive_kcenter(x.double(), labeled.double(), 7)


def _offset_clusters(seed, clusters=5, per=40, dim=8, spacing=0.01, norm=401.0):
    """float32 points (as a pool view holds them) on a jittered lattice of `spacing` around
    a few close cluster centres, all shifted by a common vector of length `norm`."""
    g = np.random.default_rng(seed)
    centres = g.normal(size=(clusters, dim)) * 0.1
    shape = (clusters * per, dim)
    steps = g.integers(-2, 3, size=shape) + g.uniform(-0.2, 0.2, size=shape)
    offset = g.normal(size=dim)
    offset *= norm / np.linalg.norm(offset)
    return torch.from_numpy(np.float32(centres.repeat(per, 0) + spacing * steps + offset))


def _float64_kcenter(x, labeled, n):
    """k-center greedy on dense float64 differences; also the smallest margin by which a
    pick beat the runner-up, so a test can show its answer is not decided by rounding."""
    x, labeled = x.double().numpy(), labeled.double().numpy()
    d = ((x[:, None, :] - labeled[None]) ** 2).sum(-1).min(1)
    picks, margin = [], np.inf
    for _ in range(n):
        first, second = np.argsort(-d, kind="stable")[:2]
        picks.append(int(first))
        margin = min(margin, d[first] - d[second])
        d = np.minimum(d, ((x - x[first]) ** 2).sum(1))
        d[first] = -1
    return picks, margin


def test_coreset_is_exact_on_embeddings_far_from_the_origin():
    x = _offset_clusters(32)
    pool, labeled = x[3:], x[:3]
    assert float(pool.norm(dim=1).min()) >= 400
    want, margin = _float64_kcenter(pool, labeled, 30)
    assert margin > 5e-6  # well above float32 rounding of the centred distances (~1e-7)
    view = PoolView(size=len(pool), embeddings=pool, labeled_embeddings=labeled)
    assert S.select_coreset(view, 30, None).tolist() == want


def _materialized_gradients(probs, emb):
    a, h = S.gradient_embedding_factors(probs, emb)
    return (a[:, :, None] * h[:, None, :]).flatten(1)  # N×(C·D): only for tiny references


def test_badge_factorized_distances_equal_materialized():
    g = torch.Generator().manual_seed(3)
    probs = torch.randn(50, 5, generator=g, dtype=torch.float64).softmax(1)
    emb = torch.randn(50, 8, generator=g, dtype=torch.float64)
    full = _materialized_gradients(probs, emb)
    a, h = S.gradient_embedding_factors(probs, emb)
    centres = torch.tensor([3, 17, 42])
    got = S.gradient_pairwise(a, h)(slice(5, 45), centres)
    assert torch.allclose(got, torch.cdist(full[5:45], full[centres]) ** 2, atol=1e-9)
    # gradient of the cross-entropy with respect to the last layer, at the predicted label
    w = torch.zeros(5, 8, dtype=torch.float64, requires_grad=True)
    i = 9
    loss = torch.nn.functional.cross_entropy(
        (emb[i] @ w.T + (probs[i].log() - 0)).unsqueeze(0), probs[i].argmax().unsqueeze(0)
    )
    loss.backward()
    assert torch.allclose(w.grad.flatten(), full[i])


def _naive_badge(probs, emb, n, rng):
    full = _materialized_gradients(probs, emb)
    first = int(full.norm(dim=1).argmax())
    picks = [first]
    d2 = torch.cdist(full, full[first : first + 1]).squeeze(1) ** 2
    for _ in range(n - 1):
        keys = d2.log() + S.gumbel_noise(len(full), rng, full.device).double()
        keys[picks] = -torch.inf
        i = int(keys.argmax())
        picks.append(i)
        d2 = torch.minimum(d2, torch.cdist(full, full[i : i + 1]).squeeze(1) ** 2)
    return picks


@pytest.mark.parametrize("chunk_rows", [5, 4096])
def test_badge_equals_naive_kmeanspp(chunk_rows, monkeypatch):
    g = torch.Generator().manual_seed(4)
    probs = (torch.randn(120, 4, generator=g, dtype=torch.float64) * 2).softmax(1)
    emb = torch.randn(120, 6, generator=g, dtype=torch.float64)
    a, h = S.gradient_embedding_factors(probs, emb)
    norms = (a * a).sum(1) * (h * h).sum(1)
    rng = torch.Generator().manual_seed(9)
    got = S.greedy_centres(
        S.gradient_pairwise(a, h), 120, 25, torch.full_like(norms, torch.inf),
        noise=lambda: S.gumbel_noise(120, rng, a.device).double(),
        first=int(norms.argmax()), chunk_rows=chunk_rows,
    )  # fmt: skip
    want = _naive_badge(probs, emb, 25, torch.Generator().manual_seed(9))
    assert got.tolist() == want


def _float64_badge(probs, emb, n, rng):
    """BADGE's k-means++ on the materialised gradients, with dense float64 differences and
    the strategy's noise; also the smallest margin between the top two keys of a pick."""
    full = _materialized_gradients(probs.double(), emb.double())
    first = int(full.norm(dim=1).argmax())
    picks, margin = [first], math.inf
    d2 = ((full - full[first]) ** 2).sum(1)
    for _ in range(n - 1):
        keys = d2.log() + S.gumbel_noise(len(full), rng, full.device).double()
        keys[picks] = -torch.inf
        top = keys.topk(2).values
        margin = min(margin, float(top[0] - top[1]))
        i = int(keys.argmax())
        picks.append(i)
        d2 = torch.minimum(d2, ((full - full[i]) ** 2).sum(1))
    return picks, margin


def test_badge_is_exact_on_embeddings_far_from_the_origin():
    emb = _offset_clusters(10)
    assert float(emb.norm(dim=1).min()) >= 400
    # a linear head: neighbouring points get nearly the same prediction, so their gradient
    # distance is the small difference of large factorized terms
    head = torch.from_numpy(np.random.default_rng(110).normal(size=(8, 4)) * 0.1).float()
    probs = ((emb - emb.mean(0)) @ head).softmax(1)
    want, margin = _float64_badge(probs, emb, 40, torch.Generator().manual_seed(3))
    assert margin > 1e-4  # no pick is decided by rounding
    view = PoolView(size=len(emb), probs=probs, embeddings=emb)
    assert S.select_badge(view, 40, torch.Generator().manual_seed(3)).tolist() == want


def test_gumbel_max_samples_proportionally():
    weights = torch.tensor([1.0, 2.0, 3.0, 4.0])
    rng = torch.Generator().manual_seed(5)
    draws = 20000
    counts = torch.zeros(4)
    for _ in range(draws // 1000):
        noise = torch.stack([S.gumbel_noise(4, rng, "cpu") for _ in range(1000)])
        counts += torch.bincount((weights.log() + noise).argmax(1), minlength=4)
    freq = counts / draws
    assert torch.allclose(freq, weights / weights.sum(), atol=0.015)


def test_greedy_never_materializes_more_than_a_chunk():
    g = torch.Generator().manual_seed(6)
    x = torch.randn(1000, 8, generator=g)
    shapes = []
    base = S.euclidean_pairwise(x)

    def spy(rows, centres):
        out = base(rows, centres)
        shapes.append(out.shape)
        return out

    S.greedy_centres(spy, 1000, 50, torch.full((1000,), torch.inf), chunk_rows=128)
    assert max(s[0] for s in shapes) <= 128 and max(s[1] for s in shapes) <= 50


def test_duplicate_pools_still_select_distinct_points():
    x = torch.ones(40, 4)
    probs = torch.full((40, 3), 1 / 3)
    view = PoolView(40, probs=probs, embeddings=x, labeled_embeddings=torch.ones(2, 4))
    for name in ("coreset", "badge"):
        got = S.REGISTRY[name].select(view, 10, torch.Generator().manual_seed(0))
        assert len(set(got.tolist())) == 10


def test_every_strategy_selects_n_distinct_and_is_deterministic():
    g = torch.Generator().manual_seed(7)
    view = PoolView(
        size=200,
        probs=torch.randn(200, 5, generator=g).softmax(1),
        embeddings=torch.randn(200, 12, generator=g),
        labeled_embeddings=torch.randn(10, 12, generator=g),
        mc_mean_probs=torch.randn(200, 5, generator=g).softmax(1),
        mc_mean_entropy=torch.rand(200, generator=g),
        representation=torch.randn(200, 6, generator=g),
        labeled_representation=torch.randn(10, 6, generator=g),
        dropout_flips=torch.randint(0, 4, (200,), generator=g),
        num_classes=5,
        mc_joint=torch.randn(200, 4, 5, generator=g).softmax(2),
        labeled_probs=torch.randn(10, 5, generator=g).softmax(1),
    )
    for name, strategy in S.REGISTRY.items():
        a = strategy.select(view, 30, torch.Generator().manual_seed(1))
        b = strategy.select(view, 30, torch.Generator().manual_seed(1))
        assert a.tolist() == b.tolist(), name
        assert len(set(a.tolist())) == 30 and 0 <= int(a.min()) and int(a.max()) < 200, name


def test_mc_dropout_on_the_neck_equals_full_stochastic_passes_with_batchnorm_in_eval():
    torch.manual_seed(0)
    model = build_model("vgg11", 3, 1, width=0.125, dropout=0.5)
    images = torch.randint(0, 256, (12, 1, 28, 28), dtype=torch.uint8)
    model.train()
    model(images)  # move BatchNorm running statistics away from their initial values
    bn_before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    torch.manual_seed(123)
    view = compute_view(model, images, frozenset({MC, PROBS, EMBEDDINGS}), 5, mc_samples=4)
    # Reference: four full forward passes with dropout on and BatchNorm frozen.
    torch.manual_seed(123)
    model.eval()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.train()
    batches_p, batches_h = [], []  # masks are drawn per MC_BLOCK rows, whatever the batch
    for s in range(0, 12, MC_BLOCK):
        ps = torch.stack([model(images[s : s + MC_BLOCK]).softmax(1) for _ in range(4)])
        batches_p.append(ps.mean(0))
        batches_h.append(S.entropy_scores(ps.flatten(0, 1)).view(4, -1).mean(0))
    assert torch.allclose(view.mc_mean_probs, torch.cat(batches_p), atol=1e-6)
    assert torch.allclose(view.mc_mean_entropy, torch.cat(batches_h), atol=1e-6)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in bn_before.items())
    # The samples do differ from each other (dropout is really on) ...
    assert not torch.allclose(view.mc_mean_probs, view.probs)
    # ... and the deterministic probabilities come from eval mode.
    model.eval()
    assert torch.allclose(view.probs, model(images).softmax(1), atol=1e-6)


def test_view_computes_only_what_is_asked():
    model = build_model("resnet18", 3, 1, width=0.125)
    images = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8)
    view = compute_view(model, images, frozenset({EMBEDDINGS, LABELED_EMBEDDINGS}), 4,
                        labeled_images=images[:2])  # fmt: skip
    assert view.probs is None and view.mc_mean_probs is None
    assert view.embeddings.shape == (6, model.embedding_dim)
    assert torch.allclose(view.labeled_embeddings, view.embeddings[:2], atol=1e-5)
