"""The analysis metrics on small hand-computed tables."""

import math

import numpy as np
import pandas as pd
import pytest

from archdal.analysis import metrics
from archdal.analysis.metrics import MissingBaselineError

SETTING = {"dataset": "mnist", "pretrain": "none", "init_size": 100, "acq_size": 100,
           "augment": False}  # fmt: skip


def curves(spec: dict[tuple[str, str, int], list[float]]) -> pd.DataFrame:
    """Rows for {(arch, strategy, seed): accuracies at 100, 200, ... labels}."""
    rows = []
    for (arch, strategy, seed), accs in spec.items():
        for r, acc in enumerate(accs):
            rows.append(SETTING | {"arch": arch, "strategy": strategy, "seed": seed, "round": r,
                                   "n_labeled": 100 * (r + 1), "test_acc": acc})  # fmt: skip
    return pd.DataFrame(rows)


def test_labels_to_reach_interpolates_the_first_crossing():
    n = np.array([100.0, 200.0, 300.0, 400.0])
    acc = np.array([0.5, 0.7, 0.6, 0.9])
    assert metrics.labels_to_reach(n, acc, 0.6) == pytest.approx(150.0)
    assert metrics.labels_to_reach(n, acc, 0.7) == pytest.approx(200.0)
    assert metrics.labels_to_reach(n, acc, 0.8) == pytest.approx(300 + 100 * 2 / 3)  # after the dip
    assert metrics.labels_to_reach(n, acc, 0.5) == pytest.approx(100.0)
    assert math.isnan(metrics.labels_to_reach(n, acc, 0.95))  # never reached
    assert math.isnan(metrics.labels_to_reach(n, acc, 0.4))  # below random's start


def test_normalized_auc_is_the_mean_accuracy_over_the_label_range():
    n = np.array([100.0, 200.0, 400.0])
    acc = np.array([0.5, 0.7, 0.9])
    # trapezoids: 100·0.6 + 200·0.8 = 220 over a range of 300
    assert metrics.normalized_auc(n, acc) == pytest.approx(220 / 300)
    assert metrics.normalized_auc(n[:1], acc[:1]) == 0.5


def test_gain_and_labeling_efficiency_per_round():
    table = curves({("resnet18", "random", 0): [0.5, 0.6, 0.7],
                    ("resnet18", "margin", 0): [0.5, 0.65, 0.8]})  # fmt: skip
    rounds = metrics.per_round(table).set_index(["strategy", "round"])
    assert rounds.loc[("margin", 1), "gain_pp"] == pytest.approx(5.0)
    assert rounds.loc[("margin", 2), "gain_pp"] == pytest.approx(10.0)
    # random reaches 0.65 at 250 labels; margin used 200
    assert rounds.loc[("margin", 1), "labeling_efficiency"] == pytest.approx(250 / 200)
    # 0.8 lies beyond random's curve: undefined, not extrapolated
    assert math.isnan(rounds.loc[("margin", 2), "labeling_efficiency"])
    assert rounds.loc[("margin", 0), "labeling_efficiency"] == pytest.approx(1.0)
    assert (rounds.xs("random", level="strategy")["labeling_efficiency"] == 1.0).all()

    seeds = metrics.per_seed(metrics.per_round(table)).set_index("strategy")
    assert seeds.loc["margin", "gain_pp"] == pytest.approx(7.5)  # rounds 1 and 2
    assert seeds.loc["margin", "labeling_efficiency"] == pytest.approx(1.25)
    assert seeds.loc["margin", "efficiency_undefined"] == 1
    assert seeds.loc["margin", "auc"] == pytest.approx((0.575 + 0.725) / 2)


