"""`archdal` command line: `archdal run ...` runs (or resumes) one trajectory."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from archdal.config import (
    ARCHS,
    DATASETS,
    DEVICES,
    OPTIMIZERS,
    PRETRAIN,
    STRATEGIES,
    PretrainConfig,
    RunConfig,
    Runtime,
)
from archdal.errors import ArchdalError
from archdal.loop import run

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line naming the value, exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(EXIT_USAGE)


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    d = RunConfig()
    dp = PretrainConfig()
    g = p.add_argument_group("experiment")
    g.add_argument("--dataset", default=d.dataset, choices=DATASETS, help="image dataset")
    g.add_argument("--arch", default=d.arch, choices=ARCHS, help="CIFAR-style architecture")
    g.add_argument("--width", type=float, default=d.width, help="channel multiplier; 1.0 = paper")
    g.add_argument(
        "--strategy", default=d.strategy, choices=STRATEGIES, help="acquisition strategy"
    )
    g.add_argument(
        "--pretrain",
        default=d.pretrain,
        choices=PRETRAIN,
        help="initialise every round from DeepCluster pretraining",
    )
    g.add_argument("--seed", type=int, default=d.seed, help="seeds the split and everything random")
    g.add_argument(
        "--init-size", type=int, default=d.init_size, help="class-balanced initial labels"
    )
    g.add_argument("--acq-size", type=int, default=d.acq_size, help="labels acquired per round")
    g.add_argument("--rounds", type=int, default=d.rounds, help="acquisition rounds")
    g.add_argument("--pool-size", type=int, default=d.pool_size, help="cap on the unlabelled pool")
    g.add_argument(
        "--val-fraction",
        type=float,
        default=d.val_fraction,
        help="share of the non-initial data for validation",
    )
    t = p.add_argument_group("training (each round from scratch)")
    t.add_argument(
        "--max-epochs", type=int, default=d.max_epochs, help="epochs per round at most (paper 500)"
    )
    t.add_argument("--patience", type=int, default=d.patience, help="epochs without val gain")
    t.add_argument(
        "--train-acc-stop",
        type=float,
        default=d.train_acc_stop,
        help="stop once training accuracy reaches this",
    )
    t.add_argument(
        "--optimizer",
        default=d.optimizer,
        choices=OPTIMIZERS,
        help="sgd: momentum + cosine schedule",
    )
    t.add_argument("--lr", type=float, default=d.lr, help="learning rate")
    t.add_argument("--momentum", type=float, default=d.momentum, help="SGD momentum")
    t.add_argument("--weight-decay", type=float, default=d.weight_decay, help="L2 penalty")
    t.add_argument(
        "--batch-size",
        type=int,
        default=d.batch_size,
        help="training batch size (epochs use near-equal batches)",
    )
    t.add_argument("--augment", action="store_true", help="random crop + horizontal flip")
    t.add_argument(
        "--dropout",
        type=float,
        default=d.dropout,
        help="dropout of the layers before the classifier",
    )
    t.add_argument("--mc-samples", type=int, default=d.mc_samples, help="BALD dropout passes")
    u = p.add_argument_group("unsupervised pretraining (--pretrain unsupervised)")
    u.add_argument("--pretrain-clusters", type=int, default=dp.clusters, help="k-means clusters")
    u.add_argument(
        "--pretrain-epochs", type=int, default=dp.epochs, help="cluster-then-train alternations"
    )
    u.add_argument("--pretrain-max-images", type=int, default=dp.max_images, help="0 = all")
    r = p.add_argument_group("runtime")
    r.add_argument("--out", type=Path, required=True, help="run directory (resumed if unfinished)")
    r.add_argument("--data-dir", type=Path, default=None, help="default: $ARCHDAL_DATA, then cache")
    r.add_argument("--download", action="store_true", help="fetch missing datasets")
    r.add_argument("--device", default="auto", choices=DEVICES, help="auto: cuda when available")
    r.add_argument(
        "--eval-batch-size",
        type=int,
        default=Runtime().eval_batch_size,
        help="batch size of evaluation and pool passes",
    )
    r.add_argument("--quiet", action="store_true", help="no per-round progress lines")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="archdal", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser(
        "run",
        help="run or resume one active-learning trajectory",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_run_arguments(run)
    return parser


def configs_from_args(args: argparse.Namespace) -> tuple[RunConfig, Runtime]:
    """Every `RunConfig` field has the flag of the same name (`init_size` ↔ `--init-size`)."""
    experiment = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(RunConfig)
        if f.name != "pretrain_options"
    }
    pretrain = PretrainConfig(
        clusters=args.pretrain_clusters,
        epochs=args.pretrain_epochs,
        max_images=args.pretrain_max_images,
    )
    runtime = Runtime(
        data_dir=args.data_dir,
        download=args.download,
        device=args.device,
        eval_batch_size=args.eval_batch_size,
        quiet=args.quiet,
    )
    return RunConfig(**experiment, pretrain_options=pretrain).validate(), runtime.validate()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config, runtime = configs_from_args(args)
        progress = None if runtime.quiet else lambda line: print(line, flush=True)
        records = run(config, args.out, runtime, progress)
    except ArchdalError as err:
        sys.stderr.write(f"archdal: error: {err}\n")
        return EXIT_USAGE
    if not runtime.quiet:
        print(f"final test accuracy {100 * records[-1]['test_acc']:.2f}% — results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
