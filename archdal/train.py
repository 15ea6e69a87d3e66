"""Training one round's model from scratch, as in the paper.

Batches are index slices of tensors already on the device (uint8 images or token ids);
augmentation (random crop with padding, horizontal flip; or the random resized crops and
jitter SimCLR and DeepCluster's `--pretrain-augment` train on) is applied to the whole
batch at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from archdal.config import RunConfig
from archdal.errors import ConfigError
from archdal.models import ALModel, in_pass_order, restore_order
from archdal.seeding import derive_seed, generator


def autocast(precision: str, device: torch.device):
    """bfloat16 autocast for `precision` bf16 (CPU or CUDA); nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def fast_path(model: ALModel, precision: str, compile: bool) -> ALModel:
    """The model as the fast path runs it: channels_last under bf16 (tensor cores read
    NHWC), its parts compiled with `compile`. fp32 without compile: unchanged."""
    if precision == "bf16":
        model = model.to(memory_format=torch.channels_last)
    if compile:
        for part in model.children():
            part.compile()
    return model


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' asked for, but torch sees no CUDA device; use cpu or auto")
    return torch.device(name)


@dataclass(frozen=True)
class TrainResult:
    epochs: int
    train_acc: float  # of the epoch whose weights were kept
    val_acc: float  # best validation accuracy; its weights are loaded in the model
    seconds: float


