"""Transformers through the same loop, pool pass and strategies as the CNNs: every strategy
on real Banking77 text, sentence pairs on QNLI, determinism, resume, pretraining, the CLI."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import torch

from archdal import CsvOptions, PretrainConfig, Trajectory, load_data, strip_timing
from archdal.cli import main
from archdal.families import model_adapter
from archdal.pool import EMBEDDINGS, MC, PROBS, REPRESENTATION, compute_view
from archdal.seeding import global_torch_seed
from archdal.strategies import REGISTRY
from archdal.textmodels import FAMILIES
from archdal.train import linear_warmup_decay

from .text_support import CPU, subsample_test, tiny_text_config


@pytest.fixture(autouse=True)
def _offline_one_thread(monkeypatch, data_dir):
    """Tiny models gain nothing from a second thread, and lose much when cores are busy."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("ARCHDAL_DATA", str(data_dir))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def runtime(token_cache):
    return dataclasses.replace(CPU, cache_dir=token_cache)


@pytest.fixture(scope="session")
def banking77(tiny_models, runtime, data_dir):
    """Banking77 tokenized by the tiny BERT, 600 of its 3,080 test examples."""
    runtime = dataclasses.replace(runtime, data_dir=data_dir)
    return subsample_test(load_data(tiny_text_config(tiny_models["bert"]), runtime), 600)


@pytest.mark.parametrize("strategy", sorted(REGISTRY))
def test_every_strategy_on_real_banking77(strategy, tiny_models, banking77):
    # representation strategies read the model's embedding here: embedding all of Banking77
    # with MiniLM takes minutes on a CPU
    model = {"acq_representation": "model"} if REPRESENTATION in REGISTRY[strategy].needs else {}
    config = tiny_text_config(tiny_models["bert"], strategy=strategy, rounds=2, **model)
    trajectory = Trajectory(config, CPU, banking77)
    records = [trajectory.run_round() for _ in range(3)]
    assert [r["n_labeled"] for r in records] == [30, 40, 50]
    acquired = records[0]["acquired"] + records[1]["acquired"]
    assert len(acquired) == len(set(acquired)) == 20 and records[2]["acquired"] == []
    assert set(acquired) <= set(trajectory.split.pool.tolist())
    assert set(trajectory.labeled.tolist()) == set(trajectory.split.initial.tolist()) | set(
        acquired
    )
    assert all(r["epochs"] == 2 and 0 <= r["test_acc"] <= 1 for r in records)
    if strategy != "random":  # informed choices differ from a random draw of the same pool
        random_pick = Trajectory(tiny_text_config(tiny_models["bert"]), CPU, banking77)
        assert random_pick.run_round()["acquired"] != records[0]["acquired"]


@pytest.mark.parametrize("arch", ["bert", "distilbert", "roberta"])
def test_embedding_is_what_the_last_layer_reads(arch, tiny_models, runtime):
    config = tiny_text_config(tiny_models[arch])
    data = load_data(config, runtime)
    with global_torch_seed(0):
        model = model_adapter(config, data).new_model().eval()
    lengths = (data.test_x[:, 0] != data.pad_id).sum(dim=1)
    shortest = torch.argsort(lengths, stable=True)[:8]
    x = data.test_x[shortest]
    embedding = model.neck(model.trunk(x))
    assert embedding.shape == (8, 32) and model.classifier.out_features == 77
    if arch == "distilbert":  # pre_classifier → ReLU
        assert embedding.min() >= 0
    else:  # BERT's pooler / RoBERTa's head dense layer → tanh
        assert embedding.abs().max() < 1 and embedding.min() < 0
    # The split model equals the unsplit Hugging Face classifier on the full padded input.
    reference = copy.deepcopy(model.body)
    reference.set_submodule(FAMILIES[arch][1], copy.deepcopy(model.classifier))
    ids = x[:, 0].long()
    inputs = {"input_ids": ids, "attention_mask": (ids != data.pad_id).long()}
    if arch == "bert":
        inputs["token_type_ids"] = x[:, 1].long()
    with torch.no_grad():
        assert torch.allclose(model(x), reference(**inputs).logits, atol=1e-5)
        assert model.trunk(x).shape[-1] == lengths[shortest].max() < x.shape[-1]  # cut padding
    # MC dropout samples the transformer's own dropout layers.
    pool = data.test_x[torch.cat([shortest, torch.arange(40)])]
    view = compute_view(model, pool, frozenset({PROBS, EMBEDDINGS, MC}), 16, 4)
    assert view.embeddings.shape == (48, 32) and not torch.allclose(view.mc_mean_probs, view.probs)
    assert torch.allclose(view.embeddings[:8], embedding, atol=1e-5)  # length-sorted pass


