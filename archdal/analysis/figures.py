"""The paper's figures from the metric tables (`archdal.analysis.metrics`), as PNG and PDF.

Every figure has one panel per *facet*: the setting columns that the figure does not draw
inside a panel (usually dataset, sizes, augmentation). Colours follow one fixed strategy
order so a strategy looks the same in every figure.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scikit_posthocs as sp

from archdal.analysis.metrics import BASELINE, setting_columns
from archdal.registry import STRATEGIES

PALETTE = plt.get_cmap("tab10").colors


def strategy_color(strategy: str) -> tuple[float, ...] | None:
    """One color per registered strategy, stable across figures (None: unregistered)."""
    names = STRATEGIES.names()
    return PALETTE[names.index(strategy) % len(PALETTE)] if strategy in names else None


LABELS = {"least_confidence": "least conf.", "badge": "BADGE", "bald": "BALD"}
PANEL_WIDTH, PANEL_HEIGHT, MAX_COLUMNS = 5.0, 3.4, 3


def strategy_label(strategy: str) -> str:
    return LABELS.get(strategy, strategy)


def _curve_label(strategy: str, pretrain: str) -> str:
    return strategy_label(strategy) + (f" + {pretrain} pretraining" if pretrain != "none" else "")


def facets(table: pd.DataFrame, inside: Iterable[str]) -> list[tuple[str, pd.DataFrame]]:
    """(title, rows) per combination of the setting columns not drawn inside a panel;
    columns with a single value stay out of the titles."""
    drawn = set(inside)
    keys = [c for c in setting_columns(table) if c not in drawn]
    varying = [c for c in keys if table[c].nunique() > 1 or c == "dataset"]
    if not keys:
        return [("", table)]
    out = []
    for key, rows in table.groupby(keys, dropna=False, sort=True):
        values = dict(zip(keys, key, strict=True))
        out.append((", ".join(_describe(c, values[c]) for c in varying), rows))
    return out


def _describe(column: str, value) -> str:
    names = {"init_size": "init", "acq_size": "acq", "pretrain": "pretrain"}
    if column == "dataset":
        return str(value)
    if column == "augment":
        return "augmented" if value else "no augmentation"
    return f"{names.get(column, column)} {value}"


def _grid(panels: int, title: str) -> tuple[plt.Figure, list[plt.Axes]]:
    columns = min(panels, MAX_COLUMNS)
    rows = -(-panels // columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(PANEL_WIDTH * columns, PANEL_HEIGHT * rows + 0.6), squeeze=False
    )
    for ax in axes.flat[panels:]:
        ax.set_visible(False)
    fig.suptitle(title)
    return fig, list(axes.flat[:panels])


def _save(fig: plt.Figure, out: Path, name: str) -> list[Path]:
    fig.tight_layout()
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1])
    plt.close(fig)
    return paths


def _ordered(values: Iterable[str]) -> list[str]:
    rank = {s: i for i, s in enumerate(STRATEGIES.names())}
    return sorted(set(values), key=lambda s: (rank.get(s, len(rank)), s))


def _arch_labels(rows: pd.DataFrame) -> pd.Series:
    if "arch_mode" in rows.columns:
        return rows["arch"] + np.where(rows["arch_mode"] == "fixed", "", "-" + rows["arch_mode"])
    return rows["arch"]


def error_bars(rows: pd.DataFrame, metric: str) -> np.ndarray:
    """2×n distances from the mean down and up to its confidence interval (0 where the
    interval is undefined, e.g. one seed)."""
    mean = rows[f"{metric}_mean"]
    below = (mean - rows[f"{metric}_ci_low"]).clip(lower=0).fillna(0)
    above = (rows[f"{metric}_ci_high"] - mean).clip(lower=0).fillna(0)
    return np.vstack([below.to_numpy(), above.to_numpy()])


def relative_bars(summary: pd.DataFrame, metric: str, out: Path) -> list[Path]:
    """Figures 2–5 style: per architecture a bar per strategy (mean over seeds with its
    bootstrap confidence interval), with pretraining hatched, against random's line."""
    reference, name, ylabel = {
        "labeling_efficiency": (1.0, "labeling_efficiency", "labeling efficiency (× random)"),
        "gain_pp": (0.0, "accuracy_gain", "test-accuracy gain over random (pp)"),
    }[metric]
    rows_all = summary[summary["strategy"] != BASELINE]
    rows_all = rows_all.assign(arch_label=_arch_labels(rows_all))
    panels = facets(rows_all, ["arch", "arch_mode", "pretrain"])
    fig, axes = _grid(len(panels), ylabel)
    for ax, (title, rows) in zip(axes, panels, strict=True):
        archs = sorted(rows["arch_label"].unique())
        strategies = _ordered(rows["strategy"])
        pretrains = sorted(rows["pretrain"].unique())
        bars = len(strategies) * len(pretrains)
        width = 0.8 / bars
        for s_index, strategy in enumerate(strategies):
            for p_index, pretrain in enumerate(pretrains):
                chosen = rows[(rows["strategy"] == strategy) & (rows["pretrain"] == pretrain)]
                chosen = chosen.set_index("arch_label").reindex(archs)
                offset = (s_index * len(pretrains) + p_index - (bars - 1) / 2) * width
                ax.bar(
                    np.arange(len(archs)) + offset,
                    chosen[f"{metric}_mean"],
                    width,
                    yerr=error_bars(chosen, metric),
                    color=strategy_color(strategy),
                    hatch="//" if pretrain != "none" else None,
                    edgecolor="black",
                    linewidth=0.4,
                    error_kw={"linewidth": 0.8},
                    label=_curve_label(strategy, pretrain),
                )
        ax.axhline(reference, color="black", linestyle="--", linewidth=1, label="random")
        ax.set_xticks(np.arange(len(archs)), archs, rotation=20)
        ax.set_title(title)
        ax.set_ylabel(ylabel)
    axes[0].legend(fontsize="small", ncols=2)
    return _save(fig, out, name)


