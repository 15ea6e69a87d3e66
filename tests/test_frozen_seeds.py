"""benchmarks/frozen_seeds.py: rows keyed by their --set settings, bad settings refused."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

PATH = Path(__file__).parents[1] / "benchmarks" / "frozen_seeds.py"


@pytest.fixture(autouse=True)
def _threads_back():
    """main() runs on one torch thread; the test session's count comes back after."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _module():
    spec = importlib.util.spec_from_file_location("frozen_seeds", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ARGS = ["--preset", "frozen-images", "--datasets", "digits", "--encoders", "pixels",
        "--strategies", "random", "--seeds", "0", "--at", "100", "200",
        "--set", "rounds=1", "--set", "pool_size=400",
        "--set", "encoder_options.dims=16"]  # fmt: skip


def test_rows_of_other_settings_are_kept_apart(tmp_path, capsys):
    frozen_seeds = _module()
    rows = tmp_path / "rows.jsonl"
    frozen_seeds.main([*ARGS, "--cache-dir", str(tmp_path), "--rows", str(rows)])
    frozen_seeds.main([*ARGS, "--set", "head=mlp", "--cache-dir", str(tmp_path),
                       "--rows", str(rows)])  # fmt: skip
    written = [json.loads(line) for line in rows.read_text().splitlines()]
    assert [r["settings"].count("head=mlp") for r in written] == [0, 1]
    assert all(set(r["test_acc"]) == {"100", "200"} for r in written)
    assert written[0]["test_acc"] != written[1]["test_acc"]
    frozen_seeds.main([*ARGS, "--set", "head=mlp", "--cache-dir", str(tmp_path),
                       "--rows", str(rows)])  # fmt: skip
    assert len(rows.read_text().splitlines()) == 2  # the finished one is skipped
    table = capsys.readouterr().out.splitlines()
    assert sum("| digits | pixels | random | random |" in line for line in table[-3:]) == 2


def test_an_unknown_setting_is_one_line_and_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        _module().main([*ARGS, "--set", "heads=mlp", "--rows", str(tmp_path / "r.jsonl")])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("frozen_seeds.py: --set 'heads=mlp': expected KEY=VALUE")
    assert err.count("\n") == 1
    assert not (tmp_path / "r.jsonl").exists()
