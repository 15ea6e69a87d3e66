"""The simclr encoder: batched views, a backbone that learns, a cached entry per settings."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from archdal import PretrainConfig, RunConfig, make_synthetic, simclr, train
from archdal import representations as rep
from archdal.config import EncoderOptions
from archdal.data import load_digits_images
from archdal.models import build_model
from archdal.pool import embed_inputs


def test_a_whole_image_crop_without_jitter_is_the_image(monkeypatch):
    monkeypatch.setattr(train, "CROP_SCALE", (1.0, 1.0))
    monkeypatch.setattr(train, "CROP_RATIO", (1.0, 1.0))
    monkeypatch.setattr(train, "JITTER", 0.0)
    images = torch.randint(0, 256, (5, 3, 12, 12), dtype=torch.uint8)
    views = train.augmented_views(images, torch.Generator().manual_seed(0))
    assert torch.allclose(views, images.float(), atol=1e-3)


def test_a_quarter_crop_magnifies_one_quadrant(monkeypatch):
    """A crop of a quarter of the area at ratio 1 is half the side: every view is a 2×
    enlargement of some window, so a 2×2 checkerboard of 4×4 blocks becomes 8×8 blocks
    (checked against the window cut out and enlarged by hand, nearest pixel)."""
    monkeypatch.setattr(train, "CROP_SCALE", (0.25, 0.25))
    monkeypatch.setattr(train, "CROP_RATIO", (1.0, 1.0))
    monkeypatch.setattr(train, "JITTER", 0.0)
    image = torch.zeros(1, 1, 16, 16)
    image[..., :8, :8] = image[..., 8:, 8:] = 200
    view = train.crop_and_jitter(image, torch.full((6, 1), 0.5))[0, 0]
    window = image[0, 0, 4:12, 4:12]  # u = 0.5 puts the crop's centre at the image's
    by_hand = window.repeat_interleave(2, 0).repeat_interleave(2, 1)
    inside = torch.ones(16, 16, dtype=torch.bool)
    inside[7:9, :] = inside[:, 7:9] = False  # bilinear blends only at the block edges
    assert torch.allclose(view[inside], by_hand[inside], atol=1e-3)


def test_views_are_seeded_in_range_and_differ_between_images():
    images = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8)
    a = train.augmented_views(images, torch.Generator().manual_seed(3))
    b = train.augmented_views(images, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == (64, 1, 28, 28)
    assert a.min() >= 0 and a.max() <= 255
    same = train.augmented_views(images[:1].expand(64, -1, -1, -1), torch.Generator())
    assert len({tuple(v.flatten()[:50].tolist()) for v in same}) == 64  # 64 different views


def _config(**pretrain) -> RunConfig:
    return RunConfig.for_dataset(
        "digits", arch="frozen", encoder="simclr", width=0.125, batch_size=128,
        pretrain_options=PretrainConfig(**pretrain),
    ).validate()  # fmt: skip


def test_simclr_makes_two_views_of_an_image_nearest_neighbours():
    """What SimCLR trains for, on digits' test images (16 px): of 200 second views, the
    nearest to an image's first view (cosine, penultimate features) is its own. 5 epochs
    take that from about 0.07 at the initial weights to about 0.23 (chance: 0.005)."""
    data = load_digits_images(size=16)
    config = _config(epochs=5, lr=0.1)
    mean, std = data.channel_stats()

    def make():
        return build_model(rep.TRAINED_ENCODER_ARCH, 10, 1, 0.125, 0.0, mean, std)

    def pair_accuracy(model) -> float:
        views = torch.Generator().manual_seed(1)
        x = data.test_x[:200]
        a, b = (F.normalize(embed_inputs(model, train.augmented_views(x, views), 512), dim=1)
                for _ in range(2))  # fmt: skip
        return ((a @ b.T).argmax(dim=1) == torch.arange(len(x))).float().mean().item()

    torch.manual_seed(0)
    untrained, trained = make(), make()
    trained.load_state_dict(simclr.simclr_backbone(make, data.train_x, config)
                            | trained.classifier_state())  # fmt: skip
    before, after = pair_accuracy(untrained), pair_accuracy(trained)
    assert after > 2 * before and after > before + 0.08, (before, after)


def test_simclr_is_trained_once_under_its_own_seed_and_keyed_by_its_settings(tmp_path):
    images = make_synthetic(n_train=120, n_test=40, num_classes=4, size=8, noise=0.3)
    config = dataclasses.replace(_config(epochs=1), dataset="synthetic")
    a = rep.image_features(images, config, tmp_path)
    again = rep.image_features(images, dataclasses.replace(config, seed=4), tmp_path)
    assert torch.equal(a.train_x, again.train_x)  # the AL seed does not change the encoder
    hotter = PretrainConfig(epochs=1, temperature=0.2)
    rep.image_features(images, dataclasses.replace(config, pretrain_options=hotter), tmp_path)
    deepcluster = dataclasses.replace(config, encoder="deepcluster")
    other = rep.image_features(images, deepcluster, tmp_path)
    assert not torch.allclose(other.train_x, a.train_x)
    assert len(list((tmp_path / "representations").glob("*.pt"))) == 3
    views = PretrainConfig(epochs=1, augment=True)  # DeepCluster's setting: not SimCLR's key
    rep.image_features(images, dataclasses.replace(config, pretrain_options=views), tmp_path)
    assert len(list((tmp_path / "representations").glob("*.pt"))) == 3
    rep.image_features(images, dataclasses.replace(deepcluster, pretrain_options=views), tmp_path)
    assert len(list((tmp_path / "representations").glob("*.pt"))) == 4


def test_the_encoder_trains_on_its_own_thread_count_which_keys_its_entry(tmp_path, monkeypatch):
    """The caller's thread count (a one-CPU trial, a big node) must not pick the encoder: it
    trains and embeds on `encoder_options.threads`, and the caller's count comes back."""
    images = make_synthetic(n_train=120, n_test=40, num_classes=4, size=8, noise=0.3)
    config = dataclasses.replace(_config(epochs=1), dataset="synthetic")
    seen = []
    real = rep.simclr_backbone
    monkeypatch.setattr(rep, "simclr_backbone",
                        lambda *a: seen.append(torch.get_num_threads()) or real(*a))  # fmt: skip
    before = torch.get_num_threads()
    try:
        entries = []
        for caller in (1, 2):
            torch.set_num_threads(caller)
            entries.append(rep.image_features(images, config, tmp_path / f"caller{caller}"))
            assert torch.get_num_threads() == caller
        torch.set_num_threads(1)
        one = dataclasses.replace(config, encoder_options=EncoderOptions(threads=1))
        rep.image_features(images, one, tmp_path / "caller1")
    finally:
        torch.set_num_threads(before)
    assert seen == [2, 2, 1]
    assert torch.equal(entries[0].train_x, entries[1].train_x)
    assert len(list((tmp_path / "caller1" / "representations").glob("*.pt"))) == 2


