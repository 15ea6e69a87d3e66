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

import pandas as pd

from archdal.analysis import figures, metrics
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
    ("rank", "place of the strategy within its setting by mean AUC (1 = best, random "
     "included)."),
    ("Kendall's tau", "agreement of two architectures' strategy rankings: 1 the same order, "
     "0 unrelated, −1 reversed."),
    ("spread", "best minus worst seed-mean test accuracy as one factor varies (strategies, "
     "or architectures) with the other held fixed — the paper's Focus 2 measure."),
]  # fmt: skip

SUMMARY_COLUMNS = {
    "final_labels": "labels",
    "final_acc_mean": "final acc %",
    "auc_mean": "AUC %",
    "gain_pp_mean": "gain pp",
    "gain_pp_std": "± gain",
    "labeling_efficiency_mean": "label eff.",
    "labeling_efficiency_std": "± eff.",
    "efficiency_censored_share_mean": "censored %",
    "efficiency_at_targets_mean": "eff. at targets",
    "p_auc_vs_random": "p (AUC vs random)",
    "rank": "rank",
    "seeds": "seeds",
}


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


def compute(rounds: pd.DataFrame) -> dict[str, pd.DataFrame]:
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
    summary = metrics.summarize(per_seed)
    return {
        "rounds": table,
        "per_round": per_round,
        "per_seed": per_seed,
        "summary": summary,
        "rank_agreement": metrics.rank_agreement(summary),
        "spread_strategies": metrics.spread(table, "strategy"),
        "spread_architectures": metrics.spread(table, "arch"),
        "unpaired": unpaired,
    }


def draw(tables: dict[str, pd.DataFrame], out: Path) -> list[tuple[str, str, list[Path]]]:
    """(heading, caption, [png, pdf]) for every figure the tables support: strategies are
    compared only where some strategy besides random ran."""
    summary = tables["summary"]
    compared = (summary["strategy"] != BASELINE).any()
    drawn = []
    if compared:
        drawn += [
            ("Labeling efficiency", "Mean ± std over seeds; hatched: with unsupervised "
             "pretraining; dashed line: random (1).",
             figures.relative_bars(summary, "labeling_efficiency", out)),
            ("Accuracy gain over random", "Mean over rounds ≥ 1, ± std over seeds; dashed "
             "line: random (0).", figures.relative_bars(summary, "gain_pp", out)),
        ]  # fmt: skip
    drawn.append(("Learning curves", "Test accuracy against labels, mean over seeds with a ±1 "
                  "std band.", figures.learning_curves(tables["rounds"], out)))  # fmt: skip
    if compared:
        drawn.append(("Strategy ranks", "Rank by mean AUC within each architecture (1 = best).",
                      figures.rank_heatmap(summary, out)))  # fmt: skip
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


def _summary_html(summary: pd.DataFrame) -> str:
    setting = metrics.setting_columns(summary)
    shown = summary[[*setting, "strategy", *SUMMARY_COLUMNS]].sort_values([*setting, "rank"])
    shown = shown.rename(columns=SUMMARY_COLUMNS)
    return _table_html(shown, percent=["final acc %", "AUC %", "censored %"])


def _anchor(heading: str) -> str:
    return heading.lower().replace(" ", "-").replace("'", "")


def write_html(
    out: Path,
    experiments: list[dict],
    tables: dict[str, pd.DataFrame],
    drawn: list[tuple[str, str, list[Path]]],
    rounds: pd.DataFrame,
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
    sections.append(("Overview", overview))
    sections.append(("Summary", "<p>One row per setting and strategy (summary.csv).</p>"
                     + _summary_html(tables["summary"])))  # fmt: skip
    if not tables["rank_agreement"].empty:
        sections.append(("Do strategies rank alike across architectures?",
                         "<p>Kendall's tau between the strategy rankings (by mean AUC) of each "
                         "pair of architectures (rank_agreement.csv).</p>"
                         + _table_html(tables["rank_agreement"])))  # fmt: skip
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


def build_report(experiments: Sequence[Path | str], out: Path | str) -> Path:
    """Write `summary.csv` and the other tables, `figures/*.png|pdf` and `report.html`
    into `out` (replacing an earlier report there); returns the HTML's path."""
    paths = [Path(e) for e in experiments]
    out = Path(out)
    check_report_out(out)
    rounds = load_rounds(paths)
    described = [experiment_description(p) for p in paths]
    tables = compute(rounds)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        staging.chmod(0o755)
        (staging / "figures").mkdir()
        for name, frame in tables.items():
            frame.to_csv(staging / f"{name}.csv", index=False)
        drawn = draw(tables, staging / "figures")
        write_html(staging, described, tables, drawn, rounds)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out / "report.html"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="analysis/report.py",
        description="Tables, the paper's figures and an HTML report for sweep experiments "
        "(also while they run).",
    )
    parser.add_argument("experiments", nargs="+", type=Path,
                        help="experiment folders, e.g. ~/archdal_results/focus1-small")  # fmt: skip
    parser.add_argument("--out", type=Path, required=True, help="report folder to (re)write")
    args = parser.parse_args(argv)
    try:
        page = build_report(args.experiments, args.out)
    except ArchdalError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary = pd.read_csv(args.out / "summary.csv")
    print(f"{len(summary)} setting × strategy rows; report: {page}")
    print(json.dumps({"summary": str(args.out / "summary.csv"), "html": str(page)}))
    return 0
