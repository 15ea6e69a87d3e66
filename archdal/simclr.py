"""SimCLR (Chen et al. 2020) on the unlabelled training images: the frozen family's
self-supervised image encoder (`--encoder simclr`).

Two augmented views of each image go through the backbone and a projection head
(`lightly`'s `SimCLRProjectionHead`); `lightly`'s NT-Xent loss pulls a pair together
against the other 2B − 2 views of the batch. The views are made for the whole batch at
once on the training device (a random resized crop through one `affine_grid`, then
brightness and contrast), so no per-image Python runs. There is no horizontal flip: it
changes what a digit means. The projection head is dropped afterwards; the encoder is
the backbone's penultimate layer, as in the paper.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead

from archdal.config import RunConfig
from archdal.models import ALModel
from archdal.pretrain import pretraining_images
from archdal.seeding import derive_seed, draw_seed, generator, global_torch_seed
from archdal.train import augmented_views, even_batches, make_optimizer

PROJECTION_DIM = 64  # SimCLR's z; the paper's 128 is for 2048-wide ResNet-50 features


def simclr_backbone(
    make_model: Callable[[], ALModel], images: torch.Tensor, config: RunConfig
) -> dict[str, torch.Tensor]:
    """Weights of everything but the classifier after `pretrain_options.epochs` epochs of
    SimCLR on `pretraining_images`, at `pretrain_options.lr` with the config's optimizer
    and batch size; a function of `config.seed`."""
    options = config.pretrain_options
    rng = generator(derive_seed(config.seed, "simclr"))
    images = pretraining_images(images, config)
    with global_torch_seed(draw_seed(rng)):
        model = make_model()
        # The projection head sits where the classifier will: model(x) is then z, and one
        # optimizer covers backbone and head; it is dropped with the classifier's keys.
        model.classifier = SimCLRProjectionHead(
            model.embedding_dim, model.embedding_dim, PROJECTION_DIM
        ).to(images.device)
        criterion = NTXentLoss(temperature=options.temperature)
        steps = even_batches(len(images), config.batch_size)
        schedule = make_optimizer(model, config, options.epochs, steps, lr=options.lr)
        model.train()
        for _ in range(options.epochs):
            order = torch.randperm(len(images), generator=rng).to(images.device)
            for idx in order.tensor_split(steps):
                batch = images[idx]
                z = model(torch.cat([augmented_views(batch, rng), augmented_views(batch, rng)]))
                schedule.minimise(criterion(*z.chunk(2)))
            if schedule.per_epoch is not None:
                schedule.per_epoch.step()
    return {n: t for n, t in model.state_dict().items() if not n.startswith("classifier.")}
