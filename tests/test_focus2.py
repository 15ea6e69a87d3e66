"""Focus 2 in the active-learning loop: joint, spo and upo architecture optimization."""

import dataclasses
import json

import pytest
import torch

from archdal import RunConfig, Runtime, Trajectory
from archdal.archopt import build
from archdal.config import ArchOptions, PretrainConfig
from archdal.data import make_split
from archdal.errors import ConfigError, DataError
from archdal.loop import strip_timing
from archdal.pretrain import pretraining_images
from archdal.sweep.cli import stage_one
from archdal.sweep.grid import expand
from archdal.sweep.presets import FOCUS2_PRESETS
from archdal.train import train_model

from .conftest import tiny_config

TINY_ARCH = ArchOptions(
    filters=8, truncation=4,
    pdarts={"channels": 4, "cells": [3, 4, 5], "epochs": 2, "warmup_epochs": 1,
            "batch_size": 32, "derived_channels": 8, "derived_cells": 3},
)  # fmt: skip


def focus2_config(arch: str, mode: str, **overrides) -> RunConfig:
    values = dict(arch=arch, arch_mode=mode, arch_options=TINY_ARCH, optimizer="adam", lr=0.01,
                  max_epochs=10, pretrain_options=PretrainConfig(clusters=4, epochs=1))  # fmt: skip
    return tiny_config(**(values | overrides))


def initial_layer_probs(truncation: int) -> list[float]:
    model = build.DepthDropoutCNN(4, 3, torch.zeros(3), torch.ones(3), truncation=truncation,
                                  filters=8)  # fmt: skip
    return model.architecture_record()["layer_probs"]


def test_joint_mode_trains_the_architecture_again_every_round(tiny_data):
    trajectory = Trajectory(focus2_config("depth_dropout", "joint"), Runtime(device="cpu"),
                            tiny_data)  # fmt: skip
    records = [trajectory.run_round() for _ in range(3)]
    probs = [r["architecture"]["layer_probs"] for r in records]
    start = initial_layer_probs(4)
    for p in probs:
        assert p != pytest.approx(start, abs=1e-4)  # moved away from the initial posterior
    assert probs[0] != pytest.approx(probs[1], abs=1e-5)  # and differently each round
    assert all(len(r["architecture"]["active_filters"]) == 4 for r in records)


@pytest.mark.parametrize("arch", ["depth_dropout", "bbdropout"])
def test_architecture_parameters_train_unless_frozen(tiny_data, arch):
    config = focus2_config(arch, "joint", max_epochs=3)
    make = build.cnn_builder(config, tiny_data)
    x, y = tiny_data.train_x[:64], tiny_data.train_y[:64]
    for frozen in (False, True):
        torch.manual_seed(0)
        model = make()
        if frozen:
            build.freeze_architecture(model)
        before = [p.detach().clone() for p in model.architecture_parameters()]
        train_model(model, x, y, x[:16], y[:16], config, seed=0)
        after = model.architecture_parameters()
        moved = any(not torch.equal(b, a) for b, a in zip(before, after, strict=True))
        assert moved != frozen


@pytest.mark.parametrize("mode", ["spo", "upo"])
def test_pre_optimized_architecture_is_loaded_and_kept_fixed(tmp_path, tiny_data, mode):
    config = focus2_config("depth_dropout", mode)
    split = make_split(tiny_data.train_y, tiny_data.num_classes, config.init_size,
                       config.pool_size, config.val_fraction, config.seed)  # fmt: skip
    result = build.pre_optimize(config, tiny_data, split, build.cnn_builder(config, tiny_data),
                                torch.device("cpu"), 256)  # fmt: skip
    path = tmp_path / f"{build.pre_optimization_name(config)}.pt"
    build.save_result(path, result)
    assert result["record"]["layer_probs"] != pytest.approx(initial_layer_probs(4), abs=1e-4)

    # A trajectory of another strategy loads it: every round has that architecture.
    margin = dataclasses.replace(config, strategy="margin")
    loaded = Trajectory(dataclasses.replace(margin, arch_source=str(path)),
                        Runtime(device="cpu"), tiny_data)  # fmt: skip
    records = [loaded.run_round() for _ in range(3)]
    for record in records:
        assert record["architecture"] == result["record"]
    assert records[0]["archopt_seconds"] == result["seconds"]

    # ... and computes exactly what optimizing inside the trajectory computes.
    inline = Trajectory(margin, Runtime(device="cpu"), tiny_data)
    inline_records = [inline.run_round() for _ in range(3)]
    assert strip_timing(inline_records) == strip_timing(records)

    other = focus2_config("depth_dropout", mode, seed=1, arch_source=str(path))
    with pytest.raises(DataError, match=r"optimized for another config.*seed"):
        Trajectory(other, Runtime(device="cpu"), tiny_data).run_round()


