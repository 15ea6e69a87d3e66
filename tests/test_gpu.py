"""GPU checks: every model family and strategy on CUDA, and CUDA against the CPU.

Skipped where torch sees no CUDA device (CI, this project's CPU machines); run them on a
GPU machine with `pytest tests/test_gpu.py`.
"""

import dataclasses

import pytest
import torch

from archdal import Runtime, Trajectory, strip_timing
from archdal.models import build_model
from archdal.pool import compute_view
from archdal.seeding import generator
from archdal.strategies import get_strategy
from archdal.sweep.presets import PAPER_STRATEGIES as STRATEGIES

from .conftest import tiny_config
from .test_focus2 import focus2_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

GPU = Runtime(device="cuda", eval_batch_size=256)
CPU = Runtime(device="cpu", eval_batch_size=256)

FOCUS1 = [("resnet18", s) for s in STRATEGIES] + [("vgg11", "badge"), ("resnet50", "bald")]
FOCUS2 = [
    ("cnn5", "fixed", "bald"),
    ("depth_dropout", "joint", "badge"),
    ("depth_dropout", "upo", "bald"),
    ("bbdropout", "joint", "coreset"),
    ("bbdropout", "spo", "margin"),
    ("pdarts", "spo", "badge"),
    ("pdarts", "upo", "entropy"),
]


def run_on(runtime: Runtime, config, data, rounds: int = 3) -> tuple[Trajectory, list[dict]]:
    trajectory = Trajectory(config, runtime, data)
    return trajectory, [trajectory.run_round() for _ in range(rounds)]


def check_trajectory(trajectory: Trajectory, records: list[dict], config) -> None:
    assert trajectory.device.type == "cuda" and trajectory.data.train_x.is_cuda
    acquired = [i for r in records for i in r["acquired"]]
    assert len(acquired) == len(set(acquired)) == (len(records) - 1) * config.acq_size
    assert records[-1]["n_labeled"] == config.init_size + (len(records) - 1) * config.acq_size
    assert records[-1]["test_acc"] > 0.4  # 4 learnable classes: chance is 0.25


@pytest.mark.parametrize(("arch", "strategy"), FOCUS1)
def test_focus1_trajectory_on_gpu(tiny_data, arch, strategy):
    config = tiny_config(arch=arch, strategy=strategy, max_epochs=12)
    check_trajectory(*run_on(GPU, config, tiny_data), config)


@pytest.mark.parametrize(("arch", "mode", "strategy"), FOCUS2)
def test_focus2_trajectory_on_gpu(tiny_data, arch, mode, strategy):
    config = focus2_config(arch, mode, strategy=strategy, init_size=40, max_epochs=12)
    trajectory, records = run_on(GPU, config, tiny_data)
    check_trajectory(trajectory, records, config)
    if mode != "joint":  # pre-optimized: one architecture for every round
        assert all(r["architecture"] == records[0]["architecture"] for r in records)


@pytest.mark.parametrize("arch", ["resnet18", "depth_dropout"])
def test_same_seed_same_numbers_on_gpu(tiny_data, arch):
    """Two runs of one config on the GPU select the same examples and score the same."""
    config = (
        tiny_config(strategy="badge")
        if arch == "resnet18"
        else focus2_config(arch, "joint", strategy="badge", init_size=40)
    )
    first = strip_timing(run_on(GPU, config, tiny_data)[1])
    second = strip_timing(run_on(GPU, config, tiny_data)[1])
    assert first == second


def test_pool_view_and_selection_match_the_cpu(tiny_data):
    """One model's view of the pool, computed on the GPU and on the CPU, agrees, and
    every strategy picks the same examples from it with the same generator."""
    config = tiny_config(arch="resnet18")
    torch.manual_seed(0)
    model = build_model(config.arch, tiny_data.num_classes, tiny_data.channels, config.width)
    pool, labelled = tiny_data.train_x[:400], tiny_data.train_x[400:450]
    needs = frozenset({"probs", "embeddings", "labeled_embeddings", "mc"})
    views = {}
    for device in ("cpu", "cuda"):
        torch.manual_seed(1)  # the same MC dropout masks are not expected across devices
        views[device] = compute_view(model.to(device), pool.to(device), needs, 128, 4,
                                     labelled.to(device))  # fmt: skip
    cpu, gpu = views["cpu"], views["cuda"]
    assert gpu.probs.is_cuda
    torch.testing.assert_close(gpu.probs.cpu(), cpu.probs, atol=1e-4, rtol=1e-3)
    torch.testing.assert_close(gpu.embeddings.cpu(), cpu.embeddings, atol=1e-4, rtol=1e-3)
    # MC masks differ by device; give both the CPU's statistics to compare selection alone
    gpu = dataclasses.replace(gpu, mc_mean_probs=cpu.mc_mean_probs.cuda(),
                              mc_mean_entropy=cpu.mc_mean_entropy.cuda())  # fmt: skip
    for name in STRATEGIES:
        strategy = get_strategy(name)
        on_cpu = strategy.select(cpu, 40, generator(7))
        on_gpu = strategy.select(gpu, 40, generator(7))
        assert on_gpu.cpu().tolist() == on_cpu.tolist(), name


def test_bf16_fast_path_on_gpu(tiny_data):
    """bf16 autocast, channels_last and the fused optimizer on CUDA: a sound trajectory,
    and the same selections from the same seed run to run."""
    config = tiny_config(strategy="margin", precision="bf16", max_epochs=12)
    trajectory, records = run_on(GPU, config, tiny_data)
    check_trajectory(trajectory, records, config)
    assert strip_timing(records) == strip_timing(run_on(GPU, config, tiny_data)[1])


def test_compiled_bf16_path_on_gpu(tiny_data):
    """`--compile` with bf16: the same acquisitions' count and a model that learns."""
    config = tiny_config(strategy="margin", precision="bf16", max_epochs=12)
    runtime = dataclasses.replace(GPU, compile=True)
    check_trajectory(*run_on(runtime, config, tiny_data), config)
