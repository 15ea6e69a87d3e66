"""Ray Tune's cost per trajectory: the same trajectories in one plain process and as sweeps.

    python benchmarks/ray_overhead.py [--preset smoke] [--datasets digits] [--strategies ...]
    python benchmarks/ray_overhead.py --preset frozen-images --datasets digits \\
        --encoders pixels --seeds 0 1 2 3 4 5 6 7 8 9 --seeds-per-trial 1 10

One after another in this run, on the same grid:
  plain       every trajectory in one Python process, one after another, one thread;
  ray 1cpu/K  sweeps/focus1.py on a local Ray with one CPU (the same serial order, plus Ray),
              K trajectories a trial (`--seeds-per-trial K`), for each K asked for.
The trials' own clocks (each round's start and end) split a sweep's wall time into its start
(Ray, the driver, the first worker, up to the first round), its end (after the last round:
shutdown, the results table) and the middle, where the sweep does what plain does after
building its first trajectory. The middle's excess over that, divided by the trials, is Ray's
cost per trial (a new worker, reports and checkpoints, a fresh process's slower first rounds);
its share is that cost times the trials over plain's seconds. Start and end are paid once per
sweep. The rounds and the gaps between trajectories are printed for where the time goes.
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


def plain(configs, cache_dir: Path, data_dir: Path | None) -> tuple[float, float]:
    """Wall seconds of every trajectory in turn, and the part spent building them (data,
    split, model) before their first round."""
    torch.set_num_threads(1)
    runtime = Runtime(data_dir=data_dir, device="cpu", cache_dir=cache_dir, quiet=True)
    start = time.perf_counter()
    building = 0.0
    for config in configs:
        built = time.perf_counter()
        trajectory = Trajectory(config, runtime)
        building += time.perf_counter() - built
        while not trajectory.done:
            trajectory.run_round()
    return time.perf_counter() - start, building


def sweep(argv: list[str], seeds_per_trial: int, cache_dir: Path) -> dict[str, float]:
    """The sweep's wall time split by the trials' own clocks (each round's `round_start` and
    `round_end`, serial on one CPU): `start` from the command to the first round, `end`
    from the last round to the command's exit, `rounds` inside trajectories, `gaps`
    between one trajectory's last round and the next one's first."""
    with tempfile.TemporaryDirectory() as storage:
        command = [sys.executable, str(REPO / "sweeps" / "focus1.py"), *argv, "--num-cpus", "1",
                   "--seeds-per-trial", str(seeds_per_trial), "--storage", storage,
                   "--name", "bench", "--no-report", "--cache-dir", str(cache_dir)]  # fmt: skip
        launched = time.time()
        subprocess.run(command, check=True, capture_output=True, cwd=REPO)
        ended = time.time()
        rows = load_rounds(Path(storage) / "bench")
    spans = rows.groupby("trial").agg(first=("round_start", "min"), last=("round_end", "max"))
    spans = spans.sort_values("first")
    gaps = spans["first"].to_numpy()[1:] - spans["last"].to_numpy()[:-1]
    return {
        "wall": ended - launched,
        "trajectories": len(spans),
        "trials": spans.index.str.split("/").str[0].nunique(),
        "start": spans["first"].iloc[0] - launched,
        "end": ended - spans["last"].iloc[-1],
        "rounds": float((spans["last"] - spans["first"]).sum()),
        "gaps": float(gaps.sum()),
    }


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
        plain(configs[:1], cache_dir, args.data_dir)  # frozen presets: embed once for every way
        base, building = plain(configs, cache_dir, args.data_dir)
        ways = [(k, sweep(argv, k, cache_dir)) for k in args.seeds_per_trial]
    print(f"{n} trajectories: preset {args.preset}, {', '.join(args.datasets)} × "
          f"{', '.join(args.strategies)}, one thread")  # fmt: skip
    print(
        f"plain: {base:.1f} s, {base / n:.2f} s a trajectory ({building / n:.2f} s of it "
        "building the trajectory before its first round)"
    )
    print(f"{'way':<14}{'trials':>7}{'wall s':>8}{'start s':>9}{'end s':>7}{'rounds s':>10}"
          f"{'gaps s':>8}{'per trial s':>13}{'share':>7}")  # fmt: skip
    for k, w in ways:
        assert w["trajectories"] == n, f"K={k}: {w['trajectories']} trajectories, not {n}"
        # from the first round to the last, the sweep does what plain does after building
        # its first trajectory; the rest is what the trials cost Ray (new workers, reports,
        # checkpoints, each fresh process's first rounds)
        middle = w["wall"] - w["start"] - w["end"]
        per_trial = (middle - (base - building / n)) / w["trials"]
        print(f"{f'ray 1cpu/K={k}':<14}{w['trials']:>7}{w['wall']:>8.1f}{w['start']:>9.1f}"
              f"{w['end']:>7.1f}{w['rounds']:>10.1f}{w['gaps']:>8.1f}"
              f"{per_trial:>13.2f}{per_trial * w['trials'] / base:>7.1%}")  # fmt: skip
    print(
        "share: Ray's cost per trial times the trials, over the plain run's seconds; start "
        "(Ray, the driver, the first worker) and end are paid once per sweep"
    )


if __name__ == "__main__":
    main()
