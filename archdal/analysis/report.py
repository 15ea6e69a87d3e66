"""`python analysis/report.py EXPERIMENT [EXPERIMENT ...] --out DIR`: tables, figures and one
self-contained HTML page for Ray Tune experiments written by the sweep scripts.

Works on an experiment that is still running: it reads the rounds reported so far and cuts
each setting to the rounds all of its trials have reached. The report is built in a
temporary folder beside `--out` and moved into place at the end, so an interrupted or
failed report never leaves a half-written one.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from archdal.analysis import figures, metrics, stats
from archdal.analysis.metrics import BASELINE, MissingBaselineError
from archdal.analysis.results import SWEEP_FILE, load_rounds, read_sweep_file
from archdal.errors import ArchdalError, DataError

INTRO = """<p>Each <b>trial</b> is one active-learning trajectory: a model of the given
architecture is trained on the labelled set, tested, and the acquisition <b>strategy</b> picks
the next examples to label, round after round. A <b>setting</b> is everything but the strategy
and the seed (dataset, architecture, pretraining, initial and acquisition sizes, augmentation).
Trials of the same setting and seed start from the same labelled examples, so each strategy
is compared with <em>random</em> acquisition of the same seed before averaging over seeds.</p>"""

GLOSSARY = [
    ("labeling efficiency", "labels random acquisition needs to reach the strategy's test "
     "accuracy (read off random's learning curve of the same setting and seed, linearly "
     "interpolated), divided by the labels the strategy used; mean over rounds ≥ 1 where it "
     "is defined (Beck et al. 2021). Above 1: the strategy saves labels. Rounds where the "
     "strategy beats random's best accuracy are not in this mean (see censored)."),
    ("censored", "share of rounds ≥ 1 whose accuracy is above the best random reached: "
     "random would need more than its whole budget, so there the efficiency is only known to "
     "exceed random's last labels over the strategy's (efficiency_lower_bound in "
     "per_round.csv). A high share means the labeling efficiency above understates the "
     "strategy."),
    ("efficiency at targets", "labels random needs over labels the strategy needs to reach "
     "the same accuracy, averaged over four targets a quarter, half, three quarters and all "
     "of the way from the higher of the two starting accuracies to the lower of the two best "
     "(each curve read at its first crossing, both reach every target, nothing is "
     "extrapolated); mean over seeds. Defined also when the strategy beats random's best. "
     "The lower targets fall in the first rounds, where the curves have had little room to "
     "part, so it tends to sit nearer 1 than the labeling efficiency."),
    ("accuracy gain", "strategy's test accuracy minus random's at the same round, in "
     "percentage points; mean over rounds ≥ 1."),
    ("AUC", "area under the learning curve (test accuracy against labels) divided by the "
     "range of labels: the mean accuracy over the run."),
    ("p (AUC vs random)", "two-sided paired t-test of the per-seed AUC against random's, "
     "across seeds; blank with fewer than two seeds."),
    ("[low, high]", "percentile bootstrap interval of the mean over seeds at the report's "
     "level: seeds are drawn with replacement and a drawn seed brings all of its strategies "
     "(they share its initial split). Assumes seeds are independent draws; with few seeds "
     "(under about 5) the interval runs short of its level and none is given for one seed."),
    ("Friedman test", "whether the strategies' ranks within blocks (seeds, or seed × round "
     "with --blocks seeds_rounds) differ more than chance allows; rank-based, so no "
     "normality is assumed, only blocks independent of each other (seed × round blocks are "
     "not: the rounds of one seed share a trajectory, so their p is optimistic)."),
    ("post-hoc test / critical difference", "after Friedman rejects, Nemenyi's test (or "
     "Conover's, --posthoc conover) of every pair of strategies by their mean ranks, which "
     "controls the family-wise error over all pairs (Demšar 2006). In the diagram a bar "
     "joins strategies it does not separate."),
    ("interaction test", "the Focus 1 question: each architecture's per-seed AUC profile "
     "over strategies, less its mean, and the squared distance of the architectures' mean "
     "profiles from their average. Without interaction the architectures of a seed are "
     "exchangeable, so their labels are permuted within each seed (all permutations when "
     "few enough, else a random 10,000) to read p off the statistic's permutation "
     "distribution. It detects gaps between strategies that differ across architectures, "
     "also when their order stays the same (Kendall's tau is about the order). Needs every "
     "architecture × strategy cell in each seed used. 'Too few "
     "seeds' means the smallest p the design can give is above the level (2 architectures "
     "need at least 6 seeds at 0.05)."),
    ("Kendall's tau interval", "tau between two architectures' strategy orders by seed-mean "
     "AUC, and its percentile bootstrap interval over seeds drawn with both architectures."),
    ("spread (intervals)", "mean over architectures of max − min strategy AUC, and mean over "
     "strategies of max − min architecture AUC, with their difference and bootstrap "
     "intervals over seeds. A max − min grows with noise and with the number of levels, so "
     "compare them at equal seeds."),
    ("seeds needed", "from a pair's observed sd of per-seed AUC differences: the smallest "
     "number of seeds at which a two-sided paired t-test at the level detects the gap with "
     "80% power (noncentral t). Assumes differences roughly normal with the observed sd."),
    ("rank", "place of the strategy within its setting by mean AUC (1 = best, random "
     "included)."),
    ("Kendall's tau", "agreement of two architectures' strategy rankings: 1 the same order, "
     "0 unrelated, −1 reversed."),
    ("spread", "best minus worst seed-mean test accuracy as one factor varies (strategies, "
     "or architectures) with the other held fixed — the paper's Focus 2 measure."),
]  # fmt: skip

SUMMARY_COLUMNS = {
    "final_labels": "labels",
    "final_acc": "final acc %",
    "auc": "AUC %",
    "gain_pp": "gain pp",
    "labeling_efficiency": "label eff.",
    "efficiency_censored_share_mean": "censored %",
    "efficiency_at_targets": "eff. at targets",
    "p_auc_vs_random": "p (AUC vs random)",
    "rank": "rank",
    "seeds": "seeds",
}  # a metric with an interval is shown as "mean [low, high]"
PERCENT = ("final_acc", "auc", "efficiency_censored_share_mean")


def experiment_description(path: Path) -> dict:
    """What the sweep file says about an experiment: its command and its planned trials."""
    if not (path / SWEEP_FILE).exists():
        return {"name": path.name, "planned": None, "argv": None, "preset": None}
    document = read_sweep_file(path)
    return {
        "name": document.get("name", path.name),
        "planned": len(document.get("trials", [])),
        "argv": document.get("argv"),
        "preset": document.get("preset"),
    }


def compute(
    rounds: pd.DataFrame, options: stats.Options = stats.DEFAULTS
) -> dict[str, pd.DataFrame]:
    """Every table of the report. Gain and efficiency need random of the same setting and
    seed; trials without it are left out of those tables (and listed in `unpaired`)."""
    table = metrics.common_rounds(rounds)
    setting = metrics.setting_columns(table)
    has_random = table[table["strategy"] == BASELINE][[*setting, "seed"]].drop_duplicates()
    keyed = table.merge(has_random.assign(_paired=True), on=[*setting, "seed"], how="left")
    paired_mask = keyed["_paired"].notna().to_numpy()
    unpaired = table.loc[~paired_mask, [*setting, "strategy", "seed"]].drop_duplicates()
    paired = table[paired_mask].reset_index(drop=True)
    if paired.empty:
        raise MissingBaselineError(
            "no trial has a random trial of the same setting and seed to compare with; add "
            "random to the sweep's --strategies"
        )
    per_round = metrics.per_round(paired)
    per_seed = metrics.per_seed(per_round)
    summary = stats.with_intervals(metrics.summarize(per_seed), per_seed, options)
    rankings, posthoc = stats.rankings(per_seed, per_round, options)
    interaction, taus = stats.architecture_dependence(per_seed, options=options)
    agreement = metrics.rank_agreement(summary)
    if not taus.empty:
        on = [c for c in agreement.columns if c in taus.columns and c not in TAU_COLUMNS]
        agreement = agreement.merge(taus[[*on, "tau_ci_low", "tau_ci_high"]], on=on, how="left")
    seeds_needed = stats.seeds_needed(per_seed, options)
    return {
        "rounds": table,
        "curves": stats.curve_intervals(table, options),
        "per_round": per_round,
        "per_seed": per_seed,
        "summary": summary,
        "rankings": rankings,
        "posthoc": posthoc,
        "rank_agreement": agreement,
        "interaction": interaction,
        "seeds_needed": seeds_needed,
        "spread_strategies": metrics.spread(table, "strategy"),
        "spread_architectures": metrics.spread(table, "arch"),
        "unpaired": unpaired,
        "encoder_outputs": metrics.encoder_outputs(table),
    }


TAU_COLUMNS = ("kendall_tau", "strategies", "seeds", "p_value")


def critical_difference_figures(
    tables: dict[str, pd.DataFrame], level: float, out: Path
) -> list[tuple[str, str, list[Path]]]:
    """One critical-difference diagram per setting with a Friedman test, and one over all
    settings; files `critical_difference_<setting values>` and `critical_difference_all`."""
    ranked, posthoc = tables["rankings"], tables["posthoc"]
    if ranked.empty:
        return []
    setting = metrics.setting_columns(ranked)
    settings = ranked[(ranked[setting] != "all").any(axis=1)]
    varying = [c for c in setting if settings[c].nunique() > 1 or c in ("dataset", "arch")]
    drawn = []
    for key, rows in ranked.groupby(setting, dropna=False, sort=False):
        if rows["friedman_p"].isna().all():
            continue
        values = dict(zip(setting, key, strict=True))
        selected = (posthoc[setting] == pd.Series(values)).all(axis=1) if len(posthoc) else []
        ranks = rows.set_index("strategy")["mean_rank"]
        matrix = stats.p_value_matrix(posthoc[selected], list(ranks.index))
        overall = all(v == "all" for v in values.values())
        label = "all settings" if overall else ", ".join(str(values[c]) for c in varying)
        slug = "all" if overall else "_".join(str(values[c]) for c in varying)
        slug = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in slug)
        first = rows.iloc[0]
        title = (f"{label}: mean rank by {first['measure']} over {first['blocks']} blocks, "
                 f"Friedman p = {first['friedman_p']:.3g}")  # fmt: skip
        paths = figures.critical_difference(
            ranks, matrix, title, f"critical_difference_{slug}", 1 - level, out
        )
        drawn.append((f"Critical difference: {label}", CD_CAPTION, paths))
    return drawn


CD_CAPTION = (
    "Mean rank of each strategy (1 = best) over the blocks; a bar joins strategies that the "
    "post-hoc test does not separate at the level (all of them when Friedman's test does not "
    "reject)."
)


def draw(
    tables: dict[str, pd.DataFrame], out: Path, level: float = stats.LEVEL
) -> list[tuple[str, str, list[Path]]]:
    """(heading, caption, [png, pdf]) for every figure the tables support: strategies are
    compared only where some strategy besides random ran."""
    summary = tables["summary"]
    compared = (summary["strategy"] != BASELINE).any()
    percent = f"{100 * level:g}%"
    drawn = []
    if compared:
        drawn += [
            ("Labeling efficiency", f"Mean over seeds with its {percent} bootstrap interval; "
             "hatched: with unsupervised pretraining; dashed line: random (1).",
             figures.relative_bars(summary, "labeling_efficiency", out)),
            ("Accuracy gain over random", f"Mean over rounds ≥ 1 and seeds, with its {percent} "
             "bootstrap interval over seeds; dashed line: random (0).",
             figures.relative_bars(summary, "gain_pp", out)),
        ]  # fmt: skip
    caption = f"Test accuracy against labels, mean over seeds with its {percent} bootstrap band."
    drawn.append(("Learning curves", caption, figures.learning_curves(tables["curves"], out)))
    if compared:
        drawn.append(("Strategy ranks", "Rank by mean AUC within each architecture (1 = best).",
                      figures.rank_heatmap(summary, out)))  # fmt: skip
        drawn += critical_difference_figures(tables, level, out)
    spreads = [
        ("strategies", "strategy", "For each architecture, the band between the best and the "
         "worst strategy's mean accuracy (paper, Figure 8)."),
        ("architectures", "arch", "For each strategy, the band between the best and the worst "
         "architecture's mean accuracy (paper, Figure 10)."),
    ]  # fmt: skip
    evolution = figures.architecture_evolution(tables["rounds"], out)
    if evolution:
        caption = (
            "Depth-Dropout trials: inferred depth per round (bars), active filters per "
            "layer (colour) and layer activation probabilities (numbers) (paper, Figure 9)."
        )
        drawn.append(("Architecture as active learning proceeds", caption, evolution))
    for name, across, caption in spreads:
        if not tables[f"spread_{name}"].empty:
            paths = figures.spread_bands(tables[f"spread_{name}"], across, out)
            drawn.append((f"Spread across {name}", caption, paths))
    return drawn


def _table_html(frame: pd.DataFrame, percent: Sequence[str] = ()) -> str:
    shown = frame.copy()
    for column in percent:
        if column in shown:
            shown[column] = 100 * shown[column]
    return shown.to_html(index=False, float_format=lambda v: f"{v:.3g}", na_rep="",
                         border=0, classes="table")  # fmt: skip


def _with_interval(summary: pd.DataFrame, metric: str) -> pd.Series:
    scale = 100 if metric in PERCENT else 1
    mean, low, high = (scale * summary[f"{metric}_{p}"] for p in ("mean", "ci_low", "ci_high"))
    return pd.Series(
        [f"{m:.3g}" + ("" if np.isnan(lo) else f" [{lo:.3g}, {hi:.3g}]")
         for m, lo, hi in zip(mean, low, high, strict=True)], index=summary.index,
    )  # fmt: skip


def _summary_html(summary: pd.DataFrame) -> str:
    setting = metrics.setting_columns(summary)
    shown = summary.sort_values([*setting, "rank"])
    for metric in SUMMARY_COLUMNS:
        if f"{metric}_ci_low" in shown:
            shown[metric] = _with_interval(shown, metric)
    shown = shown[[*setting, "strategy", *SUMMARY_COLUMNS]].rename(columns=SUMMARY_COLUMNS)
    return _table_html(shown, percent=["censored %"])


def _varying(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` without the setting columns that hold one value (kept: dataset, arch)."""
    fixed = [c for c in metrics.setting_columns(frame)
             if c not in ("dataset", "arch") and frame[c].nunique(dropna=False) <= 1]  # fmt: skip
    return frame.drop(columns=fixed)


