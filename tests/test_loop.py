"""The loop: determinism, crash-resume, pretraining, and the run directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from archdal import (
    ConfigError,
    DataError,
    PretrainConfig,
    Runtime,
    Trajectory,
    make_synthetic,
    run,
    strip_timing,
)
from archdal.models import build_model
from archdal.pool import REPRESENTATION
from archdal.pretrain import cluster_labels, pretrain_backbone
from archdal.strategies import REGISTRY

from .conftest import REPO, tiny_config

CPU = Runtime(device="cpu")


def test_records_and_files(tmp_path, tiny_data):
    config = tiny_config(strategy="margin")
    records = run(config, tmp_path / "r", CPU, progress=None, data=tiny_data)
    assert [r["round"] for r in records] == [0, 1, 2]
    assert [r["n_labeled"] for r in records] == [20, 30, 40]
    for key in ("test_acc", "val_acc", "train_acc", "epochs", "train_seconds", "select_seconds"):
        assert all(key in r for r in records)
    lines = (tmp_path / "r" / "rounds.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == records
    assert json.loads((tmp_path / "r" / "config.json").read_text()) == config.to_dict()
    acquired = [i for r in records for i in r["acquired"]]
    assert len(acquired) == len(set(acquired)) == 20 and records[-1]["acquired"] == []
    traj = Trajectory(config, CPU, tiny_data)
    pool = set(traj.split.pool.tolist())
    assert set(acquired) <= pool  # acquisitions are training-set indices from the pool
    assert records[-1]["test_acc"] > 0.5  # 4 classes: chance is 0.25


def strategy_config(strategy: str, **overrides):
    """A tiny config of `strategy`; representation strategies read the model's embedding
    here (the cached encoders have their own tests)."""
    needs_representation = REPRESENTATION in REGISTRY[strategy].needs
    model = {"acq_representation": "model"} if needs_representation else {}
    return tiny_config(strategy=strategy, **(model | overrides))


@pytest.mark.parametrize("strategy", sorted(REGISTRY))
def test_same_seed_same_selections_and_accuracies(strategy, tiny_data):
    config = strategy_config(strategy, rounds=1)
    a = Trajectory(config, CPU, tiny_data)
    b = Trajectory(config, CPU, tiny_data)
    ra = [a.run_round() for _ in range(2)]
    rb = [b.run_round() for _ in range(2)]
    assert strip_timing(ra) == strip_timing(rb)
    other = Trajectory(strategy_config(strategy, rounds=1, seed=1), CPU, tiny_data)
    assert other.run_round()["acquired"] != ra[0]["acquired"]


def test_strategies_share_the_initial_pool(tiny_data):
    pools = {s: Trajectory(strategy_config(s), CPU, tiny_data).labeled for s in REGISTRY}
    first = pools["random"]
    assert all(torch.equal(first, p) for p in pools.values())


def test_resume_in_process_equals_uninterrupted(tmp_path, tiny_data):
    config = tiny_config(strategy="badge", rounds=3)
    full = run(config, tmp_path / "full", CPU, progress=None, data=tiny_data)
    traj = Trajectory(config, CPU, tiny_data)
    traj.run_round()
    traj.run_round()
    state = traj.state_dict()
    resumed = Trajectory(config, CPU, tiny_data)
    resumed.load_state_dict(state)
    while not resumed.done:
        resumed.run_round()
    assert strip_timing(resumed.records) == strip_timing(full)


CLI_ARGS = [
    "--dataset", "digits", "--arch", "resnet18", "--width", "0.125", "--strategy", "coreset",
    "--init-size", "20", "--acq-size", "10", "--rounds", "6", "--pool-size", "300",
    "--max-epochs", "3", "--patience", "2", "--batch-size", "32", "--device", "cpu",
]  # fmt: skip


def _cli(out, *extra):
    cmd = [sys.executable, "-m", "archdal.cli", "run", *CLI_ARGS, "--out", str(out), *extra]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _records(out):
    return [json.loads(x) for x in (out / "rounds.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("delay", [0.0, 0.7])
def test_sigkill_then_rerun_gives_identical_records(tmp_path, delay):
    reference = tmp_path / "reference"
    assert _cli(reference).wait(timeout=300) == 0
    out = tmp_path / "killed"
    proc = _cli(out)
    while not (out / "checkpoint.pt").exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.02)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # The checkpoint is written before rounds.jsonl, so a kill can land between the two:
    # the checkpoint says where the rerun resumes, and the rerun rewrites rounds.jsonl.
    done_before = torch.load(out / "checkpoint.pt", weights_only=True)["round"]
    assert 1 <= done_before < 7, "the kill must land mid-run"
    rerun = _cli(out)
    stdout, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0
    assert f"resuming at round {done_before}/6" in stdout.decode()
    assert strip_timing(_records(out)) == strip_timing(_records(reference))
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_completed_run_is_not_rerun(tmp_path, tiny_data):
    config = tiny_config(rounds=1)
    first = run(config, tmp_path, CPU, progress=None, data=tiny_data)
    lines = []
    again = run(config, tmp_path, CPU, progress=lines.append, data=tiny_data)
    assert again == first and "already complete" in lines[0]


def test_other_config_in_out_is_refused_before_any_work(tmp_path, tiny_data):
    run(tiny_config(rounds=1), tmp_path, CPU, progress=None, data=tiny_data)
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    with pytest.raises(
        ConfigError, match=r"different config \(strategy: 'random' there, 'margin' here\)"
    ):
        run(tiny_config(rounds=1, strategy="margin"), tmp_path, CPU, progress=None, data=tiny_data)
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before


def test_corrupt_checkpoint_is_named(tmp_path, tiny_data):
    config = tiny_config(rounds=1)
    run(config, tmp_path, CPU, progress=None, data=tiny_data)
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match=r"checkpoint .*checkpoint.pt is unreadable"):
        run(config, tmp_path, CPU, progress=None, data=tiny_data)


def test_unsupervised_pretraining_initialises_every_round(tiny_data):
    options = PretrainConfig(clusters=8, epochs=2)
    config = tiny_config(strategy="coreset", pretrain="unsupervised", pretrain_options=options)
    traj = Trajectory(config, CPU, tiny_data)
    first = traj.run_round()
    assert first["pretrain_seconds"] > 0 and traj.pretrained is not None
    assert not any(k.startswith("classifier.") for k in traj.pretrained)
    fresh = traj.new_model().state_dict()
    changed = [
        k
        for k, v in traj.pretrained.items()
        if v.is_floating_point() and not torch.equal(v, fresh[k])
    ]
    assert any(k.startswith("features.") for k in changed)
    again = Trajectory(config, CPU, tiny_data)
    again.run_round()
    assert all(torch.equal(v, again.pretrained[k]) for k, v in traj.pretrained.items())
    traj.run_round()  # later rounds reuse the same weights, no second pretraining
    assert "pretrain_seconds" not in traj.records[1]


def test_deepcluster_with_pretrain_augment_trains_on_random_views(monkeypatch, tiny_data):
    """`pretrain_options.augment`: every training batch of every epoch is a batch of
    SimCLR's random views; the weights are seeded and differ from training on the images."""
    import archdal.pretrain

    seen = []

    def counting_views(images, rng):
        seen.append(len(images))
        return real_views(images, rng)

    real_views = archdal.pretrain.augmented_views
    monkeypatch.setattr(archdal.pretrain, "augmented_views", counting_views)
    mean, std = tiny_data.channel_stats()

    def make():
        return build_model("resnet18", 4, tiny_data.channels, 0.125, 0.0, mean, std)

    def weights(augment: bool) -> dict[str, torch.Tensor]:
        options = PretrainConfig(clusters=8, epochs=2, max_images=200, augment=augment)
        config = tiny_config(pretrain_options=options)
        return pretrain_backbone(make, tiny_data.train_x, config, 256)

    plain = weights(False)
    assert seen == []
    views = weights(True)
    assert sum(seen) == 2 * 200 and max(seen) <= tiny_config().batch_size  # 2 epochs of 200
    again = weights(True)
    assert all(torch.equal(v, again[k]) for k, v in views.items())
    floats = [k for k, v in views.items() if v.is_floating_point()]
    changed = [k for k in floats if not torch.equal(views[k], plain[k])]
    assert any(k.startswith("features.") for k in changed)


