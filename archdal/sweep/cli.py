"""Command lines of `sweeps/focus1.py`, `sweeps/focus2.py` and `sweeps/tune_hparams.py`.

Each runs one pre-flight (`preflight`): factor values, sizes against the real splits,
storage, the experiment to start or resume, the report folder, the Ray address; a problem
is one line with exit code 2 before the first trial starts (`archdal.cli.main_guard`).
While trials run the console shows a status table (`archdal.sweep.tune.StatusTable`).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray import tune

from archdal.analysis.report import build_report, check_report_out
from archdal.archopt.build import pre_optimization_name
from archdal.cli import Parser, main_guard
from archdal.config import FACTORS, PRE_OPTIMIZED, RunConfig, Runtime, default_data_dir
from archdal.errors import ArchdalError, ConfigError
from archdal.io import FolderLock
from archdal.sweep.grid import (
    check_budgets,
    expand,
    group_seeds,
    parse_bool,
    parse_setting,
    settable_fields,
    trial_name,
)
from archdal.sweep.hparams import hparams_key, load_hparams, save_hparams
from archdal.sweep.presets import FOCUS2_PRESETS, PRESETS, Preset
from archdal.sweep.tune import (
    Sweep,
    archopt_trainable,
    can_restore,
    check_fits_local_ray,
    check_new_or_resumable,
    check_storage,
    connect,
    default_storage,
    run_trajectories,
    summarize,
    tune_hparams,
    write_sweep_file,
)

_FACTOR_TYPES = {"seeds": int, "init_sizes": int, "acq_sizes": int}


def _typed(name: str, values: list[str]) -> tuple[Any, ...]:
    convert = parse_bool if name == "augment" else _FACTOR_TYPES.get(name, str)
    try:
        return tuple(convert(v) for v in values)
    except ValueError as err:
        raise ConfigError(f"--{name.replace('_', '-')}: {err}") from err


def _add_grid_arguments(p: argparse.ArgumentParser, default_preset: str,
                        presets: dict[str, Preset]) -> None:  # fmt: skip
    g = p.add_argument_group("grid")
    g.add_argument(
        "--preset",
        default=default_preset,
        choices=sorted(presets),
        help="; ".join(f"{n}: {presets[n].description}" for n in sorted(presets))
        + f" (default: {default_preset})",
    )
    for name in FACTORS:
        g.add_argument(
            f"--{name.replace('_', '-')}",
            nargs="+",
            metavar="V",
            help=f"replace the preset's {FACTORS[name]} values",
        )
    g.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a RunConfig field for every trial (e.g. width=0.25, max_epochs=50, "
        "arch_options.filters=16); the keys are listed below",
    )


def _add_placement_arguments(
    p: argparse.ArgumentParser, name_hint: str, trajectories: bool = True
) -> None:
    r = p.add_argument_group("ray")
    if trajectories:
        r.add_argument(
            "--seeds-per-trial",
            type=int,
            metavar="K",
            help="trajectories a trial runs: K seeds of one setting, one after another, each "
            "its own result rows and resume point; for trajectories of seconds, whose Ray "
            "cost per trial would outweigh them (default: the preset's; 10 for the frozen "
            "presets, else 1)",
        )
    r.add_argument("--address", help="'auto', HOST:PORT or ray://HOST:PORT; none: a local Ray")
    r.add_argument("--num-cpus", type=float, help="CPUs of the local Ray (default: all)")
    r.add_argument("--num-gpus", type=float, help="GPUs the local Ray declares (default: found)")
    r.add_argument(
        "--cpus-per-trial", type=float, default=1.0, help="CPUs (and threads) a trial (default: 1)"
    )
    r.add_argument(
        "--gpus-per-trial",
        type=float,
        default=0.0,
        help="fractions share a GPU: 0.25 = 4 per GPU (default: 0)",
    )
    r.add_argument("--max-concurrent", type=int, help="trials at once (default: as resources)")
    r.add_argument(
        "--storage",
        type=Path,
        default=None,
        help="results root, absolute or shared by all nodes (default: $ARCHDAL_RESULTS, "
        "else ~/archdal_results)",
    )
    r.add_argument("--name", help=f"experiment name (default: {name_hint})")
    r.add_argument(
        "--status-every",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="print the trials' status table this often (default: 30)",
    )
    d = p.add_argument_group("data")
    d.add_argument("--data-dir", type=Path, help="default: $ARCHDAL_DATA, then the cache")
    d.add_argument("--download", action="store_true", help="fetch missing datasets")
    d.add_argument(
        "--cache-dir",
        type=Path,
        help="tokenized text and frozen embeddings (default: $ARCHDAL_CACHE, ~/.cache/archdal)",
    )
    d.add_argument(
        "--eval-batch-size",
        type=int,
        default=Runtime().eval_batch_size,
        help="batch size of evaluation and pool passes (default: 0, the device's: "
        "archdal.config.EVAL_BATCH)",
    )


def _parser(prog: str, description: str) -> Parser:
    return Parser(
        prog=prog,
        description=description,
        epilog=settable_fields(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _grid(args: argparse.Namespace, presets: dict[str, Preset], hparams=None) -> list[RunConfig]:
    factors = {
        name: _typed(name, getattr(args, name))
        for name in FACTORS
        if getattr(args, name) is not None
    }
    settings = dict(parse_setting(text) for text in args.set)
    return expand(presets[args.preset], factors, settings, hparams)


def _runtime(args: argparse.Namespace) -> Runtime:
    data_dir = (args.data_dir or default_data_dir()).expanduser().absolute()
    cache_dir = args.cache_dir.expanduser().absolute() if args.cache_dir else None
    return Runtime(
        data_dir=data_dir,
        download=args.download,
        cache_dir=cache_dir,
        eval_batch_size=args.eval_batch_size,
    ).validate()


def _sweep(args: argparse.Namespace, name: str, runtime: Runtime, **extra: Any) -> Sweep:
    sweep = Sweep(
        storage=(args.storage or default_storage()).expanduser().absolute(),
        name=name,
        runtime=runtime,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        max_concurrent=args.max_concurrent,
        status_every=args.status_every,
        **extra,
    ).validate()
    check_storage(sweep.storage)
    return sweep


def print_grid(configs: list[RunConfig], preset: str) -> None:
    print(f"preset {preset}: {len(configs)} trials")
    for name, field in FACTORS.items():
        values = sorted({getattr(c, field) for c in configs}, key=str)
        print(f"  {name:<11} {', '.join(map(str, values))}")
    dicts = [c.to_dict() for c in configs]
    shared = {
        k: v
        for k, v in dicts[0].items()
        if k not in FACTORS.values() and all(d[k] == v for d in dicts)
    }
    print("  shared      " + ", ".join(f"{k}={v}" for k, v in sorted(shared.items())))
    for config in configs:
        print(f"    {trial_name(config)}")
    print(f"{len(configs)} trials")


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a sweep command checked before its first trial: trials, data and experiment."""

    configs: list[RunConfig]
    runtime: Runtime
    sweep: Sweep
    locks: list[FolderLock]

    def release(self) -> None:
        for lock in self.locks:
            lock.release()


