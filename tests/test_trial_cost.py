"""Trial cost: the exact speedups change no record; the protocol knobs do what they say.

`tests/data/exact_records.json` holds the records of `CASES`, written by
`python -m tests.test_trial_cost` run on the code before any speedup (commit 4ab96b2,
this file copied in); every
speedup since must reproduce them on the CPU, to the last digit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from archdal import RunConfig, Runtime, Trajectory, make_synthetic, strip_timing
from archdal.families import load_data

from .conftest import tiny_config

PINNED = Path(__file__).parent / "data" / "exact_records.json"
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


def test_speedups_keep_every_record():
    """Predictions, selections and every record field as before the speedups (one thread,
    as they were written: a training step's sums depend on the thread count)."""
    torch.set_num_threads(1)
    assert all_records() == json.loads(PINNED.read_text())


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
