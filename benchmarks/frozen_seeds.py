"""Test accuracy of a frozen preset's trajectories over seeds, in one plain process (no Ray).

    python benchmarks/frozen_seeds.py --preset frozen-text --datasets banking77 \
        [--strategies random margin ...] [--init-strategies random kmeans ...] [--seeds 0 1 ...] \
        [--at 200 1000 2000] [--data-dir DIR]

Every trajectory of the preset (with the given factors replaced) runs one after another on one
thread, reading the embeddings from `--cache-dir` (computed on first use). Prints, per dataset
and strategy, the mean ± standard deviation over seeds of the test accuracy at each label count
of `--at`, and the mean wall seconds per trajectory.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from archdal import Runtime, Trajectory
from archdal.families import load_data
from archdal.sweep.grid import expand
from archdal.sweep.presets import PRESETS


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", default="frozen-text", choices=("frozen-text", "frozen-images"))
    p.add_argument("--datasets", nargs="+")
    p.add_argument("--encoders", nargs="+")
    p.add_argument("--strategies", nargs="+")
    p.add_argument("--init-strategies", nargs="+", help="initial pools (default: random)")
    p.add_argument("--seeds", nargs="+", type=int)
    p.add_argument("--at", nargs="+", type=int, required=True, help="label counts to report")
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--cache-dir", type=Path)
    args = p.parse_args()
    torch.set_num_threads(1)
    names = ("datasets", "encoders", "strategies", "init_strategies", "seeds")
    factors = {k: tuple(v) for k in names if (v := getattr(args, k))}
    runtime = Runtime(data_dir=args.data_dir, cache_dir=args.cache_dir, device="cpu", quiet=True)
    results: dict[tuple[str, str, str, str], list[tuple[dict[int, float], float]]] = {}
    data: dict[tuple[str, str, int], object] = {}
    for config in expand(PRESETS[args.preset], factors):
        key = (config.dataset, config.encoder, config.seed)  # held-out test sets vary by seed
        if key not in data:
            data[key] = load_data(config, runtime)
        start = time.perf_counter()
        trajectory = Trajectory(config, runtime, data[key])
        while not trajectory.done:
            trajectory.run_round()
        accuracy = {r["n_labeled"]: r["test_acc"] for r in trajectory.records}
        row = (config.dataset, config.encoder, config.init_strategy, config.strategy)
        results.setdefault(row, []).append((accuracy, time.perf_counter() - start))
    columns = " | ".join(f"{n} labels" for n in args.at)
    print(f"| dataset | encoder | initial pool | strategy | {columns} | seeds | s per trajectory |")
    print("|---|---|---|---|" + "---:|" * (len(args.at) + 2))
    for (dataset, encoder, initial, strategy), runs in results.items():
        cells = []
        for n in args.at:
            values = [100 * accuracy[n] for accuracy, _ in runs]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.1f} ± {spread:.1f}")
        seconds = statistics.mean(s for _, s in runs)
        print(f"| {dataset} | {encoder} | {initial} | {strategy} | " + " | ".join(cells)
              + f" | {len(runs)} | {seconds:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