def _statistics_sections(tables: dict[str, pd.DataFrame], level: float) -> list[tuple[str, str]]:
    """The sections that say how sure the comparisons are."""
    sections = []
    percent = f"{100 * level:g}%"
    ranked = tables["rankings"]
    if not ranked.empty:
        shown = ranked.drop(columns=["groups"]).rename(columns={"not_different_from":
                                                                "not separated from"})  # fmt: skip
        sections.append(("How sure are the rankings?", (
            f"<p>Per setting, the strategies ranked within each block (a seed, or a seed and "
            f"round), Friedman's test of any difference, and the post-hoc test's verdict at "
            f"{1 - level:g} (rankings.csv; pairwise p in posthoc.csv). The critical-difference "
            f"diagrams below draw the same.</p>" + _table_html(_varying(shown)))))  # fmt: skip
    interaction = tables["interaction"]
    if not interaction.empty:
        group = [c for c in metrics.setting_columns(interaction) if c != "arch"]
        sentences = "".join(
            f"<li><b>{html.escape(', '.join(str(row[c]) for c in group))}</b> "
            f"({html.escape(row['archs'])}; {row['strategies']} strategies, {row['seeds']} "
            f"seeds): {html.escape(row['verdict'])}. Spread across architectures "
            f"{100 * row['spread_archs']:.2f} pp [{100 * row['spread_archs_ci_low']:.2f}, "
            f"{100 * row['spread_archs_ci_high']:.2f}], across strategies "
            f"{100 * row['spread_strategies']:.2f} pp [{100 * row['spread_strategies_ci_low']:.2f}"
            f", {100 * row['spread_strategies_ci_high']:.2f}]: " + _spread_words(row) + "</li>"
            for _, row in interaction.iterrows()
        )
        shown = interaction.drop(columns=["verdict"])
        agreement = tables["rank_agreement"]
        sections.append(("Does the architecture change the ranking?", (
            f"<p>The Focus 1 question as a test on per-seed AUC, at level {level:g}; the "
            f"spreads are the paper's Focus 2 comparison with {percent} intervals "
            f"(interaction.csv).</p><ul>{sentences}</ul>" + _table_html(_varying(shown))
            + "<p>Kendall's tau between every two architectures' strategy orders, with its "
            f"{percent} bootstrap interval over seeds (rank_agreement.csv).</p>"
            + _table_html(_varying(agreement)))))  # fmt: skip
    needed = tables["seeds_needed"]
    if not needed.empty:
        closest = stats.closest_pairs(needed)
        sections.append(("How many seeds are enough?", (
            "<p>For the closest pairs of strategies in each setting: the mean and sd over "
            "seeds of their AUC difference (pp), and the seeds a paired t-test at the level "
            "would need to detect that gap, or the gap of <code>detect_gap_pp</code>, with 80% "
            "power at that sd (−1: over 10,000, or no gap). Every pair is in seeds_needed.csv."
            "</p>" + _table_html(_varying(closest)))))  # fmt: skip
    return sections


