"""Unsupervised DeepCluster-style pretraining (Caron et al. 2018, as used by Siméoni et al.
2021 and the paper): alternate k-means on penultimate features of the training examples
(images, or the sentence representation a transformer's last layer reads) with one epoch
of training on the cluster ids as labels.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA

from archdal.config import RunConfig
from archdal.models import ALModel
from archdal.pool import embed_inputs
from archdal.seeding import derive_seed, draw_seed, generator, global_torch_seed
from archdal.train import augmented_views, even_batches, make_optimizer, train_epoch

PCA_DIMS = 64


def cluster_labels(features: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k-means ids of PCA-reduced, L2-normalised features.

    DeepCluster also whitens; with few clusters that gives the many noise directions the
    same weight as the few that separate clusters, so the ids stop following the data.
    """
    dims = min(PCA_DIMS, features.shape[1], features.shape[0])
    reduced = PCA(n_components=dims, random_state=seed % 2**32).fit_transform(features)
    reduced /= np.linalg.norm(reduced, axis=1, keepdims=True).clip(1e-12)
    return KMeans(n_clusters=k, n_init=1, random_state=seed % 2**32).fit_predict(reduced)


def pretraining_images(images: torch.Tensor, config: RunConfig) -> torch.Tensor:
    """The images unsupervised pretraining sees: all of them, or a seeded subset of
    `max_images`, the same subset for DeepCluster and for a PDARTS search on clusters."""
    limit = config.pretrain_options.max_images
    if not limit or limit >= len(images):
        return images
    rng = generator(derive_seed(config.seed, "pretraining images"))
    return images[torch.randperm(len(images), generator=rng)[:limit].to(images.device)]


def pretrain_backbone(
    make_model: Callable[[], ALModel],
    images: torch.Tensor,
    config: RunConfig,
    eval_batch_size: int,
) -> dict[str, torch.Tensor]:
    """Pretrained weights of everything but the classifier, as a function of the seed.

    Each epoch replaces the output layer (cluster ids are arbitrary from one clustering
    to the next) and samples images uniformly over clusters, so one large cluster cannot
    dominate. With `pretrain_options.augment` it trains on random views of the images, as
    Caron et al. do: on the images themselves the network learns back the clusters its
    own features made, and on MNIST (ResNet-18 at width 0.125, 10 epochs of 5,000 images)
    its features end below a random network's.
    """
    options = config.pretrain_options
    rng = generator(derive_seed(config.seed, "pretrain"))
    images = pretraining_images(images, config)
    k = min(options.clusters, len(images))
    with global_torch_seed(draw_seed(rng)):
        model = make_model()
        for _ in range(options.epochs):
            features = embed_inputs(model, images, eval_batch_size).cpu().double().numpy()
            labels = cluster_labels(features, k, draw_seed(rng))
            counts = np.bincount(labels, minlength=k)
            weights = torch.from_numpy(1.0 / counts[labels])
            order = torch.multinomial(weights, len(images), replacement=True, generator=rng)
            model.replace_classifier(k)
            steps = even_batches(len(images), config.batch_size)
            schedule = make_optimizer(model, config, 1, steps, lr=options.lr)
            targets = torch.from_numpy(labels).long().to(images.device)
            train_epoch(model, schedule, images, targets, order.to(images.device),
                        config.batch_size, rng if options.augment else None,
                        augment=augmented_views)  # fmt: skip
    return {n: t for n, t in model.state_dict().items() if not n.startswith("classifier.")}
