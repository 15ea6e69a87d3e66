"""What `--gpus-per-trial` buys: the same N trials at 1, 2, 4 and 8 per GPU, in trials per hour.

    python benchmarks/gpu_packing.py                      # smoke preset, 8 trials, bf16 off
    python benchmarks/gpu_packing.py --preset small --seeds 0 1 --set max_epochs=20
    python benchmarks/gpu_packing.py --set precision=bf16

Each packing runs `sweeps/focus1.py` on a local Ray with one GPU and
`--gpus-per-trial 1/k`, so Ray Tune runs k trials at a time on it (each with
`--cpus-per-trial` CPUs); the grid is the preset's, the same at every k. Trials per hour is
N over the sweep's wall time, Ray's start included. Needs a CUDA device: without one it
says so and exits with code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
EXIT_NO_GPU = 2


def sweep_wall(argv: list[str], per_gpu: int, cpus_per_trial: float) -> float:
    with tempfile.TemporaryDirectory() as storage:
        command = [sys.executable, str(REPO / "sweeps" / "focus1.py"), *argv,
                   "--num-gpus", "1", "--gpus-per-trial", str(1 / per_gpu),
                   "--cpus-per-trial", str(cpus_per_trial),
                   "--num-cpus", str(per_gpu * cpus_per_trial),
                   "--storage", storage, "--name", "packing"]  # fmt: skip
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, cwd=REPO)
        return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="smoke")
    p.add_argument("--seeds", nargs="+", default=["0", "1", "2"], help="trials: preset × seeds")
    p.add_argument("--packings", nargs="+", type=int, default=[1, 2, 4, 8])
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_packing: torch sees no CUDA device; this benchmark packs trials onto one "
              "GPU, run it on a GPU machine", file=sys.stderr)  # fmt: skip
        return EXIT_NO_GPU
    cores = os.cpu_count() or 1
    sweep = ["--preset", args.preset, "--seeds", *args.seeds]
    for item in args.set:
        sweep += ["--set", item]
    print(f"preset {args.preset} × seeds {' '.join(args.seeds)} on {torch.cuda.get_device_name()}")
    trials = sweep_trials(args.preset, args.seeds, args.set)
    print(f"{'per GPU':>8}{'wall s':>10}{'trials/hour':>13}")
    for k in args.packings:
        if k * args.cpus_per_trial > cores:
            print(f"{k:>8}  skipped: needs {k * args.cpus_per_trial:g} CPUs, {cores} here")
            continue
        wall = sweep_wall(sweep, k, args.cpus_per_trial)
        print(f"{k:>8}{wall:>10.1f}{3600 * trials / wall:>13.1f}")
    return 0


def sweep_trials(preset: str, seeds: list[str], items: list[str]) -> int:
    """How many trials the sweep runs: its grid, expanded as focus1.py expands it."""
    from archdal.sweep.grid import expand
    from archdal.sweep.presets import PRESETS

    overrides = {}
    for key, _, raw in (i.partition("=") for i in items):
        try:
            overrides[key] = json.loads(raw)
        except json.JSONDecodeError:
            overrides[key] = raw
    return len(expand(PRESETS[preset], {"seeds": tuple(int(s) for s in seeds)}, overrides))


if __name__ == "__main__":
    sys.exit(main())