def _spread_words(row: pd.Series) -> str:
    low, high = row["archs_minus_strategies_ci_low"], row["archs_minus_strategies_ci_high"]
    difference = f"{100 * row['archs_minus_strategies']:.2f} pp [{100 * low:.2f}, {100 * high:.2f}]"
    if low > 0:
        return f"architecture outweighs acquisition by {difference}."
    if high < 0:
        return (
            f"acquisition outweighs architecture by {-100 * row['archs_minus_strategies']:.2f} pp."
        )
    return f"the difference, {difference}, is within its interval of zero."


def _anchor(heading: str) -> str:
    return heading.lower().replace(" ", "-").replace("'", "")


def write_html(
    out: Path,
    experiments: list[dict],
    tables: dict[str, pd.DataFrame],
    drawn: list[tuple[str, str, list[Path]]],
    rounds: pd.DataFrame,
    level: float = stats.LEVEL,
) -> None:
    """`rounds`: every reported round, before settings are cut to their common rounds, so
    the progress counts see each trial's last report."""
    trials = rounds.groupby("experiment")["trial"].nunique()
    finished = (
        rounds[rounds["final"].fillna(False).astype(bool)] if "final" in rounds else rounds[:0]
    )
    done = finished.groupby("experiment")["trial"].nunique()
    sections: list[tuple[str, str]] = []
    rows = []
    for e in experiments:
        planned = "?" if e["planned"] is None else e["planned"]
        rows.append(
            f"<tr><td>{html.escape(e['name'])}</td><td>{trials.get(e['name'], 0)} of {planned}"
            f"</td><td>{done.get(e['name'], 0)}</td><td><code>"
            f"{html.escape(' '.join(e['argv'] or []))}</code></td></tr>"
        )
    overview = (
        INTRO + "<table class='table'><tr><th>experiment</th><th>trials reporting</th>"
        "<th>finished</th><th>sweep arguments</th></tr>" + "".join(rows) + "</table>"
    )
    if not tables["unpaired"].empty:
        overview += (
            "<p>Without a random trial of the same setting and seed, so left out of gain and "
            "efficiency:</p>" + _table_html(tables["unpaired"])
        )
    outputs = tables["encoder_outputs"]
    if not outputs.empty:
        mixed = outputs[outputs["outputs"] > 1]
        words = (
            "<p><strong>Some settings read more than one encoder output</strong>: their "
            "encoders were trained apart (no shared cache, or another CPU instruction set), so "
            "their strategies were not all compared on the same embeddings; compare within one "
            f"output ({len(mixed)} rows below with outputs above 1).</p>"
            if len(mixed)
            else "<p>Each setting's trials read one encoder output.</p>"
        )
        overview += (
            "<p>Encoder outputs (representation cache entries by value digest, "
            "encoder_outputs.csv):</p>" + words + _table_html(outputs)
        )
    sections.append(("Overview", overview))
    sections.append(("Summary", "<p>One row per setting and strategy (summary.csv).</p>"
                     + _summary_html(tables["summary"])))  # fmt: skip
    statistics = _statistics_sections(tables, level)
    if not tables["rank_agreement"].empty and tables["interaction"].empty:
        sections.append(("Do strategies rank alike across architectures?",
                         "<p>Kendall's tau between the strategy rankings (by mean AUC) of each "
                         "pair of architectures (rank_agreement.csv).</p>"
                         + _table_html(tables["rank_agreement"])))  # fmt: skip
    sections += statistics
    for heading, caption, paths in drawn:
        png, pdf = paths
        data = base64.b64encode(png.read_bytes()).decode()
        sections.append((heading, (
            f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(heading)}'>"
            f"<figcaption>{html.escape(caption)} Files: <a href='figures/{png.name}'>"
            f"{png.name}</a>, <a href='figures/{pdf.name}'>{pdf.name}</a>.</figcaption>"
            "</figure>")))  # fmt: skip
    glossary = "".join(f"<dt>{html.escape(t)}</dt><dd>{html.escape(d)}</dd>" for t, d in GLOSSARY)
    sections.append(("What the numbers mean", f"<dl>{glossary}</dl>"))
    contents = "".join(
        f"<li><a href='#{_anchor(h)}'>{html.escape(h)}</a></li>" for h, _ in sections
    )
    body = "".join(f"<h2 id='{_anchor(h)}'>{html.escape(h)}</h2>{s}" for h, s in sections)
    title = "archdal report: " + ", ".join(e["name"] for e in experiments)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em;
       color: #222; }}