def test_rounds_beyond_randoms_best_are_censored_lower_bounds():
    # the example: the strategy's last round beats everything random reached
    table = curves({("resnet18", "random", 0): [0.5, 0.6, 0.7],
                    ("resnet18", "margin", 0): [0.5, 0.68, 0.75]})  # fmt: skip
    rounds = metrics.per_round(table).set_index(["strategy", "round"])
    assert rounds.loc[("margin", 1), "labeling_efficiency"] == pytest.approx(280 / 200)
    assert not rounds.loc[("margin", 1), "efficiency_censored"]
    assert math.isnan(rounds.loc[("margin", 1), "efficiency_lower_bound"])
    # random would need more than its whole budget (300 labels); margin used 300
    assert rounds.loc[("margin", 2), "efficiency_censored"]
    assert rounds.loc[("margin", 2), "efficiency_lower_bound"] == pytest.approx(300 / 300)
    assert not rounds.xs("random", level="strategy")["efficiency_censored"].any()

    seeds = metrics.per_seed(metrics.per_round(table)).set_index("strategy")
    assert seeds.loc["margin", "labeling_efficiency"] == pytest.approx(1.40)  # defined rounds
    assert seeds.loc["margin", "efficiency_censored_share"] == pytest.approx(0.5)
    # targets at 1/4 … 4/4 of [0.5, 0.7]: random needs 150, 200, 250, 300 labels; margin
    # reaches 0.55, 0.6, 0.65 on its first segment (0.18 per 100) and 0.7 on its second
    margin_needs = [100 + 100 * 0.05 / 0.18, 100 + 100 * 0.10 / 0.18,
                    100 + 100 * 0.15 / 0.18, 200 + 100 * 0.02 / 0.07]  # fmt: skip
    want = np.mean(np.array([150, 200, 250, 300]) / np.array(margin_needs))
    assert seeds.loc["margin", "efficiency_at_targets"] == pytest.approx(want)
    assert want == pytest.approx(1.2839, abs=1e-4)  # below 1.40: early targets are near 1
    assert seeds.loc["random", "efficiency_at_targets"] == pytest.approx(1.0)
    assert seeds.loc["random", "efficiency_censored_share"] == 0

    summary = metrics.summarize(seeds.reset_index()).set_index("strategy")
    assert summary.loc["margin", "labeling_efficiency_mean"] == pytest.approx(1.40)
    assert summary.loc["margin", "efficiency_censored_share_mean"] == pytest.approx(0.5)
    assert summary.loc["margin", "efficiency_at_targets_mean"] == pytest.approx(want)


def test_efficiency_at_targets_reads_both_curves_at_their_first_crossing():
    # random dips after 200 labels; the strategy starts higher and tops out below random
    n = np.array([100.0, 200.0, 300.0])
    random = np.array([0.4, 0.8, 0.6])
    strategy = np.array([0.5, 0.6, 0.7])
    # range [0.5, 0.7]: random reaches 0.55/0.6/0.65/0.7 at 137.5/150/162.5/175 labels,
    # the strategy at 150/200/250/300
    want = np.mean(np.array([137.5, 150, 162.5, 175]) / np.array([150, 200, 250, 300]))
    assert metrics.efficiency_at_targets(n, strategy, n, random) == pytest.approx(want)
    # no accuracy above both starts that both reach: undefined
    assert math.isnan(metrics.efficiency_at_targets(n, np.array([0.5, 0.3, 0.4]), n, random))


def test_a_strategy_that_never_reaches_randoms_range():
    table = curves({("resnet18", "random", 0): [0.5, 0.6, 0.7],
                    ("resnet18", "coreset", 0): [0.5, 0.3, 0.4]})  # fmt: skip
    seeds = metrics.per_seed(metrics.per_round(table)).set_index("strategy")
    assert math.isnan(seeds.loc["coreset", "labeling_efficiency"])
    assert seeds.loc["coreset", "efficiency_undefined"] == 2
    # below random's start is not beyond its best: nothing censored, no common targets
    assert seeds.loc["coreset", "efficiency_censored_share"] == 0
    assert math.isnan(seeds.loc["coreset", "efficiency_at_targets"])
    assert seeds.loc["coreset", "gain_pp"] == pytest.approx(-30.0)


def test_missing_random_baseline_is_a_clear_error():
    table = curves({("resnet18", "margin", 0): [0.5, 0.6], ("resnet18", "badge", 0): [0.5, 0.7]})
    with pytest.raises(MissingBaselineError, match=r"no random trial .*arch=resnet18.*seed=0"):
        metrics.per_round(table)
    # a random run of another seed does not stand in for the missing one
    table = curves({("resnet18", "random", 1): [0.5, 0.6], ("resnet18", "margin", 0): [0.5, 0.7]})
    with pytest.raises(MissingBaselineError, match="seed=0"):
        metrics.per_round(table)