def test_simclr_is_an_image_encoder():
    with pytest.raises(Exception, match="encoder 'simclr' embeds images"):
        RunConfig.for_dataset("banking77", arch="frozen", encoder="simclr").validate()


FRESH_PROCESS_ENCODERS = """
import hashlib, os, sys, dataclasses
from pathlib import Path
import torch
if os.environ.get("CALLER_THREADS"):
    torch.set_num_threads(int(os.environ["CALLER_THREADS"]))
from archdal import PretrainConfig, RunConfig, make_synthetic
from archdal import representations as rep
from archdal.config import EncoderOptions
images = make_synthetic(n_train=128, n_test=16, num_classes=4, size=12, noise=0.3)
for threads in sys.argv[2:]:
    for encoder in ("simclr", "deepcluster"):
        config = RunConfig.for_dataset(
            "digits", arch="frozen", encoder=encoder, width=0.125, batch_size=64,
            pretrain_options=PretrainConfig(epochs=1, clusters=4, augment=True),
            encoder_options=EncoderOptions(threads=int(threads)),
        ).validate()
        features = rep.image_features(images, dataclasses.replace(config, dataset="synthetic"),
                                      Path(sys.argv[1]))
        print(encoder, hashlib.sha256(features.train_x.numpy().tobytes()).hexdigest())
"""


def test_fresh_processes_with_any_caller_threads_train_the_same_encoders(tmp_path):
    """A one-thread benchmark process, a Ray trial's (OMP_NUM_THREADS=1 from the start) and a
    plain two-thread one each train DeepCluster and SimCLR from an empty cache: the same
    features bit for bit. One encoder thread instead of two trains others, so the
    comparison would see a caller's count leaking in."""
    import os
    import subprocess
    import sys

    def features(name: str, *encoder_threads: int, **env: str) -> list[str]:
        limits = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
        clean = {k: v for k, v in os.environ.items() if k not in limits}
        script = [sys.executable, "-c", FRESH_PROCESS_ENCODERS]
        done = subprocess.run(
            [*script, str(tmp_path / name), *map(str, encoder_threads)],
            env=clean | env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.splitlines()

    lines = features("plain", 2, 1)
    plain, one_encoder_thread = lines[:2], lines[2:]
    assert len(plain) == 2 and len(one_encoder_thread) == 2
    assert features("one-thread-caller", 2, CALLER_THREADS="1") == plain
    assert features("ray-trial", 2, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1") == plain
    assert not set(one_encoder_thread) & set(plain)  # each encoder differs
