"""Test accuracy of a frozen preset's trajectories over seeds, in one plain process (no Ray).

    python benchmarks/frozen_seeds.py --preset frozen-text --datasets banking77 \
        [--strategies random margin ...] [--init-strategies random kmeans ...] [--seeds 0 1 ...] \
        [--at 200 1000 2000] [--set KEY=VALUE ...] [--data-dir DIR] [--rows FILE]

Every trajectory of the preset (with the given factors replaced) runs one after another on one
thread, reading the embeddings from `--cache-dir` (computed on first use). Each finished
trajectory is appended to `--rows` (JSON lines), and a rerun with the same file skips the
trajectories it holds, so a stopped run resumes and two processes can share the factors out
between them (give each its own file, then pass both to `--rows` to read them together; with
`--report-only` nothing runs). Prints, per dataset and strategy, the mean ± standard deviation
over seeds of the test accuracy at each label count of `--at` and the mean wall seconds per
trajectory; with several initial pools, each non-random pool's paired difference from the
random pool of the same seed and strategy (mean, and a two-sided paired t-test's p).
`--set` changes a RunConfig field of every trajectory as the sweeps' `--set` does (a head,
an encoder seed); the settings are part of each row and of the tables' groups.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from archdal import Runtime, Trajectory
from archdal.analysis.metrics import paired_p_value
from archdal.errors import ConfigError
from archdal.families import load_data
from archdal.sweep.grid import expand, parse_setting
from archdal.sweep.presets import PRESETS


def finished_rows(paths: list[Path]) -> dict[tuple, dict]:
    """The trajectories already in these JSON-lines files, by their factors."""
    rows = {}
    for path in paths:
        if path.exists():
            for line in path.read_text().splitlines():
                row = json.loads(line)
                rows[row_key(row)] = row
    return rows


def row_key(row: dict) -> tuple:
    """(dataset, encoder, initial pool, strategy, settings, seed); rows of before `--set`
    have no settings."""
    factors = tuple(row[k] for k in ("dataset", "encoder", "init_strategy", "strategy"))
    return (*factors, row.get("settings", ""), row["seed"])


def cell(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {spread:.1f}"


def print_tables(rows: dict[tuple, dict], at: list[int]) -> None:
    groups: dict[tuple, list[dict]] = {}
    for key, row in rows.items():
        groups.setdefault(key[:5], []).append(row)
    columns = " | ".join(f"{n} labels" for n in at)
    print(f"| dataset | encoder | initial pool | strategy | settings | {columns} | seeds "
          "| s per trajectory |")  # fmt: skip
    print("|---|---|---|---|---|" + "---:|" * (len(at) + 2))
    for (dataset, encoder, initial, strategy, settings), runs in groups.items():
        cells = [cell([100 * r["test_acc"][str(n)] for r in runs]) for n in at]
        seconds = statistics.mean(r["seconds"] for r in runs)
        print(f"| {dataset} | {encoder} | {initial} | {strategy} | {settings or '-'} | "
              + " | ".join(cells) + f" | {len(runs)} | {seconds:.1f} |")  # fmt: skip
    pools = sorted({key[2] for key in rows} - {"random"})
    if not pools or not any(key[2] == "random" for key in rows):
        return
    print(f"\nInitial pool minus the random pool, paired by seed and strategy (pp; p of a "
          f"paired t-test), at {', '.join(map(str, at))} labels:")  # fmt: skip
    print(f"| dataset | encoder | initial pool | strategy | settings | {columns} | pairs |")
    print("|---|---|---|---|---|" + "---:|" * (len(at) + 1))
    for (dataset, encoder, initial, strategy, settings), runs in groups.items():
        if initial == "random":
            continue
        pairs = [(r, rows.get((dataset, encoder, "random", strategy, settings, r["seed"])))
                 for r in runs]  # fmt: skip
        pairs = [(a, b) for a, b in pairs if b is not None]
        cells = []
        for n in at:
            mine = [100 * a["test_acc"][str(n)] for a, _ in pairs]
            base = [100 * b["test_acc"][str(n)] for _, b in pairs]
            gap = statistics.mean(m - b for m, b in zip(mine, base, strict=True))
            p = paired_p_value(np.array(mine), np.array(base))
            cells.append(f"{gap:+.1f} (p {p:.2g})")
        print(f"| {dataset} | {encoder} | {initial} | {strategy} | {settings or '-'} | "
              + " | ".join(cells) + f" | {len(pairs)} |")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", default="frozen-text", choices=("frozen-text", "frozen-images"))
    p.add_argument("--datasets", nargs="+")
    p.add_argument("--encoders", nargs="+")
    p.add_argument("--strategies", nargs="+")
    p.add_argument("--init-strategies", nargs="+", help="initial pools (default: random)")
    p.add_argument("--seeds", nargs="+", type=int)
    p.add_argument("--at", nargs="+", type=int, required=True, help="label counts to report")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a RunConfig field for every trajectory (e.g. head=mlp, "
                        "encoder_options.seed=1), as in the sweeps")  # fmt: skip
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--cache-dir", type=Path)
    p.add_argument("--rows", nargs="+", type=Path, default=[],
                   help="JSON-lines files of finished trajectories: the first is appended to, "
                        "all are read")  # fmt: skip
    p.add_argument("--report-only", action="store_true", help="read --rows, run nothing")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    names = ("datasets", "encoders", "strategies", "init_strategies", "seeds")
    factors = {k: tuple(v) for k in names if (v := getattr(args, k))}
    try:
        settings = dict(parse_setting(text) for text in args.set)
        configs = [] if args.report_only else expand(PRESETS[args.preset], factors, settings)
    except ConfigError as err:
        print(f"frozen_seeds.py: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    setting_text = " ".join(sorted(args.set))
    runtime = Runtime(data_dir=args.data_dir, cache_dir=args.cache_dir, device="cpu", quiet=True)
    rows = finished_rows(args.rows)
    data: dict[tuple[str, str, int], object] = {}
    for config in configs:
        row = dict(dataset=config.dataset, encoder=config.encoder,
                   init_strategy=config.init_strategy, strategy=config.strategy,
                   settings=setting_text, seed=config.seed)  # fmt: skip
        if row_key(row) in rows:
            continue
        key = (config.dataset, config.encoder, config.seed)  # held-out test sets vary by seed
        if key not in data:
            data[key] = load_data(config, runtime)
        start = time.perf_counter()
        trajectory = Trajectory(config, runtime, data[key])
        while not trajectory.done:
            trajectory.run_round()
        row["test_acc"] = {str(r["n_labeled"]): r["test_acc"] for r in trajectory.records}
        row["seconds"] = time.perf_counter() - start
        rows[row_key(row)] = row
        if args.rows:
            with args.rows[0].open("a") as fh:
                fh.write(json.dumps(row) + "\n")
    print_tables(rows, args.at)


if __name__ == "__main__":
    main()
