"""`archdal` command line: `archdal run ...` runs (or resumes) one trajectory."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from archdal.config import (
    ARCH_MODES,
    ARCHS,
    DATASETS,
    DEVICES,
    OPTIMIZERS,
    PRETRAIN,
    STRATEGIES,
    TEXT_PRETRAIN_LR,
    TEXT_PROTOCOL,
    CsvOptions,
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


def _by_modality(name: str) -> dict:
    """A flag whose default is the paper's for the dataset's modality (`TEXT_PROTOCOL`);
    left out of the namespace unless given, so `RunConfig.for_dataset` can fill it."""
    return {"default": argparse.SUPPRESS, "metavar": name.split("_")[-1].upper()}


def _defaults(name: str) -> str:
    return f" (default: {getattr(RunConfig(), name)} for images, {TEXT_PROTOCOL[name]} for text)"


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    d = RunConfig()
    dp = PretrainConfig()
    dc = CsvOptions()
    g = p.add_argument_group("experiment")
    g.add_argument("--dataset", default=d.dataset, choices=DATASETS, help="image or text dataset")
    g.add_argument(
        "--arch",
        choices=ARCHS,
        default=argparse.SUPPRESS,
        help="CIFAR-style CNN for images, transformer for text" + _defaults("arch"),
    )
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
    g.add_argument(
        "--arch-mode",
        default=d.arch_mode,
        choices=ARCH_MODES,
        help="Focus 2: how a cnn/depth_dropout/bbdropout/pdarts architecture is optimized",
    )
    g.add_argument("--arch-source", default=d.arch_source, help="spo/upo: a stage-one file to load")
    g.add_argument("--seed", type=int, default=d.seed, help="seeds the split and everything random")
    g.add_argument(
        "--init-size",
        type=int,
        **_by_modality("init_size"),
        help="class-balanced initial labels" + _defaults("init_size"),
    )
    g.add_argument(
        "--acq-size",
        type=int,
        **_by_modality("acq_size"),
        help="labels acquired per round" + _defaults("acq_size"),
    )
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
        "--max-epochs",
        type=int,
        **_by_modality("max_epochs"),
        help="epochs per round at most" + _defaults("max_epochs"),
    )
    t.add_argument(
        "--patience",
        type=int,
        **_by_modality("patience"),
        help="epochs without val gain" + _defaults("patience"),
    )
    t.add_argument(
        "--train-acc-stop",
        type=float,
        **_by_modality("train_acc_stop"),
        help="stop once training accuracy reaches this" + _defaults("train_acc_stop"),
    )
    t.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        default=argparse.SUPPRESS,
        help="sgd: momentum + cosine schedule; adamw: linear warmup and decay"
        + _defaults("optimizer"),
    )
    t.add_argument("--lr", type=float, **_by_modality("lr"), help="learning rate" + _defaults("lr"))
    t.add_argument("--momentum", type=float, default=d.momentum, help="SGD momentum")
    t.add_argument(
        "--weight-decay",
        type=float,
        **_by_modality("weight_decay"),
        help="L2 penalty (AdamW: decoupled)" + _defaults("weight_decay"),
    )
    t.add_argument(
        "--batch-size",
        type=int,
        **_by_modality("batch_size"),
        help="training batch size (epochs use near-equal batches)" + _defaults("batch_size"),
    )
    t.add_argument("--augment", action="store_true", help="random crop + horizontal flip")
    t.add_argument(
        "--dropout",
        type=float,
        **_by_modality("dropout"),
        help="CNNs: dropout before the classifier; transformers: hidden and head dropout"
        + _defaults("dropout"),
    )
    t.add_argument("--mc-samples", type=int, default=d.mc_samples, help="BALD dropout passes")
    u = p.add_argument_group("unsupervised pretraining (--pretrain unsupervised)")
    u.add_argument("--pretrain-clusters", type=int, default=dp.clusters, help="k-means clusters")
    u.add_argument(
        "--pretrain-epochs", type=int, default=dp.epochs, help="cluster-then-train alternations"
    )
    u.add_argument("--pretrain-max-images", type=int, default=dp.max_images, help="0 = all")
    u.add_argument(
        "--pretrain-lr",
        type=float,
        default=argparse.SUPPRESS,
        help=f"learning rate (default: {dp.lr} for images, {TEXT_PRETRAIN_LR} for text)",
    )
    x = p.add_argument_group("text")
    x.add_argument(
        "--max-length", type=int, default=d.max_length, help="tokens per example (pairs: both)"
    )
    x.add_argument(
        "--model-path",
        default=d.model_path,
        help="local model directory (config, weights, tokenizer) instead of the arch's hub id",
    )
    x.add_argument(
        "--warmup-fraction",
        type=float,
        default=d.warmup_fraction,
        help="AdamW's linear warmup, as a share of a round's steps",
    )
    x.add_argument(
        "--test-fraction",
        type=float,
        default=d.test_fraction,
        help="share of a single-split dataset held out (seeded) as its test set",
    )
    c = p.add_argument_group("your own text data (--dataset csv)")
    c.add_argument("--csv-path", default=dc.path, help="a .csv or .tsv file with a header row")
    c.add_argument("--text-column", default=dc.text_column, help="column of the texts")
    c.add_argument(
        "--pair-column", default=dc.pair_column, help="column of second texts (sentence pairs)"
    )
    c.add_argument("--label-column", default=dc.label_column, help="column of the labels")
    r = p.add_argument_group("runtime")
    r.add_argument("--out", type=Path, required=True, help="run directory (resumed if unfinished)")
    r.add_argument("--data-dir", type=Path, default=None, help="default: $ARCHDAL_DATA, then cache")
    r.add_argument(
        "--download", action="store_true", help="fetch datasets (text: from the Hugging Face hub)"
    )
    r.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="tokenized text datasets; default: $ARCHDAL_CACHE, then ~/.cache/archdal",
    )
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
    """Every `RunConfig` field has the flag of the same name (`init_size` ↔ `--init-size`);
    flags not given take the paper's default for the dataset's modality."""
    nested = ("pretrain_options", "csv_options", "arch_options")
    experiment = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(RunConfig)
        if f.name not in nested and hasattr(args, f.name)
    }
    base = RunConfig.for_dataset(experiment.pop("dataset"))
    pretrain = dataclasses.replace(
        base.pretrain_options,
        clusters=args.pretrain_clusters,
        epochs=args.pretrain_epochs,
        max_images=args.pretrain_max_images,
        **({"lr": args.pretrain_lr} if hasattr(args, "pretrain_lr") else {}),
    )
    csv = CsvOptions(
        path=args.csv_path,
        text_column=args.text_column,
        pair_column=args.pair_column,
        label_column=args.label_column,
    )
    runtime = Runtime(
        data_dir=args.data_dir,
        download=args.download,
        cache_dir=args.cache_dir,
        device=args.device,
        eval_batch_size=args.eval_batch_size,
        quiet=args.quiet,
    )
    config = dataclasses.replace(base, **experiment, pretrain_options=pretrain, csv_options=csv)
    return config.validate(), runtime.validate()


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
