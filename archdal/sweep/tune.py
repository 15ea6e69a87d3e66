"""The Ray Tune layer: a trial per trajectory (or per few seeds of one setting), a report
and a checkpoint per round.

Everything a trajectory computes lives in `archdal.loop`; this module only places it on
the resources Ray assigned, reports each round (`n_labeled` as `timesteps_total`, so
TensorBoard's x-axis is the number of labels) with that round's state as the checkpoint,
and resumes from `tune.get_checkpoint()` after a failure or a restored experiment.

A frozen-encoder trajectory lasts seconds, less than Ray's own cost of a trial, so a sweep
can give one trial several trajectories (`--seeds-per-trial`): its config holds `runs`, a
list of run configs, run one after another; every report names its `trajectory` (the
index in `runs`), the checkpoint holds that index with the trajectory's state, so a
restored trial skips the finished ones and resumes the current one at its last round.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from archdal.analysis.results import SWEEP_FILE, SWEEP_FORMAT, read_sweep_file
from archdal.archopt.build import load_result, pre_optimization_name, save_result
from archdal.config import RunConfig, Runtime
from archdal.errors import ConfigError, DataError, WriteError
from archdal.io import atomic_write
from archdal.loop import Trajectory, resume_note, split_hint
from archdal.sweep.grid import group_name, group_seeds, trial_name
from archdal.sweep.hparams import TUNED_FIELDS, hparams_key

CHECKPOINT_NAME = "trajectory.pt"


def digest(indices: torch.Tensor) -> str:
    """A short fingerprint of an index list, to compare selections across trials and runs."""
    data = indices.to(torch.int64).cpu().numpy().tobytes()
    return hashlib.sha1(data).hexdigest()[:16]


def trial_resources() -> tuple[str, int]:
    """The device and thread count Ray gave this trial: CUDA only with a GPU assigned and
    visible to torch (a zero-GPU trial never grabs one), else CPU."""
    device = "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    return device, max(1, math.floor(cpus))


def _save_checkpoint_and_report(metrics: dict[str, Any], state: dict[str, Any]) -> None:
    """Report a round with its checkpoint; a write that fails (a full disk) is one line
    saying which round is safe, the last line of the trial's error."""
    try:
        with tempfile.TemporaryDirectory(prefix="archdal-ckpt-") as tmp:
            torch.save(state, Path(tmp) / CHECKPOINT_NAME)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))
    except OSError as err:
        note = resume_note(metrics["round"], "a retry or --resume")
        raise WriteError(
            f"could not save round {metrics['round']}'s checkpoint ({err.strerror or err}); {note}"
        ) from err


def _prepare(config: dict[str, Any], runtime: Runtime | None) -> tuple[Trajectory, str]:
    # One INFO line per saved checkpoint would bury the status table the driver prints.
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)
    run_config = RunConfig.from_dict(config["run"])
    device, threads = trial_resources()
    torch.set_num_threads(threads)
    runtime = dataclasses.replace(runtime or Runtime(), device=device, quiet=True)
    return Trajectory(run_config, runtime), device


def trial_runs(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The run configs of a trial's config: `runs` of a trial of several trajectories, else
    its one `run`."""
    return config["runs"] if "runs" in config else [config["run"]]


def _restored() -> tuple[int, dict[str, Any] | None, dict[str, Any] | None]:
    """Where a restored trial stands: the index of its current trajectory, that
    trajectory's state and the metrics reported with it (0, None, None for a fresh trial;
    a checkpoint of an older archdal holds the state alone)."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return 0, None, None
    with checkpoint.as_directory() as folder:
        saved = torch.load(Path(folder) / CHECKPOINT_NAME, map_location="cpu", weights_only=True)
    if "state" not in saved:
        return 0, saved, None
    return saved["trajectory"], saved["state"], saved.get("metrics")


