"""The active-learning loop: train → evaluate → select → label, one round at a time.

`Trajectory` holds one run's state and advances it a round per `run_round()`; its
`state_dict()` is everything needed to continue identically (round, labelled indices,
generator state, records, pretrained weights). `run()` drives a trajectory to the end
with an atomic checkpoint per round in an output directory and resumes from it. No Ray
here: the Tune layer reports and checkpoints the same state.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from archdal.config import PRE_OPTIMIZED, SPLIT_VERSIONS, RunConfig, Runtime
from archdal.data import ImageData, Split, make_split
from archdal.errors import ConfigError, DataError, WriteError
from archdal.families import load_data, model_adapter
from archdal.io import FolderLock, atomic_write
from archdal.models import ALModel
from archdal.pool import LABELED_EMBEDDINGS, LABELED_PROBS, REPRESENTATION, compute_view
from archdal.pretrain import pretrain_backbone
from archdal.representations import acquisition_representation
from archdal.seeding import derive_seed, draw_seed, generator, global_torch_seed
from archdal.strategies import get_strategy
from archdal.textdata import TextData
from archdal.train import accuracy, autocast, fast_path, resolve_device, train_model

LABELED_NEEDS = {LABELED_EMBEDDINGS, LABELED_PROBS, REPRESENTATION}  # read the labelled inputs
TIMING_FIELDS = ("train_seconds", "select_seconds", "pretrain_seconds", "archopt_seconds")
CONFIG_FILE, ROUNDS_FILE, CHECKPOINT_FILE = "config.json", "rounds.jsonl", "checkpoint.pt"


def check_budget(config: RunConfig, split: Split) -> None:
    """The acquisitions must fit in the unlabelled pool the split actually produced."""
    need = config.rounds * config.acq_size
    if need > len(split.pool):
        raise ConfigError(
            f"rounds × acq-size = {config.rounds} × {config.acq_size} = {need} exceeds the "
            f"unlabelled pool of {len(split.pool)} examples ({config.dataset}, pool-size "
            f"{config.pool_size}); lower --rounds or --acq-size"
        )


class Trajectory:
    """One seeded active-learning run; `done` once `config.rounds` acquisitions are made."""

    def __init__(
        self,
        config: RunConfig,
        runtime: Runtime | None = None,
        data: ImageData | TextData | None = None,
    ):
        self.config = config.validate()
        self.runtime = (runtime or Runtime()).validate()
        self.strategy = get_strategy(config.strategy)
        if data is None:
            data = load_data(config, self.runtime)
        # the acquisition representation's training rows, once per trajectory (None: the
        # round's model's embedding, or nothing reads one)
        representation = None
        if config.reads_representation:
            representation = acquisition_representation(config, self.runtime, data)
        self.split = make_split(
            data.train_y, data.num_classes, config.init_size, config.pool_size,
            config.val_fraction, config.seed, config.split_version, config.init_strategy,
            representation, config.probcover_delta,
        )  # fmt: skip
        check_budget(config, self.split)
        self.device = resolve_device(self.runtime.device)
        self.adapter = model_adapter(config, data)  # the one object that makes its models
        self.data = data.to(self.device)
        self.representation = None if representation is None else representation.to(self.device)
        self.eval_batch = self.runtime.eval_batch(self.device.type)
        self.round = 0
        self.labeled = self.split.initial.clone()
        self.rng = generator(derive_seed(config.seed, "trajectory"))
        self.records: list[dict[str, Any]] = []
        # what every record says of the data (frozen: which encoder output it is)
        self.provenance: dict[str, str] = getattr(data, "provenance", {})
        self.pretrained: dict[str, torch.Tensor] | None = None
        self.pre_optimized: dict[str, Any] | None = None  # spo / upo architecture and weights
        self.epoch_progress = False  # a progress bar per round's epochs (stderr)

    @property
    def done(self) -> bool:
        return self.round > self.config.rounds

    def new_model(self) -> ALModel:
        return self.adapter.new_model().to(self.device)

    def _pretrain(self) -> float:
        start = time.perf_counter()
        self.pretrained = pretrain_backbone(
            self.new_model, self.data.train_x, self.config, self.eval_batch
        )
        return time.perf_counter() - start

    def pre_optimize(self) -> dict[str, Any]:
        """The config's architecture and weights optimized once (spo/upo), computed here."""
        return self.adapter.pre_optimize(self.data, self.split, self.device, self.eval_batch)

    def _load_or_pre_optimize(self) -> float:
        """Load the stage-one result the config names, or optimize here; the optimization's
        own time, wherever it ran."""
        source = self.config.arch_source
        self.pre_optimized = (
            self.adapter.load_pre_optimized(source) if source else self.pre_optimize()
        )
        return self.pre_optimized["seconds"]

    def run_round(self) -> dict[str, Any]:
        """Train on the labelled set, evaluate, and (unless last) acquire `acq_size` labels."""
        if self.done:
            raise RuntimeError("trajectory already finished")
        c, d, batch = self.config, self.data, self.eval_batch
        record: dict[str, Any] = {"round": self.round, "n_labeled": len(self.labeled)}
        record |= self.provenance
        if c.pretrain == "unsupervised" and self.pretrained is None:
            record["pretrain_seconds"] = self._pretrain()
        if c.arch_mode in PRE_OPTIMIZED and self.pre_optimized is None:
            record["archopt_seconds"] = self._load_or_pre_optimize()
        init_seed, mc_seed = draw_seed(self.rng), draw_seed(self.rng)
        labeled = self.labeled.to(self.device)
        labeled_x = d.train_x[labeled]
        val = self.split.val.to(self.device)
        with global_torch_seed(init_seed):
            model = self.adapter.round_model(d, self.pre_optimized, labeled, val, init_seed)
            model = model.to(self.device)
            if self.pretrained is not None:
                model.load_state_dict(self.pretrained | model.classifier_state())
            model = fast_path(model, c.precision, self.runtime.compile)
            with epoch_bar(self.epoch_progress, self.round, c) as on_epoch:
                result = train_model(
                    model, labeled_x, d.train_y[labeled], d.train_x[val], d.train_y[val],
                    c, derive_seed(init_seed, "batches"), batch, on_epoch,
                )  # fmt: skip
        architecture = model.architecture_record()
        if architecture:
            record["architecture"] = architecture
        amp = autocast(c.precision, self.device)
        with amp:
            test_acc = accuracy(model, d.test_x, d.test_y, batch)
        record |= {
            "test_acc": test_acc,
            "val_acc": result.val_acc,
            "train_acc": result.train_acc,
            "epochs": result.epochs,
            "train_seconds": result.seconds,
        }
        start = time.perf_counter()
        acquired = torch.empty(0, dtype=torch.long)
        if self.round < c.rounds:
            unlabeled = self.split.pool[~torch.isin(self.split.pool, self.labeled)]
            needs = self.strategy.needs
            fixed = None
            if REPRESENTATION in needs and self.representation is not None:
                fixed = (self.representation[unlabeled.to(self.device)],
                         self.representation[labeled])  # fmt: skip
            with global_torch_seed(mc_seed), autocast(c.precision, self.device):
                view = compute_view(
                    model, d.train_x[unlabeled.to(self.device)], needs, batch, c.mc_samples,
                    labeled_x if needs & LABELED_NEEDS else None,
                    fixed, d.num_classes, c.probcover_delta,
                )  # fmt: skip
            picks = self.strategy.pick(view, c.acq_size, self.rng, c).cpu()
            acquired = unlabeled[picks]
            self.labeled = torch.cat([self.labeled, acquired])
        record["select_seconds"] = time.perf_counter() - start
        record["acquired"] = acquired.tolist()
        self.records.append(record)
        self.round += 1
        return record

    def state_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "round": self.round,
            "labeled": self.labeled.clone(),
            "rng_state": self.rng.get_state(),
            "records": [dict(r) for r in self.records],
            "pretrained": self.pretrained,
            "pre_optimized": self.pre_optimized,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if RunConfig.from_dict(state["config"]) != self.config:
            raise ConfigError("checkpoint belongs to a different config")
        self.round = state["round"]
        self.labeled = state["labeled"].clone()
        self.rng.set_state(state["rng_state"])
        self.records = [dict(r) for r in state["records"]]
        self.pretrained = state["pretrained"]
        self.pre_optimized = state.get("pre_optimized")


