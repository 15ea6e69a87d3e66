"""TypiClust, ProbCover, DropQuery and the initial pools against brute-force references;
determinism, duplicates, bad input, and a tiny `archdal run` of each."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from archdal import RunConfig, make_synthetic
from archdal.cli import main
from archdal.data import make_split
from archdal.errors import ConfigError
from archdal.frozen import FrozenHead
from archdal.pool import DROPOUT_FLIPS, FEATURE_DROPOUT, PoolView, compute_view
from archdal.strategies import REGISTRY, clustering
from archdal.strategies import probcover as pc
from archdal.strategies import typiclust as typiclust_module
from archdal.strategies.base import min_sq_distance_to
from archdal.strategies.dropquery import dropquery, dropquery_candidates
from archdal.strategies.initial import balanced_by_cluster, initial_pool
from archdal.strategies.probcover import probcover, purity_radius
from archdal.strategies.typiclust import NEIGHBOURS, ClusterNeighbours, typiclust

NEW = ("typiclust", "probcover", "dropquery")


def rng(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def dense(x: torch.Tensor, y: torch.Tensor | None = None) -> np.ndarray:
    a = x.double().numpy()
    b = a if y is None else y.double().numpy()
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))


def blobs(sizes, dim=3, spread=0.05, seed=0):
    g = rng(seed)
    centres = torch.eye(len(sizes), dim) * 10 if len(sizes) <= dim else None
    assert centres is not None
    return torch.cat([centres[i] + spread * torch.randn(n, dim, generator=g)
                      for i, n in enumerate(sizes)])  # fmt: skip


# --- TypiClust --------------------------------------------------------------------------


def test_typicality_is_the_inverse_mean_distance_to_the_nearest_neighbours(monkeypatch):
    monkeypatch.setattr(typiclust_module, "SPARE", 2)  # so that removals force refreshes
    x = torch.randn(60, 4, generator=rng(1))
    neighbours = ClusterNeighbours(x)
    left = list(range(60))
    for taken in (None, 5, 17, 18, 40, 2, 3, 4, 6, 7, 8, 9):
        if taken is not None:
            neighbours.take(taken)
            left.remove(taken)
        d = dense(x[left])
        np.fill_diagonal(d, np.inf)
        k = min(NEIGHBOURS, len(left) // 2)
        want = np.full(60, -np.inf)
        want[left] = 1 / np.sort(d, axis=1)[:, :k].mean(axis=1)
        np.testing.assert_allclose(neighbours.typicality().numpy(), want, rtol=1e-4)
    assert ClusterNeighbours(x[:1]).typicality().tolist() == [0.0]


def test_typiclust_visits_unlabelled_clusters_largest_first_taking_the_most_typical():
    # four far-apart blobs of 13, 10, 8 and 6 points; the first blob holds the one label
    points = blobs([13, 10, 8, 6], dim=4)
    labeled, pool = points[:1], points[1:]
    picks = typiclust(pool, labeled, 3, rng()).tolist()  # 1 + 3 clusters: the four blobs
    bounds = {"b": (12, 22), "c": (22, 30), "d": (30, 36)}  # pool positions of each blob
    for pick, (lo, hi) in zip(picks, bounds.values(), strict=True):
        members = points[1 + lo : 1 + hi]
        d = dense(members)
        np.fill_diagonal(d, np.inf)
        score = 1 / np.sort(d, axis=1)[:, : min(NEIGHBOURS, len(members) // 2)].mean(axis=1)
        assert pick == lo + int(np.argmax(score))


def test_typiclust_recomputes_typicality_without_labelled_points_and_earlier_picks(
    monkeypatch,
):
    # one cluster: every pick is the most typical of the unlabelled points left
    monkeypatch.setattr(typiclust_module, "CLUSTER_CAP", 1)
    points = torch.randn(40, 3, generator=rng(9))
    labeled, pool = points[:4], points[4:]
    picks = typiclust(pool, labeled, 4, rng()).tolist()
    left = list(range(36))
    for pick in picks:
        d = dense(pool[left])
        np.fill_diagonal(d, np.inf)
        score = 1 / np.sort(d, axis=1)[:, : min(NEIGHBOURS, len(left) // 2)].mean(axis=1)
        assert pick == left[int(np.argmax(score))]
        left.remove(pick)


# --- ProbCover --------------------------------------------------------------------------


def dense_probcover(pool, labeled, n, delta):
    d = dense(pool)
    adjacent = (d < delta) | np.eye(len(pool), dtype=bool)
    covered = np.zeros(len(pool), dtype=bool)
    if len(labeled):
        covered = (dense(pool, labeled) < delta).any(axis=1)
    picks = []
    for _ in range(n):
        degree = (adjacent & ~covered[None, :]).sum(axis=1)
        if degree.max() == 0:
            break
        pick = int(np.argmax(degree))
        picks.append(pick)
        covered |= adjacent[pick]
    return picks


@pytest.mark.parametrize("block", [7, 4096])
def test_probcover_equals_dense_greedy_coverage(monkeypatch, block):
    monkeypatch.setattr(clustering, "BLOCK_ELEMENTS", block * 53)  # 53 rows: not a multiple
    g = rng(3)
    pool, labeled = torch.randn(53, 3, generator=g), torch.randn(4, 3, generator=g)
    for delta in (0.4, 0.8, 1.5):
        want = dense_probcover(pool, labeled, 12, delta)
        got = probcover(pool, labeled, 12, rng(), 3, delta).tolist()
        assert got[: len(want)] == want
        assert len(set(got)) == 12


def test_probcover_radius_is_the_largest_with_pure_enough_balls():
    x = torch.cat([blobs([20, 20, 20], spread=2.0, seed=4)])
    delta = purity_radius(x, 3, rng(5))
    labels, _ = clustering.kmeans(x, 3, rng(5))  # the same draw: the same pseudo-labels
    d = dense(x)
    other = np.where(labels[:, None] != labels[None, :], d, np.inf).min(axis=1)
    assert delta == pytest.approx(np.sort(other)[::-1][math.ceil(0.95 * 60) - 1], rel=1e-4)

    def purity(r):
        ball = d < r
        return np.mean([(labels.numpy()[ball[i]] == labels.numpy()[i]).all() for i in range(60)])

    assert purity(delta) >= 0.95 and purity(delta * 1.001 + 1e-6) < 0.95


def test_probcover_fills_uniformly_once_everything_is_covered():
    pool = torch.zeros(20, 2)
    pool[10:] += 100  # two tight groups: two picks cover everything
    got = probcover(pool, pool[:0], 6, rng(), 2, 1.0).tolist()
    assert got[:2] == [0, 10] and len(set(got)) == 6


def overlapping_blobs(n=3000, dim=32, classes=10, seed=0):
    """Ten unit Gaussians whose centres are about as far apart as their points."""
    g = rng(seed)
    centres = torch.randn(classes, dim, generator=g)
    return centres[torch.arange(n) % classes] + torch.randn(n, dim, generator=g)


def edge_keys(graph, size):
    sources, targets = graph
    return sources.long() * size + targets.long()


def covered_fraction(pool, labeled, picks, delta):
    centres = torch.cat([labeled, pool[picks]]).double()
    return float((min_sq_distance_to(pool.double(), centres) < delta * delta).double().mean())


@pytest.fixture
def ivf_pool(monkeypatch):
    """3,000 clustered points, 60 of them labelled, on the IVF path (threshold 1,000)."""
    monkeypatch.setattr(pc, "EXACT_MAX", 1_000)
    points = overlapping_blobs()
    return points[60:], points[:60]


def test_probcover_ivf_balls_are_most_of_the_exact_balls_and_nothing_else(ivf_pool):
    pool, labeled = ivf_pool
    delta = purity_radius(torch.cat([labeled, pool]), 10, rng())
    _, *found, covered = pc.ivf_balls(pool, labeled, 10, delta, rng())
    exact = edge_keys(pc.exact_ball_graph(pool.double(), delta), len(pool))
    found = edge_keys(found, len(pool))
    assert len(exact) > 5 * len(pool)  # balls of several points, not only their centres
    assert torch.isin(found, exact).all() and torch.equal(found, torch.unique(found))
    assert torch.isin(torch.arange(len(pool)) * (len(pool) + 1), found).all()  # self edges
    assert len(found) / len(exact) >= 0.97  # measured 0.982
    exact_covered = min_sq_distance_to(pool.double(), labeled.double()) < delta * delta
    assert not (covered & ~exact_covered).any()
    assert covered.sum() >= 0.97 * exact_covered.sum()  # measured 438 of 446


def test_probcover_sampled_radius_is_near_the_exact_one(ivf_pool):
    # the exact δ itself moves by ±3% with the k-means seed here: compare means over seeds
    points = torch.cat(ivf_pool[::-1])
    exact = np.mean([purity_radius(points, 10, rng(s)) for s in range(5)])
    sampled = np.mean([pc.sampled_purity_radius(points, 10, rng(s)) for s in range(5)])
    assert abs(sampled / exact - 1) < 0.03  # measured −1.6%


def test_probcover_ivf_picks_cover_nearly_what_exact_picks_cover(ivf_pool, monkeypatch):
    pool, labeled = ivf_pool
    delta = purity_radius(torch.cat([labeled, pool]), 10, rng())
    approximate = probcover(pool, labeled, 100, rng(1), 10, delta)
    monkeypatch.setattr(pc, "EXACT_MAX", len(pool))
    exact = probcover(pool, labeled, 100, rng(1), 10, delta)
    ratio = covered_fraction(pool, labeled, approximate, delta) / covered_fraction(
        pool, labeled, exact, delta
    )
    assert ratio >= 0.98  # measured 1.000


def test_probcover_ivf_path_is_deterministic_and_keeps_the_edge_cap(ivf_pool, monkeypatch):
    pool, labeled = ivf_pool
    a = probcover(pool, labeled, 50, rng(2), 10)
    assert a.tolist() == probcover(pool, labeled, 50, rng(2), 10).tolist()
    assert len(set(a.tolist())) == 50
    monkeypatch.setattr(pc, "MAX_EDGES", 10_000)
    with pytest.raises(ConfigError, match=r"more than 10,000 pairs.*smaller --probcover-delta"):
        probcover(pool, labeled, 50, rng(2), 10, 100.0)


# --- DropQuery --------------------------------------------------------------------------


def test_dropout_flips_equal_a_direct_computation():
    torch.manual_seed(0)
    x = torch.randn(64, 8)
    head = FrozenHead(8, 3, "linear", 16, 0.0, torch.zeros(8), torch.ones(8))
    torch.manual_seed(11)
    view = compute_view(head, x, frozenset({DROPOUT_FLIPS}), batch_size=1000)
    clean = head.classifier(x).argmax(1)
    torch.manual_seed(11)
    direct = torch.zeros(64, dtype=torch.long)
    for _ in range(3):
        dropped = torch.nn.functional.dropout(x, FEATURE_DROPOUT, training=True)
        direct += head.classifier(dropped).argmax(1) != clean
    assert torch.equal(view.dropout_flips, direct)


def test_dropquery_lowers_its_threshold_until_it_has_25_candidates_per_pick():
    flips = torch.tensor([3] * 10 + [2] * 40 + [1] * 100 + [0] * 50)
    flips = flips[torch.randperm(200, generator=rng(8))]
    for n, least in ((2, 2), (3, 1), (10, 1)):  # 50 points flip twice or more: enough for 2
        got = dropquery_candidates(flips, n)
        assert got.tolist() == (flips >= least).nonzero().squeeze(1).tolist()


def test_dropquery_picks_candidates_nearest_their_centres():
    x = blobs([15, 15, 15], spread=0.3, seed=6)
    flips = torch.zeros(45, dtype=torch.long)
    flips[::2] = 3  # every other point is a candidate
    got = dropquery(x, flips, 3, rng(2))
    candidates = dropquery_candidates(flips, 3)
    labels, centres = clustering.kmeans(x[candidates], 3, rng(2))  # the same draw
    labels, d = labels.numpy(), dense(x[candidates], centres)
    want = [int(candidates[np.flatnonzero(labels == c)[np.argmin(d[labels == c, c])]])
            for c in range(3)]  # fmt: skip
    assert got.tolist() == want


def test_dropquery_takes_every_candidate_when_there_are_too_few():
    x = torch.randn(40, 3, generator=rng(7))
    flips = torch.zeros(40, dtype=torch.long)
    flips[[3, 17]] = 2
    got = dropquery(x, flips, 8, rng()).tolist()
    assert got[:2] == [3, 17] and len(set(got)) == 8
    rest = torch.tensor([i for i in range(40) if i not in (3, 17)])
    assert got[2:] == rest[torch.randperm(38, generator=rng())[:6]].tolist()  # uniform draws


# --- every new strategy -----------------------------------------------------------------


def view_of(points: torch.Tensor, labeled: torch.Tensor, seed: int = 0) -> PoolView:
    flips = torch.randint(0, 4, (len(points),), generator=rng(seed))
    return PoolView(len(points), representation=points, labeled_representation=labeled,
                    dropout_flips=flips, num_classes=3)  # fmt: skip


@pytest.mark.parametrize("name", NEW)
def test_deterministic_and_distinct_on_duplicated_rows(name):
    base = torch.randn(3, 5, generator=rng(8))
    points = base[torch.arange(60) % 3]  # 60 rows, three distinct
    view = view_of(points, base[:1])
    a = REGISTRY[name].select(view, 10, rng(1))
    b = REGISTRY[name].select(view, 10, rng(1))
    assert a.tolist() == b.tolist() and len(set(a.tolist())) == 10
    x = torch.randn(200, 6, generator=rng(9))
    view = view_of(x, torch.randn(5, 6, generator=rng(10)))
    c = REGISTRY[name].select(view, 25, rng(1))
    assert len(set(c.tolist())) == 25 and int(c.max()) < 200
    assert c.tolist() != REGISTRY[name].select(view, 25, rng(2)).tolist() or name == "probcover"


# --- initial pools ----------------------------------------------------------------------


def test_kmeans_shares_differ_by_at_most_one_and_small_clusters_give_way():
    labels = torch.tensor([0] * 30 + [1] * 30 + [2] * 2)
    got = balanced_by_cluster(labels, 20, rng())
    counts = torch.bincount(labels[got], minlength=3).tolist()
    assert len(set(got.tolist())) == 20 and counts[2] == 2 and sorted(counts[:2]) == [9, 9]
    counts = torch.bincount(labels[balanced_by_cluster(labels, 7, rng())], minlength=3)
    assert counts.max() - counts.min() <= 1


def test_many_centres_on_unstructured_embeddings_leave_no_giant_cluster():
    # scikit-learn's MiniBatchKMeans put 2,030 of 11,000 such points in one of 500 clusters
    x = torch.nn.functional.normalize(torch.randn(4000, 256, generator=rng(10)), dim=1)
    labels, centres = clustering.kmeans(x, 200, rng(11))
    sizes = torch.bincount(labels)
    assert len(centres) == len(sizes) == 200 and sizes.min() >= 1
    assert sizes.max() <= 5 * 4000 / 200
    again, _ = clustering.kmeans(x, 200, rng(11))
    assert torch.equal(labels, again)


@pytest.mark.parametrize("strategy", ["kmeans", "typiclust", "probcover"])
def test_initial_pools_are_a_pure_function_of_representation_sizes_and_seed(strategy):
    data = make_synthetic(n_train=300, n_test=10, num_classes=4, size=8)
    x = data.train_x.flatten(1).float() / 255
    args = (data.train_y, 4, 20, 150, 0.1)
    a = make_split(*args, 0, 2, strategy, x)
    b = make_split(*args, 0, 2, strategy, x)
    assert torch.equal(a.initial, b.initial) and torch.equal(a.pool, b.pool)
    assert len(set(a.initial.tolist())) == 20
    parts = set(a.initial.tolist()), set(a.val.tolist()), set(a.pool.tolist())
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert torch.equal(a.initial, initial_pool(strategy, x, 4, 20, 0))
    random = make_split(*args, 0)
    assert len(a.pool) == len(random.pool) and not torch.equal(a.initial, random.initial)
    if strategy != "probcover":  # greedy coverage is deterministic but for its δ's k-means
        assert not torch.equal(make_split(*args, 1, 2, strategy, x).initial, a.initial)


# --- the command line -------------------------------------------------------------------

FROZEN = ["run", "--dataset", "digits", "--arch", "frozen", "--encoder", "pixels",
          "--encoder-dims", "16", "--init-size", "20", "--acq-size", "10", "--rounds", "1",
          "--pool-size", "200", "--max-epochs", "5", "--patience", "2", "--device", "cpu",
          "--quiet"]  # fmt: skip


def _fails(capsys, args, pattern, out):
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(main([*args, "--out", str(out)]))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and pattern in err, err


@pytest.mark.parametrize(
    "override,pattern",
    [
        (["--strategy", "typiclus"], "invalid choice: 'typiclus'"),
        (["--init-strategy", "coreset"], "invalid choice: 'coreset'"),
        (["--strategy", "probcover", "--probcover-delta", "0"], "probcover-delta must be positive"),
        (["--probcover-delta", "-1"], "probcover-delta must be positive, got -1.0"),
        (["--init-strategy", "kmeans", "--acq-representation", "model"],
         "init-strategy 'kmeans' chooses the initial pool before any model exists"),
        (["--strategy", "typiclust", "--acq-representation", "minilm"],
         "arch frozen acquires on its encoder's features"),
        (["--arch", "resnet18", "--encoder", "", "--encoder-dims", "64", "--strategy",
          "dropquery", "--acq-representation", "minilm"],
         "acq-representation 'minilm': encoder 'minilm' embeds texts, but dataset 'digits' "
         "holds images"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, override, pattern):
    _fails(capsys, [*FROZEN, *override], pattern, tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def test_images_default_to_the_cached_pixels_representation(shared_cache):
    from archdal import Runtime
    from archdal.data import load_digits_images
    from archdal.representations import acquisition_representation, image_features

    data = load_digits_images()
    config = RunConfig(dataset="digits", strategy="typiclust", init_size=20)
    got = acquisition_representation(config, Runtime(cache_dir=shared_cache), data)
    pixels = dataclasses.replace(config, arch="frozen", encoder="pixels")
    want = image_features(data, pixels, shared_cache).train_x
    assert torch.equal(got, torch.nn.functional.normalize(want, dim=1))  # unit rows
    model = dataclasses.replace(config, acq_representation="model")
    assert acquisition_representation(model, Runtime(cache_dir=shared_cache), data) is None


@pytest.mark.parametrize(
    "extra", [["--strategy", s] for s in NEW] + [["--init-strategy", "kmeans"]]
)
def test_a_tiny_run_of_each(tmp_path, extra, shared_cache):
    out = tmp_path / "run"
    cache = ["--cache-dir", str(shared_cache)]
    assert main([*FROZEN, *extra, *cache, "--out", str(out)]) == 0
    records = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert [r["n_labeled"] for r in records] == [20, 30] and len(set(records[0]["acquired"])) == 10
    config = RunConfig.from_dict(json.loads((out / "config.json").read_text()))
    assert config.acq_representation == "auto" and config.acquisition_encoder == "pixels"
