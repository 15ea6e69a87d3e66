"""What DeepCluster's features are worth with and without random views, by a linear probe.

    python benchmarks/deepcluster_views.py [--dataset mnist] [--epochs 10] [--data-dir DIR]

One process, one after another on the same images and seed: a ResNet-18 at `--width`
untrained, then trained by `archdal.pretrain.pretrain_backbone` (`--clusters`, `--epochs`
alternations on `--images` training images) on the images themselves and on random views
(`--pretrain-augment`). Each network's penultimate features of `--labelled` random training
images fit a scikit-learn logistic regression on standardised features, scored on the first
`--test` test images: the probe accuracy a frozen linear head can reach from that encoder.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from archdal import PretrainConfig, RunConfig, load_dataset
from archdal.models import build_model
from archdal.pool import embed_inputs
from archdal.pretrain import pretrain_backbone
from archdal.representations import TRAINED_ENCODER_ARCH


def probe_accuracy(model, data, labelled: np.ndarray, test: int) -> float:
    train = embed_inputs(model, data.train_x[labelled], 1024).double().numpy()
    held_out = embed_inputs(model, data.test_x[:test], 1024).double().numpy()
    scale = StandardScaler().fit(train)
    head = LogisticRegression(max_iter=2000).fit(scale.transform(train), data.train_y[labelled])
    return head.score(scale.transform(held_out), data.test_y[:test].numpy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--width", type=float, default=0.125)
    parser.add_argument("--clusters", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--labelled", type=int, default=1000)
    parser.add_argument("--test", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = load_dataset(args.dataset, args.data_dir)
    labelled = np.random.default_rng(args.seed).choice(len(data.train_y), args.labelled, False)
    mean, std = data.channel_stats()

    def make():
        return build_model(TRAINED_ENCODER_ARCH, data.num_classes, data.channels, args.width,
                           0.0, mean, std)  # fmt: skip

    print(f"{args.dataset}: {TRAINED_ENCODER_ARCH} at width {args.width}, {args.clusters} "
          f"clusters, {args.epochs} epochs on {args.images} images; probe on {args.labelled} "
          f"labelled, {args.test} test images, {torch.get_num_threads()} threads")  # fmt: skip
    torch.manual_seed(args.seed)
    print(f"untrained            probe {probe_accuracy(make(), data, labelled, args.test):.3f}")
    for augment in (False, True):
        options = PretrainConfig(clusters=args.clusters, epochs=args.epochs,
                                 max_images=args.images, augment=augment)  # fmt: skip
        config = RunConfig(dataset=args.dataset, width=args.width, seed=args.seed,
                           pretrain_options=options)  # fmt: skip
        start = time.perf_counter()
        model = make()
        model.load_state_dict(pretrain_backbone(make, data.train_x, config, 1024)
                              | model.classifier_state())  # fmt: skip
        seconds = time.perf_counter() - start
        way = "views" if augment else "images"
        accuracy = probe_accuracy(model, data, labelled, args.test)
        print(f"deepcluster, {way:6s} probe {accuracy:.3f}  ({seconds:.0f} s of training)")


if __name__ == "__main__":
    main()
