"""Image datasets as uint8 tensors, and the paper's seeded split (images and text).

Every dataset is held in memory as `uint8` tensors of shape N×C×H×W (MNIST: 47 MB),
moved once to the training device; batches are sliced and normalised there, so no
per-sample Python or PIL work happens while training.

The datasets a config may name are `archdal.registry.DATASETS`; the image ones register
here, the text ones in `archdal.textdata`. To add a dataset:
1. write a loader `(RunConfig, Runtime) -> ImageData` (or `TextData`), on the CPU, raising
   a `DataError` that names the missing or corrupt file;
2. register it: `registry.DATASETS.register(registry.Dataset("name", "image", loader))`,
   here or in your own module (then name that module in `$ARCHDAL_PLUGINS`);
3. `archdal run --dataset name` and a sweep's `--datasets name` now accept it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from archdal import registry
from archdal.config import SPLIT_VERSION, RunConfig, Runtime, default_data_dir
from archdal.errors import ConfigError, DataError
from archdal.seeding import derive_seed, generator


@dataclass(frozen=True)
class ImageData:
    """A labelled image dataset with its official train/test split."""

    name: str
    train_x: torch.Tensor  # uint8, N×C×H×W
    train_y: torch.Tensor  # int64, N
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int

    @property
    def channels(self) -> int:
        return self.train_x.shape[1]

    @property
    def image_size(self) -> int:
        return self.train_x.shape[2]

    def channel_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and std of the training images, on the 0..1 scale."""
        x = self.train_x.float().div_(255)
        return x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3))

    def to(self, device: torch.device | str) -> ImageData:
        return ImageData(
            self.name,
            self.train_x.to(device),
            self.train_y.to(device),
            self.test_x.to(device),
            self.test_y.to(device),
            self.num_classes,
        )


# md5 of the uncompressed IDX files as torchvision lays them out (the published checksums).
_IDX_MD5 = {
    "MNIST": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "FashionMNIST": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}

_HOW_TO_GET = (
    "run with --download where the network allows, or place the files there "
    "(point --data-dir or $ARCHDAL_DATA at the folder that holds them)"
)


def _check_idx_files(root: Path, folder: str) -> None:
    raw = root / folder / "raw"
    for name, md5 in _IDX_MD5[folder].items():
        path = raw / name
        if not path.is_file():
            raise DataError(f"{folder} file missing: {path}; {_HOW_TO_GET}")
        digest = hashlib.md5(path.read_bytes()).hexdigest()
        if digest != md5:
            raise DataError(
                f"{folder} file corrupt: {path} has md5 {digest}, expected {md5}; "
                f"delete it and {_HOW_TO_GET}"
            )


def _load_idx(root: Path, download: bool, folder: str) -> ImageData:
    from torchvision import datasets

    cls = {"MNIST": datasets.MNIST, "FashionMNIST": datasets.FashionMNIST}[folder]
    if download:
        cls(root=str(root), train=True, download=True)
        cls(root=str(root), train=False, download=True)
    _check_idx_files(root, folder)
    train = cls(root=str(root), train=True, download=False)
    test = cls(root=str(root), train=False, download=False)
    return ImageData(
        folder.lower(),
        train.data.unsqueeze(1).contiguous(),
        train.targets.long(),
        test.data.unsqueeze(1).contiguous(),
        test.targets.long(),
        10,
    )


