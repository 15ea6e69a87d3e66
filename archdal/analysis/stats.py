"""How sure the report is: intervals, rankings with their uncertainty, the Focus 1 question as
a test, and how many seeds a comparison needs. Plain functions of `metrics.per_seed` (one row
per setting × strategy × seed) or `metrics.per_round`, so they run without the report.

Seeds are the unit of replication: within a setting, trials of one seed share their initial
split, so every resampling below keeps a seed's strategies (and, across architectures, a
seed's architectures) together. Every function takes its own `seed` for the resampling, so the
same tables give the same intervals.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scikit_posthocs as sp
from scipy import stats

from archdal.analysis.metrics import BASELINE, setting_columns, with_architecture_label

LEVEL = 0.95
RESAMPLES = 2000
PERMUTATIONS = 10_000
POWER = 0.8
INTERVAL_METRICS = ("final_acc", "auc", "gain_pp", "labeling_efficiency", "efficiency_at_targets")
POSTHOC = {"nemenyi": sp.posthoc_nemenyi_friedman, "conover": sp.posthoc_conover_friedman}
BLOCKS = ("seeds", "seeds_rounds")


@dataclass(frozen=True)
class Options:
    """What the statistics are computed at (the report's options)."""

    level: float = LEVEL
    resamples: int = RESAMPLES
    permutations: int = PERMUTATIONS
    posthoc: str = "nemenyi"
    blocks: str = "seeds"
    detect_gap_pp: float = 1.0
    seed: int = 0


DEFAULTS = Options()


def _quantiles(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval along the first axis, NaN where every sample is NaN."""
    tail = (1 - level) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanquantile(samples, tail, axis=0), np.nanquantile(samples, 1 - tail, axis=0)


def _resampled_means(values: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """`values`: groups × seeds (NaN where a group lacks a seed). The mean of every group over
    the same resampled seeds (resamples × groups): seeds drawn with replacement, paired."""
    n_seeds = values.shape[1]
    picks = rng.integers(0, n_seeds, size=(resamples, n_seeds))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values[:, picks], axis=2).T


def bootstrap_interval(
    values: np.ndarray, level: float = LEVEL, resamples: int = RESAMPLES, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of each row's mean over seeds (rows × seeds), the seeds
    resampled together for all rows. NaN for rows with fewer than two seeds."""
    values = np.atleast_2d(np.asarray(values, dtype=float))
    means = _resampled_means(values, resamples, np.random.default_rng(seed))
    low, high = _quantiles(means, level)
    few = (~np.isnan(values)).sum(axis=1) < 2
    low[few], high[few] = np.nan, np.nan
    return low, high


def with_intervals(
    summary: pd.DataFrame, per_seed: pd.DataFrame, options: Options = DEFAULTS
) -> pd.DataFrame:
    """`summary` with `<metric>_ci_low`/`<metric>_ci_high` for every metric of
    `INTERVAL_METRICS`: a bootstrap over the setting's seeds, paired (a resampled seed brings
    all of its strategies), at `options.level`."""
    setting = setting_columns(per_seed)
    keys = [*setting, "strategy"]
    frames = []
    for _, rows in per_seed.groupby(setting, dropna=False):
        block = rows[keys].drop_duplicates().reset_index(drop=True)
        for metric in INTERVAL_METRICS:
            table = rows.pivot_table(index=keys, columns="seed", values=metric, dropna=False)
            table = table.reindex(pd.MultiIndex.from_frame(block))
            low, high = bootstrap_interval(
                table.to_numpy(), options.level, options.resamples, options.seed
            )
            block[f"{metric}_ci_low"], block[f"{metric}_ci_high"] = low, high
        frames.append(block)
    intervals = pd.concat(frames, ignore_index=True)
    return summary.merge(intervals, on=keys, how="left")


def curve_intervals(rounds: pd.DataFrame, options: Options = DEFAULTS) -> pd.DataFrame:
    """Per setting × strategy × round: mean labels and test accuracy over seeds with its
    bootstrap interval (the learning curves' bands)."""
    keys = [*setting_columns(rounds), "strategy", "round"]
    rows = []
    for key, group in rounds.groupby(keys, dropna=False):
        low, high = bootstrap_interval(
            group["test_acc"].to_numpy()[None], options.level, options.resamples, options.seed
        )
        rows.append(
            dict(zip(keys, key, strict=True))
            | {
                "n_labeled": float(group["n_labeled"].mean()),
                "test_acc": float(group["test_acc"].mean()),
                "ci_low": float(low[0]),
                "ci_high": float(high[0]),
                "seeds": int(group["seed"].nunique()),
            }
        )
    return pd.DataFrame(rows)


# --- rankings: Friedman, post-hoc, critical-difference groups --------------------------------


def ranking_blocks(
    per_seed: pd.DataFrame, per_round: pd.DataFrame, blocks: str
) -> tuple[pd.DataFrame, str]:
    """The values the strategies are ranked by, as rows (setting, strategy, block, value):
    per seed the AUC (`seeds`), or per seed and round ≥ 1 the test accuracy
    (`seeds_rounds`)."""
    if blocks not in BLOCKS:
        raise ValueError(f"blocks {blocks!r}; allowed: {', '.join(BLOCKS)}")
    if blocks == "seeds":
        return per_seed.assign(block=per_seed["seed"].astype(str), value=per_seed["auc"]), "AUC"
    acquired = per_round[per_round["round"] >= 1]
    block = acquired["seed"].astype(str) + "/" + acquired["round"].astype(str)
    return acquired.assign(block=block, value=acquired["test_acc"]), "test accuracy per round"


def complete_blocks(rows: pd.DataFrame) -> pd.DataFrame:
    """blocks × strategies of `value`, keeping only blocks where every strategy has one."""
    table = rows.pivot_table(index="block", columns="strategy", values="value")
    return table.dropna()


def not_different_groups(order: list[str], p_values: pd.DataFrame, alpha: float) -> list[list]:
    """The critical-difference diagram's bars: maximal runs of strategies, consecutive in rank
    order, whose every pair the post-hoc test does not separate at `alpha`."""
    groups: list[list[str]] = []
    for start in range(len(order)):
        end = start
        while end + 1 < len(order) and all(
            p_values.loc[order[i], order[end + 1]] >= alpha for i in range(start, end + 1)
        ):
            end += 1
        run = order[start : end + 1]
        if len(run) > 1 and not any(set(run) <= set(g) for g in groups):
            groups.append(run)
    return groups


def friedman_ranking(table: pd.DataFrame, options: Options) -> dict:
    """Friedman's test over the strategies (columns) with blocks as rows, mean ranks (1 =
    best value), and the post-hoc p-values; a strategy is 'not different' from all others
    when Friedman does not reject (the post-hoc test is read only after a rejection). No
    test (NaN) with fewer than 3 strategies or 2 blocks, or when every block is one tie."""
    alpha = 1 - options.level
    strategies = list(table.columns)
    ranks = table.rank(axis=1, ascending=False).mean().sort_values()
    result = {"ranks": ranks, "blocks": len(table), "statistic": np.nan, "p_value": np.nan}
    if len(strategies) < 3 or len(table) < 2 or (table.nunique(axis=1) <= 1).all():
        unknown = pd.DataFrame(np.nan, index=strategies, columns=strategies)
        return result | {"posthoc_p": unknown, "p_values": unknown.fillna(1.0)}
    statistic, p_value = stats.friedmanchisquare(*(table[s].to_numpy() for s in strategies))
    posthoc = POSTHOC[options.posthoc](table.to_numpy())
    posthoc.index = posthoc.columns = strategies
    gated = posthoc if p_value < alpha else pd.DataFrame(1.0, index=strategies, columns=strategies)
    return result | {"statistic": float(statistic), "p_value": float(p_value),
                     "posthoc_p": posthoc, "p_values": gated}  # fmt: skip


def rankings(
    per_seed: pd.DataFrame, per_round: pd.DataFrame, options: Options = DEFAULTS
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per setting (and over all settings, setting columns "all"): each strategy's mean rank,
    Friedman's p, and the strategies the post-hoc test does not separate from it
    (`rankings`); and per pair of strategies the post-hoc p and whether the pair is
    separated, which needs Friedman's rejection first (`pairs`, what the critical-difference
    diagrams draw)."""
    values, measure = ranking_blocks(per_seed, per_round, options.blocks)
    setting = setting_columns(values)
    alpha = 1 - options.level
    results: dict[tuple, dict] = {}
    for key, rows in values.groupby(setting, dropna=False):
        results[key if isinstance(key, tuple) else (key,)] = friedman_ranking(
            complete_blocks(rows), options
        )
    # Over all settings: a block is a (setting, block) pair; strategies all settings ran.
    overall = values.assign(block=values[[*setting, "block"]].astype(str).agg("|".join, axis=1))
    common = set.intersection(*(set(r["strategy"]) for _, r in values.groupby(setting)))
    if len(results) > 1 and len(common) >= 3:
        overall = overall[overall["strategy"].isin(common)]
        results[("all",) * len(setting)] = friedman_ranking(complete_blocks(overall), options)
    rows, pairs = [], []
    for key, result in results.items():
        p_values = result["p_values"]
        for a, b in itertools.combinations(result["ranks"].index, 2):
            pairs.append(
                dict(zip(setting, key, strict=True))
                | {
                    "strategy_a": a,
                    "strategy_b": b,
                    "posthoc": options.posthoc,
                    "posthoc_p": float(result["posthoc_p"].loc[a, b]),
                    "separated": bool(p_values.loc[a, b] < alpha),
                }
            )
        for strategy, rank in result["ranks"].items():
            alike = [s for s in result["ranks"].index if s != strategy]
            alike = [s for s in alike if p_values.loc[strategy, s] >= alpha]
            rows.append(
                dict(zip(setting, key, strict=True))
                | {
                    "strategy": strategy,
                    "mean_rank": float(rank),
                    "blocks": result["blocks"],
                    "measure": measure,
                    "friedman_statistic": result["statistic"],
                    "friedman_p": result["p_value"],
                    "not_different_from": ", ".join(alike),
                    "groups": "; ".join(
                        " ".join(g)
                        for g in not_different_groups(list(result["ranks"].index), p_values, alpha)
                        if strategy in g
                    ),
                }
            )
    return pd.DataFrame(rows), pd.DataFrame(pairs)


def p_value_matrix(pairs: pd.DataFrame, strategies: list[str]) -> pd.DataFrame:
    """The symmetric matrix a critical-difference diagram reads from `pairs` rows of one
    setting: the post-hoc p where the pair is separated, else 1."""
    matrix = pd.DataFrame(1.0, index=strategies, columns=strategies)
    for row in pairs[pairs["separated"]].itertuples():
        matrix.loc[row.strategy_a, row.strategy_b] = matrix.loc[row.strategy_b, row.strategy_a] = (
            row.posthoc_p
        )
    return matrix


# --- the Focus 1 question: does the architecture change the ranking? -------------------------


def _complete_cube(rows: pd.DataFrame, metric: str) -> tuple[np.ndarray, list, list, list]:
    """seeds × archs × strategies of `metric`, over the seeds complete in every (arch,
    strategy) cell."""
    archs = sorted(rows["arch"].unique())
    strategies = sorted(rows["strategy"].unique())
    cube = rows.pivot_table(index="seed", columns=["arch", "strategy"], values=metric)
    cube = cube.reindex(columns=pd.MultiIndex.from_product([archs, strategies])).dropna()
    values = cube.to_numpy().reshape(len(cube), len(archs), len(strategies))
    return values, list(cube.index), archs, strategies


def interaction_statistic(profiles: np.ndarray) -> np.ndarray:
    """Sum over architectures and strategies of the squared deviation of each architecture's
    seed-mean centred profile from the mean profile: 0 when every architecture ranks the
    strategies with the same gaps. `profiles`: (..., seeds, archs, strategies)."""
    means = profiles.mean(axis=-3)
    return ((means - means.mean(axis=-2, keepdims=True)) ** 2).sum(axis=(-2, -1))


def architecture_permutations(
    seeds: int, archs: int, limit: int, rng: np.random.Generator
) -> tuple[np.ndarray, bool]:
    """Permutations of the architecture labels within each seed (permutations × seeds ×
    archs): all of them with the first seed held fixed (relabelling every seed alike leaves
    the statistic unchanged) when they number at most `limit`, else `limit` random ones.
    Returns them and whether the set is exhaustive."""
    orders = list(itertools.permutations(range(archs)))
    count = len(orders) ** (seeds - 1)
    if count <= limit:
        rest = itertools.product(orders, repeat=seeds - 1)
        return np.array([(tuple(range(archs)), *r) for r in rest]).reshape(
            count, seeds, archs
        ), True
    return np.argsort(rng.random((limit, seeds, archs)), axis=2), False


def interaction_test(
    profiles: np.ndarray, options: Options = DEFAULTS, chunk: int = 2048
) -> dict[str, float]:
    """Permutation test of the strategy × architecture interaction on centred profiles (seeds
    × archs × strategies): under no interaction, a seed's architectures are exchangeable, so
    their labels are permuted within each seed, each profile moving whole. p is the share of
    permutations whose statistic reaches the observed one (exact when all are enumerated;
    else with the observed counted once, (1 + hits) / (1 + draws)). `min_p` is the smallest p
    the design can give: above the level, the seeds are too few to reject."""
    n_seeds, n_archs, _ = profiles.shape
    rng = np.random.default_rng(options.seed)
    observed = float(interaction_statistic(profiles))
    perms, exhaustive = architecture_permutations(n_seeds, n_archs, options.permutations, rng)
    hits = 0
    seed_index = np.arange(n_seeds)[None, :, None]
    for start in range(0, len(perms), chunk):
        permuted = profiles[seed_index, perms[start : start + chunk]]
        hits += int((interaction_statistic(permuted) >= observed * (1 - 1e-9)).sum())
    if exhaustive:
        p_value, min_p = hits / len(perms), 1 / len(perms)
    else:
        p_value = (1 + hits) / (1 + len(perms))
        min_p = max(1 / (1 + len(perms)), 1 / math.factorial(n_archs) ** (n_seeds - 1))
    return {
        "statistic": observed,
        "p_value": p_value,
        "min_p": min_p,
        "permutations": len(perms),
        "exact": exhaustive,
    }


def tau_interval(
    profiles: np.ndarray, first: int, second: int, options: Options = DEFAULTS
) -> tuple[float, float, float]:
    """Kendall's tau between two architectures' strategy orders by seed-mean value, and its
    bootstrap interval over seeds (resampled seeds bring both architectures)."""
    rng = np.random.default_rng(options.seed)
    pair = profiles[:, [first, second], :]
    n_seeds = len(pair)
    tau = stats.kendalltau(*pair.mean(axis=0)).statistic
    picks = rng.integers(0, n_seeds, size=(options.resamples, n_seeds))
    means = pair[picks].mean(axis=1)  # resamples × 2 × strategies
    taus = np.array([stats.kendalltau(a, b).statistic for a, b in means])
    low, high = _quantiles(taus[:, None], options.level)
    return float(tau), float(low[0]), float(high[0])


def spread_comparison(raw: np.ndarray, options: Options = DEFAULTS) -> dict:
    """The Focus 2 comparison on raw values (seeds × archs × strategies): the mean over
    architectures of the spread (max − min of seed means) across strategies, the mean over
    strategies of the spread across architectures, and their difference, each with a
    bootstrap interval over seeds."""

    def spreads(cube: np.ndarray) -> np.ndarray:  # (..., seeds, archs, strategies)
        means = cube.mean(axis=-3)
        across_strategies = (means.max(axis=-1) - means.min(axis=-1)).mean(axis=-1)
        across_archs = (means.max(axis=-2) - means.min(axis=-2)).mean(axis=-1)
        return np.stack([across_strategies, across_archs, across_archs - across_strategies], -1)

    rng = np.random.default_rng(options.seed)
    picks = rng.integers(0, len(raw), size=(options.resamples, len(raw)))
    observed = spreads(raw)
    low, high = _quantiles(spreads(raw[picks]), options.level)
    names = ("spread_strategies", "spread_archs", "archs_minus_strategies")
    out = {}
    for i, name in enumerate(names):
        out |= {name: float(observed[i]), f"{name}_ci_low": float(low[i]),
                f"{name}_ci_high": float(high[i])}  # fmt: skip
    return out


def architecture_dependence(
    per_seed: pd.DataFrame, metric: str = "auc", options: Options = DEFAULTS
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per group of settings that differ only in the architecture: the interaction test,
    the spread comparison, and a verdict (`interaction`); Kendall's tau with its interval for
    every pair of architectures (`tau`). Groups with one architecture, one strategy or no seed
    complete across all cells are left out."""
    table = with_architecture_label(per_seed)
    group_columns = [c for c in setting_columns(table) if c != "arch"]
    alpha = 1 - options.level
    interaction_rows, tau_rows = [], []
    for key, rows in table.groupby(group_columns, dropna=False):
        key = dict(zip(group_columns, key if isinstance(key, tuple) else (key,), strict=True))
        if rows["arch"].nunique() < 2 or rows["strategy"].nunique() < 2:
            continue
        raw, seeds, archs, strategies = _complete_cube(rows, metric)
        if len(seeds) == 0:
            continue
        centred = raw - raw.mean(axis=2, keepdims=True)  # each (seed, arch) less its mean
        test = interaction_test(centred, options)
        interaction_rows.append(
            key
            | {
                "archs": ", ".join(archs),
                "strategies": len(strategies),
                "seeds": len(seeds),
                "metric": metric,
            }
            | test
            | spread_comparison(raw, options)
            | {"verdict": interaction_verdict(test, alpha, len(seeds))}
        )
        for i, j in itertools.combinations(range(len(archs)), 2):
            tau, low, high = tau_interval(centred, i, j, options)
            tau_rows.append(
                key
                | {
                    "arch_a": archs[i],
                    "arch_b": archs[j],
                    "strategies": len(strategies),
                    "seeds": len(seeds),
                    "kendall_tau": tau,
                    "tau_ci_low": low,
                    "tau_ci_high": high,
                }
            )
    return pd.DataFrame(interaction_rows), pd.DataFrame(tau_rows)


def interaction_verdict(test: dict[str, float], alpha: float, seeds: int) -> str:
    """The answer in words at level 1 − alpha, or that the design cannot give one."""
    if test["min_p"] > alpha:
        return (
            f"too few seeds to say: with {seeds} seed(s) the smallest p this design can give is "
            f"{test['min_p']:.3g}, above {alpha:g}"
        )
    if test["p_value"] < alpha:
        return (
            f"the architecture changes the strategies' relative performance: the gaps between "
            f"them differ (p = {test['p_value']:.3g} < {alpha:g}; whether their order differs "
            "too, Kendall's tau says)"
        )
    return (
        f"no evidence at {alpha:g} that the architecture changes the strategies' relative "
        f"performance (p = {test['p_value']:.3g})"
    )


# --- how many seeds are enough ---------------------------------------------------------------


def paired_t_power(effect: float, seeds: int, alpha: float) -> float:
    """Power of the two-sided paired t-test with `seeds` pairs at standardised effect
    (mean difference / sd of the differences), from the noncentral t distribution."""
    df = seeds - 1
    critical = stats.t.ppf(1 - alpha / 2, df)
    shift = effect * math.sqrt(seeds)
    return float(stats.nct.sf(critical, df, shift) + stats.nct.cdf(-critical, df, shift))


def seeds_for_power(effect: float, alpha: float, power: float = POWER, most: int = 10_000) -> int:
    """The smallest number of seeds (≥ 2) at which the paired t-test reaches `power`; -1 when
    more than `most` would be needed (or the effect is 0)."""
    if not effect > 0:
        return -1
    low, high = 2, 2
    while paired_t_power(effect, high, alpha) < power:
        if high >= most:
            return -1
        low, high = high, min(most, 2 * high)
    while low < high:  # the power grows with the seeds: bisect for the first that suffices
        middle = (low + high) // 2
        if paired_t_power(effect, middle, alpha) >= power:
            high = middle
        else:
            low = middle + 1
    return high


def seeds_needed(
    per_seed: pd.DataFrame, options: Options = DEFAULTS, metric: str = "auc"
) -> pd.DataFrame:
    """For every pair of strategies within a setting: the observed mean and sd of their
    per-seed AUC difference (percentage points) and the seeds at which a paired t-test at
    the level would detect, with 80% power, the observed gap and a gap of
    `options.detect_gap_pp` at the observed sd (-1: more than 10,000, or no gap)."""
    setting = setting_columns(per_seed)
    alpha = 1 - options.level
    rows = []
    for key, group in per_seed.groupby(setting, dropna=False):
        table = group.pivot_table(index="seed", columns="strategy", values=metric)
        for a, b in itertools.combinations(sorted(table.columns), 2):
            difference = 100 * (table[a] - table[b]).dropna()
            if len(difference) < 2:
                continue
            gap, sd = float(difference.mean()), float(difference.std(ddof=1))
            rows.append(
                dict(zip(setting, key if isinstance(key, tuple) else (key,), strict=True))
                | {
                    "strategy_a": a,
                    "strategy_b": b,
                    "seeds": len(difference),
                    "gap_pp": gap,
                    "sd_pp": sd,
                    "seeds_needed": seeds_for_power(abs(gap) / sd, alpha) if sd > 0 else -1,
                    "detect_gap_pp": options.detect_gap_pp,
                    "seeds_needed_at_gap": seeds_for_power(options.detect_gap_pp / sd, alpha)
                    if sd > 0
                    else -1,
                    "involves_random": BASELINE in (a, b),
                }
            )
    return pd.DataFrame(rows)


def closest_pairs(needed: pd.DataFrame, most: int = 3) -> pd.DataFrame:
    """The `most` pairs of each setting with the smallest absolute observed gap."""
    if needed.empty:
        return needed
    setting = setting_columns(needed)
    ordered = needed.assign(_gap=needed["gap_pp"].abs()).sort_values([*setting, "_gap"])
    return ordered.groupby(setting, dropna=False).head(most).drop(columns="_gap")