def preflight(
    args: argparse.Namespace,
    presets: dict[str, Preset],
    name: str,
    check_experiments: Callable[[list[RunConfig], Sweep], list[RunConfig]],
    folders: Callable[[Sweep], list[Path]] = lambda sweep: [sweep.path],
) -> Plan | int:
    """Every check of a Focus 1 or Focus 2 sweep, in one order: the grid (exit status 0
    after printing it for --dry-run), data and storage, the experiments (`check_experiments`
    returns the AL trials to run), the report folder, every budget, then the experiment
    `folders` are locked for this driver alone and Ray is connected."""
    hparams = load_hparams(args.hparams) if args.hparams else None
    grid = _grid(args, presets, hparams)
    if args.dry_run:
        print_grid(grid, args.preset)
        return 0
    runtime = _runtime(args)
    grouped = args.seeds_per_trial
    grouped = presets[args.preset].seeds_per_trial if grouped is None else grouped
    sweep = _sweep(args, name, runtime, max_failures=args.max_failures, seeds_per_trial=grouped)
    configs = check_experiments(grid, sweep)
    if args.report and not args.no_report:
        check_report_out(args.report)
    check_budgets(configs, runtime)
    locks: list[tuple[FolderLock, bool]] = []
    try:
        for folder in folders(sweep):
            existed = folder.exists()
            locks.append((FolderLock(folder, "--name").acquire(), existed))
        connect(args.address, args.num_cpus, args.num_gpus)
        if args.address is None:
            check_fits_local_ray(sweep)
    except BaseException:
        for lock, existed in locks:
            lock.release(remove_folder=not existed)
        raise
    return Plan(configs, runtime, sweep, [lock for lock, _ in locks])


