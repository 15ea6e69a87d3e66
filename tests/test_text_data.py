"""Text datasets: published local layouts, the hub path, a researcher's CSV, tokenization and
its cache, the seeded held-out test split, and one-line errors before any work."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import archdal.textdata as td
from archdal import CsvOptions, DataError, RunConfig, Runtime, load_data
from archdal.cli import main

from .text_support import tiny_text_config


@pytest.fixture(autouse=True)
def _offline(monkeypatch, data_dir):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("ARCHDAL_DATA", str(data_dir))


def _runtime(cache, **kw):
    return Runtime(device="cpu", cache_dir=cache, **kw)


def _tokenizer(model_dir):
    return td.load_tokenizer(str(model_dir))


def test_banking77_official_split_labels_and_tokens(tiny_models, token_cache):
    config = tiny_text_config(tiny_models["bert"])
    data = load_data(config, _runtime(token_cache))
    assert (len(data.train_y), len(data.test_y), data.num_classes) == (10003, 3080, 77)
    assert not data.held_out_test
    # categories.json order: train.csv starts with card_arrival (0) rows
    assert data.train_y[:3].tolist() == [0, 0, 0]
    assert torch.bincount(data.test_y, minlength=77).tolist() == [40] * 77  # 40 per intent
    tok = _tokenizer(tiny_models["bert"])
    first = data.train_x[0, 0]
    assert tok.decode(first[first != tok.pad_token_id]) == (
        "[CLS] i am still waiting on my card? [SEP]"
    )
    assert data.train_x.dtype == torch.int32 and data.train_x.shape[1:] == (2, 24)
    assert int(data.train_x[:, 1].max()) == 0  # single texts: one segment


def test_tokenized_once_per_dataset_and_tokenizer(tiny_models, tmp_path, monkeypatch):
    calls = []
    real = td._tokenize
    monkeypatch.setattr(td, "_tokenize", lambda *a: calls.append(1) or real(*a))
    bert = tiny_text_config(tiny_models["bert"])
    first = load_data(bert, _runtime(tmp_path))
    assert len(calls) == 2  # train and test
    again = load_data(bert, _runtime(tmp_path))
    assert len(calls) == 2 and torch.equal(first.train_x, again.train_x)
    assert [p.name.split("-")[0] for p in (tmp_path / "tokens").iterdir()] == ["banking77"]
    load_data(dataclasses.replace(bert, max_length=12), _runtime(tmp_path))  # other length
    load_data(tiny_text_config(tiny_models["roberta"]), _runtime(tmp_path))  # other tokenizer
    assert len(calls) == 6 and len(list((tmp_path / "tokens").iterdir())) == 3
    short = load_data(dataclasses.replace(bert, max_length=12), _runtime(tmp_path))
    assert short.train_x.shape[-1] == 12 and len(calls) == 6


def test_ag_news_test_only_gets_a_seeded_stratified_held_out_split(
    tiny_models, token_cache, data_dir
):
    config = tiny_text_config(tiny_models["bert"], dataset="ag_news", test_fraction=0.2)
    data = load_data(config, _runtime(token_cache))
    assert data.held_out_test and data.num_classes == 4
    assert (len(data.train_y), len(data.test_y)) == (6080, 1520)
    assert torch.bincount(data.test_y).tolist() == [380] * 4  # 20% of 1,900 per class
    same = load_data(config, _runtime(token_cache))
    assert torch.equal(same.test_x, data.test_x) and torch.equal(same.train_y, data.train_y)
    other = load_data(dataclasses.replace(config, seed=1), _runtime(token_cache))
    assert not torch.equal(other.test_x, data.test_x)
    # AG News: class 3 ("Business") is the first row of the published test.csv
    raw = td.read_local("ag_news", data_dir)
    assert raw.train is None and raw.test.labels[0] == 2
    assert raw.test.texts[0].startswith("Fears for T N pension after talks Unions representing")


def test_qnli_sentence_pairs_for_bert_and_roberta(tiny_models, token_cache, data_dir):
    raw = td.read_local("qnli", data_dir)
    assert raw.train is None and len(raw.test.texts) == len(raw.test.pairs) == 5463
    assert raw.test.labels[:2].tolist() == [0, 1]  # entailment, not_entailment
    for arch, pair_sep in (("bert", "[SEP]"), ("roberta", "</s></s>")):
        config = tiny_text_config(tiny_models[arch], dataset="qnli", max_length=32)
        data = load_data(config, _runtime(token_cache))
        assert data.held_out_test and len(data.train_y) + len(data.test_y) == 5463
        tok = _tokenizer(tiny_models[arch])
        row = data.train_x[0]
        text = tok.decode(row[0][row[0] != tok.pad_token_id])
        assert text.count(pair_sep) >= 1 and text.count(tok.sep_token) >= 2, text
        types = data.train_x[:, 1]
        if arch == "bert":  # the second sentence is segment 1, up to its [SEP]
            assert (types == 1).any(dim=1).all()
        else:
            assert int(types.max()) == 0


def test_dbpedia_published_layout(tmp_path, tiny_models):
    folder = tmp_path / "dbpedia"
    folder.mkdir()
    (folder / "train.csv").write_text(
        '1,"E. D. Abbott Ltd"," Abbott of Farnham E D Abbott Limited was a British coachbuilder."\n'
        '14,"The Hobbit","A children\'s fantasy novel, by ""Tolkien""."\n'
        '9,"Kijowo"," Kijowo is a village in Poland."\n'
    )
    (folder / "test.csv").write_text('10,"Mola","A fish, large."\n2,"MIT","A university."\n')
    raw = td.read_local("dbpedia", tmp_path)
    assert raw.train.labels.tolist() == [0, 13, 8] and raw.test.labels.tolist() == [9, 1]
    assert raw.train.texts[1] == 'The Hobbit A children\'s fantasy novel, by "Tolkien".'
    assert len(raw.class_names) == 14 and raw.class_names[13] == "WrittenWork"
    config = RunConfig.for_dataset("dbpedia", model_path=str(tiny_models["bert"]), init_size=2)
    data = load_data(config, _runtime(tmp_path / "cache", data_dir=tmp_path))
    assert not data.held_out_test and data.num_classes == 14 and len(data.test_y) == 2
    (folder / "test.csv").write_text('15,"X","out of range"\n')
    with pytest.raises(DataError, match=r"test.csv: class numbers must be 1..14, found 15"):
        td.read_local("dbpedia", tmp_path)


def test_hub_path_maps_columns_and_splits(monkeypatch):
    import datasets

    def fake(hub_id, subset=None):
        assert (hub_id, subset) == ("nyu-mll/glue", "qnli")
        labels = datasets.ClassLabel(names=["entailment", "not_entailment"])
        text = datasets.Value("string")
        feats = datasets.Features({"question": text, "sentence": text, "label": labels})

        def split(n):
            q = [f"q{i}" for i in range(n)]
            return datasets.Dataset.from_dict(
                {"question": q, "sentence": [f"s{i}" for i in range(n)], "label": [1] * n}, feats
            )

        return datasets.DatasetDict(train=split(3), validation=split(2), test=split(1))

    monkeypatch.setattr(datasets, "load_dataset", fake)
    raw = td.read_hub("qnli")
    assert raw.train.texts == ["q0", "q1", "q2"] and raw.train.pairs == ["s0", "s1", "s2"]
    assert raw.test.texts == ["q0", "q1"] and raw.test.labels.tolist() == [1, 1]
    assert raw.class_names == ("entailment", "not_entailment")


def _write(path, text):
    path.write_text(text)
    return str(path)


def test_own_csv_with_pairs_and_string_labels(tmp_path, tiny_models):
    rows = "".join(f"question {i},answer {i % 3},{'yes' if i % 2 else 'no'}\n" for i in range(40))
    path = _write(tmp_path / "mine.csv", "q,a,judgement\n" + rows)
    csv_options = CsvOptions(path=path, text_column="q", pair_column="a", label_column="judgement")
    config = tiny_text_config(tiny_models["bert"], dataset="csv", csv_options=csv_options,
                              test_fraction=0.25)  # fmt: skip
    data = load_data(config, _runtime(tmp_path / "cache"))
    assert data.num_classes == 2 and data.held_out_test
    assert torch.bincount(data.test_y).tolist() == [5, 5] and len(data.train_y) == 30
    assert (data.train_x[:, 1] == 1).any(dim=1).all()  # pairs: a second segment in every row
    tsv = _write(tmp_path / "mine.tsv", "text\tlabel\n" + "".join(
        f"t {i}\t{i % 3 * 10}\n" for i in range(12)))  # fmt: skip
    raw = td.read_csv_corpus(RunConfig(dataset="csv", arch="bert", csv_options=CsvOptions(tsv)))
    assert raw.class_names == ("0", "10", "20")  # integer labels in numeric order
    assert raw.test.labels.tolist() == [0, 1, 2] * 4


@pytest.mark.parametrize(
    "content,options,error",
    [
        ("text,label\na,x\nb,y\n", {"label_column": "intent"},
         "column 'intent' not in {path}; its columns are: text, label"),
        ("text,label\na,x\nb,y\n", {"pair_column": "second"}, "column 'second' not in {path}"),
        ("text,label\na,same\nb,same\nc,same\n", {},
         "{path} has one class ('same' in column 'label'); a classifier needs at least two"),
        ("", {}, "{path} is empty; it needs a header and one row per example"),
        ("text,label\n", {}, "{path} has a header but no rows"),
        (None, {}, "csv file not found: {path}"),
    ],
)  # fmt: skip
def test_own_csv_errors_are_one_line_before_any_work(
    tmp_path, capsys, tiny_models, content, options, error
):
    path = tmp_path / "corpus.csv"
    if content is not None:
        path.write_text(content)
    flags = {"--text-column": "text", "--label-column": "label", **{
        f"--{k.replace('_', '-')}": v for k, v in options.items()}}  # fmt: skip
    out = tmp_path / "run"
    argv = ["run", "--dataset", "csv", "--csv-path", str(path), "--arch", "bert",
            "--model-path", str(tiny_models["bert"]), "--device", "cpu", "--out", str(out),
            "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    for flag, value in flags.items():
        argv += [flag, value]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and error.format(path=path) in err, err
    assert not out.exists() and not (tmp_path / "cache").exists()


def test_missing_files_and_models_are_named(tmp_path, tiny_models, capsys):
    config = tiny_text_config(tiny_models["bert"])
    with pytest.raises(DataError, match=r"banking77 files missing: neither .*nowhere/banking77"):
        load_data(config, _runtime(tmp_path, data_dir=tmp_path / "nowhere"))
    with pytest.raises(DataError, match=r"no tokenizer at '.*no-model'"):
        load_data(dataclasses.replace(config, model_path=str(tmp_path / "no-model")),
                  _runtime(tmp_path))  # fmt: skip
    out = tmp_path / "run"
    base = ["run", "--dataset", "banking77", "--device", "cpu", "--out", str(out),
            "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    assert main([*base, "--arch", "roberta", "--model-path", str(tiny_models["bert"])]) == 2
    assert "is a 'bert' model, but arch is 'roberta'" in capsys.readouterr().err
    assert main([*base, "--arch", "vgg11"]) == 2
    err = capsys.readouterr().err
    assert "arch 'vgg11' does not fit the text dataset 'banking77'; choose from: bert" in err
    for flag in ("--augment", "--pretrain-augment"):
        assert main([*base, flag]) == 2
        assert "augment and pretrain-augment (crops of images) are for images, not text" in (
            capsys.readouterr().err
        )
    assert not out.exists()


def test_config_round_trip_and_old_runs(tiny_models):
    config = tiny_text_config(tiny_models["roberta"], dataset="csv",
                              csv_options=CsvOptions(path="a.csv", pair_column="b"))  # fmt: skip
    assert RunConfig.from_dict(json.loads(config.to_json())) == config
    old = RunConfig().to_dict()
    for key in ("max_length", "model_path", "warmup_fraction", "test_fraction", "csv_options"):
        old.pop(key)
    old["pretrain_options"].pop("lr")
    assert RunConfig.from_dict(old) == RunConfig()  # configs saved before the text fields