.table {{ border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }}
.table td, .table th {{ padding: 2px 8px; border-bottom: 1px solid #ddd; text-align: right; }}
figure {{ margin: 1em 0; }} img {{ max-width: 100%; }} figcaption {{ color: #555; }}
dt {{ font-weight: bold; margin-top: 0.5em; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<nav><ol>{contents}</ol></nav>
{body}
</body></html>
"""
    (out / "report.html").write_text(page)


def check_report_out(out: Path) -> None:
    """A report replaces only an earlier report (or an empty folder), never other files."""
    if out.exists() and not (out / "report.html").exists() and any(out.iterdir()):
        raise DataError(f"report folder {out} exists and holds no archdal report; choose another")


def build_report(
    experiments: Sequence[Path | str], out: Path | str, options: stats.Options = stats.DEFAULTS
) -> Path:
    """Write `summary.csv` and the other tables, `figures/*.png|pdf` and `report.html`
    into `out` (replacing an earlier report there); returns the HTML's path."""
    paths = [Path(e) for e in experiments]
    out = Path(out)
    check_report_out(out)
    rounds = load_rounds(paths)
    described = [experiment_description(p) for p in paths]
    tables = compute(rounds, options)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        staging.chmod(0o755)
        (staging / "figures").mkdir()
        for name, frame in tables.items():
            frame.to_csv(staging / f"{name}.csv", index=False)
        drawn = draw(tables, staging / "figures", options.level)
        write_html(staging, described, tables, drawn, rounds, options.level)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out / "report.html"


def _bounded(kind: type, low: float, high: float | None = None, open_low: bool = False):
    """An argparse type: a number within [low, high] (or (low, high] with `open_low`)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if value < low or (open_low and value == low) or (high is not None and value >= high):
            bounds = f"{'(' if open_low else '['}{low:g}, {'∞' if high is None else f'{high:g}'})"
            raise argparse.ArgumentTypeError(f"{text} is outside {bounds}")
        return value

    return parse


def add_statistics_options(parser: argparse.ArgumentParser) -> None:
    """The report's statistics options (also on the sweep scripts' --report)."""
    d = stats.DEFAULTS
    group = parser.add_argument_group("statistics")
    group.add_argument(
        "--level",
        type=_bounded(float, 0, 1, open_low=True),
        default=d.level,
        help=f"confidence level of intervals and tests (default {d.level})",
    )
    group.add_argument(
        "--resamples",
        type=_bounded(int, 100),
        default=d.resamples,
        help=f"bootstrap resamples (default {d.resamples})",
    )
    group.add_argument(
        "--permutations",
        type=_bounded(int, 100),
        default=d.permutations,
        help="random permutations of the interaction test when there are "
        f"more than that many in all (default {d.permutations})",
    )
    group.add_argument(
        "--posthoc",
        choices=sorted(stats.POSTHOC),
        default=d.posthoc,
        help=f"post-hoc test after Friedman (default {d.posthoc})",
    )
    group.add_argument(
        "--blocks",
        choices=stats.BLOCKS,
        default=d.blocks,
        help="Friedman blocks: seeds (per-seed AUC) or seeds_rounds (test "
        f"accuracy per seed and round) (default {d.blocks})",
    )
    group.add_argument("--detect-gap", type=_bounded(float, 0, open_low=True),
                       default=d.detect_gap_pp, dest="detect_gap_pp",
                       help="AUC gap in percentage points for the seeds-needed table "
                       f"(default {d.detect_gap_pp})")  # fmt: skip


def statistics_options(args: argparse.Namespace) -> stats.Options:
    names = ("level", "resamples", "permutations", "posthoc", "blocks", "detect_gap_pp")
    return stats.Options(**{n: getattr(args, n) for n in names})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="analysis/report.py",
        description="Tables, the paper's figures and an HTML report for sweep experiments "
        "(also while they run).",
    )
    parser.add_argument("experiments", nargs="+", type=Path,
                        help="experiment folders, e.g. ~/archdal_results/focus1-small")  # fmt: skip
    parser.add_argument("--out", type=Path, required=True, help="report folder to (re)write")
    add_statistics_options(parser)
    args = parser.parse_args(argv)
    try:
        page = build_report(args.experiments, args.out, statistics_options(args))
    except ArchdalError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary = pd.read_csv(args.out / "summary.csv")
    print(f"{len(summary)} setting × strategy rows; report: {page}")
    print(json.dumps({"summary": str(args.out / "summary.csv"), "html": str(page)}))
    return 0
