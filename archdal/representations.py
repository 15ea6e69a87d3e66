"""Embeddings of every train and test example of a dataset by a frozen encoder, cached.

An entry is computed once per (data, encoder, encoder settings) and then read by every
trial that needs it, whatever its AL seed. Its file name holds a digest of all three and
its content repeats that digest, so an entry copied from other data is refused rather than
used. A lock file beside it lets one process embed while concurrent trials wait and then
read what it wrote; `io.atomic_write` means no reader ever sees half a file.

An entry also says what made it (torch version, the CPU's vector instructions, the device):
a trained encoder is bit-identical from any caller on one machine, but another instruction
set rounds its convolutions differently and ten epochs make that another encoder. Each run
records its entry's content digest and origin, so two runs can be told apart by encoder.

Encoders (`archdal.encoders`): `pixels`, a seeded PCA of the raw training pixels;
`deepcluster` and `simclr`, a ResNet-18 trained by DeepCluster or by SimCLR on the training
images; `torchvision:<arch>`, a pretrained torchvision model (`archdal.torchvision_encoders`);
text, a sentence-transformers model (mean pooling for a plain Hugging Face directory), which
batches its inputs sorted by length.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from archdal import registry, torchvision_encoders
from archdal.config import MODEL_REPRESENTATION, RunConfig, Runtime
from archdal.data import ImageData
from archdal.encoders import encoder_label, text_encoder_dir, torchvision_arch
from archdal.errors import DataError
from archdal.io import atomic_write, hash_file, waiting_lock
from archdal.models import ALModel, build_model
from archdal.pool import embed_inputs
from archdal.pretrain import pretrain_backbone
from archdal.simclr import simclr_backbone
from archdal.textdata import (
    Corpus,
    RawText,
    cache_dir_of,
    hash_corpora,
    held_out_split,
    read_raw,
)
from archdal.train import resolve_device

FORMAT = "archdal-representations/1"
UNKNOWN_ORIGIN = "unknown (an entry of before archdal recorded it)"
TRAINED_ENCODER_ARCH = "resnet18"  # the network deepcluster and simclr train
# Texts per encoder batch at most: length-sorted batches of 64 Banking77 texts embedded at
# 45-61 examples/s on one thread here, batches of 1,024 at 16 (each pads to its longest).
TEXT_BATCH = 64


@dataclass(frozen=True)
class FeatureData:
    """A dataset as fixed embeddings (float32 rows), with its labels and official test split."""

    name: str
    train_x: torch.Tensor  # float32, N×D
    train_y: torch.Tensor  # int64, N
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    encoder: str
    entry_digest: str = ""  # of the cache entry's values: equal digests, one encoder output
    made_on: str = UNKNOWN_ORIGIN  # what embedded them (`made_on`), as the entry says

    @property
    def dim(self) -> int:
        return self.train_x.shape[1]

    @property
    def provenance(self) -> dict[str, str]:
        """What every round's record says of these embeddings."""
        return {"representation_digest": self.entry_digest,
                "representation_made_on": self.made_on}  # fmt: skip

    def to(self, device: torch.device | str) -> FeatureData:
        return FeatureData(
            self.name, self.train_x.to(device), self.train_y.to(device), self.test_x.to(device),
            self.test_y.to(device), self.num_classes, self.encoder, self.entry_digest,
            self.made_on,
        )  # fmt: skip


# --- digests: what an entry depends on --------------------------------------------------