def trajectory_trainable(config: dict[str, Any], runtime: Runtime | None = None) -> None:
    """Function trainable: `config["run"]` is a `RunConfig` dict, or `config["runs"]` a
    list of them; runs each to the end, in order."""
    runs = trial_runs(config)
    start, state, last = _restored()
    if last is not None:
        # The round the checkpoint holds, reported again: a worker killed while reports
        # queue can leave that round's row out of result.json (seen with rounds of
        # milliseconds); a row there twice counts once (`analysis.results`).
        tune.report(last | {"replayed": True})
    for index in range(start, len(runs)):
        trajectory, device = _prepare({"run": runs[index]}, runtime)
        if index == start and state is not None:
            trajectory.load_state_dict(state)
        split_digest = digest(trajectory.split.initial)
        while not trajectory.done:
            round_start = time.time()
            record = dict(trajectory.run_round())
            acquired = torch.tensor(record.pop("acquired"), dtype=torch.long)
            metrics = record | {
                "timesteps_total": record["n_labeled"],
                "pretrain_seconds": record.get("pretrain_seconds", 0.0),
                "n_acquired": len(acquired),
                "acquired_digest": digest(acquired),
                "labeled_digest": digest(trajectory.labeled),
                "split_digest": split_digest,
                "round_start": round_start,
                "round_end": time.time(),
                "device": device,
                "trajectory": index,
                "final": trajectory.done,
            }
            checkpoint = {"trajectory": index, "state": trajectory.state_dict(), "metrics": metrics}
            _save_checkpoint_and_report(metrics, checkpoint)


def archopt_trainable(
    config: dict[str, Any], runtime: Runtime | None = None, results_dir: str = ""
) -> None:
    """Focus 2 stage one: pre-optimize (spo/upo) the architecture and weights of
    `config["run"]` and save them where the AL trials of stage two load them. A result
    already saved (a restarted trial) is loaded, not recomputed."""
    trajectory, device = _prepare(config, runtime)
    run = trajectory.config
    out = Path(results_dir) / f"{pre_optimization_name(run)}.pt"
    if out.exists():
        result = load_result(out, run)
    else:
        result = trajectory.pre_optimize()
        save_result(out, result)
    tune.report(
        {
            "round": 0,
            "n_labeled": len(trajectory.split.initial),
            "archopt_seconds": result["seconds"],
            "architecture": result["record"],
            "arch_file": str(out),
            "device": device,
            "final": True,
        }
    )


def hparam_trainable(config: dict[str, Any], runtime: Runtime | None = None) -> None:
    """One hyperparameter candidate: train once on the initial labelled pool, report the
    validation accuracy (the objective) and, for information only, test accuracy."""
    run = dict(config["run"]) | {k: config[k] for k in TUNED_FIELDS} | {"rounds": 0}
    trajectory, device = _prepare({"run": run}, runtime)
    record = trajectory.run_round()
    tune.report(
        {k: record[k] for k in ("val_acc", "test_acc", "train_acc", "epochs", "train_seconds")}
        | {"device": device}
    )


# ---------------------------------------------------------------------------- the driver


def _reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on a host:port (or ray://host:port) nobody answers on; `auto` is Ray's job."""
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"--address {address!r} is not 'auto', HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise ConfigError(f"cannot reach a Ray cluster at --address {address!r} ({err})") from err


def connect(address: str | None, num_cpus: float | None = None, num_gpus: float | None = None):
    """Start a local Ray (`address=None`, optionally with declared CPUs/GPUs) or join one."""
    if address is None:
        return ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False)
    if num_cpus is not None or num_gpus is not None:
        raise ConfigError("--num-cpus/--num-gpus size a local Ray; a cluster has its own")
    if address != "auto":
        _reachable(address)
    try:
        return ray.init(address=address)
    except Exception as err:  # Ray raises several types here; all mean "not connected"
        text = str(err).strip()
        reason = text.splitlines()[0] if text else type(err).__name__
        hint = (
            "set RAY_AUTH_MODE=token here as on the cluster's nodes"
            if "Authentication" in text or "auth" in reason.lower()
            else "start one with `ray start --head` or `ray up cluster.yaml`, or drop "
            "--address for a local Ray"
        )
        raise ConfigError(
            f"cannot reach a Ray cluster at --address {address!r} ({reason}); {hint}"
        ) from err


