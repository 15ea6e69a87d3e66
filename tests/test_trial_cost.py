"""Trial cost: the exact speedups change no record; the protocol knobs do what they say.

The reference is the records of `CASES` written by `python -m tests.test_trial_cost` run on
the code before any speedup (commit 4ab96b2, this file copied in); every speedup since must
reproduce them on the CPU, to the last digit. Float sums differ between CPUs (a run on an
AMD EPYC and one on the machine that wrote the first pins disagree in the third digit), so
the test writes the reference on the machine it runs on, from a git worktree of that commit;
`tests/data/exact_records.json`, written the same way, stands in where the clone lacks it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from archdal import RunConfig, Runtime, Trajectory, make_synthetic, strip_timing
from archdal.families import load_data

from .conftest import REPO, tiny_config

PINNED = Path(__file__).parent / "data" / "exact_records.json"
BEFORE_SPEEDUPS = "4ab96b2"
DIGITS = dict(dataset="digits", strategy="margin", width=0.125, init_size=20, acq_size=20,
              rounds=1, pool_size=300, max_epochs=4, patience=2, batch_size=32)  # fmt: skip
CASES = {
    "synthetic-resnet18-margin": tiny_config(strategy="margin"),
    "synthetic-resnet18-badge": tiny_config(strategy="badge"),
    "synthetic-resnet18-bald": tiny_config(strategy="bald"),
    "synthetic-vgg11-coreset": tiny_config(arch="vgg11", strategy="coreset"),
    "digits-resnet18-margin": RunConfig(**DIGITS),
}
CPU = Runtime(device="cpu")  # the default eval batch: part of what is pinned


def tiny_synthetic():
    return make_synthetic(n_train=600, n_test=200, num_classes=4, size=16, noise=0.3)


def records_of(config: RunConfig, data, runtime: Runtime = CPU) -> list[dict]:
    trajectory = Trajectory(config, runtime, data)
    while not trajectory.done:
        trajectory.run_round()
    return strip_timing(trajectory.records)


def all_records() -> dict[str, list[dict]]:
    tiny, digits = tiny_synthetic(), load_data(RunConfig(dataset="digits"), CPU)
    return {name: records_of(c, digits if c.dataset == "digits" else tiny)
            for name, c in CASES.items()}  # fmt: skip


def reference_records(folder: Path) -> dict[str, list[dict]]:
    """`CASES`' records by the code of `BEFORE_SPEEDUPS`, written on this machine; the
    pinned file when the clone does not hold that commit."""
    git = ["git", "-C", str(REPO)]
    if subprocess.run([*git, "cat-file", "-e", f"{BEFORE_SPEEDUPS}^{{commit}}"]).returncode:
        return json.loads(PINNED.read_text())
    before = folder / "before"
    subprocess.run([*git, "worktree", "add", "-q", "--detach", str(before), BEFORE_SPEEDUPS],
                   check=True)  # fmt: skip
    try:
        (before / "tests" / "test_trial_cost.py").write_text(Path(__file__).read_text())
        (before / "tests" / "data").mkdir(exist_ok=True)
        env = os.environ | {"PYTHONPATH": str(before)}
        subprocess.run([sys.executable, "-m", "tests.test_trial_cost"], cwd=before, env=env,
                       check=True, capture_output=True)  # fmt: skip
        return json.loads((before / "tests" / "data" / PINNED.name).read_text())
    finally:
        subprocess.run([*git, "worktree", "remove", "--force", str(before)], check=True)


def test_speedups_keep_every_record(tmp_path):
    """Predictions, selections and every record field as before the speedups (one thread,
    as they were written: a training step's sums depend on the thread count)."""
    torch.set_num_threads(1)
    assert all_records() == reference_records(tmp_path)


if __name__ == "__main__":  # rewrites the pinned records: only with the code before a speedup
    torch.set_num_threads(1)
    PINNED.write_text(json.dumps(all_records(), indent=0))
    print(f"wrote {PINNED}", file=sys.stderr)


def test_pool_view_does_not_depend_on_the_batch_size():
    """Every field, MC dropout's included (masks are drawn per MC_BLOCK rows), at any batch."""
    from archdal.models import build_model
    from archdal.pool import NEEDS, compute_view

    torch.manual_seed(0)
    model = build_model("resnet18", 4, 3, 0.125)
    pool = tiny_synthetic().train_x[:1100]  # more than one MC block
    views = []
    for batch in (1024, 100):
        torch.manual_seed(1)
        views.append(compute_view(model, pool, frozenset(NEEDS), batch, 3, pool[:30]))
    for name in ("probs", "embeddings", "labeled_embeddings", "mc_mean_probs", "mc_mean_entropy"):
        assert torch.equal(getattr(views[0], name), getattr(views[1], name)), name


# --- the protocol knobs -------------------------------------------------------------------


def knob_run(monkeypatch, val_acc: float | None = None, **overrides):
    """train_model on a tiny model; counts validation passes (their sizes) and
    recalibrations; `val_acc` fixes what validation reports."""
    import archdal.train as train
    from archdal.models import build_model

    data = tiny_synthetic()
    config = tiny_config(**(dict(lr=1e-6, max_epochs=20, patience=5) | overrides))
    passes, recalibrations = [], []
    real_accuracy, real_recalibrate = train.accuracy, train.recalibrate_batchnorm

    def counted_accuracy(model, images, labels, batch):
        passes.append(images.clone())
        return real_accuracy(model, images, labels, batch) if val_acc is None else val_acc

    def counted_recalibrate(*args):
        recalibrations.append(1)
        return real_recalibrate(*args)

    monkeypatch.setattr(train, "accuracy", counted_accuracy)
    monkeypatch.setattr(train, "recalibrate_batchnorm", counted_recalibrate)
    torch.manual_seed(0)
    model = build_model("resnet18", 4, 3, 0.125)
    x, y = data.train_x[:40], data.train_y[:40]
    result = train.train_model(model, x, y, data.train_x[100:160], data.train_y[100:160],
                               config, seed=3)  # fmt: skip
    return result, passes, len(recalibrations), model


def test_validate_every_k_epochs_counts_patience_in_epochs(monkeypatch):
    # validation never improves after its first pass: stop once 5 epochs have gone by
    result, passes, recalibrations, _ = knob_run(monkeypatch, val_acc=0.5)
    assert (result.epochs, len(passes), recalibrations) == (6, 6, 6)
    result, passes, recalibrations, _ = knob_run(monkeypatch, val_acc=0.5, validate_every=3)
    assert (result.epochs, len(passes), recalibrations) == (9, 3, 3)  # epochs 3, 6, 9
    result, passes, _, _ = knob_run(monkeypatch, val_acc=0.5, validate_every=3, max_epochs=7,
                                    patience=50)  # fmt: skip
    assert (result.epochs, len(passes)) == (7, 3)  # epochs 3, 6 and the last


def test_val_subsample_is_one_seeded_subset(monkeypatch):
    from archdal.train import validation_subset

    a = validation_subset(200, 30, seed=4)
    assert torch.equal(a, validation_subset(200, 30, seed=4))
    assert not torch.equal(a, validation_subset(200, 30, seed=5))
    assert a.tolist() == sorted(set(a.tolist())) and len(a) == 30 and 0 <= a.min() < a.max() < 200
    assert validation_subset(200, 0, seed=4) is None and validation_subset(20, 30, 4) is None
    _, passes, _, _ = knob_run(monkeypatch, val_subsample=30, max_epochs=3)
    rows = tiny_synthetic().train_x[100:160][validation_subset(60, 30, seed=0)]
    assert len(passes) == 3 and all(torch.equal(p, rows) for p in passes)


def test_bn_stats_from_the_epoch_are_the_average_of_its_batches(monkeypatch):
    """No recalibration pass; the first BatchNorm's running mean is the mean of the batch
    means it saw in the (single) epoch."""
    seen = []

    def hook(module, inputs):
        if module.training:
            seen.append(inputs[0].mean(dim=(0, 2, 3)).detach().clone())

    import archdal.models as models

    real_build = models.build_model

    def build_with_hook(*args, **kwargs):
        model = real_build(*args, **kwargs)
        next(
            m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)
        ).register_forward_pre_hook(hook)
        return model

    monkeypatch.setattr(models, "build_model", build_with_hook)
    _, passes, recalibrations, model = knob_run(monkeypatch, bn_stats="epoch", max_epochs=1)
    first = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert recalibrations == 0 and len(passes) == 1 and len(seen) == 2  # 40 labels, batch 32
    torch.testing.assert_close(first.running_mean, torch.stack(seen).mean(0))
    assert first.momentum == 0.1  # restored