def tensor_digest(*tensors: torch.Tensor) -> str:
    """sha256 of the tensors' shapes, dtypes and bytes."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(f"{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def text_digest(raw: RawText) -> str:
    """sha256 of every text, second text and label of both splits."""
    h = hashlib.sha256()
    hash_corpora(h, raw)
    return h.hexdigest()


def model_digest(directory: Path) -> str:
    """sha256 of every file of a model directory (names and contents)."""
    h = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(directory)).encode() + b"\0")
        hash_file(path, h)
    return h.hexdigest()


def entry_key(encoder: dict[str, object], data: str) -> str:
    return hashlib.sha256(json.dumps([FORMAT, encoder, data], sort_keys=True).encode()).hexdigest()


def entry_path(cache_dir: Path, dataset: str, encoder: str, key: str) -> Path:
    return cache_dir / "representations" / f"{dataset}-{encoder_label(encoder)}-{key[:24]}.pt"


# --- the cache ----------------------------------------------------------------------------


def _problem(entry: object, key: str, rows: dict[str, int]) -> str | None:
    """What makes `entry` unusable for `key` with these row counts (None: nothing)."""
    if not isinstance(entry, dict) or entry.get("format") != FORMAT:
        return f"is not a representation entry of format {FORMAT}"
    if entry.get("key") != key:
        return "belongs to other data or another encoder (its key differs)"
    dims = set()
    for split, n in rows.items():
        t = entry.get(split)
        if not isinstance(t, torch.Tensor) or t.dtype != torch.float32 or t.dim() != 2:
            return f"has no float32 matrix {split!r}"
        if len(t) != n:
            return f"has {len(t)} {split} rows, the data {n}"
        if not torch.isfinite(t).all():
            return f"has non-finite {split} values"
        dims.add(t.shape[1])
    return None if len(dims) == 1 else f"has splits of different widths {sorted(dims)}"


def made_on(device: torch.device) -> str:
    """The torch version, the CPU instruction set its kernels use, and the device."""
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    cpu = torch.backends.cpu.get_cpu_capability()
    return f"torch {torch.__version__}, CPU {cpu}, {where}"


@dataclass(frozen=True)
class Entry:
    """A cache entry's tensors by split and what made them."""

    tensors: dict[str, torch.Tensor]
    made_on: str

    @property
    def digest(self) -> str:
        """sha256 of the values, split by split in name order (16 hex digits)."""
        return tensor_digest(*(self.tensors[k] for k in sorted(self.tensors)))[:16]


def read_entry(path: Path, key: str, rows: dict[str, int]) -> Entry:
    """A cached entry, checked; a DataError naming the file when it is torn or foreign."""
    try:
        entry = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise DataError(
            f"representation cache {path} is unreadable ({type(err).__name__}: truncated or "
            "not a torch file); delete it to embed again"
        ) from err
    problem = _problem(entry, key, rows)
    if problem:
        raise DataError(f"representation cache {path} {problem}; delete it to embed again")
    origin = entry.get("made_on")
    return Entry({split: entry[split] for split in rows},
                 origin if isinstance(origin, str) else UNKNOWN_ORIGIN)  # fmt: skip


