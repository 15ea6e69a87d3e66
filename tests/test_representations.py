"""The representation cache: keyed by data, encoder and settings; one writer; torn or foreign
entries refused with one line."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest
import torch

from archdal import DataError, PretrainConfig, RunConfig, make_synthetic
from archdal import representations as rep
from archdal.config import EncoderOptions
from archdal.data import ImageData

ROWS = {"train": 6, "test": 2}


def _config(**options) -> RunConfig:
    return RunConfig.for_dataset(
        "synthetic", arch="frozen", encoder="pixels", encoder_options=EncoderOptions(**options)
    ).validate()


@pytest.fixture(scope="module")
def images() -> ImageData:
    return make_synthetic(n_train=120, n_test=40, num_classes=4, size=8, noise=0.3)


def _entries(cache) -> list[str]:
    return sorted(p.name for p in (cache / "representations").glob("*.pt"))


def test_pixels_are_a_seeded_pca_cached_once_per_data_and_settings(tmp_path, images):
    a = rep.image_features(images, _config(dims=5), tmp_path)
    assert a.train_x.shape == (120, 5) and a.test_x.shape == (40, 5) and a.dim == 5
    assert torch.equal(a.train_y, images.train_y)
    centred = a.train_x.mean(dim=0)  # PCA scores of the training set are centred
    assert centred.abs().max() < 1e-4
    again = rep.image_features(images, _config(dims=5), tmp_path)
    assert torch.equal(again.train_x, a.train_x) and len(_entries(tmp_path)) == 1
    rep.image_features(images, _config(dims=6), tmp_path)
    rep.image_features(images, _config(dims=5, seed=1), tmp_path)
    normalized = rep.image_features(images, _config(dims=5, normalize=True), tmp_path)
    assert torch.allclose(normalized.train_x.norm(dim=1), torch.ones(120), atol=1e-5)
    other = dataclasses.replace(images, train_x=images.train_x.clone())
    other.train_x[0, 0, 0, 0] ^= 1  # one pixel differs: other data, another entry
    rep.image_features(other, _config(dims=5), tmp_path)
    assert len(_entries(tmp_path)) == 5


def test_a_second_call_reads_instead_of_embedding(tmp_path, images, monkeypatch):
    calls = []
    real = rep.embed_pixels
    monkeypatch.setattr(rep, "embed_pixels", lambda *a: calls.append(1) or real(*a))
    first = rep.image_features(images, _config(dims=4), tmp_path)
    second = rep.image_features(images, _config(dims=4), tmp_path)
    assert len(calls) == 1 and torch.equal(first.test_x, second.test_x)


def test_two_concurrent_writers_embed_once_and_read_the_same(tmp_path):
    path = tmp_path / "representations" / "entry.pt"
    calls, results = [], []

    def compute():
        calls.append(1)
        time.sleep(0.3)  # the other thread arrives while this one embeds
        return {"train": torch.arange(18.0).view(6, 3), "test": torch.ones(2, 3)}

    threads = [
        threading.Thread(target=lambda: results.append(rep.cached(path, "k", ROWS, compute)))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(results) == 2
    assert all(torch.equal(r.tensors["train"], results[0].tensors["train"]) for r in results)
    assert sorted(p.name for p in path.parent.iterdir()) == ["entry.pt", "entry.pt.lock"]


def _written(tmp_path):
    path = tmp_path / "representations" / "entry.pt"
    rep.cached(path, "k", ROWS, lambda: {"train": torch.zeros(6, 3), "test": torch.zeros(2, 3)})
    return path


def test_a_truncated_entry_is_one_line_naming_the_file(tmp_path):
    path = _written(tmp_path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match=r"is unreadable .*truncated") as err:
        rep.cached(path, "k", ROWS, lambda: pytest.fail("must not embed over a torn entry"))
    assert str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("key", "rows", "message"),
    [
        ("other", ROWS, "belongs to other data or another encoder"),
        ("k", {"train": 7, "test": 2}, "has 6 train rows, the data 7"),
    ],
)
def test_an_entry_of_other_data_is_refused(tmp_path, key, rows, message):
    path = _written(tmp_path)
    with pytest.raises(DataError, match=message):
        rep.cached(path, key, rows, lambda: pytest.fail("must not embed over a foreign entry"))


def test_a_file_that_is_no_entry_is_refused(tmp_path):
    path = _written(tmp_path)
    torch.save({"train": torch.zeros(6, 3)}, path)
    with pytest.raises(DataError, match="is not a representation entry"):
        rep.read_entry(path, "k", ROWS)


def test_deepcluster_is_trained_once_under_its_own_seed(tmp_path, images):
    def config(**options):
        return RunConfig.for_dataset(
            "synthetic", arch="frozen", encoder="deepcluster", width=0.125, batch_size=32,
            encoder_options=EncoderOptions(**options),
            pretrain_options=PretrainConfig(clusters=4, epochs=2),
        ).validate()  # fmt: skip

    a = rep.image_features(images, config(), tmp_path / "a")
    assert a.train_x.shape == (120, 64) and a.test_x.shape == (40, 64)  # ResNet-18 at 1/8 width
    again = rep.image_features(images, dataclasses.replace(config(), seed=5), tmp_path / "b")
    assert torch.equal(again.train_x, a.train_x)  # the AL seed does not change the encoder
    other = rep.image_features(images, config(seed=1), tmp_path / "a")
    assert not torch.allclose(other.train_x, a.train_x)
    assert len(_entries(tmp_path / "a")) == 2