def check_fits_local_ray(sweep: Sweep) -> None:
    """A trial larger than the local Ray would wait forever; say so before starting. (An
    autoscaling cluster may add what it does not have yet, so only a local Ray is checked.)"""
    have = ray.cluster_resources()
    for name, need in (("CPU", sweep.cpus_per_trial), ("GPU", sweep.gpus_per_trial)):
        if need > have.get(name, 0):
            raise ConfigError(
                f"each trial asks for {need} {name} but the local Ray has {have.get(name, 0)}; "
                f"lower --{name.lower()}s-per-trial or pass --num-{name.lower()}s"
            )


def check_storage(storage: Path) -> None:
    """Existing or creatable, and writable: checked before any trial starts."""
    try:
        storage.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=storage, prefix=".archdal-write-test-"):
            pass
    except OSError as err:
        raise ConfigError(f"--storage {storage} is not writable ({err})") from err


def _dirname_by(name: Callable[[RunConfig], str]) -> Callable:
    """Readable trial folders and names: `name` of the trial's config (`group_name` of a
    trial of several), then Tune's id."""

    def dirname(trial) -> str:
        runs = [RunConfig.from_dict(run) for run in trial_runs(trial.config)]
        label = name(runs[0]) if len(runs) == 1 else group_name(runs)
        return f"{label}_{trial.trial_id}"

    return dirname


def _resources(trainable: Callable, runtime: Runtime, cpus: float, gpus: float, **params):
    return tune.with_resources(
        tune.with_parameters(trainable, runtime=runtime, **params), {"cpu": cpus, "gpu": gpus}
    )


@dataclasses.dataclass(frozen=True)
class Sweep:
    """Where an experiment lives and how its trials are placed and retried."""

    storage: Path
    name: str
    runtime: Runtime = dataclasses.field(default_factory=Runtime)
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None
    max_failures: int = 3
    status_every: float = 30.0  # seconds between status tables; 0: only at the end
    seeds_per_trial: int = 1  # trajectories a trial runs: seeds of one setting, in turn

    @property
    def path(self) -> Path:
        return self.storage / self.name

    def validate(self) -> Sweep:
        """Placement and retry settings that make sense on any cluster; return self."""
        if self.cpus_per_trial <= 0 or self.gpus_per_trial < 0:
            raise ConfigError(
                f"--cpus-per-trial must be positive and --gpus-per-trial zero or positive, got "
                f"{self.cpus_per_trial} and {self.gpus_per_trial}"
            )
        if self.gpus_per_trial > 1 and not float(self.gpus_per_trial).is_integer():
            raise ConfigError(f"--gpus-per-trial above 1 must be whole, got {self.gpus_per_trial}")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise ConfigError(f"--max-concurrent must be at least 1, got {self.max_concurrent}")
        if self.max_failures < 0:
            raise ConfigError(f"--max-failures must be zero or positive, got {self.max_failures}")
        if self.status_every < 0:
            raise ConfigError(f"--status-every must be zero or positive, got {self.status_every}")
        if self.seeds_per_trial < 1:
            raise ConfigError(f"--seeds-per-trial must be at least 1, got {self.seeds_per_trial}")
        return self


