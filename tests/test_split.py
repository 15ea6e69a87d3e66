"""The seeded split keeps every class's share: a stratified validation set and a uniform
pool (split version 2), checked against the class shares over many seeds and on the real
Banking77 intents; version 1 stays reproducible for runs started with it."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from archdal import RunConfig, Runtime, run
from archdal.cli import main
from archdal.data import load_digits_images, make_split

SEEDS = range(40)


def _skewed_labels(n: int = 5000) -> torch.Tensor:
    """Ten classes from 18% down to 5% (a fixed, shuffled label vector)."""
    shares = np.linspace(0.18, 0.05, 10)
    counts = np.round(shares / shares.sum() * n).astype(int)
    labels = np.repeat(np.arange(10), counts)
    return torch.from_numpy(np.random.default_rng(0).permutation(labels))


def _shares(labels, num_classes, init, val_fraction, pool, version):
    """Per seed: validation counts per class, and what each class's share of the rest says."""
    observed, expected, pool_seen, pool_expected = [], [], [], []
    for seed in SEEDS:
        s = make_split(labels, num_classes, init, pool, val_fraction, seed, version)
        is_initial = torch.zeros(len(labels), dtype=torch.bool)
        is_initial[s.initial] = True
        rest = torch.bincount(labels[~is_initial], minlength=num_classes).double()
        val = torch.bincount(labels[s.val], minlength=num_classes).double()
        observed.append(val)
        expected.append(rest / rest.sum() * len(s.val))
        after = rest - val
        pool_seen.append(torch.bincount(labels[s.pool], minlength=num_classes).double())
        pool_expected.append(after / after.sum() * len(s.pool))
    return (torch.stack(observed), torch.stack(expected), torch.stack(pool_seen),
            torch.stack(pool_expected))  # fmt: skip


def test_validation_keeps_each_class_share_of_the_rest():
    labels = _skewed_labels()
    observed, expected, pool, pool_expected = _shares(labels, 10, 100, 0.1, 1500, 2)
    assert (observed - expected).abs().max() <= 1.0  # up to rounding, every seed, every class
    total = observed.sum(0)
    assert stats.chisquare(total, expected.sum(0) * total.sum() / expected.sum()).pvalue > 0.5
    # The pool is a uniform sample of what remains: its class counts fit the remainder's shares.
    assert stats.chisquare(pool.sum(0), pool_expected.sum(0)).pvalue > 0.01


def test_version_one_is_short_of_rare_classes_in_validation():
    """The test above fails on the split before version 2: rare classes lose validation."""
    labels = _skewed_labels()
    observed, expected, _, _ = _shares(labels, 10, 100, 0.1, 1500, 1)
    total = observed.sum(0)
    assert stats.chisquare(total, expected.sum(0) * total.sum() / expected.sum()).pvalue < 1e-6
    ratio = total / expected.sum(0)
    assert ratio[0] > 1.02 and ratio[-1] < 0.9  # the commonest class gains, the rarest loses


def test_real_banking77_intents_keep_their_share(data_dir):
    frame = pd.read_csv(data_dir / "banking77" / "train.csv")
    names = sorted(frame["category"].unique())
    labels = torch.tensor(frame["category"].map({n: i for i, n in enumerate(names)}).to_numpy())
    for init, fraction in ((100, 0.02), (1000, 0.1)):
        observed, expected, _, _ = _shares(labels, 77, init, fraction, 1000, 2)
        assert (observed - expected).abs().max() <= 1.0
        old, old_expected, _, _ = _shares(labels, 77, init, fraction, 1000, 1)
        assert (old - old_expected).abs().max() > 5  # version 1 misses by whole intents


def test_the_split_is_a_pure_function_and_version_one_is_unchanged():
    y = load_digits_images().train_y
    a, b = make_split(y, 10, 37, 500, 0.1, 3), make_split(y, 10, 37, 500, 0.1, 3)
    parts = (a.initial, a.val, a.pool)
    assert all(torch.equal(x, z) for x, z in zip(parts, (b.initial, b.val, b.pool), strict=True))
    assert len(set(torch.cat(parts).tolist())) == sum(map(len, parts))  # disjoint
    old = make_split(y, 10, 37, 500, 0.1, 3, version=1)
    assert torch.equal(old.initial, a.initial)  # the initial set did not change
    # Digests of the split archdal made before versions existed (computed with that code).
    digests = [hashlib.sha1(p.numpy().tobytes()).hexdigest()[:16]
               for p in (old.initial, old.val, old.pool)]  # fmt: skip
    assert digests == ["caff83b0e7f67ffc", "c081cb9a62720f8a", "23014935028b0c6b"]


ARGS = ["run", "--dataset", "digits", "--width", "0.125", "--init-size", "20", "--acq-size",
        "10", "--rounds", "1", "--pool-size", "200", "--max-epochs", "2", "--patience", "1",
        "--device", "cpu", "--quiet"]  # fmt: skip


def test_a_run_of_an_older_split_is_not_silently_resumed(tmp_path, capsys):
    out = tmp_path / "old"
    assert main([*ARGS, "--split-version", "1", "--out", str(out)]) == 0
    saved = json.loads((out / "config.json").read_text())
    del saved["split_version"]  # as written before splits had versions
    (out / "config.json").write_text(json.dumps(saved))
    before = (out / "rounds.jsonl").read_text()
    assert main([*ARGS, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "split_version: 1 there, 2 here" in err
    assert "its split is version 1 (validation and pool from the front" in err
    assert "finish it with --split-version 1" in err
    assert (out / "rounds.jsonl").read_text() == before
    assert main([*ARGS, "--split-version", "1", "--out", str(out)]) == 0  # finishing it works


@pytest.mark.parametrize("version", [1, 2])
def test_configs_record_their_split_version(tmp_path, tiny_data, version):
    from .conftest import tiny_config

    config = tiny_config(rounds=0, split_version=version)
    run(config, tmp_path, Runtime(device="cpu"), progress=None, data=tiny_data)
    assert json.loads((tmp_path / "config.json").read_text())["split_version"] == version
    assert RunConfig.from_dict({k: v for k, v in config.to_dict().items()
                                if k != "split_version"}).split_version == 1  # fmt: skip