def build_focus1_parser(focus: int = 1) -> argparse.ArgumentParser:
    description = {
        1: "Focus 1 as a Ray Tune sweep: one trial per active-learning trajectory.",
        2: "Focus 2 as Ray Tune sweeps: stage one pre-optimizes architectures (spo, upo) as "
        "trials of their own; stage two runs one trial per active-learning trajectory, "
        "loading them.",
    }[focus]
    p = _parser(f"sweeps/focus{focus}.py", description)
    _add_grid_arguments(p, "smoke", PRESETS if focus == 1 else FOCUS2_PRESETS)
    p.add_argument("--hparams", type=Path, help="tuned lr/weight decay/batch size per dataset×arch")
    _add_placement_arguments(p, f"focus{focus}-PRESET")
    p.add_argument(
        "--max-failures", type=int, default=3, help="retries of a failed trial (default: 3)"
    )
    p.add_argument("--resume", action="store_true", help="finish the interrupted experiment")
    p.add_argument("--dry-run", action="store_true", help="print the grid and exit")
    p.add_argument(
        "--report",
        type=Path,
        help="where the end-of-sweep report goes (default: the experiment's report/ folder)",
    )
    p.add_argument("--no-report", action="store_true", help="skip the end-of-sweep report")
    return p


def write_report(experiment: Path, out: Path | None, prog: str) -> None:
    """The analysis report of the sweep just run; a sweep that cannot be reported on (say,
    no random baseline) still succeeded, so this warns instead of failing."""
    try:
        page = build_report([experiment], out or experiment / "report")
    except ArchdalError as err:
        print(f"{prog}: report not written: {err}", file=sys.stderr)
        return
    print(f"{prog}: report {page}")


def _run_experiment(
    prog: str,
    args: argparse.Namespace,
    sweep: Sweep,
    configs: list[RunConfig],
    resume: bool,
    what: str,
    **run: Any,
) -> list[str]:
    """Record a new experiment's grid, run (or restore and finish) it, say how it went;
    returns the failed trials. `run` goes to `run_trajectories`."""
    if not resume:
        write_sweep_file(sweep, configs, {"preset": args.preset, "argv": sys.argv[1:]})
    grouped = (
        ""
        if sweep.seeds_per_trial == 1
        else (f" ({len(configs)} trajectories, up to {sweep.seeds_per_trial} seeds a trial)")
    )
    count = len(group_seeds(configs, sweep.seeds_per_trial))
    print(f"{prog}: {count} {what}{grouped} -> {sweep.path}", flush=True)
    total, failed = summarize(run_trajectories(sweep, configs, resume, **run))
    print(f"{prog}: {total - len(failed)}/{total} {what} finished; results in {sweep.path}")
    for line in failed:
        print(f"{prog}: failed: {line}", file=sys.stderr)
    return failed


def _finish(prog: str, args: argparse.Namespace, sweep: Sweep, failed: list[str]) -> int:
    """Where to look, the report unless --no-report, and the exit status."""
    print(f"        tensorboard --logdir {sweep.path}")
    if not args.no_report:
        write_report(sweep.path, args.report, prog)
    return 1 if failed else 0


