"""The paper's metrics over the tidy round table of `archdal.analysis.results.load_rounds`.

A *setting* is everything that defines one learning-curve comparison except the strategy
and the seed: dataset, architecture, pretraining, initial and acquisition sizes,
augmentation (and, for Focus 2 trials, the architecture-optimization mode). Within a
setting, trials of the same seed share their initial split, so each strategy's curve is
compared with random's curve *of the same seed* (paired), and only then averaged over
seeds. Round 0 precedes any acquisition (every strategy shares it), so the per-round
averages below run over rounds 1 and later.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from archdal.errors import DataError

BASELINE = "random"
SETTING_CANDIDATES = (
    "dataset", "arch", "arch_mode", "pretrain", "init_size", "acq_size", "augment",
)  # fmt: skip
CURVE = ("seed", "round")


class MissingBaselineError(DataError):
    """A comparison with random was asked for where no random trial exists."""


def setting_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in SETTING_CANDIDATES if c in table.columns]


def with_architecture_label(table: pd.DataFrame) -> pd.DataFrame:
    """`arch` naming the architecture as trained: a Focus 2 optimization mode is part of it
    ("depth_dropout-spo"), so comparisons across architectures span modes too."""
    if "arch_mode" not in table.columns:
        return table
    mode = table["arch_mode"]
    label = table["arch"].where(mode == "fixed", table["arch"] + "-" + mode)
    return table.assign(arch=label).drop(columns="arch_mode")


def common_rounds(table: pd.DataFrame) -> pd.DataFrame:
    """Each setting cut to the rounds every one of its trials has reported, so curves
    compared within a setting cover the same labels (an experiment still running, or a
    trial that failed, shortens its whole setting rather than skewing a comparison)."""
    setting = setting_columns(table)
    last = table.groupby([*setting, "strategy", "seed"], dropna=False)["round"].transform("max")
    reached = last.groupby([table[c] for c in setting], dropna=False).transform("min")
    return table[table["round"] <= reached].reset_index(drop=True)


def labels_to_reach(labels: np.ndarray, accuracy: np.ndarray, target: float) -> float:
    """Labels at which the piecewise-linear curve through (labels, accuracy) first reaches
    `target`; NaN when the curve never gets there or starts above it (outside its range,
    the number random would need is not measured, and is not guessed)."""
    if target < accuracy[0]:
        return float("nan")
    for i in range(len(labels) - 1):
        a0, a1 = accuracy[i], accuracy[i + 1]
        if a0 >= target:
            return float(labels[i])
        if a1 >= target:
            return float(labels[i] + (target - a0) / (a1 - a0) * (labels[i + 1] - labels[i]))
    return float(labels[-1]) if accuracy[-1] >= target else float("nan")


TARGET_FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def efficiency_at_targets(
    labels: np.ndarray,
    accuracy: np.ndarray,
    random_labels: np.ndarray,
    random_accuracy: np.ndarray,
) -> float:
    """Mean over accuracy targets of (labels random needs) / (labels the strategy needs),
    both read off their curves with `labels_to_reach`. The targets sit at
    `TARGET_FRACTIONS` of the way from the higher starting accuracy to the lower best
    accuracy, so both curves reach every target and nothing is extrapolated: a strategy
    beating random's best still counts, up to random's best. NaN when that range is empty."""
    low = max(accuracy[0], random_accuracy[0])
    high = min(accuracy.max(), random_accuracy.max())
    if not high > low:
        return float("nan")
    targets = np.minimum(low + np.array(TARGET_FRACTIONS) * (high - low), high)
    ratios = [
        labels_to_reach(random_labels, random_accuracy, t) / labels_to_reach(labels, accuracy, t)
        for t in targets
    ]
    return float(np.mean(ratios))


def normalized_auc(labels: np.ndarray, accuracy: np.ndarray) -> float:
    """Area under the learning curve (trapezoids) over the range of labels, divided by that
    range: the curve's mean accuracy, in the units of accuracy."""
    if len(labels) == 1:
        return float(accuracy[0])
    return float(np.trapezoid(accuracy, labels) / (labels[-1] - labels[0]))


def paired_with_random(table: pd.DataFrame) -> pd.DataFrame:
    """The table with random's `n_labeled`/`test_acc` of the same setting, seed and round
    beside each row (columns `random_n_labeled`, `random_acc`).

    Raises `MissingBaselineError` naming every setting and seed that has no random trial.
    """
    setting = setting_columns(table)
    keys = [*setting, *CURVE]
    random = table.loc[table["strategy"] == BASELINE, [*keys, "n_labeled", "test_acc"]]
    random = random.rename(columns={"n_labeled": "random_n_labeled", "test_acc": "random_acc"})
    merged = table.merge(random, on=keys, how="left")
    missing = merged.loc[merged["random_acc"].isna(), [*setting, "seed"]].drop_duplicates()
    if len(missing):
        listed = "; ".join(
            ", ".join(f"{k}={v}" for k, v in row.items()) for row in missing.to_dict("records")
        )
        raise MissingBaselineError(
            f"no random trial to compare with for {listed} (for those rounds); gain and "
            "labeling efficiency are measured against random acquisition of the same seed"
        )
    return merged