class StatusTable(tune.Callback):
    """The console of a sweep: a table of every trial's factors (its name), state and last
    round (the seed of its trajectory, round, labels, test accuracy, epochs), printed every
    `every` seconds while something changed and once at the end, in place of Ray's
    per-trial result dump."""

    COLUMNS = ("trial", "state", "seed", "round", "labels", "test %", "epochs")

    def __init__(self, every: float, write: Callable[[str], None] = print):
        self.every = every
        self.write = write
        self.last: dict[str, dict[str, Any]] = {}
        self.printed_at = time.monotonic()
        self.changed = False

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self.last[trial.trial_id] = result
        self.changed = True

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.changed = True

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.changed = True

    def on_step_end(self, iteration, trials, **info) -> None:
        due = self.every > 0 and time.monotonic() - self.printed_at >= self.every
        if due and self.changed:
            self.write(self.table(trials))
            self.printed_at, self.changed = time.monotonic(), False

    def on_experiment_end(self, trials, **info) -> None:
        self.write(self.table(trials))

    def row(self, trial) -> tuple[str, ...]:
        r = self.last.get(trial.trial_id, {})

        def cell(key: str, scale: float = 1.0, digits: int = 0) -> str:
            return "-" if key not in r else f"{scale * r[key]:.{digits}f}"

        name = str(trial).removesuffix(f"_{trial.trial_id}")
        seed = str(trial_runs(trial.config)[r.get("trajectory", 0)]["seed"])
        return (name, trial.status.lower(), seed, cell("round"), cell("n_labeled"),
                cell("test_acc", 100, 2), cell("epochs"))  # fmt: skip

    def table(self, trials) -> str:
        rows = [self.COLUMNS, *(self.row(t) for t in trials)]
        widths = [max(len(row[i]) for row in rows) for i in range(len(self.COLUMNS))]
        counts: dict[str, int] = {}
        for trial in trials:
            counts[trial.status.lower()] = counts.get(trial.status.lower(), 0) + 1
        head = f"{time.strftime('%H:%M:%S')}  " + ", ".join(f"{n} {s}" for s, n in counts.items())
        lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                           enumerate(zip(row, widths, strict=True))) for row in rows]  # fmt: skip
        return "\n".join([head, *lines])