def test_cluster_labels_find_separated_groups():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 20, generator=g) * 20
    x = (centres.repeat_interleave(30, 0) + torch.randn(90, 20, generator=g)).double().numpy()
    labels = cluster_labels(x, 3, seed=0)
    groups = [set(labels[i * 30 : (i + 1) * 30].tolist()) for i in range(3)]
    assert all(len(g) == 1 for g in groups) and len(set.union(*groups)) == 3


def test_three_channel_32px_trajectory_with_augmentation(monkeypatch):
    """The CIFAR-10/SVHN shape (not downloadable here) through the whole loop."""
    import archdal.train

    calls = []
    real_augment = archdal.train.augment_batch

    def counting_augment(images, rng, pad=4):
        calls.append(images.shape)
        return real_augment(images, rng, pad)

    monkeypatch.setattr(archdal.train, "augment_batch", counting_augment)
    data = make_synthetic(n_train=400, n_test=100, num_classes=4, channels=3, size=32)
    config = tiny_config(strategy="bald", augment=True)
    records = [Trajectory(config, CPU, data) for _ in range(2)]
    records = [[t.run_round() for _ in range(3)] for t in records]
    assert strip_timing(records[0]) == strip_timing(records[1])
    assert [r["n_labeled"] for r in records[0]] == [20, 30, 40]
    assert records[0][-1]["test_acc"] > 0.4  # 4 classes: chance is 0.25
    assert calls and all(shape[1:] == (3, 32, 32) for shape in calls)


def test_python_dash_m_archdal(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "archdal", "run", "--dataset", "nope", "--out", str(tmp_path)],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 2 and "invalid choice: 'nope'" in result.stderr