def test_pdarts_spo_trains_the_searched_network(tiny_data):
    config = focus2_config("pdarts", "spo", init_size=40, max_epochs=5)
    trajectory = Trajectory(config, Runtime(device="cpu"), tiny_data)
    records = [trajectory.run_round() for _ in range(2)]
    genotype = records[0]["architecture"]["genotype"]
    assert records[1]["architecture"]["genotype"] == genotype
    assert len(genotype["normal"]) == 8 and records[0]["test_acc"] > 0.3  # 4 classes
    json.dumps(records)  # records stay JSON


def test_pdarts_upo_searches_on_the_pretraining_images(monkeypatch, tiny_data):
    """`pretrain_options.max_images` caps the clustered images a upo search sees, as it
    caps DeepCluster's: the same seeded subset, halved into weight and architecture data."""
    seen = []

    def record_and_stop(config, data, x, y, val_x, val_y, seed, num_classes):
        seen.append((x, y, val_x, num_classes))
        raise InterruptedError

    monkeypatch.setattr(build, "search_genotype", record_and_stop)
    options = PretrainConfig(clusters=4, epochs=1, max_images=30)
    config = focus2_config("pdarts", "upo", pretrain_options=options)
    split = make_split(tiny_data.train_y, tiny_data.num_classes, config.init_size,
                       config.pool_size, config.val_fraction, config.seed)  # fmt: skip
    with pytest.raises(InterruptedError):
        build.pre_optimize(config, tiny_data, split, None, torch.device("cpu"), 256)
    x, y, val_x, clusters = seen[0]
    assert (len(x), len(val_x), clusters) == (15, 15, 4)
    assert set(y.tolist()) <= set(range(4))
    unlabelled = tiny_data.train_x[torch.cat([split.initial, split.pool])]
    chosen = pretraining_images(unlabelled, config)
    assert len(chosen) == 30 and len(unlabelled) > 30
    pairs = torch.cat([x, val_x]).flatten(1)
    assert torch.equal(pairs.sort(0).values, chosen.flatten(1).sort(0).values)


def test_arch_and_mode_must_fit():
    with pytest.raises(ConfigError, match="choose arch-mode from: joint, spo, upo"):
        focus2_config("depth_dropout", "fixed").validate()
    with pytest.raises(ConfigError, match="needs an architecture to optimize"):
        focus2_config("cnn5", "joint").validate()
    with pytest.raises(ConfigError, match="unknown pdarts settings"):
        focus2_config("pdarts", "joint", arch_options=ArchOptions(pdarts={"chanels": 4})).validate()
    with pytest.raises(ConfigError, match="upo already pretrains"):
        focus2_config("bbdropout", "upo", pretrain="unsupervised").validate()
    round_trip = RunConfig.from_dict(json.loads(focus2_config("pdarts", "spo").to_json()))
    assert round_trip == focus2_config("pdarts", "spo")


def test_focus2_grid_and_stage_one_jobs(tmp_path):
    configs = expand(FOCUS2_PRESETS["small"])
    pairs = {(c.arch, c.arch_mode) for c in configs}
    assert len(pairs) == 12 and ("cnn9", "fixed") in pairs and ("pdarts", "upo") in pairs
    assert len(expand(FOCUS2_PRESETS["paper"])) == 4 * 12 * 7 * 3
    jobs, trials = stage_one(configs, tmp_path)
    # one pre-optimization per method × mode (spo, upo) × seed, shared by the strategies
    assert len(jobs) == 3 * 2 * 2
    assert {j.strategy for j in jobs} == {"random"} and {j.rounds for j in jobs} == {0}
    sources = {t.arch_source for t in trials if t.arch_mode in ("spo", "upo")}
    assert sources == {str(tmp_path / f"{build.pre_optimization_name(j)}.pt") for j in jobs}
    assert all(t.arch_source == "" for t in trials if t.arch_mode in ("fixed", "joint"))