class _FrequentSnapshots(logging.Filter):
    """Drops Tune's warning that experiment snapshots come more than once in 5 s. Every
    round is checkpointed on purpose (resume loses nothing) and with `num_to_keep` each
    second checkpoint forces a snapshot, so frozen trials, whose rounds last a fraction
    of a second, printed it hundreds of times a sweep over the status table."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Experiment state snapshotting has been triggered" not in record.getMessage()


def _quiet_frequent_snapshots() -> None:
    log = logging.getLogger("ray.tune.execution.experiment_state")
    if not any(isinstance(f, _FrequentSnapshots) for f in log.filters):
        log.addFilter(_FrequentSnapshots())


def _run_config(sweep: Sweep) -> tune.RunConfig:
    _quiet_frequent_snapshots()
    return tune.RunConfig(
        name=sweep.name,
        storage_path=str(sweep.storage),
        failure_config=tune.FailureConfig(max_failures=sweep.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        verbose=0,  # the StatusTable is the console
        callbacks=[StatusTable(sweep.status_every, lambda text: print(text, flush=True))],
    )


def write_sweep_file(sweep: Sweep, configs: list[RunConfig], extra: dict[str, Any]) -> None:
    sweep.path.mkdir(parents=True, exist_ok=True)
    document = {
        "format": SWEEP_FORMAT,
        "name": sweep.name,
        "trials": [c.to_dict() for c in configs],
        "seeds_per_trial": sweep.seeds_per_trial,
    } | extra
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    atomic_write(sweep.path / SWEEP_FILE, lambda fh: fh.write(text))


def can_restore(sweep: Sweep) -> bool:
    return tune.Tuner.can_restore(str(sweep.path))


def check_new_or_resumable(sweep: Sweep, configs: list[RunConfig], resume: bool) -> None:
    """`--resume` needs a restorable experiment with the same grid; a fresh start needs none."""
    exists = (sweep.path / SWEEP_FILE).exists() or tune.Tuner.can_restore(str(sweep.path))
    if not resume:
        if exists:
            raise ConfigError(
                f"an experiment already exists at {sweep.path}; pass --resume to finish it "
                "or --name to start another"
            )
        return
    if not tune.Tuner.can_restore(str(sweep.path)):
        raise ConfigError(
            f"--resume: no experiment to resume at {sweep.path} (check --storage and --name)"
        )
    if (sweep.path / SWEEP_FILE).exists():
        document = read_sweep_file(sweep.path)
        saved = document["trials"]
        grouped = document.get("seeds_per_trial", 1)
        if grouped != sweep.seeds_per_trial:
            raise ConfigError(
                f"--resume: the experiment at {sweep.path} runs {grouped} seed(s) a trial; "
                f"pass --seeds-per-trial {grouped} (got {sweep.seeds_per_trial})"
            )

        def canonical(trials: list[dict[str, Any]]) -> list[str]:
            return sorted(json.dumps(t, sort_keys=True) for t in trials)

        if canonical(saved) != canonical([c.to_dict() for c in configs]):
            hint = split_hint(saved[0], configs[0], "--set split_version=") if saved else ""
            raise ConfigError(
                f"--resume: the experiment at {sweep.path} was started with a different grid "
                f"({len(saved)} trials there, {len(configs)} asked for now); {hint}repeat its "
                "original options or choose another --name"
            )


def run_trajectories(
    sweep: Sweep,
    configs: list[RunConfig],
    resume: bool = False,
    trainable: Callable = trajectory_trainable,
    name: Callable[[RunConfig], str] = trial_name,
    **params: Any,
) -> tune.ResultGrid:
    """Fit (or restore and finish) one trial of `trainable` per config, or per
    `sweep.seeds_per_trial` seeds of a setting (`group_seeds`; `trajectory_trainable`
    only); `params` go to every trial. Ray must already be connected."""
    if sweep.seeds_per_trial == 1:
        space = {"run": tune.grid_search([c.to_dict() for c in configs])}
    else:
        groups = group_seeds(configs, sweep.seeds_per_trial)
        space = {"runs": tune.grid_search([[c.to_dict() for c in g] for g in groups])}
    trainable = _resources(
        trainable, sweep.runtime, sweep.cpus_per_trial, sweep.gpus_per_trial, **params
    )
    if resume:
        tuner = tune.Tuner.restore(
            str(sweep.path), trainable=trainable, resume_unfinished=True, resume_errored=True
        )
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=space,
            tune_config=tune.TuneConfig(
                max_concurrent_trials=sweep.max_concurrent,
                trial_dirname_creator=_dirname_by(name),
                trial_name_creator=_dirname_by(name),
                # A finished trial's worker takes the next one: no new process and imports.
                reuse_actors=True,
            ),
            run_config=_run_config(sweep),
        )
    return tuner.fit()


def tune_hparams(
    sweep: Sweep,
    base: RunConfig,
    num_samples: int,
    search_seed: int,
    space: dict[str, Any],
) -> dict[str, Any]:
    """Optuna (TPE) over `space` for `base`'s dataset × arch, maximising validation accuracy
    on the initial labelled pool; returns the best values with their score."""
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    searcher = OptunaSearch(metric="val_acc", mode="max", seed=search_seed)
    if sweep.max_concurrent:
        searcher = ConcurrencyLimiter(searcher, max_concurrent=sweep.max_concurrent)
    trainable = _resources(
        hparam_trainable, sweep.runtime, sweep.cpus_per_trial, sweep.gpus_per_trial
    )
    tuner = tune.Tuner(
        trainable,
        param_space={"run": base.to_dict()} | space,
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=num_samples),
        run_config=_run_config(sweep),
    )
    results = tuner.fit()
    finished = [r for r in results if r.error is None and "val_acc" in (r.metrics or {})]
    if not finished:
        raise DataError(
            f"every hyperparameter trial for {hparams_key(base.dataset, base.arch)} failed; "
            f"see {sweep.path}"
        )
    best = max(finished, key=lambda r: r.metrics["val_acc"])
    return {k: best.config[k] for k in TUNED_FIELDS} | {
        "val_acc": best.metrics["val_acc"],
        "trials": len(finished),
        "experiment": str(sweep.path),
    }


def summarize(results: tune.ResultGrid) -> tuple[int, list[str]]:
    """Number of trials and one line per errored trial."""
    failed = [
        f"{Path(r.path).name}: {str(r.error).strip().splitlines()[-1]}"
        for r in results
        if r.error is not None
    ]
    return len(results), failed


def default_storage() -> Path:
    return Path(os.environ.get("ARCHDAL_RESULTS", Path.home() / "archdal_results"))