def cached(
    path: Path,
    key: str,
    rows: dict[str, int],
    compute: Callable[[], dict[str, torch.Tensor]],
    device: torch.device | None = None,
) -> Entry:
    """The entry at `path`, computed on `device` (default the CPU) and written first when
    absent. Concurrent callers queue on the lock: the first embeds, the others read its
    file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with waiting_lock(path):
        if path.is_file():
            return read_entry(path, key, rows)
        tensors = {split: t.float().contiguous() for split, t in compute().items()}
        problem = _problem({"format": FORMAT, "key": key, **tensors}, key, rows)
        if problem:
            raise DataError(f"the encoder's output {problem}")
        entry = Entry(tensors, made_on(device or torch.device("cpu")))
        content = {"format": FORMAT, "key": key, "made_on": entry.made_on, **tensors}
        atomic_write(path, lambda fh: torch.save(content, fh), "wb")
        return entry


# --- encoders -----------------------------------------------------------------------------


def embed_pixels(train: torch.Tensor, test: torch.Tensor, dims: int, seed: int) -> dict:
    """PCA of pixels on the 0..1 scale, fitted on the training images only."""
    from sklearn.decomposition import PCA

    def flat(images: torch.Tensor):
        return images.flatten(1).float().div(255).numpy()

    x = flat(train)
    pca = PCA(n_components=min(dims, *x.shape), svd_solver="randomized", random_state=seed)
    return {
        "train": torch.from_numpy(pca.fit_transform(x)),
        "test": torch.from_numpy(pca.transform(flat(test))),
    }


def embed_texts(
    directory: Path,
    corpora: dict[str, Corpus],
    max_length: int,
    device: torch.device,
    batch_size: int,
    progress: bool,
) -> dict[str, torch.Tensor]:
    """Sentence embeddings (pairs encoded together), truncated to `max_length` tokens."""
    from sentence_transformers import SentenceTransformer

    from archdal.textmodels import quiet_transformers

    with quiet_transformers():
        model = SentenceTransformer(str(directory), device=str(device))
    model.max_seq_length = max_length
    out = {}
    for split, corpus in corpora.items():
        inputs = corpus.texts
        if corpus.pairs is not None:
            inputs = [[a, b] for a, b in zip(corpus.texts, corpus.pairs, strict=True)]
        out[split] = model.encode(
            inputs, batch_size=batch_size, convert_to_tensor=True, show_progress_bar=progress
        ).cpu()
    return out


def _normalized(tensors: dict[str, torch.Tensor], normalize: bool) -> dict[str, torch.Tensor]:
    return {k: F.normalize(v.float(), dim=1) if normalize else v for k, v in tensors.items()}


@contextlib.contextmanager
def cpu_threads(count: int) -> Iterator[None]:
    """Torch's CPU thread count set to `count` inside, the caller's restored after: a
    convolution's backward splits its sums across the threads, so ten epochs on one thread
    and on two train different encoders from the same seed."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def embed_trained_encoder(
    data: ImageData, config: RunConfig, device: torch.device, batch_size: int
) -> dict[str, torch.Tensor]:
    """DeepCluster or SimCLR (the config's encoder) on the training images under the
    encoder's own seed (shared by every AL seed) and thread count, then the backbone's
    penultimate features (dropout off) of every image."""
    c = dataclasses.replace(config, seed=config.encoder_options.seed)
    mean, std = data.channel_stats()
    dims = (data.num_classes, data.channels, c.width, 0.0, mean, std)

    def make() -> ALModel:
        return build_model(TRAINED_ENCODER_ARCH, *dims).to(device)

    train, test = data.train_x.to(device), data.test_x.to(device)
    with cpu_threads(config.encoder_options.threads):
        if config.encoder == "simclr":
            backbone = simclr_backbone(make, train, c)
        else:
            backbone = pretrain_backbone(make, train, c, batch_size)
        model = make()
        model.load_state_dict(backbone | model.classifier_state())
        return {"train": embed_inputs(model, train, batch_size).cpu(),
                "test": embed_inputs(model, test, batch_size).cpu()}  # fmt: skip


def _image_settings(config: RunConfig, download: bool) -> dict[str, object]:
    """Everything the config's image encoder reads."""
    o = config.encoder_options
    settings: dict[str, object] = {"encoder": config.encoder, "seed": o.seed,
                                   "normalize": o.normalize}  # fmt: skip
    if config.encoder == "pixels":
        return settings | {"dims": o.dims}
    if torchvision_arch(config.encoder):
        weights = torchvision_encoders.weights_identity(config, download)
        return settings | {"weights": weights, "image_size": o.image_size}
    c = config  # DeepCluster's and SimCLR's training read these
    pretrain = dataclasses.asdict(c.pretrain_options)
    if c.encoder == "simclr":
        del pretrain["augment"]  # DeepCluster's choice; SimCLR always trains on views
    return settings | {"arch": TRAINED_ENCODER_ARCH, "threads": o.threads, "width": c.width,
                       "batch_size": c.batch_size,
                       "optimizer": c.optimizer, "momentum": c.momentum,
                       "weight_decay": c.weight_decay, "warmup_fraction": c.warmup_fraction,
                       "pretrain": pretrain}  # fmt: skip


def image_features(
    data: ImageData,
    config: RunConfig,
    cache_dir: Path,
    device: torch.device | None = None,
    batch_size: int = 1024,
    download: bool = False,
) -> FeatureData:
    """`data` embedded by the config's image encoder, from the cache when it was before
    (`download`: a torchvision encoder without a weights file fetches torchvision's)."""
    o = config.encoder_options
    device = device or torch.device("cpu")
    key = entry_key(
        _image_settings(config, download),
        tensor_digest(data.train_x, data.train_y, data.test_x, data.test_y),
    )
    rows = {"train": len(data.train_y), "test": len(data.test_y)}

    def compute() -> dict[str, torch.Tensor]:
        if config.encoder == "pixels":
            embedded = embed_pixels(data.train_x, data.test_x, o.dims, o.seed)
        elif torchvision_arch(config.encoder):
            model = torchvision_encoders.load_encoder(config, download)
            splits = {"train": data.train_x, "test": data.test_x}
            embed = torchvision_encoders.embed_images
            embedded = {k: embed(model, x, o.image_size, device, batch_size)
                        for k, x in splits.items()}  # fmt: skip
        else:
            embedded = embed_trained_encoder(data, config, device, batch_size)
        return _normalized(embedded, o.normalize)

    entry = cached(entry_path(cache_dir, data.name, config.encoder, key), key, rows, compute,
                   device)  # fmt: skip
    t = entry.tensors
    return FeatureData(data.name, t["train"], data.train_y, t["test"], data.test_y,
                       data.num_classes, config.encoder, entry.digest, entry.made_on)  # fmt: skip