def focus1_main(argv: list[str] | None = None) -> int:
    return main_guard("focus1", lambda: _focus1(build_focus1_parser().parse_args(argv)))


def _focus1(args: argparse.Namespace) -> int:
    def experiments(configs: list[RunConfig], sweep: Sweep) -> list[RunConfig]:
        check_new_or_resumable(sweep, configs, args.resume)
        return configs

    plan = preflight(args, PRESETS, args.name or f"focus1-{args.preset}", experiments)
    if isinstance(plan, int):
        return plan
    try:
        failed = _run_experiment("focus1", args, plan.sweep, plan.configs, args.resume, "trials")
        return _finish("focus1", args, plan.sweep, failed)
    finally:
        plan.release()


def stage_one(configs: list[RunConfig], results_dir: Path) -> tuple[list, list[RunConfig]]:
    """The distinct pre-optimizations the AL configs need (as configs of their own), and
    the AL configs pointing at the files those will write."""
    jobs: dict[str, RunConfig] = {}
    trajectories = []
    for config in configs:
        if config.arch_mode not in PRE_OPTIMIZED:
            trajectories.append(config)
            continue
        name = pre_optimization_name(config)
        jobs.setdefault(name, dataclasses.replace(config, strategy="random", rounds=0))
        source = str(results_dir / f"{name}.pt")
        trajectories.append(dataclasses.replace(config, arch_source=source))
    return list(jobs.values()), trajectories


def _stage(sweep: Sweep) -> Sweep:
    """Stage one's experiment: one trial per pre-optimization, whatever stage two groups."""
    return dataclasses.replace(sweep, name=f"{sweep.name}-archopt", seeds_per_trial=1)


def focus2_main(argv: list[str] | None = None) -> int:
    """Stage one (pre-optimizations) then stage two (the AL trials), each its own Tune
    experiment; `--resume` restores whichever was interrupted and runs what is left."""
    return main_guard("focus2", lambda: _focus2(build_focus1_parser(focus=2).parse_args(argv)))


def _focus2(args: argparse.Namespace) -> int:
    jobs: list[RunConfig] = []

    def experiments(grid: list[RunConfig], sweep: Sweep) -> list[RunConfig]:
        stage = _stage(sweep)
        jobs[:], configs = stage_one(grid, stage.path / "results")
        check_new_or_resumable(sweep, configs, args.resume and can_restore(sweep))
        if jobs:
            check_new_or_resumable(stage, jobs, args.resume and can_restore(stage))
        if args.resume and not (can_restore(sweep) or can_restore(stage)):
            raise ConfigError(f"--resume: no experiment to resume at {sweep.path} (check "
                              "--storage and --name)")  # fmt: skip
        return configs

    name = args.name or f"focus2-{args.preset}"
    plan = preflight(args, FOCUS2_PRESETS, name, experiments,
                     lambda sweep: [sweep.path] + [_stage(sweep).path] * bool(jobs))  # fmt: skip
    if isinstance(plan, int):
        return plan
    try:
        return _run_stages(args, plan, jobs)
    finally:
        plan.release()


def _run_stages(args: argparse.Namespace, plan: Plan, jobs: list[RunConfig]) -> int:
    sweep, stage = plan.sweep, _stage(plan.sweep)
    if jobs:
        failed = _run_experiment(
            "focus2", args, stage, jobs, can_restore(stage), "architecture optimizations",
            trainable=archopt_trainable, name=pre_optimization_name,
            results_dir=str(stage.path / "results"),
        )  # fmt: skip
        if failed:
            print("focus2: stage two needs every optimization; fix and --resume", file=sys.stderr)
            return 1
    failed = _run_experiment("focus2", args, sweep, plan.configs, can_restore(sweep), "trials")
    return _finish("focus2", args, sweep, failed)


