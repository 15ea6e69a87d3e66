"""Dataset loading, errors on bad files, and the paper's seeded split."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import torch

from archdal import ConfigError, DataError, load_dataset, make_split
from archdal.data import load_digits_images, make_synthetic
from archdal.train import augment_batch


def test_mnist_loads_from_the_data_dir(data_dir):
    data = load_dataset("mnist", data_dir)
    assert data.train_x.shape == (60000, 1, 28, 28) and data.train_x.dtype == torch.uint8
    assert data.test_x.shape == (10000, 1, 28, 28)
    assert torch.bincount(data.train_y).tolist()[:3] == [5923, 6742, 5958]
    mean, std = data.channel_stats()
    assert mean.item() == pytest.approx(0.1307, abs=1e-3) and std.item() == pytest.approx(
        0.3081, abs=1e-3
    )


def test_fashion_mnist_loads(data_dir):
    data = load_dataset("fashion_mnist", data_dir)
    assert data.train_x.shape == (60000, 1, 28, 28) and data.num_classes == 10
    assert data.channel_stats()[0].item() == pytest.approx(0.2860, abs=1e-3)


def test_missing_and_corrupt_files_name_the_path(tmp_path, data_dir):
    with pytest.raises(
        DataError, match=r"MNIST file missing: .*train-images-idx3-ubyte.*--download"
    ):
        load_dataset("mnist", tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    shutil.copytree(data_dir / "MNIST" / "raw", raw)
    victim = raw / "t10k-labels-idx1-ubyte"
    victim.chmod(0o644)
    victim.write_bytes(victim.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"corrupt: .*t10k-labels-idx1-ubyte has md5"):
        load_dataset("mnist", tmp_path)
    with pytest.raises(DataError, match=r"cifar10 not found or corrupt at .*cifar-10-batches-py"):
        load_dataset("cifar10", tmp_path)
    with pytest.raises(ConfigError, match=r"unknown dataset 'imagenet'; choose from: mnist"):
        load_dataset("imagenet", tmp_path)


def test_digits_need_no_download():
    data = load_digits_images()
    assert data.train_x.shape[1:] == (1, 28, 28) and len(data.train_x) + len(data.test_x) == 1797
    per_class = torch.bincount(torch.cat([data.train_y, data.test_y]))
    assert torch.equal(torch.bincount(data.test_y), per_class // 5)  # stratified 20%
    assert torch.equal(load_digits_images().test_y, data.test_y)  # fixed, seed-independent


def _split(labels, seed, init=100, pool=500, val=0.1):
    return make_split(labels, 10, init, pool, val, seed)


def test_split_is_class_balanced_disjoint_and_sized():
    labels = torch.arange(3000) % 10
    s = _split(labels, seed=0, init=103)
    counts = torch.bincount(labels[s.initial], minlength=10)
    assert counts.sum() == 103 and counts.max() - counts.min() == 1
    everything = torch.cat([s.initial, s.val, s.pool])
    assert len(everything.unique()) == len(everything)
    assert len(s.val) == round(0.1 * (3000 - 103)) and len(s.pool) == 500


def test_split_depends_on_the_seed_only():
    labels = torch.arange(3000) % 10
    a, b, c = _split(labels, 0), _split(labels, 0), _split(labels, 1)
    assert torch.equal(a.initial, b.initial) and torch.equal(a.pool, b.pool)
    assert not torch.equal(a.initial, c.initial)


def test_split_errors_when_a_class_is_too_small():
    labels = torch.cat([torch.zeros(100), torch.ones(3)]).long()
    with pytest.raises(ConfigError, match="needs 5 images of class 1"):
        make_split(labels, 2, 10, 50, 0.1, 0)


def test_synthetic_is_learnable_and_fixed():
    a, b = make_synthetic(n_train=100, n_test=10), make_synthetic(n_train=100, n_test=10)
    assert torch.equal(a.train_x, b.train_x) and a.train_x.dtype == torch.uint8


def test_augment_batch_crops_and_flips_each_image():
    images = torch.arange(2 * 3 * 5 * 5, dtype=torch.uint8).view(2, 3, 5, 5)
    rng = torch.Generator().manual_seed(0)
    out = augment_batch(images, rng, pad=0)  # no shift: only flips
    for i in range(2):
        assert torch.equal(out[i], images[i]) or torch.equal(out[i], images[i].flip(-1))
    out = augment_batch(images, torch.Generator().manual_seed(3), pad=2)
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for i in range(2):
        windows = [padded[i, :, r : r + 5, c : c + 5] for r in range(5) for c in range(5)]
        assert any(torch.equal(out[i], w) or torch.equal(out[i], w.flip(-1)) for w in windows)


ONE_CHANNEL_AUGMENTED_STEP = """
import torch
from archdal.models import build_model
from archdal.train import augment_batch
model = build_model("resnet18", 10, 1, 0.125, 0.0, torch.tensor([0.5]), torch.tensor([0.2]))
images = torch.randint(0, 256, (63, 1, 28, 28), dtype=torch.uint8)
model(augment_batch(images, torch.Generator().manual_seed(0))).logsumexp(1).mean().backward()
print("stepped")
"""


def test_augmented_one_channel_batches_have_standard_strides_and_train():
    """With one channel the crop's gather left NHWC strides, which sent ResNet-18's
    backward on a batch of 63 MNIST images into a crash of the whole process (SIGSEGV or
    "double free"): `--augment` on MNIST died mid-round."""
    images = torch.randint(0, 256, (63, 1, 28, 28), dtype=torch.uint8)
    out = augment_batch(images, torch.Generator().manual_seed(0))
    assert out.stride() == (784, 784, 28, 1)
    step = subprocess.run([sys.executable, "-c", ONE_CHANNEL_AUGMENTED_STEP],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert step.returncode == 0 and "stepped" in step.stdout, step.stderr[-2000:]