def learning_curves(curves: pd.DataFrame, out: Path) -> list[Path]:
    """Figure 6 style: test accuracy against labels per strategy, mean over seeds with its
    confidence band (`stats.curve_intervals`), one panel per architecture; pretrained runs
    dashed."""
    table = curves.assign(arch_label=_arch_labels(curves))
    panels = []
    for title, rows in facets(table, ["arch", "arch_mode", "pretrain"]):
        for arch, arch_rows in rows.groupby("arch_label"):
            panels.append((f"{title}: {arch}" if title else arch, arch_rows))
    fig, axes = _grid(len(panels), "test accuracy over the course of active learning")
    for ax, (title, rows) in zip(axes, panels, strict=True):
        for (strategy, pretrain), curve in rows.groupby(["strategy", "pretrain"]):
            curve = curve.sort_values("round")
            style = "--" if pretrain != "none" else "-"
            n = curve["n_labeled"].to_numpy()
            ax.plot(n, 100 * curve["test_acc"], style, color=strategy_color(strategy),
                    marker=".", label=_curve_label(strategy, pretrain))  # fmt: skip
            ax.fill_between(n, 100 * curve["ci_low"].fillna(curve["test_acc"]),
                            100 * curve["ci_high"].fillna(curve["test_acc"]),
                            color=strategy_color(strategy), alpha=0.15, linewidth=0)  # fmt: skip
        ax.set_title(title)
        ax.set_xlabel("labelled examples")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    return _save(fig, out, "learning_curves")


def spread_bands(spread: pd.DataFrame, across: str, out: Path) -> list[Path]:
    """Figures 8 and 10 style: the band between the best and the worst seed-mean accuracy
    as `across` varies, against labels; one band per architecture (across strategies) or
    per strategy (across architectures)."""
    held = "arch" if across == "strategy" else "strategy"
    spread = spread.copy()
    spread["band"] = _arch_labels(spread) if held == "arch" else spread["strategy"]
    if held == "arch":  # Figure 8: one panel per facet, a band per architecture
        panels = facets(spread, ["arch", "arch_mode"])
    else:  # Figure 10: a panel per strategy, its band across architectures
        panels = [
            (f"{facet}: {strategy_label(band)}" if facet else strategy_label(band), rows)
            for facet, facet_rows in facets(spread, [])
            for band, rows in facet_rows.groupby("band")
        ]
    title = (
        "spread across strategies, per architecture"
        if across == "strategy"
        else "spread across architectures, per strategy"
    )
    fig, axes = _grid(len(panels), title)
    bands = sorted(spread["band"].unique())
    palette = plt.get_cmap("tab10").colors
    for ax, (facet, rows) in zip(axes, panels, strict=True):
        for i, band in enumerate(bands):
            curve = rows[rows["band"] == band].sort_values("n_labeled")
            if curve.empty:
                continue
            color = strategy_color(band) if held == "strategy" else palette[i % len(palette)]
            ax.fill_between(curve["n_labeled"], 100 * curve["min_acc"], 100 * curve["max_acc"],
                            color=color, alpha=0.3, linewidth=0)  # fmt: skip
            ax.plot(curve["n_labeled"], 100 * curve["min_acc"], color=color, linewidth=0.8)
            ax.plot(curve["n_labeled"], 100 * curve["max_acc"], color=color, linewidth=0.8,
                    label=strategy_label(band))  # fmt: skip
        ax.set_title(facet)
        ax.set_xlabel("labelled examples")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        if held == "arch":
            ax.legend(fontsize="small")
    return _save(fig, out, f"spread_across_{'strategies' if across == 'strategy' else 'archs'}")


