"""Ray Tune's cost per trial: the same trajectories in one plain process and as sweeps.

    python benchmarks/ray_overhead.py [--datasets digits] [--strategies ...] [--rounds 2]

Three ways, one after the other in this run, on the same grid:
  plain     every trajectory in one Python process, one after another, one thread each;
  ray 1cpu  sweeps/focus1.py on a local Ray with one CPU: the same serial order, plus Ray;
  ray 2cpu  sweeps/focus1.py on a local Ray with two CPUs: two trials at a time.
Overhead per trial = (ray 1cpu wall − plain wall) / trials; it includes starting Ray.
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
from archdal.sweep.grid import expand
from archdal.sweep.presets import PRESETS

REPO = Path(__file__).resolve().parents[1]


def plain(configs) -> float:
    torch.set_num_threads(1)
    start = time.perf_counter()
    for config in configs:
        trajectory = Trajectory(config, Runtime(device="cpu"))
        while not trajectory.done:
            trajectory.run_round()
    return time.perf_counter() - start


def sweep(argv: list[str], cpus: int) -> tuple[float, float]:
    """Wall time of the whole command, and the summed time inside the trials."""
    with tempfile.TemporaryDirectory() as storage:
        command = [sys.executable, str(REPO / "sweeps" / "focus1.py"), *argv]
        command += ["--num-cpus", str(cpus), "--storage", storage, "--name", "bench"]
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, cwd=REPO)
        wall = time.perf_counter() - start
        rows = load_rounds(Path(storage) / "bench")
        inside = float((rows["round_end"] - rows["round_start"]).sum())
    return wall, inside


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["digits"])
    p.add_argument("--strategies", nargs="+", default=["random", "margin", "entropy", "badge"])
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    argv = ["--preset", "smoke", "--datasets", *args.datasets, "--strategies", *args.strategies]
    argv += ["--set", f"rounds={args.rounds}"]
    configs = expand(
        PRESETS["smoke"],
        {"datasets": tuple(args.datasets), "strategies": tuple(args.strategies)},
        {"rounds": args.rounds},
    )
    n = len(configs)
    base = plain(configs)
    wall1, inside1 = sweep(argv, 1)
    wall2, inside2 = sweep(argv, 2)
    print(f"{n} trajectories: {', '.join(args.datasets)} × {', '.join(args.strategies)}")
    print(f"{'way':<10}{'wall s':>9}{'in trials s':>13}{'per trial s':>13}")
    print(f"{'plain':<10}{base:>9.1f}{base:>13.1f}{base / n:>13.2f}")
    print(f"{'ray 1cpu':<10}{wall1:>9.1f}{inside1:>13.1f}{wall1 / n:>13.2f}")
    print(f"{'ray 2cpu':<10}{wall2:>9.1f}{inside2:>13.1f}{wall2 / n:>13.2f}")
    print(f"Ray overhead per trial (1 cpu, serial): {(wall1 - base) / n:.2f} s")


if __name__ == "__main__":
    main()