def per_round(table: pd.DataFrame) -> pd.DataFrame:
    """Per trial and round: accuracy gain over random (percentage points) and labeling
    efficiency (Beck et al. 2021: the labels random acquisition needs to reach the
    strategy's test accuracy, read off random's piecewise-linear learning curve of the
    same setting and seed, over the labels the strategy used; > 1 means fewer labels than
    random; NaN where the accuracy lies outside random's curve; 1 for random itself).

    A round whose accuracy is above all random reached is `efficiency_censored`: random
    would need more than its whole budget, so the efficiency exceeds
    `efficiency_lower_bound` = random's last labels / the strategy's labels."""
    paired = paired_with_random(table)
    paired["gain_pp"] = 100 * (paired["test_acc"] - paired["random_acc"])
    efficiency = np.full(len(paired), np.nan)
    censored = np.zeros(len(paired), dtype=bool)
    lower_bound = np.full(len(paired), np.nan)
    setting = setting_columns(table)
    for _, rows in paired.groupby([*setting, "seed"], dropna=False):
        random = rows[rows["strategy"] == BASELINE].sort_values("round")
        n, acc = random["n_labeled"].to_numpy(float), random["test_acc"].to_numpy(float)
        for index, row in rows.iterrows():
            efficiency[index] = labels_to_reach(n, acc, row["test_acc"]) / row["n_labeled"]
            if row["strategy"] != BASELINE and row["test_acc"] > acc.max():
                censored[index] = True
                lower_bound[index] = n[-1] / row["n_labeled"]
    paired["labeling_efficiency"] = efficiency
    # random is the reference line itself; where its own curve dips, "first reaches"
    # would otherwise rate it below 1 against itself.
    paired.loc[paired["strategy"] == BASELINE, "labeling_efficiency"] = 1.0
    paired["efficiency_censored"] = censored
    paired["efficiency_lower_bound"] = lower_bound
    return paired


def per_seed(rounds: pd.DataFrame) -> pd.DataFrame:
    """One row per trial (setting, strategy, seed): normalized AUC, final accuracy, and the
    means over rounds ≥ 1 of gain and labeling efficiency (NaN-skipping, with the number
    of rounds outside random's range in `efficiency_undefined`). That mean leaves out the
    rounds where the strategy beat random's best, so beside it: the share of rounds ≥ 1
    that are censored so, and `efficiency_at_targets`, defined whatever the curves do."""
    keys = [*setting_columns(rounds), "strategy", "seed"]
    rows = []
    for key, trial in rounds.sort_values("round").groupby(keys, dropna=False):
        acquired = trial[trial["round"] >= 1]
        efficiency = acquired["labeling_efficiency"]
        rows.append(
            dict(zip(keys, key, strict=True))
            | {
                "rounds": int(trial["round"].max()),
                "final_labels": int(trial["n_labeled"].iloc[-1]),
                "final_acc": float(trial["test_acc"].iloc[-1]),
                "auc": normalized_auc(
                    trial["n_labeled"].to_numpy(float), trial["test_acc"].to_numpy(float)
                ),
                "gain_pp": float(acquired["gain_pp"].mean()) if len(acquired) else np.nan,
                "labeling_efficiency": float(efficiency.mean())
                if efficiency.notna().any()
                else np.nan,
                "efficiency_undefined": int(efficiency.isna().sum()),
                "efficiency_censored_share": float(acquired["efficiency_censored"].mean())
                if len(acquired)
                else np.nan,
                "efficiency_at_targets": efficiency_at_targets(
                    trial["n_labeled"].to_numpy(float),
                    trial["test_acc"].to_numpy(float),
                    trial["random_n_labeled"].to_numpy(float),
                    trial["random_acc"].to_numpy(float),
                ),
            }
        )
    return pd.DataFrame(rows)


def paired_p_value(strategy: np.ndarray, random: np.ndarray) -> float:
    """Two-sided paired t-test across seeds; NaN with fewer than two seeds or when every
    difference is the same (no variance to test against)."""
    differences = strategy - random
    if len(differences) < 2 or np.allclose(differences, differences[0]):
        return float("nan")
    return float(stats.ttest_rel(strategy, random).pvalue)


