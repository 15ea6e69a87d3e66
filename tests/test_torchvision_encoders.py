"""`torchvision:<arch>` encoders: weights from a file, read at the penultimate layer, keyed by
the weights; missing or foreign weights are one line."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torchvision.models.feature_extraction import create_feature_extractor

from archdal import ConfigError, DataError, RunConfig, make_synthetic
from archdal import representations as rep
from archdal.config import EncoderOptions


@pytest.fixture(scope="module")
def images():
    return make_synthetic(n_train=24, n_test=8, num_classes=3, size=8, noise=0.3)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


def _config(weights="", image_size=32, encoder="torchvision:resnet18") -> RunConfig:
    options = EncoderOptions(weights=str(weights), image_size=image_size)
    return RunConfig.for_dataset(
        "synthetic", arch="frozen", encoder=encoder, encoder_options=options
    ).validate()


def test_embeddings_are_the_pooled_features_the_classifier_reads(tmp_path, images, weights):
    features = rep.image_features(images, _config(weights), tmp_path)
    assert features.train_x.shape == (24, 512) and features.test_x.shape == (8, 512)
    # independently: torchvision's feature extractor on the same model, by hand-made input
    model = torchvision.models.resnet18()
    model.load_state_dict(torch.load(weights, weights_only=True))
    pooled = create_feature_extractor(model.eval(), {"flatten": "out"})
    x = images.test_x.float().div(255).expand(-1, 3, -1, -1)
    x = torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.inference_mode():
        expected = pooled((x - mean) / std)["out"]
    assert torch.allclose(features.test_x, expected, atol=1e-5)


def test_the_cache_key_holds_the_weights_and_the_image_size(tmp_path, images, weights):
    first = rep.image_features(images, _config(weights), tmp_path)
    rep.image_features(images, _config(weights, image_size=40), tmp_path)
    torch.manual_seed(1)
    other = tmp_path / "other.pth"
    torch.save(torchvision.models.resnet18().state_dict(), other)
    second = rep.image_features(images, _config(other), tmp_path)
    assert not torch.allclose(first.train_x, second.train_x)
    assert len(list((tmp_path / "representations").glob("*.pt"))) == 3


def test_missing_or_foreign_weights_are_one_line(tmp_path, images):
    needs = r"needs pretrained weights: --encoder-weights FILE .* or --download for torchvision's "
    with pytest.raises(ConfigError, match=needs + r"ResNet18_Weights\.IMAGENET1K_V1"):
        rep.image_features(images, _config(), tmp_path)
    with pytest.raises(DataError, match=r"--encoder-weights .*nothing\.pth: no such file"):
        rep.image_features(images, _config(tmp_path / "nothing.pth"), tmp_path)
    foreign = tmp_path / "squeezenet.pth"
    torch.save(torchvision.models.squeezenet1_0().state_dict(), foreign)
    with pytest.raises(DataError, match=r"squeezenet\.pth holds no resnet18 state dict"):
        rep.image_features(images, _config(foreign), tmp_path)
    torn = tmp_path / "torn.pth"
    torn.write_bytes(b"not a state dict")
    with pytest.raises(DataError, match=r"torn\.pth holds no resnet18 state dict"):
        rep.image_features(images, _config(torn), tmp_path)
    assert not (tmp_path / "representations").exists() or not list(
        (tmp_path / "representations").glob("*.pt")
    )


def test_an_unknown_torchvision_model_or_a_text_dataset_is_refused():
    with pytest.raises(ConfigError, match="'resnet9000' is not a torchvision classification model"):
        _config(encoder="torchvision:resnet9000")
    with pytest.raises(ConfigError, match="embeds images, but dataset 'banking77'"):
        RunConfig.for_dataset("banking77", arch="frozen", encoder="torchvision:resnet18").validate()


def test_the_cli_takes_a_weights_file_and_says_what_is_missing(tmp_path, weights):
    import subprocess
    import sys

    from .conftest import REPO

    base = [sys.executable, "-m", "archdal.cli", "run", "--dataset", "digits", "--arch", "frozen",
            "--encoder", "torchvision:resnet18", "--encoder-image-size", "32", "--init-size", "20",
            "--acq-size", "10", "--rounds", "1", "--strategy", "margin", "--device", "cpu",
            "--quiet", "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    missing = subprocess.run([*base, "--out", str(tmp_path / "a")], cwd=REPO, capture_output=True,
                             text=True)  # fmt: skip
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1, missing.stderr
    assert "--encoder-weights FILE" in missing.stderr and not (tmp_path / "a").exists()
    done = subprocess.run([*base, "--encoder-weights", str(weights), "--out", str(tmp_path / "b")],
                          cwd=REPO, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len((tmp_path / "b" / "rounds.jsonl").read_text().splitlines()) == 2