def text_features(raw: RawText, config: RunConfig, runtime: Runtime) -> FeatureData:
    """`raw` embedded by the config's text model; a single-split dataset's test set is then
    held out exactly as on the fine-tuning path (same seed, same examples)."""
    directory = text_encoder_dir(config.encoder, cache_dir_of(runtime))
    o = config.encoder_options
    settings = {"model": model_digest(directory), "max_length": config.max_length,
                "normalize": o.normalize}  # fmt: skip
    key = entry_key(settings, text_digest(raw))
    corpora = {split: c for split, c in (("train", raw.train), ("test", raw.test)) if c}
    device = resolve_device(runtime.device)
    batch, progress = min(runtime.eval_batch(device.type), TEXT_BATCH), not runtime.quiet

    def compute() -> dict[str, torch.Tensor]:
        embedded = embed_texts(directory, corpora, config.max_length, device, batch, progress)
        return _normalized(embedded, o.normalize)

    path = entry_path(cache_dir_of(runtime), config.dataset, config.encoder, key)
    entry = cached(path, key, {split: len(c.labels) for split, c in corpora.items()}, compute,
                   device)  # fmt: skip
    t = entry.tensors
    labels = {split: torch.from_numpy(c.labels) for split, c in corpora.items()}
    if raw.train is None:
        test = held_out_split(labels["test"], config.test_fraction, config.seed)
        x, y = t["test"], labels["test"]
        t = {"train": x[~test], "test": x[test]}
        labels = {"train": y[~test], "test": y[test]}
    return FeatureData(config.dataset, t["train"], labels["train"], t["test"], labels["test"],
                       len(raw.class_names), config.encoder, entry.digest,
                       entry.made_on)  # fmt: skip


def load_features(config: RunConfig, runtime: Runtime) -> FeatureData:
    """The frozen family's data: the config's dataset embedded by its encoder (CPU)."""
    if config.modality == "image":
        data = registry.DATASETS.get(config.dataset).load(config, runtime)
        device = resolve_device(runtime.device)
        batch = runtime.eval_batch(device.type)
        return image_features(data, config, cache_dir_of(runtime), device, batch, runtime.download)
    return text_features(read_raw(config, runtime), config, runtime)


def acquisition_representation(
    config: RunConfig, runtime: Runtime, data: ImageData | FeatureData | object
) -> torch.Tensor | None:
    """The training rows of the representation the config's acquisition reads
    (`config.acquisition_encoder`), L2-normalised, on the CPU; None for the round's model's
    embedding.

    Arch frozen reads its own features; otherwise the named encoder embeds the data (through
    the cache: once per dataset and encoder), its frozen-encoder settings at their defaults.
    """
    name = config.acquisition_encoder
    if name == MODEL_REPRESENTATION:
        return None
    if isinstance(data, FeatureData):
        return F.normalize(data.train_x.float(), dim=1)
    encoded = dataclasses.replace(config, encoder=name)
    if isinstance(data, ImageData):
        device = resolve_device(runtime.device)
        features = image_features(data, encoded, cache_dir_of(runtime), device,
                                  runtime.eval_batch_size)  # fmt: skip
    else:
        features = text_features(read_raw(encoded, runtime), encoded, runtime)
    if not torch.equal(features.train_y.cpu(), data.train_y.cpu()):
        raise DataError(f"the {name} representation of {config.dataset} does not line up with "
                        "its training examples (labels differ)")  # fmt: skip
    return F.normalize(features.train_x.float(), dim=1)
