"""Architectures: shapes for every input kind, where dropout lives, width scaling."""

from __future__ import annotations

import pytest
import torch

from archdal.config import ARCHS
from archdal.models import build_model


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32)])
def test_logits_and_embeddings(arch, channels, size):
    model = build_model(arch, 7, channels, width=0.0625).eval()
    x = torch.randint(0, 256, (3, channels, size, size), dtype=torch.uint8)
    emb = model.neck(model.trunk(x))
    assert model(x).shape == (3, 7)
    assert emb.shape == (3, model.embedding_dim)
    assert not any(isinstance(m, torch.nn.Dropout) for m in model.features.modules())
    assert any(isinstance(m, torch.nn.Dropout) for m in model.neck.modules())


def test_paper_sizes_at_full_width():
    expected = {"resnet18": 512, "resnet50": 2048, "vgg16": 1000}
    for arch, dim in expected.items():
        assert build_model(arch, 10, 3).embedding_dim == dim
    params = sum(p.numel() for p in build_model("resnet18", 10, 3).parameters())
    assert 11.0e6 < params < 11.3e6  # CIFAR ResNet-18
    convs = [m for m in build_model("vgg19", 10, 3).features.modules()
             if isinstance(m, torch.nn.Conv2d)]  # fmt: skip
    assert len(convs) == 16