def build_hparams_parser() -> argparse.ArgumentParser:
    p = _parser(
        "sweeps/tune_hparams.py",
        "Tune lr, weight decay and batch size per dataset × architecture with Optuna on the "
        "initial labelled pool (objective: validation accuracy).",
    )
    _add_grid_arguments(p, "smoke", PRESETS)
    s = p.add_argument_group("search")
    s.add_argument(
        "--num-samples", type=int, default=20, help="Optuna trials per dataset×arch (default: 20)"
    )
    s.add_argument("--search-seed", type=int, default=0, help="seeds Optuna's sampler (default: 0)")
    s.add_argument("--lr-range", type=float, nargs=2, default=(1e-3, 0.3), metavar=("LO", "HI"),
                   help="log-uniform (default: 0.001 0.3)")  # fmt: skip
    s.add_argument("--weight-decay-range", type=float, nargs=2, default=(1e-7, 1e-3),
                   metavar=("LO", "HI"), help="log-uniform (default: 1e-07 0.001)")  # fmt: skip
    s.add_argument("--batch-sizes", type=int, nargs="+", default=(16, 32, 64, 128),
                   help="choices (default: 16 32 64 128)")  # fmt: skip
    _add_placement_arguments(p, "hparams-PRESET", trajectories=False)
    p.add_argument("--out", type=Path, help="hyperparameter file (default: STORAGE/NAME.json)")
    return p


def _search_space(args: argparse.Namespace) -> dict[str, Any]:
    for flag, (lo, hi) in (("lr", args.lr_range), ("weight-decay", args.weight_decay_range)):
        if not 0 < lo < hi:
            raise ConfigError(f"--{flag}-range needs 0 < LO < HI, got {lo} {hi}")
    if args.num_samples < 1:
        raise ConfigError(f"--num-samples must be at least 1, got {args.num_samples}")
    if any(b < 1 for b in args.batch_sizes):
        raise ConfigError(f"--batch-sizes must be positive, got {list(args.batch_sizes)}")
    return {
        "lr": tune.loguniform(*args.lr_range),
        "weight_decay": tune.loguniform(*args.weight_decay_range),
        "batch_size": tune.choice(sorted(set(args.batch_sizes))),
    }


def tune_hparams_main(argv: list[str] | None = None) -> int:
    return main_guard(
        "tune_hparams", lambda: _tune_hparams(build_hparams_parser().parse_args(argv))
    )


def _tune_hparams(args: argparse.Namespace) -> int:
    configs = _grid(args, PRESETS)
    space = _search_space(args)
    runtime = _runtime(args)
    sweep = _sweep(args, args.name or f"hparams-{args.preset}", runtime)
    # One base per dataset × arch: the grid's first trial of that pair (its seed's
    # split and initial size); the strategy does not matter on the initial pool.
    bases: dict[str, RunConfig] = {}
    for config in configs:
        bases.setdefault(hparams_key(config.dataset, config.arch), config)
    check_budgets(list(bases.values()), runtime)
    out = (args.out or sweep.storage / f"{sweep.name}.json").expanduser().absolute()
    best = load_hparams(out) if out.exists() else {}  # tuning more pairs adds to a file
    connect(args.address, args.num_cpus, args.num_gpus)
    search = {
        "lr_range": list(args.lr_range),
        "weight_decay_range": list(args.weight_decay_range),
        "batch_sizes": sorted(set(args.batch_sizes)),
        "num_samples": args.num_samples,
        "search_seed": args.search_seed,
        "objective": "val_acc after training on the initial labelled pool",
    }
    for key, base in bases.items():
        pair = dataclasses.replace(sweep, name=f"{sweep.name}-{key.replace('/', '-')}")
        best[key] = tune_hparams(pair, base, args.num_samples, args.search_seed, space)
        save_hparams(out, best, search)
        print(
            f"tune_hparams: {key}: lr {best[key]['lr']:.4g}, weight decay "
            f"{best[key]['weight_decay']:.3g}, batch size {best[key]['batch_size']} "
            f"(val {100 * best[key]['val_acc']:.2f}%)",
            flush=True,
        )
    print(f"tune_hparams: wrote {out}; use it with sweeps/focus1.py --hparams {out}")
    return 0