def summarize(seeds: pd.DataFrame) -> pd.DataFrame:
    """One row per setting × strategy: mean and std over seeds of each per-seed metric,
    the paired p-value of the AUC against random, and the strategy's rank within its
    setting by mean AUC (1 = best, random included)."""
    setting = setting_columns(seeds)
    keys = [*setting, "strategy"]
    metrics = ["final_acc", "auc", "gain_pp", "labeling_efficiency",
               "efficiency_censored_share", "efficiency_at_targets"]  # fmt: skip
    grouped = seeds.groupby(keys, dropna=False)
    summary = grouped[metrics].agg(["mean", "std"])
    summary.columns = [f"{m}_{s}" for m, s in summary.columns]
    summary["seeds"] = grouped["seed"].nunique()
    summary["rounds"] = grouped["rounds"].min()
    summary["final_labels"] = grouped["final_labels"].min()
    summary = summary.reset_index()
    random = seeds.loc[seeds["strategy"] == BASELINE, [*setting, "seed", "auc"]]
    paired = seeds.merge(random.rename(columns={"auc": "random_auc"}), on=[*setting, "seed"])
    p_values = [
        dict(zip(keys, key, strict=True))
        | {"p_auc_vs_random": paired_p_value(g["auc"].to_numpy(), g["random_auc"].to_numpy())}
        for key, g in paired[paired["strategy"] != BASELINE].groupby(keys, dropna=False)
    ]
    if p_values:
        summary = summary.merge(pd.DataFrame(p_values), on=keys, how="left")
    else:
        summary["p_auc_vs_random"] = np.nan
    summary["rank"] = (
        summary.groupby(setting, dropna=False)["auc_mean"].rank(ascending=False, method="min")
    ).astype(int)
    return summary


def rank_agreement(summary: pd.DataFrame) -> pd.DataFrame:
    """The Focus 1 question as numbers: for every pair of architectures under the same
    dataset and protocol, Kendall's tau between their strategy rankings (by mean AUC) over
    the strategies both ran. tau = 1: the same order; 0: unrelated; −1: reversed."""
    summary = with_architecture_label(summary)
    setting = [c for c in setting_columns(summary) if c != "arch"]
    rows = []
    for key, group in summary.groupby(setting, dropna=False):
        scores = group.pivot_table(index="strategy", columns="arch", values="auc_mean")
        archs = list(scores.columns)
        for i, first in enumerate(archs):
            for second in archs[i + 1 :]:
                both = scores[[first, second]].dropna()
                if len(both) < 2:
                    continue
                tau, p = stats.kendalltau(both[first], both[second])
                rows.append(
                    dict(zip(setting, key, strict=True))
                    | {
                        "arch_a": first,
                        "arch_b": second,
                        "kendall_tau": float(tau),
                        "p_value": float(p),
                        "strategies": len(both),
                    }
                )
    return pd.DataFrame(rows)


ENCODER_OUTPUT = ("representation_digest", "representation_made_on")


def encoder_outputs(table: pd.DataFrame) -> pd.DataFrame:
    """Per setting of frozen-encoder trials, each encoder output its trials read (the
    representation cache entry's value digest) with what made it and how many trials read
    it; `outputs` above 1 means the setting's strategies were not all compared on the same
    embeddings (encoders trained apart: no shared cache, another CPU instruction set)."""
    if not set(ENCODER_OUTPUT) <= set(table.columns):
        return pd.DataFrame()
    rows = table.dropna(subset=list(ENCODER_OUTPUT))
    setting = setting_columns(rows)
    frame = (
        rows.groupby([*setting, *ENCODER_OUTPUT])
        .agg(trials=("trial", "nunique"), seeds=("seed", "nunique"))
        .reset_index()
    )
    frame["outputs"] = frame.groupby(setting)["representation_digest"].transform("nunique")
    return frame


def spread(table: pd.DataFrame, across: str) -> pd.DataFrame:
    """The paper's Focus 2 measure: per round, max − min of the seed-mean test accuracy as
    `across` ("strategy" or "arch") varies and everything else is held fixed, with the
    best and worst of them."""
    if across not in ("strategy", "arch"):
        raise ValueError(f"spread across {across!r}; allowed: strategy, arch")
    if across == "arch":
        table = with_architecture_label(table)
    setting = setting_columns(table)
    held = [c for c in [*setting, "strategy"] if c != across]
    means = (
        table.groupby([*held, across, "round"], dropna=False)
        .agg(n_labeled=("n_labeled", "mean"), test_acc=("test_acc", "mean"))
        .reset_index()
    )
    rows = []
    for key, group in means.groupby([*held, "round"], dropna=False):
        if group[across].nunique() < 2:
            continue
        best, worst = group.loc[group["test_acc"].idxmax()], group.loc[group["test_acc"].idxmin()]
        rows.append(
            dict(zip([*held, "round"], key, strict=True))
            | {
                "n_labeled": float(group["n_labeled"].mean()),
                "min_acc": float(worst["test_acc"]),
                "max_acc": float(best["test_acc"]),
                "spread_pp": 100 * float(best["test_acc"] - worst["test_acc"]),
                f"best_{across}": best[across],
                f"worst_{across}": worst[across],
                "compared": int(group[across].nunique()),
            }
        )
    return pd.DataFrame(rows)