# --- the bf16 fast path -------------------------------------------------------------------


def test_bf16_path_runs_on_the_cpu_and_repeats_itself():
    """Autocast to bfloat16 and channels_last on the CPU: a valid trajectory, fp32 views for
    the strategies, and the same records from the same seed."""
    import archdal.train as train

    config = tiny_config(strategy="badge", precision="bf16", rounds=1, max_epochs=3)
    data = tiny_synthetic()
    first, second = records_of(config, data), records_of(config, data)
    assert first == second
    assert len(set(first[0]["acquired"])) == config.acq_size
    assert first != records_of(dataclasses.replace(config, precision="fp32"), data)
    model = train.fast_path(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)), "bf16", False)
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_trial_cost_benchmark_splits_a_round_into_its_phases(tmp_path, capsys):
    """benchmarks/trial_cost.py runs on the current code (a strategy refactor once broke it
    unnoticed) and its phases add up to the timed round."""
    path = Path(__file__).parents[1] / "benchmarks" / "trial_cost.py"
    spec = importlib.util.spec_from_file_location("trial_cost", path)
    trial_cost = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(trial_cost)
    out = tmp_path / "cost.json"
    argv = ["--dataset", "digits", "--protocol", "small", "--labels", "30", "--acq-size", "10",
            "--epochs", "2", "--set", "pool_size=200", "--json", str(out)]  # fmt: skip
    assert trial_cost.main(argv) == 0
    numbers = json.loads(out.read_text())
    assert set(numbers["seconds"]) == {*trial_cost.PHASES, "other"}
    assert all(v > 0 for k, v in numbers["seconds"].items() if k != "other")
    assert numbers["epochs"] == 2 and 0 < numbers["test_acc"] <= 1
    assert "outside training steps / training steps" in capsys.readouterr().out
