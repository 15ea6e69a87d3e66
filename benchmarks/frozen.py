"""A frozen-encoder trajectory against the fine-tuned one: same data, budget, strategy, seed.

    python benchmarks/frozen.py [--dataset banking77] [--encoder minilm] [--rounds 10]
        [--init-size 100] [--acq-size 50] [--pool-size 1000] [--data-dir DIR]

One run, one process, one thread, three timings:
  embed       the encoder's pass over the first `--embed-sample` training examples
              (examples per second; a trial reads the cached embeddings instead, which
              `--cache-dir` keeps between runs of this script: without it, a fresh cache);
  frozen      the frozen trajectory (a head trained each round on the cached embeddings);
  fine-tuned  the same trajectory fine-tuning the whole network: for text the encoder's own
              model as `--arch bert` (all-MiniLM-L6-v2 is a BERT) with the text protocol,
              for images a CIFAR-style ResNet-18 at `--width`.
The ratio is fine-tuned seconds / frozen seconds; final test accuracies are printed too.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from archdal import RunConfig, Runtime, Trajectory, load_dataset
from archdal.encoders import text_encoder_dir
from archdal.families import load_data
from archdal.representations import TEXT_BATCH, cache_dir_of, embed_pixels, embed_texts
from archdal.textdata import Corpus, read_raw


def trajectory_seconds(config: RunConfig, runtime: Runtime, data) -> tuple[float, float]:
    """Wall seconds of a whole trajectory on loaded data, and its final test accuracy."""
    start = time.perf_counter()
    trajectory = Trajectory(config, runtime, data)
    while not trajectory.done:
        trajectory.run_round()
    return time.perf_counter() - start, trajectory.records[-1]["test_acc"]


def embedding_pass(config: RunConfig, runtime: Runtime, sample: int) -> tuple[int, float]:
    """The encoder's own pass over the first `sample` training examples: count, seconds."""
    if config.is_text:
        raw = read_raw(config, runtime)
        corpus = raw.train or raw.test
        part = Corpus(corpus.texts[:sample], corpus.pairs and corpus.pairs[:sample],
                      corpus.labels[:sample])  # fmt: skip
        start = time.perf_counter()
        model = text_encoder_dir(config.encoder, cache_dir_of(runtime))
        embed_texts(model, {"train": part}, config.max_length, torch.device("cpu"), TEXT_BATCH,
                    progress=False)  # fmt: skip
        return len(part.labels), time.perf_counter() - start
    images = load_dataset(config.dataset, runtime.data_dir).train_x[:sample]
    start = time.perf_counter()
    o = config.encoder_options
    embed_pixels(images, images, o.dims, o.seed)
    return len(images), time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", default="banking77")
    p.add_argument("--encoder", default=None, help="default: minilm (text), pixels (images)")
    p.add_argument("--head", default="linear")
    p.add_argument("--strategy", default="margin")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--init-size", type=int, default=100)
    p.add_argument("--acq-size", type=int, default=50)
    p.add_argument("--pool-size", type=int, default=1000)
    p.add_argument("--max-length", type=int, default=64, help="text: tokens per example")
    p.add_argument("--width", type=float, default=0.25, help="images: the ResNet-18's width")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-fraction", type=float, default=0.02)
    p.add_argument("--max-epochs", type=int, help="fine-tuned: default its protocol's")
    p.add_argument("--patience", type=int, help="fine-tuned: default its protocol's")
    p.add_argument("--embed-sample", type=int, default=2000)
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--cache-dir", type=Path, default=None)
    p.add_argument("--embed-only", action="store_true", help="time only the embedding pass")
    args = p.parse_args()
    torch.set_num_threads(1)
    budget = dict(
        strategy=args.strategy, seed=args.seed, rounds=args.rounds, init_size=args.init_size,
        acq_size=args.acq_size, pool_size=args.pool_size, max_length=args.max_length,
        val_fraction=args.val_fraction,
    )  # fmt: skip
    epochs = {k: v for k in ("max_epochs", "patience") if (v := getattr(args, k)) is not None}
    text = RunConfig.for_dataset(args.dataset).is_text
    encoder = args.encoder or ("minilm" if text else "pixels")
    frozen = RunConfig.for_dataset(
        args.dataset, arch="frozen", encoder=encoder, head=args.head, **budget
    ).validate()
    with tempfile.TemporaryDirectory() as fresh:
        cache = args.cache_dir or Path(fresh)
        runtime = Runtime(data_dir=args.data_dir, cache_dir=cache, device="cpu", quiet=True)
        if text:  # the text-small preset's rate: at 2e-5, 5 epochs barely move MiniLM
            model = str(text_encoder_dir(encoder, cache))
            tuned = RunConfig.for_dataset(args.dataset, arch="bert", lr=3e-4, **budget, **epochs,
                                          model_path=model)  # fmt: skip
        else:
            tuned = RunConfig.for_dataset(
                args.dataset, arch="resnet18", width=args.width, **budget, **epochs
            )
        examples, embed = embedding_pass(frozen, runtime, args.embed_sample)
        if args.embed_only:
            print(f"embed       {examples} examples by {encoder} in {embed:.1f} s: "
                  f"{examples / embed:.0f} examples/s, 1 thread")  # fmt: skip
            return
        start = time.perf_counter()
        features = load_data(frozen, runtime)
        loaded = time.perf_counter() - start
        frozen_s, frozen_acc = trajectory_seconds(frozen, runtime, features)
        tuned_s, tuned_acc = trajectory_seconds(
            tuned.validate(), runtime, load_data(tuned, runtime)
        )
    labels = args.init_size + args.rounds * args.acq_size
    print(f"{args.dataset}, {args.strategy}, {args.rounds} rounds to {labels} labels, seed "
          f"{args.seed}, 1 thread")  # fmt: skip
    print(f"embed       {examples} examples by {encoder} in {embed:.1f} s: "
          f"{examples / embed:.0f} examples/s; all {len(features.train_y) + len(features.test_y)} "
          f"embedded or read from the cache in {loaded:.1f} s")  # fmt: skip
    print(f"frozen      {frozen_s:8.1f} s  final test accuracy {100 * frozen_acc:.2f}% "
          f"({args.head} head)")  # fmt: skip
    print(f"fine-tuned  {tuned_s:8.1f} s  final test accuracy {100 * tuned_acc:.2f}% "
          f"({tuned.arch})")  # fmt: skip
    print(f"ratio       fine-tuned / frozen = {tuned_s / frozen_s:.0f}x")


if __name__ == "__main__":
    main()