@pytest.mark.parametrize("arch", ["bert", "roberta"])
def test_sentence_pairs_on_qnli(arch, tiny_models, runtime):
    config = tiny_text_config(tiny_models[arch], dataset="qnli", strategy="margin", max_length=32,
                              pool_size=150)  # fmt: skip
    trajectory = Trajectory(config, runtime)
    assert trajectory.data.held_out_test and trajectory.data.num_classes == 2
    records = [trajectory.run_round() for _ in range(2)]
    assert [r["n_labeled"] for r in records] == [30, 40] and len(set(records[0]["acquired"])) == 10
    assert all(0.3 < r["test_acc"] < 0.7 for r in records)  # two balanced classes, tiny model


def test_text_trajectory_is_deterministic_and_resumable(tiny_models, banking77):
    config = tiny_text_config(tiny_models["bert"], strategy="bald", rounds=2)
    a, b = Trajectory(config, CPU, banking77), Trajectory(config, CPU, banking77)
    ra = [a.run_round() for _ in range(3)]
    rb = [b.run_round() for _ in range(3)]
    assert strip_timing(ra) == strip_timing(rb)
    assert len({r["test_acc"] for r in ra}) > 1  # the records carry real, changing values
    other = Trajectory(dataclasses.replace(config, seed=1), CPU, banking77)
    assert other.run_round()["acquired"] != ra[0]["acquired"]
    resumed = Trajectory(config, CPU, banking77)
    first = Trajectory(config, CPU, banking77)
    first.run_round()
    resumed.load_state_dict(first.state_dict())
    while not resumed.done:
        resumed.run_round()
    assert strip_timing(resumed.records) == strip_timing(ra)


def test_a_tiny_transformer_learns_four_banking77_intents_from_a_csv(tiny_models, tmp_path):
    """The whole text path learns: a researcher's CSV (4 intents of real Banking77 text)."""
    import pandas as pd

    from .conftest import real_data_dir

    rows = pd.read_csv(real_data_dir() / "banking77" / "train.csv")
    keep = ["card_arrival", "exchange_rate", "lost_or_stolen_card", "age_limit"]
    path = tmp_path / "four.csv"
    rows[rows.category.isin(keep)].rename(columns={"category": "intent"}).to_csv(path, index=False)
    options = CsvOptions(path=str(path), label_column="intent")
    config = tiny_text_config(tiny_models["bert"], dataset="csv", csv_options=options,
                              strategy="entropy", init_size=60, acq_size=60, rounds=1,
                              max_epochs=20, patience=20, lr=3e-3, val_fraction=0.1)  # fmt: skip
    records = run_all(Trajectory(config, dataclasses.replace(CPU, cache_dir=tmp_path)))
    # chance 0.25; measured 62.6% at 60 labels and 75.8% at 120 (91 held-out test texts)
    assert records[0]["test_acc"] > 0.45 and records[-1]["test_acc"] > 0.6, records


def run_all(trajectory):
    while not trajectory.done:
        trajectory.run_round()
    return trajectory.records


def test_unsupervised_pretraining_on_sentence_representations(tiny_models, runtime):
    options = PretrainConfig(clusters=4, epochs=2, max_images=120, lr=1e-3)
    config = tiny_text_config(tiny_models["roberta"], strategy="coreset", pretrain="unsupervised",
                              pretrain_options=options)  # fmt: skip
    trajectory = Trajectory(config, runtime)
    record = trajectory.run_round()
    weights = trajectory.pretrained
    assert record["pretrain_seconds"] > 0 and not any(k.startswith("classifier.") for k in weights)
    fresh = trajectory.new_model().state_dict()
    changed = [
        k for k, v in weights.items() if v.is_floating_point() and not torch.equal(v, fresh[k])
    ]
    assert any(".encoder.layer." in k for k in changed)
    again = Trajectory(config, runtime, trajectory.data)
    again.run_round()
    assert all(torch.equal(v, again.pretrained[k]) for k, v in weights.items())


def test_the_issue_command_through_the_cli(tiny_models, token_cache, tmp_path, capsys):
    out = tmp_path / "b77-badge"
    argv = ["run", "--dataset", "banking77", "--arch", "distilbert", "--strategy", "badge",
            "--seed", "0", "--model-path", str(tiny_models["distilbert"]), "--init-size", "30",
            "--acq-size", "10", "--rounds", "1", "--pool-size", "100", "--max-epochs", "1",
            "--max-length", "16", "--device", "cpu", "--cache-dir", str(token_cache),
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("round 0/1  labeled 30  test ") and "(1 epochs" in lines[0]
    saved = json.loads((out / "config.json").read_text())
    assert (saved["optimizer"], saved["lr"], saved["batch_size"], saved["max_length"]) == (
        "adamw", 2e-5, 16, 16)  # fmt: skip
    assert len((out / "rounds.jsonl").read_text().splitlines()) == 2
    assert main(argv) == 0 and "already complete" in capsys.readouterr().out


def test_adamw_warms_up_then_decays_linearly():
    factor = linear_warmup_decay(warmup=2, total=10)
    assert [factor(s) for s in range(11)] == [0, 0.5, 1, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8,
                                              2 / 8, 1 / 8, 0]  # fmt: skip
    assert linear_warmup_decay(0, 4)(0) == 1.0
