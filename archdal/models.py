"""CIFAR-style VGG and ResNet (paper, appendix B) split as features → neck → classifier.

`ALModel` is the interface the loop, the pool pass and pretraining use for every model,
images and text alike (`archdal.textmodels.TextNet` is the transformer one); the model
families that build them, and the adapter the loop uses, are in `archdal.families`.

The convolutional `features` are deterministic; every dropout layer lives in the `neck`,
whose output is the penultimate embedding read by coreset and BADGE. MC dropout
therefore runs the trunk once per image (BatchNorm in eval mode) and samples only the
neck T times, which is exactly a full stochastic forward pass at a fraction of the cost.
Models take uint8 images and normalise them themselves, so every caller feeds the same
input.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archdal.errors import ConfigError

_VGG_LAYERS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512,
              "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512,
              512, 512, 512, "M"],
}  # fmt: skip
_RESNET_BLOCKS = {"resnet18": (False, [2, 2, 2, 2]), "resnet34": (False, [3, 4, 6, 3])}
_RESNET_BLOCKS["resnet50"] = (True, [3, 4, 6, 3])
IMAGE_ARCHS = (*_VGG_LAYERS, *_RESNET_BLOCKS)


def _scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


class ALModel(nn.Module):
    """A classifier as `trunk` (deterministic) → `neck` (all dropout; its output is the
    embedding the last layer reads) → `classifier` (that last linear layer). Subclasses
    provide `trunk` and `neck` as methods or submodules."""

    classifier: nn.Linear
    trunk: Callable[[torch.Tensor], torch.Tensor]
    neck: Callable[[torch.Tensor], torch.Tensor]

    def __init__(self, embedding_dim: int):
        super().__init__()
        self.embedding_dim = embedding_dim

    def sample_dropout(self) -> None:
        """The mode of an MC dropout pass: dropout on, nothing else stochastic or updated."""
        raise NotImplementedError

    def pass_order(self, inputs: torch.Tensor) -> torch.Tensor | None:
        """The order in which inference passes should batch `inputs` (None: as given)."""
        return None

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.neck(self.trunk(inputs)))

    def training_loss(
        self, inputs: torch.Tensor, labels: torch.Tensor, n_train: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss one training step minimises, and the logits for the running accuracy.
        Models that infer their architecture add their KL term, scaled by `n_train`."""
        logits = self(inputs)
        return F.cross_entropy(logits, labels), logits

    def architecture_parameters(self) -> list[nn.Parameter]:
        """Parameters of the architecture itself (variational posteriors over depth or
        filters), trained at their own rate and frozen once an architecture is chosen."""
        return []

    def architecture_record(self) -> dict[str, Any]:
        """The current architecture as JSON (depth, active filters, genotype); {} when the
        architecture is fixed by construction."""
        return {}

    def classifier_state(self) -> dict[str, torch.Tensor]:
        """The output layer's entries of `state_dict()`, to complete a backbone state."""
        return {f"classifier.{k}": v for k, v in self.classifier.state_dict().items()}

    def replace_classifier(self, num_classes: int) -> None:
        """A fresh output layer (e.g. task head after cluster-label pretraining)."""
        device = self.classifier.weight.device
        self.classifier = nn.Linear(self.embedding_dim, num_classes).to(device)


