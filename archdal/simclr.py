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

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead

from archdal.config import RunConfig
from archdal.models import ALModel
from archdal.pretrain import pretraining_images
from archdal.seeding import derive_seed, draw_seed, generator, global_torch_seed
from archdal.train import even_batches, make_optimizer

PROJECTION_DIM = 64  # SimCLR's z; the paper's 128 is for 2048-wide ResNet-50 features
CROP_SCALE = (0.3, 1.0)  # share of the image's area a crop keeps
CROP_RATIO = (3 / 4, 4 / 3)
JITTER = 0.4  # brightness and contrast each scaled by a factor in [1 - JITTER, 1 + JITTER]


def augmented_views(images: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """One random view of each image (floats on the 0..255 scale, like the input)."""
    return crop_and_jitter(images, torch.rand(6, len(images), generator=rng).to(images.device))


def crop_and_jitter(images: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The views that six uniform draws per image (`u`, 6×N) stand for: a crop of
    `CROP_SCALE` of the area at an aspect ratio in `CROP_RATIO`, resized back to the
    image's size, then a brightness and a contrast factor."""
    n, device = len(images), images.device
    area = CROP_SCALE[0] + (CROP_SCALE[1] - CROP_SCALE[0]) * u[0]
    log_lo, log_hi = math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])
    ratio = torch.exp(log_lo + (log_hi - log_lo) * u[1])
    width, height = (area * ratio).sqrt().clamp(max=1), (area / ratio).sqrt().clamp(max=1)
    theta = torch.zeros(n, 2, 3, device=device)
    theta[:, 0, 0], theta[:, 1, 1] = width, height  # sides as fractions of the image's
    theta[:, 0, 2] = (1 - width) * (2 * u[2] - 1)  # centre anywhere the crop fits
    theta[:, 1, 2] = (1 - height) * (2 * u[3] - 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    views = F.grid_sample(images.float(), grid, align_corners=False)
    contrast = (1 - JITTER + 2 * JITTER * u[4]).view(n, 1, 1, 1)
    brightness = (1 - JITTER + 2 * JITTER * u[5]).view(n, 1, 1, 1)
    mean = views.mean(dim=(1, 2, 3), keepdim=True)
    return ((views - mean) * contrast + mean * brightness).clamp(0, 255)


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