def rank_heatmap(summary: pd.DataFrame, out: Path) -> list[Path]:
    """Strategy rank (1 = best mean AUC, random included) per architecture."""
    summary = summary.assign(arch_label=_arch_labels(summary))
    panels = facets(summary, ["arch", "arch_mode"])
    fig, axes = _grid(len(panels), "strategy rank by area under the learning curve (1 = best)")
    for ax, (title, rows) in zip(axes, panels, strict=True):
        ranks = rows.pivot_table(index="arch_label", columns="strategy", values="rank")
        ranks = ranks[_ordered(ranks.columns)]
        ax.imshow(ranks.to_numpy(), cmap="viridis_r", vmin=1, vmax=max(2, ranks.shape[1]),
                  aspect="auto")  # fmt: skip
        ax.set_xticks(range(ranks.shape[1]), [strategy_label(s) for s in ranks.columns],
                      rotation=40, ha="right")  # fmt: skip
        ax.set_yticks(range(ranks.shape[0]), ranks.index)
        for (i, j), value in np.ndenumerate(ranks.to_numpy()):
            if not np.isnan(value):
                dark = value > (ranks.shape[1] + 1) / 2
                ax.text(j, i, f"{value:.0f}", ha="center", va="center",
                        color="white" if dark else "black")  # fmt: skip
        ax.set_title(title)
    return _save(fig, out, "strategy_ranks")


def architecture_evolution(table: pd.DataFrame, out: Path, most: int = 6) -> list[Path] | None:
    """Figure 9 style, for Depth-Dropout trials (joint mode first): per round, each layer's
    activation probability (top) and its active filters (bottom). None without such trials."""
    if "architecture" not in table.columns:
        return None
    has_depth = table["architecture"].map(lambda a: isinstance(a, dict) and "layer_probs" in a)
    rows = table[has_depth]
    if rows.empty:
        return None
    order = {"joint": 0, "spo": 1, "upo": 2}
    trials = (
        rows.drop_duplicates("trial")
        .assign(_mode=lambda t: t["arch_mode"].map(order).fillna(3))
        .sort_values(["_mode", "seed", "trial"])["trial"]
        .tolist()[:most]
    )
    fig, axes = plt.subplots(2, len(trials), figsize=(3.2 * len(trials), 6.4), squeeze=False,
                             height_ratios=[1, 2])  # fmt: skip
    for column, trial in enumerate(trials):
        rounds = rows[rows["trial"] == trial].sort_values("round")
        probs = np.array([a["layer_probs"] for a in rounds["architecture"]]).T  # layers × rounds
        filters = np.array([a["active_filters"] for a in rounds["architecture"]]).T
        labels = rounds["n_labeled"].tolist()
        first = rounds.iloc[0]
        top, bottom = axes[0, column], axes[1, column]
        top.bar(range(len(labels)), [a["depth"] for a in rounds["architecture"]], color="gray")
        title = f"{first['dataset']} {first['arch_mode']}\n{first['strategy']} s{first['seed']}"
        top.set_title(title, fontsize="small")
        top.set_ylabel("depth")
        top.set_xticks(range(len(labels)), [])
        image = bottom.imshow(filters, aspect="auto", cmap="Blues", vmin=0, origin="lower")
        for (layer, r), p in np.ndenumerate(probs):
            bottom.text(r, layer, f"{p:.2f}", ha="center", va="center", fontsize=6)
        bottom.set_yticks(range(len(probs)), range(1, len(probs) + 1))
        bottom.set_xticks(range(len(labels)), labels, rotation=45)
        bottom.set_xlabel("labelled examples")
        bottom.set_ylabel("layer")
        fig.colorbar(image, ax=bottom, label="active filters", shrink=0.8)
    fig.suptitle("Depth-Dropout architecture as active learning proceeds "
                 "(numbers: layer activation probability)")  # fmt: skip
    return _save(fig, out, "architecture_evolution")


def critical_difference(
    ranks: pd.Series, p_values: pd.DataFrame, title: str, name: str, alpha: float, out: Path
) -> list[Path]:
    """Demšar's critical-difference diagram: mean ranks on an axis (1 = best), strategies the
    post-hoc test does not separate at `alpha` joined by a bar (drawn by scikit-posthocs)."""
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.3 * len(ranks)))
    labels = {s: strategy_label(s) for s in ranks.index}
    sp.critical_difference_diagram(
        ranks.rename(index=labels),
        p_values.rename(index=labels, columns=labels),
        alpha=alpha,
        ax=ax,
        color_palette={labels[s]: strategy_color(s) or "black" for s in ranks.index},
    )
    ax.set_title(title, fontsize="small")
    return _save(fig, out, name)