def augment_batch(images: torch.Tensor, rng: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop from the zero-padded image and random horizontal flip, per image."""
    n, _, h, w = images.shape
    shifts = torch.randint(0, 2 * pad + 1, (2, n), generator=rng).to(images.device)
    flips = (torch.rand(n, generator=rng) < 0.5).to(images.device)
    padded = F.pad(images, (pad, pad, pad, pad))
    rows = shifts[0, :, None] + torch.arange(h, device=images.device)  # n×h
    cols = shifts[1, :, None] + torch.arange(w, device=images.device)  # n×w
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    batch = torch.arange(n, device=images.device)[:, None, None]
    crops = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
    # Standard NCHW strides: with one channel `.contiguous()` keeps the gather's NHWC
    # strides, which route the convolutions to a CPU backward that crashes the process
    # (torch 2.14, ResNet-18 at width 0.125, batches of 63).
    return crops.permute(0, 3, 1, 2).clone(memory_format=torch.contiguous_format)


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


def even_batches(n: int, batch_size: int) -> int:
    """How many near-equal batches of at most `batch_size` cover n items.

    200 labels at batch size 64 become 4 × 50, not 64 + 64 + 64 + 8: a ragged last batch
    gives BatchNorm and the momentum step a very noisy update, which at small budgets
    was measured to send VGG-11 on digits back to chance accuracy.
    """
    return max(1, -(-n // batch_size))


def norm_layers(model: ALModel) -> list[torch.nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


@contextmanager
def epoch_batch_statistics(model: ALModel):
    """BatchNorm running statistics as the plain average over the batches seen (momentum
    None); `reset_running_stats` at each epoch's start makes them that epoch's. Momenta are
    restored on exit."""
    norms = norm_layers(model)
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.momentum = None
    try:
        yield norms
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum


@torch.no_grad()
def recalibrate_batchnorm(model: ALModel, images: torch.Tensor, batch_size: int) -> None:
    """Recompute BatchNorm running statistics as the average over the labelled set.

    With a few hundred labels an epoch is a handful of steps, and the default running
    average (momentum 0.1) still describes the random initialisation when training
    accuracy reaches 99%: eval mode then predicts nearly one class (MNIST, 100 labels,
    SGD lr 0.03: 19% test accuracy without this, 69% with it). Statistics of the current
    weights make every validation, test and pool pass see the model that was trained.
    """
    norms = norm_layers(model)
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    model.train()
    for chunk in images.tensor_split(even_batches(len(images), batch_size)):
        model.trunk(chunk)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    model.eval()


def predict(model: ALModel, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Predicted class of every example, in eval mode."""
    model.eval()
    x, order = in_pass_order(model, images)
    with torch.inference_mode():
        predicted = [model(x[s : s + batch_size]).argmax(1) for s in range(0, len(x), batch_size)]
    return restore_order(torch.cat(predicted), order)  # outside: an ordinary tensor


def accuracy(model: ALModel, images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> float:
    return (predict(model, images, batch_size) == labels).float().mean().item()


class Schedule(NamedTuple):
    """An optimizer and its learning-rate schedulers, stepped after each epoch or batch."""

    optimizer: torch.optim.Optimizer
    per_epoch: torch.optim.lr_scheduler.LRScheduler | None = None
    per_step: torch.optim.lr_scheduler.LRScheduler | None = None

    def minimise(self, loss: torch.Tensor) -> None:
        """One optimizer step down `loss`'s gradient, and the per-step schedule's step."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.per_step is not None:
            self.per_step.step()


def linear_warmup_decay(warmup: int, total: int):
    """Rate factor of step s: up linearly over `warmup` steps, then linearly down to 0 at
    `total` (BERT fine-tuning's schedule)."""

    def factor(step: int) -> float:
        if step < warmup:
            return step / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def make_optimizer(
    model: ALModel, config: RunConfig, epochs: int, steps_per_epoch: int, lr: float | None = None
) -> Schedule:
    """SGD with momentum and a cosine schedule over `max_epochs`, Adam at a fixed rate, or
    AdamW with linear warmup (`warmup_fraction` of the steps) and linear decay. Trainable
    architecture parameters form a group of their own (`arch_options.lr`); frozen ones
    are left out."""
    lr = config.lr if lr is None else lr
    architecture = [p for p in model.architecture_parameters() if p.requires_grad]
    excluded = {id(p) for p in model.architecture_parameters()}
    weights = [p for p in model.parameters() if p.requires_grad and id(p) not in excluded]
    params: list[dict] = [{"params": weights}]
    if architecture:  # variational parameters: their own rate, no weight decay
        params.append({"params": architecture, "lr": config.arch_options.lr,
                       "weight_decay": 0.0})  # fmt: skip
    decay = config.weight_decay
    # bf16 path on CUDA: one fused kernel per step (fp32 keeps torch's default, foreach)
    on_cuda = next(model.parameters()).is_cuda
    fused = {"fused": True} if config.precision == "bf16" and on_cuda else {}
    if config.optimizer == "adam":
        return Schedule(torch.optim.Adam(params, lr=lr, weight_decay=decay, **fused))
    if config.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=decay, **fused)
        total = epochs * steps_per_epoch
        factor = linear_warmup_decay(round(config.warmup_fraction * total), total)
        return Schedule(opt, per_step=torch.optim.lr_scheduler.LambdaLR(opt, factor))
    opt = torch.optim.SGD(params, lr=lr, momentum=config.momentum, weight_decay=decay, **fused)
    return Schedule(opt, per_epoch=torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs))


def train_epoch(
    model: ALModel,
    schedule: Schedule,
    images: torch.Tensor,
    labels: torch.Tensor,
    order: torch.Tensor,
    batch_size: int,
    augment_rng: torch.Generator | None,
    precision: str = "fp32",
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
) -> float:
    """One pass in the given order, in near-equal batches; returns the running accuracy.
    With `augment_rng`, each batch is `augment`ed (crops and flips unless told otherwise).
    The forward runs under `autocast(precision)`, the backward outside it."""
    model.train()
    correct = torch.zeros((), device=images.device)
    for idx in order.tensor_split(even_batches(len(order), batch_size)):
        x, y = images[idx], labels[idx]
        if augment_rng is not None:
            x = (augment or augment_batch)(x, augment_rng)
        with autocast(precision, images.device):
            loss, logits = model.training_loss(x, y, len(order))
        schedule.minimise(loss)
        correct += (logits.argmax(dim=1) == y).sum()
    return correct.item() / len(order)


def train_model(
    model: ALModel,
    images: torch.Tensor,
    labels: torch.Tensor,
    val_images: torch.Tensor,
    val_labels: torch.Tensor,
    config: RunConfig,
    seed: int,
    eval_batch_size: int = 1024,
    on_epoch: Callable[[int, float, float | None], None] | None = None,
) -> TrainResult:
    """Train up to `max_epochs`, stopping once training accuracy reaches `train_acc_stop`
    or validation accuracy has not improved for `patience` epochs; the weights of the
    best validation epoch are loaded back into `model`. Validation runs every
    `validate_every` epochs and at the last, on `val_subsample` examples when set
    (`validation_subset`); BatchNorm statistics are set only for the states evaluated.
    `on_epoch(epoch, train_acc, val_acc or None)` follows every epoch (progress)."""
    start = time.perf_counter()
    rng = generator(seed)
    steps_per_epoch = even_batches(len(images), config.batch_size)
    schedule = make_optimizer(model, config, config.max_epochs, steps_per_epoch)
    subset = validation_subset(len(val_images), config.val_subsample, config.seed)
    if subset is not None:
        subset = subset.to(val_images.device)
        val_images, val_labels = val_images[subset], val_labels[subset]
    from_epoch = config.bn_stats == "epoch"
    best_val, best_train, best_state, since_best = -1.0, 0.0, None, 0
    epochs = since_validation = 0
    with epoch_batch_statistics(model) if from_epoch else nullcontext() as norms:
        while epochs < config.max_epochs:
            epochs += 1
            since_validation += 1
            for m in norms or ():
                m.reset_running_stats()
            order = torch.randperm(len(images), generator=rng).to(images.device)
            train_acc = train_epoch(
                model,
                schedule,
                images,
                labels,
                order,
                config.batch_size,
                rng if config.augment else None,
                config.precision,
            )
            if schedule.per_epoch is not None:
                schedule.per_epoch.step()
            last = train_acc >= config.train_acc_stop or epochs == config.max_epochs
            if not last and epochs % config.validate_every:
                if on_epoch is not None:
                    on_epoch(epochs, train_acc, None)
                continue
            with autocast(config.precision, images.device):
                if not from_epoch:
                    recalibrate_batchnorm(model, images, config.batch_size)
                val_acc = accuracy(model, val_images, val_labels, eval_batch_size)
            if val_acc > best_val:
                best_val, best_train, since_best = val_acc, train_acc, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                since_best += since_validation  # patience counts epochs
            since_validation = 0
            if on_epoch is not None:
                on_epoch(epochs, train_acc, val_acc)
            if last or since_best >= config.patience:
                break
    model.load_state_dict(best_state)
    return TrainResult(epochs, best_train, best_val, time.perf_counter() - start)


def validation_subset(n: int, size: int, seed: int) -> torch.Tensor | None:
    """`size` of the n validation examples (in their order), drawn from the trajectory's
    seed alone: the same subset every epoch and every round. None: all of them."""
    if size == 0 or size >= n:
        return None
    picks = torch.randperm(n, generator=generator(derive_seed(seed, "val-subsample")))[:size]
    return picks.sort().values
