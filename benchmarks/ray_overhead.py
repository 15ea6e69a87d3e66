"""Ray Tune's cost per trajectory: the same trajectories in one plain process and as sweeps.

    python benchmarks/ray_overhead.py [--preset smoke] [--datasets digits] [--strategies ...]
    python benchmarks/ray_overhead.py --preset frozen-images --datasets digits \\
        --encoders pixels --seeds 0 1 2 3 4 5 6 7 8 9 --seeds-per-trial 1 10

One after another in this run, on the same grid:
  plain       every trajectory in one Python process, one after another, one thread;
  ray 1cpu/K  sweeps/focus1.py on a local Ray with one CPU (the same serial order, plus Ray),
              K trajectories a trial (`--seeds-per-trial K`), for each K asked for.
Overhead per trajectory = (sweep wall − plain wall) / trajectories; it includes starting Ray,
and its share is that overhead over the plain seconds of a trajectory. With two or more K,
a line through (trials, sweep wall − plain wall) splits the overhead into Ray's fixed cost
(start-up, driver) and its cost per trial, and gives the share of the per-trial part alone.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from archdal import Runtime, Trajectory
from archdal.analysis.results import load_rounds
from archdal.sweep.grid import expand, group_seeds
from archdal.sweep.presets import PRESETS

REPO = Path(__file__).resolve().parents[1]


def plain(configs, cache_dir: Path) -> float:
    torch.set_num_threads(1)
    start = time.perf_counter()
    for config in configs:
        trajectory = Trajectory(config, Runtime(device="cpu", cache_dir=cache_dir, quiet=True))
        while not trajectory.done:
            trajectory.run_round()
    return time.perf_counter() - start


def sweep(argv: list[str], seeds_per_trial: int, cache_dir: Path) -> tuple[float, int]:
    """Wall time of the whole command, and the trajectories its results table holds."""
    with tempfile.TemporaryDirectory() as storage:
        command = [sys.executable, str(REPO / "sweeps" / "focus1.py"), *argv, "--num-cpus", "1",
                   "--seeds-per-trial", str(seeds_per_trial), "--storage", storage,
                   "--name", "bench", "--no-report", "--cache-dir", str(cache_dir)]  # fmt: skip
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, cwd=REPO)
        wall = time.perf_counter() - start
        trajectories = load_rounds(Path(storage) / "bench")["trial"].nunique()
    return wall, trajectories


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", default="smoke", choices=sorted(PRESETS))
    p.add_argument("--datasets", nargs="+", default=["digits"])
    p.add_argument("--encoders", nargs="+", help="the frozen presets' encoders")
    p.add_argument("--strategies", nargs="+", default=["random", "margin", "entropy", "badge"])
    p.add_argument("--seeds", nargs="+", type=int, help="default: the preset's")
    p.add_argument("--rounds", type=int, help="default: the preset's")
    p.add_argument("--seeds-per-trial", nargs="+", type=int, default=[1], metavar="K")
    p.add_argument("--data-dir", type=Path)
    args = p.parse_args()
    factors = {"datasets": tuple(args.datasets), "strategies": tuple(args.strategies)}
    argv = ["--preset", args.preset, "--datasets", *args.datasets,
            "--strategies", *args.strategies]  # fmt: skip
    if args.encoders:
        factors["encoders"] = tuple(args.encoders)
        argv += ["--encoders", *args.encoders]
    if args.seeds:
        factors["seeds"] = tuple(args.seeds)
        argv += ["--seeds", *map(str, args.seeds)]
    settings = {} if args.rounds is None else {"rounds": args.rounds}
    argv += [] if args.rounds is None else ["--set", f"rounds={args.rounds}"]
    argv += [] if args.data_dir is None else ["--data-dir", str(args.data_dir)]
    configs = expand(PRESETS[args.preset], factors, settings)
    n = len(configs)
    with tempfile.TemporaryDirectory() as cache:
        cache_dir = Path(cache)
        plain(configs[:1], cache_dir)  # embeddings (frozen presets) cached for every way
        base = plain(configs, cache_dir)
        ways = [(k, *sweep(argv, k, cache_dir)) for k in args.seeds_per_trial]
    print(f"{n} trajectories: preset {args.preset}, {', '.join(args.datasets)} × "
          f"{', '.join(args.strategies)}, one thread")  # fmt: skip
    print(f"{'way':<14}{'wall s':>9}{'s/trajectory':>14}{'Ray s/traj.':>13}{'Ray share':>11}")
    print(f"{'plain':<14}{base:>9.1f}{base / n:>14.2f}{'':>13}{'':>11}")
    trials = {k: len(group_seeds(configs, k)) for k in args.seeds_per_trial}
    for k, wall, seen in ways:
        assert seen == n, f"the sweep with K={k} holds {seen} trajectories, not {n}"
        extra = (wall - base) / n
        print(f"{f'ray 1cpu/K={k}':<14}{wall:>9.1f}{wall / n:>14.2f}{extra:>13.2f}"
              f"{extra / (base / n):>10.0%}   ({trials[k]} trials)")  # fmt: skip
    if len(trials) >= 2:
        x = torch.tensor([float(trials[k]) for k, _, _ in ways], dtype=torch.float64)
        y = torch.tensor([wall - base for _, wall, _ in ways], dtype=torch.float64)
        slope = float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum())
        fixed = float(y.mean() - slope * x.mean())
        print(f"Ray's fixed cost {fixed:.1f} s, its cost per trial {slope:.2f} s")
        for k in args.seeds_per_trial:
            share = slope * trials[k] / base
            print(f"  K={k}: per-trial cost {share:.0%} of the trajectories' own time")


if __name__ == "__main__":
    main()