@contextmanager
def epoch_bar(shown: bool, round_: int, config: RunConfig):
    """A tqdm bar over the round's epochs (training and last validation accuracy, time
    left at `max_epochs`, an upper bound: early stopping ends sooner); None when not shown."""
    if not shown:
        yield None
        return
    bar = tqdm(total=config.max_epochs, desc=f"round {round_}/{config.rounds}", unit="epoch",
               leave=False, dynamic_ncols=True, mininterval=0)  # fmt: skip
    seen = {"val": "-"}

    def update(epoch: int, train_acc: float, val_acc: float | None) -> None:
        if val_acc is not None:
            seen["val"] = f"{100 * val_acc:.1f}%"
        bar.set_postfix_str(f"train {100 * train_acc:.1f}% val {seen['val']}", refresh=False)
        bar.update(epoch - bar.n)

    try:
        yield update
    finally:
        bar.close()


def strip_timing(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records without wall-clock fields: what must match between two runs of a seed."""
    return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in records]


def _read_saved_config(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"{path} is unreadable ({err}); choose another --out or delete it") from err


def _config_mismatch(saved: dict[str, Any], current: dict[str, Any]) -> str:
    """What differs; keys added to `RunConfig` since a run was saved count as their default."""
    try:
        saved = RunConfig.from_dict(saved).to_dict()
    except (ConfigError, TypeError):
        pass  # not a config of this version: every differing key is reported below
    keys = sorted(k for k in saved.keys() | current.keys() if saved.get(k) != current.get(k))
    return ", ".join(f"{k}: {saved.get(k)!r} there, {current.get(k)!r} here" for k in keys)


def format_record(record: dict[str, Any], rounds: int) -> str:
    text = (
        f"round {record['round']}/{rounds}  labeled {record['n_labeled']}  "
        f"test {100 * record['test_acc']:.2f}%  val {100 * record['val_acc']:.2f}%  "
        f"train {100 * record['train_acc']:.1f}% ({record['epochs']} epochs, "
        f"{record['train_seconds']:.1f} s)"
    )
    if record["acquired"]:
        text += f"  select {record['select_seconds']:.2f} s"
    if "pretrain_seconds" in record:
        text += f"  pretrain {record['pretrain_seconds']:.1f} s"
    return text


def _check_saved_config(out: Path, config: RunConfig) -> None:
    path = out / CONFIG_FILE
    if path.exists():
        saved = _read_saved_config(path)
        mismatch = _config_mismatch(saved, config.to_dict())
        if mismatch:
            raise ConfigError(
                f"--out {out} holds a run with a different config ({mismatch}); "
                f"{split_hint(saved, config)}use another --out or delete that directory"
            )


def split_hint(saved: dict[str, Any], config: RunConfig, flag: str = "--split-version ") -> str:
    """What changed when a saved run's split is of another version, and how to finish it
    (`flag` and the version)."""
    version = saved.get("split_version", 1)
    if version == config.split_version or version not in SPLIT_VERSIONS:
        return ""
    return (f"its split is version {version} ({SPLIT_VERSIONS[version]}), this config's "
            f"version {config.split_version} ({SPLIT_VERSIONS[config.split_version]}): finish "
            f"it with {flag}{version}, or ")  # fmt: skip


def _read_checkpoint(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise DataError(
            f"checkpoint {path} is unreadable ({err}); delete it to restart this run"
        ) from err


def _jsonl(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def resume_note(saved_rounds: int, rerun: str) -> str:
    """What is safe after a failed write, and that `rerun` continues from it."""
    if not saved_rounds:
        return f"no round is saved yet; {rerun} starts the run"
    return (
        f"the checkpoint holds rounds 0-{saved_rounds - 1}; {rerun} resumes at round {saved_rounds}"
    )


def _write(path: Path, write: Callable[[Any], None], mode: str, saved_rounds: int) -> None:
    """`atomic_write`, with a failure (a full disk) said as what is safe and how to resume."""
    try:
        atomic_write(path, write, mode)
    except OSError as err:
        note = resume_note(saved_rounds, "rerunning the same command")
        raise WriteError(f"could not write {path} ({err.strerror or err}); {note}") from err


def run(
    config: RunConfig,
    out_dir: str | Path,
    runtime: Runtime | None = None,
    progress: Callable[[str], None] | None = print,
    data: ImageData | TextData | None = None,
    epoch_progress: bool = False,
) -> list[dict[str, Any]]:
    """Run a trajectory to the end, writing `config.json`, `rounds.jsonl` and a checkpoint
    per round in `out_dir`; an unfinished run of the same config there is continued.

    Everything that can be checked (config, existing run, data, budget) is checked before
    the first file is written. The folder is locked for the whole run (`FolderLock`): a
    second process on it fails at once. `rounds.jsonl` is rewritten from the checkpoint
    whenever the two differ (a file cut short by a crash). `epoch_progress` shows a bar
    over each round's epochs on stderr (`archdal run` without `--quiet`).
    """
    config.validate()
    out = Path(out_dir)
    config_path, state_path = out / CONFIG_FILE, out / CHECKPOINT_FILE
    _check_saved_config(out, config)
    trajectory = Trajectory(config, runtime, data)
    trajectory.epoch_progress = epoch_progress
    existed = out.exists()
    lock = FolderLock(out, "--out").acquire()  # creates `out`
    try:
        _check_saved_config(out, config)  # again: another process may have just started here
        state = _read_checkpoint(state_path)
    except BaseException:
        lock.release(remove_folder=not existed)
        raise
    try:
        if state is not None:
            trajectory.load_state_dict(state)
        saved = trajectory.round
        if not config_path.exists():
            _write(config_path, lambda fh: fh.write(config.to_json() + "\n"), "w", saved)
        rounds_path = out / ROUNDS_FILE
        lines = _jsonl(trajectory.records)
        if lines and (not rounds_path.exists() or rounds_path.read_text() != lines):
            _write(rounds_path, lambda fh: fh.write(lines), "w", saved)
        say = progress or (lambda _: None)
        if trajectory.done:
            say(f"{out}: already complete ({len(trajectory.records)} rounds)")
        elif trajectory.round > 0:
            say(f"{out}: resuming at round {trajectory.round}/{config.rounds}")
        while not trajectory.done:
            record = trajectory.run_round()
            state = trajectory.state_dict()
            _write(state_path, lambda fh, s=state: torch.save(s, fh), "wb", saved)
            saved = trajectory.round
            text = _jsonl(trajectory.records)
            _write(rounds_path, lambda fh, s=text: fh.write(s), "w", saved)
            say(format_record(record, config.rounds))
    finally:
        lock.release()
    return trajectory.records
