"""Shared fixtures: the real data directory and small, fast trajectory configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from archdal import RunConfig, make_synthetic

REPO = Path(__file__).resolve().parents[1]


def real_data_dir() -> Path:
    """`$ARCHDAL_DATA`, else the `shared/data` folder beside the checkout.

    Under CI the real data must be there: a missing folder fails instead of skipping.
    """
    candidates = [Path(os.environ["ARCHDAL_DATA"])] if os.environ.get("ARCHDAL_DATA") else []
    candidates.append(REPO.parent / "shared" / "data")
    for path in candidates:
        if (path / "MNIST" / "raw").is_dir():
            return path
    if os.environ.get("CI"):
        pytest.fail(f"real data not found in any of {candidates}")
    pytest.skip("real datasets not available here (set ARCHDAL_DATA)")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return real_data_dir()


@pytest.fixture(scope="session")
def tiny_data():
    """600 learnable 16-px synthetic images, 4 classes: a trajectory in about a second."""
    return make_synthetic(n_train=600, n_test=200, num_classes=4, size=16, noise=0.3)


def tiny_config(**overrides) -> RunConfig:
    base = dict(
        dataset="synthetic",
        arch="resnet18",
        width=0.125,
        strategy="random",
        init_size=20,
        acq_size=10,
        rounds=2,
        pool_size=300,
        max_epochs=8,
        patience=4,
        lr=0.05,
        batch_size=32,
        mc_samples=3,
    )
    base.update(overrides)
    return RunConfig(**base)


@pytest.fixture(autouse=True)
def _few_threads():
    """Two torch threads on the two cores, or one per worker when `pytest -n 2` runs two."""
    torch.set_num_threads(1 if "PYTEST_XDIST_WORKER" in os.environ else 2)


from .text_support import tiny_models, token_cache  # noqa: E402, F401  (text-path fixtures)
