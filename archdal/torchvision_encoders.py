"""`torchvision:<arch>` frozen encoders: a torchvision classification model with pretrained
weights, read at its penultimate layer.

The weights come from `--encoder-weights FILE` (the architecture's state dict, e.g. saved
from `torchvision.models.resnet18(weights=...)` on a machine with a network) or, with
`--download`, torchvision's default weights for the architecture (fetched into torch's hub
cache). Images are scaled to 0..1, grey ones repeated to three channels, resized to
`--encoder-image-size` (bilinear) and standardised by ImageNet's channel statistics, as
torchvision's pretrained weights expect.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from archdal.config import RunConfig
from archdal.encoders import torchvision_arch
from archdal.errors import ConfigError, DataError
from archdal.io import hash_file

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _default_weights(arch: str) -> torchvision.models.WeightsEnum:
    return torchvision.models.get_model_weights(arch).DEFAULT


def weights_identity(config: RunConfig, download: bool) -> str:
    """What the encoder's weights are, for the cache key: the sha256 of the weights file,
    or the name of torchvision's default weights. One line naming what is missing when
    there are none."""
    arch, file = torchvision_arch(config.encoder), config.encoder_options.weights
    if file:
        path = Path(file).expanduser()
        if not path.is_file():
            raise DataError(f"--encoder-weights {file}: no such file")
        return hash_file(path, hashlib.sha256()).hexdigest()
    if not download:
        raise ConfigError(
            f"encoder {config.encoder!r} needs pretrained weights: --encoder-weights FILE (a "
            f"state dict of torchvision's {arch}) or --download for torchvision's "
            f"{_default_weights(arch)}"
        )
    return str(_default_weights(arch))


def penultimate(model: nn.Module, name: str) -> nn.Module:
    """`model` with its last linear layer replaced by the identity, so that its output is
    the embedding that layer reads."""
    linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linear:
        raise ConfigError(f"encoder {name!r} ends in no linear layer to read the embedding at")
    *parents, last = linear[-1].split(".")
    owner = model.get_submodule(".".join(parents)) if parents else model
    setattr(owner, last, nn.Identity())
    return model


def load_encoder(config: RunConfig, download: bool) -> nn.Module:
    """The pretrained model, cut at its penultimate layer, in eval mode."""
    arch, file = torchvision_arch(config.encoder), config.encoder_options.weights
    if file:
        model = torchvision.models.get_model(arch, weights=None)
        try:
            state = torch.load(Path(file).expanduser(), map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except Exception as err:  # unpicklable, or another architecture's tensors
            first = str(err).strip().splitlines()[0][:200]
            raise DataError(
                f"--encoder-weights {file} holds no {arch} state dict ({first})"
            ) from err
    else:
        model = torchvision.models.get_model(arch, weights=_default_weights(arch))
    return penultimate(model, config.encoder).eval()


def embed_images(
    model: nn.Module, images: torch.Tensor, size: int, device: torch.device, batch_size: int
) -> torch.Tensor:
    """Embeddings of uint8 images (N×C×H×W), preprocessed batch by batch on `device`."""
    model = model.to(device)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    parts = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size].to(device).float() / 255
            x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
            parts.append(model((x - mean) / std).flatten(1).float().cpu())
    return torch.cat(parts)
