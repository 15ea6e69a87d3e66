"""A real trajectory on real MNIST, through the command line, on this CPU."""

from __future__ import annotations

import json

from archdal.cli import main


def test_mnist_margin_trajectory_reaches_mnist_accuracy(data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ARCHDAL_DATA", str(data_dir))
    out = tmp_path / "mnist-margin"
    code = main([
        "run", "--dataset", "mnist", "--arch", "resnet18", "--width", "0.125",
        "--strategy", "margin", "--seed", "0", "--init-size", "100", "--acq-size", "100",
        "--rounds", "2", "--pool-size", "2000", "--val-fraction", "0.01",
        "--max-epochs", "50", "--patience", "10", "--device", "cpu", "--out", str(out),
    ])  # fmt: skip
    assert code == 0
    records = [json.loads(x) for x in (out / "rounds.jsonl").read_text().splitlines()]
    assert [r["n_labeled"] for r in records] == [100, 200, 300]
    # Supervised from scratch, 300 MNIST labels: low 90s (measured 92.2% for this config).
    assert records[-1]["test_acc"] > 0.88
    assert records[-1]["test_acc"] > records[0]["test_acc"] + 0.1
    assert "final test accuracy" in capsys.readouterr().out
