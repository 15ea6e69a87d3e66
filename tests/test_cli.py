"""The command line: every bad input is one line, exit code 2, and nothing written."""

from __future__ import annotations

import json

import pytest

from archdal.cli import main

BASE = ["run", "--dataset", "digits", "--arch", "resnet18", "--width", "0.125",
        "--init-size", "20", "--acq-size", "10", "--rounds", "1", "--pool-size", "100",
        "--max-epochs", "2", "--patience", "1", "--device", "cpu"]  # fmt: skip


def _fails(capsys, args, pattern, out):
    with pytest.raises(SystemExit) as exc:
        code = main([*args, "--out", str(out)])
        raise SystemExit(code)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert pattern in err, err
    return err


@pytest.mark.parametrize(
    "override,pattern",
    [
        (
            ["--dataset", "imagenet"],
            "invalid choice: 'imagenet' (choose from 'mnist', 'fashion_mnist'",
        ),
        (["--arch", "vgg13"], "invalid choice: 'vgg13'"),
        (["--strategy", "nosuch"], "invalid choice: 'nosuch' (choose from 'random'"),
        (["--acq-size", "0"], "acq-size must be positive, got 0"),
        (["--init-size", "-5"], "init-size must be positive, got -5"),
        (["--width", "0"], "width must be positive, got 0.0"),
        (["--rounds", "-1"], "rounds must be zero or positive, got -1"),
        (["--val-fraction", "1.5"], "val-fraction must be in (0, 1), got 1.5"),
        (
            ["--rounds", "20", "--acq-size", "100"],
            "rounds × acq-size = 20 × 100 = 2000 exceeds the unlabelled pool of 100 examples",
        ),
        (["--init-size", "2000"], "init-size 2000 needs 200 images of class"),
        (
            ["--arch", "bert"],
            "arch 'bert' does not fit the image dataset 'digits'; choose from: vgg11",
        ),
        (["--dataset", "banking77"], "arch 'resnet18' does not fit the text dataset 'banking77'"),
        (["--model-path", "m"], "model-path loads transformer weights; it needs a text dataset"),
        (["--text-column", "t"], "csv options apply to dataset 'csv', not 'digits'"),
        (["--dataset", "csv", "--arch", "bert", "--width", "1"], "dataset 'csv' needs --csv-path"),
        (["--pool-size", "abc"], "argument --pool-size: invalid int value: 'abc'"),
    ],
)
def test_bad_values(capsys, tmp_path, override, pattern):
    out = tmp_path / "run"
    _fails(capsys, [*BASE, *override], pattern, out)
    assert not out.exists()


def test_missing_dataset_files(capsys, tmp_path):
    out = tmp_path / "run"
    args = [*BASE, "--dataset", "mnist", "--data-dir", str(tmp_path / "nowhere")]
    _fails(capsys, args, "MNIST file missing: " + str(tmp_path / "nowhere"), out)
    assert not out.exists()


def test_out_with_another_config(capsys, tmp_path):
    out = tmp_path / "run"
    assert main([*BASE, "--out", str(out), "--quiet"]) == 0
    saved = (out / "rounds.jsonl").read_text()
    _fails(capsys, [*BASE, "--strategy", "margin"], "holds a run with a different config", out)
    assert (out / "rounds.jsonl").read_text() == saved
    assert json.loads((out / "config.json").read_text())["strategy"] == "random"


def test_progress_and_help(capsys, tmp_path):
    assert main([*BASE, "--out", str(tmp_path / "r")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("round 0/1  labeled 20  test ") and "select" in lines[0]
    assert lines[-1].startswith("final test accuracy")
    with pytest.raises(SystemExit) as exc:
        main(["run", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for choice in ("badge", "coreset", "bald", "vgg19", "resnet50", "fashion_mnist", "svhn"):
        assert choice in text


def test_every_flag_reaches_its_config_field(tmp_path):
    from archdal import PretrainConfig, RunConfig
    from archdal.cli import build_parser, configs_from_args

    want = RunConfig(
        dataset="svhn", arch="vgg19", strategy="bald", seed=3, width=0.5, pretrain="unsupervised",
        init_size=50, acq_size=25, rounds=4, pool_size=999, val_fraction=0.2, max_epochs=7,
        patience=3, train_acc_stop=0.9, optimizer="adam", lr=0.2, momentum=0.5,
        weight_decay=0.01, batch_size=16, augment=True, dropout=0.25, mc_samples=5,
        max_length=48, warmup_fraction=0.2, test_fraction=0.3, probcover_delta=0.5,
        pretrain_options=PretrainConfig(clusters=7, epochs=2, max_images=100, lr=0.3),
    )  # fmt: skip
    argv = ["run", "--out", str(tmp_path), "--augment", "--device", "cpu", "--quiet",
            "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    for key, value in want.to_dict().items():
        if key not in ("augment", "pretrain_options", "csv_options", "model_path", "arch_options",
                       "arch_source", "encoder_options") and value is not None:  # fmt: skip
            argv += [f"--{key.replace('_', '-')}", str(value)]
    argv += ["--pretrain-clusters", "7", "--pretrain-epochs", "2", "--pretrain-max-images", "100",
             "--pretrain-lr", "0.3"]  # fmt: skip
    config, runtime = configs_from_args(build_parser().parse_args(argv))
    assert config == want and runtime.device == "cpu" and runtime.quiet
    assert runtime.cache_dir == tmp_path / "cache"


def test_text_flags_and_modality_defaults(tmp_path):
    from archdal import CsvOptions, PretrainConfig, RunConfig
    from archdal.cli import build_parser, configs_from_args
    from archdal.config import TEXT_PROTOCOL

    def parse(*flags):
        args = build_parser().parse_args(["run", "--out", str(tmp_path), *flags])
        return configs_from_args(args)[0]

    image = parse("--dataset", "mnist")
    assert image == RunConfig(dataset="mnist")  # image defaults untouched
    text = parse("--dataset", "banking77")
    assert text == RunConfig.for_dataset("banking77")
    assert {k: getattr(text, k) for k in TEXT_PROTOCOL} == TEXT_PROTOCOL
    assert (text.init_size, text.max_epochs, text.optimizer, text.arch) == (100, 5, "adamw", "bert")
    assert text.pretrain_options == PretrainConfig(lr=2e-5)
    given = parse("--dataset", "csv", "--csv-path", "x.tsv", "--text-column", "q",
                  "--pair-column", "s", "--label-column", "y", "--arch", "roberta", "--lr", "1e-4",
                  "--model-path", "m", "--init-size", "30")  # fmt: skip
    assert given.csv_options == CsvOptions(path="x.tsv", text_column="q", pair_column="s",
                                           label_column="y")  # fmt: skip
    assert (given.arch, given.lr, given.model_path, given.init_size) == ("roberta", 1e-4, "m", 30)
    assert given.max_epochs == 5  # not given: the text protocol


def test_epoch_progress_unless_quiet(capsys, tmp_path):
    """A bar per round: epoch, training and validation accuracy, the time left; --quiet
    prints nothing at all."""
    assert main([*BASE, "--out", str(tmp_path / "quiet"), "--quiet"]) == 0
    assert capsys.readouterr() == ("", "")
    assert main([*BASE, "--out", str(tmp_path / "loud")]) == 0
    err = capsys.readouterr().err
    assert "round 0/1" in err and "2/2" in err and "epoch" in err
    assert "train " in err and "val " in err and "<" in err  # tqdm's elapsed<left
