"""Where one round's time goes, against a plain PyTorch training loop as the floor.

    python benchmarks/trial_cost.py                                # paper protocol, MNIST, CPU
    python benchmarks/trial_cost.py --protocol small --labels 100
    python benchmarks/trial_cost.py --device cuda --arch resnet18 --width 1 --precision bf16

One round of `archdal.loop.Trajectory` runs at `--labels` labels for `--epochs`
epochs (patience off; it stops early only at 100% training accuracy) with the library's own
functions wrapped in timers: training steps (`train_epoch`), BatchNorm recalibration,
validation passes, the test pass, the pool pass and the selection. Before it, a plain loop (a
`DataLoader` over the same labelled images, the same model, optimizer and batch size, no
recalibration, no validation) trains a fresh model for the same epochs. Every phase is
reported in seconds per round and in plain epochs' worth, so one run gives the ratios.

Protocols: `paper` is the image protocol (`RunConfig`'s defaults: pool 30,000, a tenth of
the rest for validation, batch 64, ResNet-18 at full width); `small` is the `small` preset
(pool 2,000, 1% validation, width 0.125). `--set FIELD=VALUE` changes any other RunConfig
field (the protocol knobs, e.g. `--set validate_every=5`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F

import archdal.loop as loop
import archdal.train as train
from archdal import RunConfig, Runtime, Trajectory
from archdal.config import PRECISIONS, settings_of
from archdal.families import load_data

PROTOCOLS = {
    "paper": {},
    "small": dict(width=0.125, pool_size=2000, val_fraction=0.01),
}
PHASES = ("training steps", "recalibration", "validation", "test pass", "pool pass", "selection")


class Clock:
    """Seconds and calls per phase; waits for the device before reading the time."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def phase(self, name: str):
        self.sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            self.seconds[name] += time.perf_counter() - start
            self.calls[name] += 1

    def wrap(self, name: str, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            with self.phase(name):
                return fn(*args, **kwargs)

        return timed


@contextmanager
def patched(owner, name: str, value):
    old = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, old)


def archdal_round(config: RunConfig, runtime: Runtime, data) -> tuple[Clock, dict]:
    """One round of the library, every phase timed by wrapping the function that does it."""
    trajectory = Trajectory(config, runtime, data)
    clock = Clock(trajectory.device)
    strategy = trajectory.strategy
    trajectory.strategy = dataclasses.replace(
        strategy, select=clock.wrap("selection", strategy.select)
    )
    with (
        patched(train, "train_epoch", clock.wrap("training steps", train.train_epoch)),
        patched(train, "recalibrate_batchnorm",
                clock.wrap("recalibration", train.recalibrate_batchnorm)),
        patched(train, "accuracy", clock.wrap("validation", train.accuracy)),
        patched(loop, "accuracy", clock.wrap("test pass", loop.accuracy)),
        patched(loop, "compute_view", clock.wrap("pool pass", loop.compute_view)),
    ):  # fmt: skip
        with clock.phase("round"):
            record = trajectory.run_round()
    return clock, record


def plain_epochs(config: RunConfig, runtime: Runtime, data, epochs: int) -> float:
    """Seconds per epoch of a textbook loop: DataLoader, forward, cross-entropy, SGD step."""
    trajectory = Trajectory(config, runtime, data)
    device = trajectory.device
    labeled = trajectory.labeled.to(device)
    x, y = trajectory.data.train_x[labeled], trajectory.data.train_y[labeled]
    torch.manual_seed(0)
    model = trajectory.new_model()
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                          weight_decay=config.weight_decay)  # fmt: skip
    batches = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=config.batch_size, shuffle=True
    )
    clock = Clock(device)
    model.train()
    for _ in range(epochs):
        with clock.phase("epoch"):
            for xb, yb in batches:
                loss = F.cross_entropy(model(xb), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    return clock.seconds["epoch"] / epochs


def parse_set(items: list[str]) -> dict:
    """`FIELD=VALUE` pairs, VALUE as JSON when it parses (numbers, booleans) else a string."""
    fields = {s.key for s in settings_of(RunConfig) if len(s.path) == 1}
    values = {}
    for item in items:
        key, _, raw = item.partition("=")
        if key not in fields:
            raise SystemExit(f"trial_cost: --set {item!r}: no RunConfig field {key!r}")
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    return values


def report(clock: Clock, record: dict, plain: float, args) -> dict:
    epochs = record["epochs"]
    rows = {name: clock.seconds.get(name, 0.0) for name in PHASES}
    rows["other"] = clock.seconds["round"] - sum(rows.values())
    outside = sum(v for k, v in rows.items() if k != "training steps")
    print(f"{args.dataset} {args.arch} width {args.width} · {args.labels} labels · "
          f"{args.protocol} protocol · {args.precision} · {args.device} · "
          f"{epochs} epochs")  # fmt: skip
    print(f"{'phase':<16}{'calls':>6}{'s/round':>10}{'s/epoch':>10}{'plain epochs':>14}")
    for name, seconds in rows.items():
        calls = clock.calls.get(name, "")
        print(f"{name:<16}{calls:>6}{seconds:>10.2f}{seconds / epochs:>10.3f}"
              f"{seconds / epochs / plain:>14.2f}")  # fmt: skip
    train_epoch = rows["training steps"] / epochs
    print(f"plain PyTorch epoch {plain:.3f} s; archdal's training epoch is "
          f"{train_epoch / plain:.2f} of it; outside training steps / training steps = "
          f"{outside / rows['training steps']:.2f}")  # fmt: skip
    return {"epochs": epochs, "seconds": rows, "plain_epoch_seconds": plain,
            "test_acc": record["test_acc"], "val_acc": record["val_acc"]}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--width", type=float, help="default: the protocol's")
    p.add_argument("--labels", type=int, default=1000, help="labelled examples of the round")
    p.add_argument("--acq-size", type=int, default=1000)
    p.add_argument("--strategy", default="margin")
    p.add_argument("--epochs", type=int, default=5, help="epochs of the timed round")
    p.add_argument("--protocol", choices=tuple(PROTOCOLS), default="paper")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    p.add_argument("--json", type=Path, help="also write the numbers here")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("trial_cost: --device cuda, but torch sees no CUDA device", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    fields = PROTOCOLS[args.protocol] | parse_set(args.set)
    if args.width is not None:
        fields["width"] = args.width
    args.width = fields.get("width", RunConfig().width)
    config = RunConfig(
        dataset=args.dataset, arch=args.arch, strategy=args.strategy, init_size=args.labels,
        acq_size=args.acq_size, rounds=1, max_epochs=args.epochs, patience=args.epochs,
        train_acc_stop=1.0, precision=args.precision, **fields,
    ).validate()  # fmt: skip
    runtime = Runtime(data_dir=args.data_dir, device=args.device).validate()
    data = load_data(config, runtime)
    plain = plain_epochs(config, runtime, data, args.epochs)  # first: it pays the imports
    clock, record = archdal_round(config, runtime, data)
    numbers = report(clock, record, plain, args)
    if args.json:
        args.json.write_text(json.dumps(numbers, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