def test_summary_over_seeds_paired_test_and_rank():
    table = curves({
        ("resnet18", "random", 0): [0.5, 0.6], ("resnet18", "margin", 0): [0.5, 0.70],
        ("resnet18", "random", 1): [0.4, 0.5], ("resnet18", "margin", 1): [0.4, 0.62],
        ("resnet18", "random", 2): [0.6, 0.7], ("resnet18", "margin", 2): [0.6, 0.79],
    })  # fmt: skip
    summary = metrics.summarize(metrics.per_seed(metrics.per_round(table)))
    margin = summary.set_index("strategy").loc["margin"]
    gains = np.array([10.0, 12.0, 9.0])
    assert margin["gain_pp_mean"] == pytest.approx(gains.mean())
    assert margin["gain_pp_std"] == pytest.approx(gains.std(ddof=1))
    assert margin["seeds"] == 3
    from scipy import stats

    aucs = np.array([0.6, 0.51, 0.695])
    random_aucs = np.array([0.55, 0.45, 0.65])
    expected = stats.ttest_rel(aucs, random_aucs).pvalue
    assert margin["p_auc_vs_random"] == pytest.approx(expected)
    assert margin["rank"] == 1
    assert summary.set_index("strategy").loc["random", "rank"] == 2


def test_single_seed_has_no_p_value_and_no_std():
    table = curves({("resnet18", "random", 0): [0.5, 0.6], ("resnet18", "margin", 0): [0.5, 0.7]})
    margin = metrics.summarize(metrics.per_seed(metrics.per_round(table))).iloc[0]
    assert margin["strategy"] == "margin"
    assert math.isnan(margin["p_auc_vs_random"])
    assert math.isnan(margin["gain_pp_std"])
    assert margin["gain_pp_mean"] == pytest.approx(10.0)


def test_rank_agreement_between_architectures():
    # resnet18 orders badge > margin > random; vgg11 the reverse
    table = curves({
        ("resnet18", "random", 0): [0.5, 0.6], ("resnet18", "margin", 0): [0.5, 0.7],
        ("resnet18", "badge", 0): [0.5, 0.8],
        ("vgg11", "random", 0): [0.5, 0.8], ("vgg11", "margin", 0): [0.5, 0.7],
        ("vgg11", "badge", 0): [0.5, 0.6],
    })  # fmt: skip
    summary = metrics.summarize(metrics.per_seed(metrics.per_round(table)))
    agreement = metrics.rank_agreement(summary)
    assert len(agreement) == 1
    assert agreement.iloc[0]["kendall_tau"] == pytest.approx(-1.0)
    assert agreement.iloc[0]["strategies"] == 3


def test_spread_across_strategies_and_architectures():
    table = curves({
        ("resnet18", "random", 0): [0.5, 0.6], ("resnet18", "margin", 0): [0.5, 0.7],
        ("resnet18", "random", 1): [0.5, 0.8], ("resnet18", "margin", 1): [0.5, 0.7],
        ("vgg11", "random", 0): [0.4, 0.5], ("vgg11", "margin", 0): [0.4, 0.9],
        ("vgg11", "random", 1): [0.4, 0.5], ("vgg11", "margin", 1): [0.4, 0.9],
    })  # fmt: skip
    by_strategy = metrics.spread(table, "strategy").set_index(["arch", "round"])
    assert by_strategy.loc[("resnet18", 1), "spread_pp"] == pytest.approx(0.0)  # 0.7 vs 0.7
    assert by_strategy.loc[("vgg11", 1), "spread_pp"] == pytest.approx(40.0)
    assert by_strategy.loc[("vgg11", 1), "best_strategy"] == "margin"
    by_arch = metrics.spread(table, "arch").set_index(["strategy", "round"])
    assert by_arch.loc[("random", 1), "spread_pp"] == pytest.approx(20.0)  # 0.7 vs 0.5
    assert by_arch.loc[("margin", 0), "spread_pp"] == pytest.approx(10.0)
    with pytest.raises(ValueError, match="allowed"):
        metrics.spread(table, "seed")


def test_common_rounds_cuts_a_setting_to_what_every_trial_reported():
    table = curves({("resnet18", "random", 0): [0.5, 0.6, 0.7],
                    ("resnet18", "margin", 0): [0.5, 0.65],
                    ("vgg11", "random", 0): [0.5, 0.6, 0.7]})  # fmt: skip
    cut = metrics.common_rounds(table)
    assert cut[cut["arch"] == "resnet18"]["round"].max() == 1
    assert cut[cut["arch"] == "vgg11"]["round"].max() == 2