def normalize_images(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 images → floats standardised per channel (`mean`, `std` shaped 1×C×1×1)."""
    return (images.float() / 255 - mean) / std


class ImageModel(ALModel):
    """An `ALModel` on uint8 images (N×C×H×W) that normalises them itself, so every caller
    feeds the same input; its dropout lives in the neck."""

    def __init__(self, embedding_dim: int, mean: torch.Tensor, std: torch.Tensor):
        super().__init__(embedding_dim)
        self.register_buffer("mean", mean.reshape(1, -1, 1, 1).float())
        self.register_buffer("std", std.reshape(1, -1, 1, 1).float())

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return normalize_images(images, self.mean, self.std)

    def sample_dropout(self) -> None:
        """Dropout on, everything else (BatchNorm included) stays in eval mode."""
        self.eval()
        for module in self.neck.modules():
            if isinstance(module, nn.Dropout):
                module.train()


class ALNet(ImageModel):
    """A CNN as `features` (deterministic) → `neck` → classifier."""

    def __init__(
        self,
        features: nn.Module,
        neck: nn.Module,
        embedding_dim: int,
        num_classes: int,
        mean: torch.Tensor,
        std: torch.Tensor,
    ):
        super().__init__(embedding_dim, mean, std)
        self.features = features
        self.neck = neck
        self.classifier = nn.Linear(embedding_dim, num_classes)

    def trunk(self, images: torch.Tensor) -> torch.Tensor:
        """Deterministic conv features of uint8 images (N×C×H×W)."""
        return self.features(self.normalize(images))


class _VGGTrunk(nn.Module):
    def __init__(self, layers: list, in_channels: int, width: float):
        super().__init__()
        blocks: list[nn.Module] = []
        channels = in_channels
        for item in layers:
            if item == "M":
                blocks.append(nn.MaxPool2d(2))
            else:
                out = _scaled(item, width)
                blocks += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out)]
                blocks.append(nn.ReLU(inplace=True))
                channels = out
        self.body = nn.Sequential(*blocks)
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = (-x.shape[-1]) % 32  # five 2× poolings: 28 px inputs are padded to 32
        if pad:
            x = nn.functional.pad(x, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2))
        return self.body(x).flatten(1)


def _vgg(name: str, in_channels: int, width: float, dropout: float) -> tuple:
    trunk = _VGGTrunk(_VGG_LAYERS[name], in_channels, width)
    hidden = [_scaled(4096, width), _scaled(4096, width), _scaled(1000, width)]
    neck: list[nn.Module] = []
    features = trunk.out_channels
    for size in hidden:
        neck += [nn.Linear(features, size), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        features = size
    return trunk, nn.Sequential(*neck), features


class _BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False),
            nn.BatchNorm2d(planes),
            nn.ReLU(inplace=True),
            nn.Conv2d(planes, planes, 3, 1, 1, bias=False),
            nn.BatchNorm2d(planes),
        )
        self.shortcut = _shortcut(in_planes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        out = planes * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(in_planes, planes, 1, bias=False),
            nn.BatchNorm2d(planes),
            nn.ReLU(inplace=True),
            nn.Conv2d(planes, planes, 3, stride, 1, bias=False),
            nn.BatchNorm2d(planes),
            nn.ReLU(inplace=True),
            nn.Conv2d(planes, out, 1, bias=False),
            nn.BatchNorm2d(out),
        )
        self.shortcut = _shortcut(in_planes, out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


def _shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Module:
    if stride == 1 and in_planes == out_planes:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, 1, stride, bias=False), nn.BatchNorm2d(out_planes)
    )


def _resnet(name: str, in_channels: int, width: float, dropout: float) -> tuple:
    bottleneck, counts = _RESNET_BLOCKS[name]
    block = _Bottleneck if bottleneck else _BasicBlock
    stem = _scaled(64, width)
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False),
        nn.BatchNorm2d(stem),
        nn.ReLU(inplace=True),
    ]
    in_planes = stem
    for stage, count in enumerate(counts):
        planes = _scaled(64 * 2**stage, width)
        for i in range(count):
            layers.append(block(in_planes, planes, stride=2 if stage > 0 and i == 0 else 1))
            in_planes = planes * block.expansion
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    # CIFAR ResNets have no dropout; one before the classifier makes MC dropout (BALD)
    # sample the model rather than BatchNorm noise.
    return nn.Sequential(*layers), nn.Dropout(dropout), in_planes


def build_model(
    arch: str,
    num_classes: int,
    in_channels: int,
    width: float = 1.0,
    dropout: float = 0.5,
    mean: torch.Tensor | None = None,
    std: torch.Tensor | None = None,
) -> ALNet:
    """The named architecture (see `IMAGE_ARCHS`), `width` scaling every layer."""
    if arch not in IMAGE_ARCHS:
        raise ConfigError(f"unknown arch {arch!r}; choose from: {', '.join(IMAGE_ARCHS)}")
    make = _vgg if arch.startswith("vgg") else _resnet
    features, neck, dim = make(arch, in_channels, width, dropout)
    mean = torch.full((in_channels,), 0.5) if mean is None else mean
    std = torch.full((in_channels,), 0.25) if std is None else std
    return ALNet(features, neck, dim, num_classes, mean, std)


def in_pass_order(model: ALModel, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`inputs` in the model's inference order, and that order (None: unchanged), which
    `restore_order` undoes on the outputs."""
    order = model.pass_order(inputs)
    return (inputs if order is None else inputs[order]), order


def restore_order(rows: torch.Tensor, order: torch.Tensor | None) -> torch.Tensor:
    """Rows computed on `inputs[order]` put back in the order of `inputs`."""
    if order is None:
        return rows
    restored = torch.empty_like(rows)
    restored[order] = rows
    return restored
