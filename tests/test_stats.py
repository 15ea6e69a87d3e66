"""The report's statistics on synthetic experiments whose answer is known."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from archdal.analysis import stats as S

METRICS = ("final_acc", "auc", "gain_pp", "labeling_efficiency", "efficiency_at_targets")


def per_seed_table(effects: dict[str, list[float]], seeds: int, noise: float, seed: int = 0):
    """A `metrics.per_seed`-shaped table: arch → per-strategy true AUCs, plus a seed effect
    shared by every cell of the seed and independent noise per trial."""
    rng = np.random.default_rng(seed)
    strategies = [f"s{i}" for i in range(len(next(iter(effects.values()))))]
    strategies[0] = "random"
    shift = rng.normal(0, 0.01, seeds)
    rows = []
    for arch, means in effects.items():
        for strategy, mean in zip(strategies, means, strict=True):
            for s in range(seeds):
                value = mean + shift[s] + rng.normal(0, noise)
                rows.append(
                    {"dataset": "toy", "arch": arch, "strategy": strategy, "seed": s}
                    | dict.fromkeys(METRICS, value)
                )
    return pd.DataFrame(rows)


FLIPPED = {"a": [0.80, 0.82, 0.84, 0.86], "b": [0.86, 0.84, 0.82, 0.80]}
ALIKE = {"a": [0.80, 0.82, 0.84, 0.86], "b": [0.70, 0.72, 0.74, 0.76]}


def test_a_flipped_ranking_is_found_and_taus_interval_excludes_one():
    table = per_seed_table(FLIPPED, seeds=10, noise=0.005)
    interaction, taus = S.architecture_dependence(table)
    row = interaction.iloc[0]
    assert row["p_value"] < 0.01 and row["exact"] and row["permutations"] == 2**9
    assert row["verdict"].startswith("the architecture changes")
    tau = taus.iloc[0]
    assert tau["kendall_tau"] == pytest.approx(-1)
    assert tau["tau_ci_high"] < 1


def test_the_same_ranking_rejects_at_about_the_level():
    """Over many synthetic experiments without interaction (the architectures differ by a
    constant), the test rejects about as often as its level allows."""
    rng = np.random.default_rng(1)
    options = S.Options(level=0.9)
    true = np.array([[0.80, 0.82, 0.84, 0.86], [0.70, 0.72, 0.74, 0.76]])
    rejections = 0
    repetitions = 300
    for _ in range(repetitions):
        raw = true[None] + rng.normal(0, 0.01, (10, 1, 1)) + rng.normal(0, 0.02, (10, 2, 4))
        centred = raw - raw.mean(axis=2, keepdims=True)
        rejections += S.interaction_test(centred, options)["p_value"] < 0.1
    assert 0.05 < rejections / repetitions < 0.16


def test_alike_rankings_give_no_evidence():
    interaction, taus = S.architecture_dependence(per_seed_table(ALIKE, seeds=10, noise=0.005))
    assert interaction.iloc[0]["verdict"].startswith("no evidence")
    assert taus.iloc[0]["kendall_tau"] == pytest.approx(1)


def test_two_seeds_are_too_few_to_say():
    interaction, _ = S.architecture_dependence(per_seed_table(FLIPPED, seeds=2, noise=0.005))
    row = interaction.iloc[0]
    assert row["min_p"] == 0.5
    assert row["verdict"].startswith("too few seeds")


def test_exact_permutation_p_against_loops_over_every_relabelling():
    rng = np.random.default_rng(2)
    raw = rng.normal(size=(3, 3, 4))
    raw[:, 0, 0] += 1.0
    centred = raw - raw.mean(axis=2, keepdims=True)

    def statistic(cube):
        means = cube.mean(axis=0)
        return sum(
            (means[a, s] - means[:, s].mean()) ** 2
            for a in range(cube.shape[1])
            for s in range(cube.shape[2])
        )

    observed = statistic(centred)
    orders = list(itertools.permutations(range(3)))
    hits = total = 0
    for per_seed in itertools.product(orders, repeat=3):  # every seed relabelled, 216 ways
        permuted = np.stack([centred[r, list(order)] for r, order in enumerate(per_seed)])
        hits += statistic(permuted) >= observed - 1e-12
        total += 1
    result = S.interaction_test(centred)
    assert result["exact"] and result["permutations"] == 36
    assert result["p_value"] == pytest.approx(hits / total)


def test_a_uniformly_better_strategy_stands_apart_in_the_rankings():
    effects = {"a": [0.80, 0.80, 0.80, 0.80, 0.90]}
    table = per_seed_table(effects, seeds=20, noise=0.01)
    ranked, pairs = S.rankings(table, table)
    best = ranked[ranked["strategy"] == "s4"].iloc[0]
    assert best["mean_rank"] == 1 and best["friedman_p"] < 0.05
    assert best["not_different_from"] == ""
    others = ranked[ranked["strategy"] != "s4"]
    assert (others["not_different_from"].str.count(",") == 2).all()  # the other three alike
    with_best = (pairs["strategy_a"] == "s4") | (pairs["strategy_b"] == "s4")
    assert pairs.loc[with_best & (pairs["dataset"] == "toy"), "separated"].all()
    assert not pairs.loc[~with_best, "separated"].any()
    # Friedman's statistic by its formula, from the ranks within each seed.
    values = table.pivot_table(index="seed", columns="strategy", values="auc").to_numpy()
    ranks = stats.rankdata(-values, axis=1)
    n, k = ranks.shape
    chi2 = 12 / (n * k * (k + 1)) * (ranks.sum(axis=0) ** 2).sum() - 3 * n * (k + 1)
    assert best["friedman_statistic"] == pytest.approx(chi2)


def test_without_a_friedman_rejection_no_strategy_is_set_apart():
    table = per_seed_table({"a": [0.8] * 4}, seeds=6, noise=0.01, seed=3)
    ranked, pairs = S.rankings(table, table)
    assert (ranked["friedman_p"] >= 0.05).all()
    assert (ranked["not_different_from"].str.count(",") == 2).all()
    assert not pairs["separated"].any() and pairs["posthoc_p"].notna().all()


def test_critical_difference_groups_are_runs_in_rank_order():
    order = ["a", "b", "c", "d"]
    p = pd.DataFrame(1.0, index=order, columns=order)
    p.loc["a", "c"] = p.loc["c", "a"] = 0.01
    p.loc["a", "d"] = p.loc["d", "a"] = p.loc["b", "d"] = p.loc["d", "b"] = 0.01
    assert S.not_different_groups(order, p, 0.05) == [["a", "b"], ["b", "c"], ["c", "d"]]


def test_bootstrap_covers_the_true_mean_at_about_its_level():
    rng = np.random.default_rng(4)
    covered = 0
    repetitions = 400
    for r in range(repetitions):
        sample = rng.normal(0.7, 0.05, 10)
        low, high = S.bootstrap_interval(sample[None], 0.9, 1000, seed=r)
        covered += low[0] <= 0.7 <= high[0]
    assert 0.82 < covered / repetitions < 0.96  # percentile intervals run a little short at n=10


def test_intervals_are_paired_by_seed():
    """Two strategies whose per-seed values differ by a constant get intervals shifted by
    exactly that constant: the same seeds were drawn for both."""
    table = per_seed_table({"a": [0.8, 0.8]}, seeds=8, noise=0.02)
    table.loc[table["strategy"] == "s1", list(METRICS)] = (
        table.loc[table["strategy"] == "random", list(METRICS)].to_numpy() + 0.05
    )
    summary = table.groupby(["dataset", "arch", "strategy"], as_index=False)["auc"].mean()
    with_ci = S.with_intervals(summary, table).set_index("strategy")
    for side in ("auc_ci_low", "auc_ci_high"):
        assert with_ci.loc["s1", side] == pytest.approx(with_ci.loc["random", side] + 0.05)
    assert with_ci.loc["random", "auc_ci_low"] < with_ci.loc["random", "auc"]


def test_seeds_for_power_matches_simulated_t_tests():
    rng = np.random.default_rng(5)
    effect, alpha = 0.9, 0.05
    n = S.seeds_for_power(effect, alpha)
    assert S.paired_t_power(effect, n, alpha) >= 0.8 > S.paired_t_power(effect, n - 1, alpha)

    def simulated(seeds):
        differences = rng.normal(effect, 1.0, (4000, seeds))
        return (stats.ttest_1samp(differences, 0, axis=1).pvalue < alpha).mean()

    assert simulated(n) == pytest.approx(S.paired_t_power(effect, n, alpha), abs=0.025)
    assert S.seeds_for_power(0.0, alpha) == -1


def test_seeds_needed_reads_the_observed_gap_and_spread():
    table = per_seed_table({"a": [0.80, 0.81, 0.85]}, seeds=10, noise=0.01)
    needed = S.seeds_needed(table)
    pair = needed[(needed["strategy_a"] == "random") & (needed["strategy_b"] == "s1")].iloc[0]
    values = table.pivot_table(index="seed", columns="strategy", values="auc")
    difference = 100 * (values["random"] - values["s1"])
    assert pair["gap_pp"] == pytest.approx(difference.mean())
    assert pair["sd_pp"] == pytest.approx(difference.std(ddof=1))
    expected = S.seeds_for_power(abs(difference.mean()) / difference.std(ddof=1), 0.05)
    assert pair["seeds_needed"] == expected
    closest = S.closest_pairs(needed, most=1).iloc[0]
    assert {closest["strategy_a"], closest["strategy_b"]} == {"random", "s1"}


def test_spread_comparison_by_hand():
    raw = np.array([[[0.1, 0.3], [0.6, 0.7]], [[0.1, 0.3], [0.6, 0.7]]])  # seeds × archs × strat
    out = S.spread_comparison(raw)
    assert out["spread_strategies"] == pytest.approx((0.2 + 0.1) / 2)
    assert out["spread_archs"] == pytest.approx((0.5 + 0.4) / 2)
    assert out["archs_minus_strategies"] == pytest.approx(0.3)
    assert out["archs_minus_strategies_ci_low"] == pytest.approx(0.3)  # identical seeds