def _load_torchvision(name: str, root: Path, download: bool) -> ImageData:
    """CIFAR-10 and SVHN through torchvision, whose own md5 checks catch corrupt files."""
    from torchvision import datasets

    try:
        if name == "cifar10":
            train = datasets.CIFAR10(root=str(root), train=True, download=download)
            test = datasets.CIFAR10(root=str(root), train=False, download=download)
            images = [torch.from_numpy(d.data).permute(0, 3, 1, 2) for d in (train, test)]
            labels = [torch.tensor(d.targets, dtype=torch.long) for d in (train, test)]
        else:
            train = datasets.SVHN(root=str(root), split="train", download=download)
            test = datasets.SVHN(root=str(root), split="test", download=download)
            images = [torch.from_numpy(d.data) for d in (train, test)]
            labels = [torch.from_numpy(d.labels.astype(np.int64)) for d in (train, test)]
    except RuntimeError as err:
        where = root / "cifar-10-batches-py" if name == "cifar10" else root / "train_32x32.mat"
        raise DataError(f"{name} not found or corrupt at {where} ({err}); {_HOW_TO_GET}") from err
    return ImageData(name, images[0].contiguous(), labels[0], images[1].contiguous(), labels[1], 10)


def load_digits_images(size: int = 28) -> ImageData:
    """scikit-learn's bundled 8×8 handwritten digits, scaled to MNIST's 28 px; no download.

    The set has no official test split, so a fixed stratified 20% (independent of the run
    seed, like an official split) is the test set.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    order = torch.randperm(len(y), generator=generator(2021))
    test_mask = torch.zeros(len(y), dtype=torch.bool)
    for c in range(10):
        members = order[y[order] == c]
        test_mask[members[: len(members) // 5]] = True
    return ImageData(
        "digits", x[~test_mask], y[~test_mask], x[test_mask], y[test_mask], num_classes=10
    )


def make_synthetic(
    n_train: int = 3000,
    n_test: int = 1000,
    num_classes: int = 10,
    channels: int = 1,
    size: int = 28,
    noise: float = 0.35,
    seed: int = 7,
) -> ImageData:
    """Learnable synthetic images: one smooth random prototype per class plus pixel noise."""
    rng = generator(seed)
    coarse = torch.rand(num_classes, channels, 7, 7, generator=rng)
    prototypes = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % num_classes
        y = y[torch.randperm(n, generator=rng)]
        x = prototypes[y] + noise * torch.randn(n, channels, size, size, generator=rng)
        return (x.clamp(0, 1) * 255).round().to(torch.uint8), y

    train_x, train_y = sample(n_train)
    test_x, test_y = sample(n_test)
    return ImageData("synthetic", train_x, train_y, test_x, test_y, num_classes)


def _load_named(name: str, root: Path, download: bool) -> ImageData:
    if name == "digits":
        return load_digits_images()
    if name == "synthetic":
        return make_synthetic()
    if name == "mnist":
        return _load_idx(root, download, "MNIST")
    if name == "fashion_mnist":
        return _load_idx(root, download, "FashionMNIST")
    return _load_torchvision(name, root, download)


def load_dataset(name: str, data_dir: Path | None = None, download: bool = False) -> ImageData:
    """Load an image dataset by name (see `IMAGE_DATASETS`) into CPU uint8 tensors."""
    if registry.DATASETS.get(name).modality != "image":
        raise ConfigError(f"dataset {name!r} is text; choose an image dataset from: "
                          f"{', '.join(IMAGE_DATASETS)}")  # fmt: skip
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    return _load_named(name, root, download)


def _load_for_run(config: RunConfig, runtime: Runtime) -> Any:
    return load_dataset(config.dataset, runtime.data_dir, runtime.download)


IMAGE_DATASETS = ("mnist", "fashion_mnist", "cifar10", "svhn", "digits", "synthetic")
for _name in IMAGE_DATASETS:
    registry.DATASETS.register(registry.Dataset(_name, "image", _load_for_run))


@dataclass(frozen=True)
class Split:
    """Indices into the training set: labelled initial pool, validation set, unlabelled pool."""

    initial: torch.Tensor
    val: torch.Tensor
    pool: torch.Tensor


def make_split(
    labels: torch.Tensor,
    num_classes: int,
    init_size: int,
    pool_size: int,
    val_fraction: float,
    seed: int,
    version: int = SPLIT_VERSION,
    init_strategy: str = "random",
    representation: torch.Tensor | None = None,
    coverage_radius: float | None = None,
) -> Split:
    """The paper's split, seeded: a class-balanced initial set, `val_fraction` of the rest
    for validation, and an unlabelled pool of at most `pool_size` from what remains.

    With an `init_strategy` other than random, the initial set is instead chosen on
    `representation` (one row per training example) by `archdal.strategies.initial`;
    validation and pool are then drawn from the rest exactly as for the random one.

    The validation set is a stratified random sample of the rest (each class's share that
    of the rest, up to rounding) and the pool a uniform sample of what remains after it
    (`version` 2). Version 1, the split of archdal before it, took both from the front of
    one shuffled order, which left rare classes short in validation; it is kept only to
    finish runs started with it. When `init_size` is not a multiple of the class count,
    the leftover labels go to randomly chosen classes. The split depends only on the
    labels, sizes, seed and version, so every strategy and architecture run with the same
    seed starts from the same pools.
    """
    labels = labels.cpu()
    rng = generator(derive_seed(seed, "split"))
    order = torch.randperm(len(labels), generator=rng)
    if init_strategy != "random":
        from archdal.strategies.initial import initial_pool  # torch models: import on use

        if representation is None or len(representation) != len(labels):
            raise ValueError("a non-random initial pool needs one representation row per label")
        initial = initial_pool(init_strategy, representation, num_classes, init_size, seed,
                               coverage_radius)  # fmt: skip
        return _rest_of_split(labels, num_classes, initial, order, val_fraction, pool_size,
                              version, rng)  # fmt: skip
    per_class = torch.full((num_classes,), init_size // num_classes, dtype=torch.long)
    per_class[torch.randperm(num_classes, generator=rng)[: init_size % num_classes]] += 1
    ordered_labels = labels[order]
    taken = []
    for c in range(num_classes):
        members = order[ordered_labels == c]
        if len(members) < per_class[c]:
            raise ConfigError(
                f"init-size {init_size} needs {int(per_class[c])} images of class {c}, "
                f"but the training set has {len(members)}"
            )
        taken.append(members[: per_class[c]])
    initial = torch.cat(taken)
    return _rest_of_split(labels, num_classes, initial, order, val_fraction, pool_size, version,
                          rng)  # fmt: skip


def _rest_of_split(
    labels: torch.Tensor,
    num_classes: int,
    initial: torch.Tensor,
    order: torch.Tensor,
    val_fraction: float,
    pool_size: int,
    version: int,
    rng: torch.Generator,
) -> Split:
    """Validation and pool from the examples outside `initial`, in the shuffled `order`."""
    is_initial = torch.zeros(len(labels), dtype=torch.bool)
    is_initial[initial] = True
    rest = order[~is_initial[order]]  # a uniformly random order of the non-initial examples
    n_val = max(1, round(val_fraction * len(rest)))
    if version == 1:
        return Split(initial=initial, val=rest[:n_val], pool=rest[n_val:][:pool_size])
    in_val = _stratified_front(labels[rest], num_classes, n_val)
    remaining = rest[~in_val]
    pool = remaining[torch.randperm(len(remaining), generator=rng)][:pool_size]
    return Split(initial=initial, val=rest[in_val], pool=pool)


def _stratified_front(ordered_labels: torch.Tensor, num_classes: int, n: int) -> torch.Tensor:
    """A mask of `n` rows of a randomly ordered label vector: each class's first rows, as
    many as its share of `n` (largest remainders round, ties to the lower class)."""
    counts = torch.bincount(ordered_labels, minlength=num_classes).double()
    exact = counts * n / counts.sum()
    quota = exact.floor().long()
    short = n - int(quota.sum())
    remainders = exact - quota
    quota[torch.sort(-remainders, stable=True).indices[:short]] += 1
    rank = torch.empty_like(ordered_labels)  # position of each row within its class
    for c in range(num_classes):
        members = ordered_labels == c
        rank[members] = torch.arange(int(members.sum()))
    return rank < quota[ordered_labels]
