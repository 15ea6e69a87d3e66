"""One writer per run folder and experiment, a rounds file that matches its checkpoint, and a
full disk said in one line with what is safe (issue: correctness and integrity, part 4)."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from archdal import cli, loop
from archdal.io import LOCK_FILE, FolderLock
from archdal.loop import run, strip_timing
from archdal.sweep.cli import focus1_main

from .conftest import REPO, tiny_config

CPU = loop.Runtime(device="cpu")
ARGS = ["run", "--dataset", "digits", "--arch", "resnet18", "--width", "0.125",
        "--init-size", "20", "--acq-size", "10", "--pool-size", "300", "--max-epochs", "3",
        "--patience", "2", "--batch-size", "32", "--device", "cpu", "--quiet"]  # fmt: skip


def _start(out, *extra):
    cmd = [sys.executable, "-m", "archdal", *ARGS, "--out", str(out), *extra]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip


def _records(out):
    return strip_timing([json.loads(x) for x in (out / "rounds.jsonl").read_text().splitlines()])


def test_a_second_process_on_a_running_out_is_refused(tmp_path):
    out = tmp_path / "run"
    first = _start(out, "--strategy", "margin", "--rounds", "8")
    while not (out / "checkpoint.pt").exists():
        assert first.poll() is None, first.stderr.read()
        time.sleep(0.05)
    first.send_signal(signal.SIGSTOP)  # it holds the lock while the second starts, however fast
    try:
        second = _start(out, "--strategy", "margin", "--rounds", "8")  # the same run, twice
        _, err = second.communicate(timeout=120)
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode == 2 and err.count("\n") == 1, err
    assert f"--out {out} is in use by process {first.pid} on" in err
    assert first.wait(timeout=300) == 0
    reference = tmp_path / "reference"
    assert _start(reference, "--strategy", "margin", "--rounds", "8").wait(timeout=300) == 0
    assert _records(out) == _records(reference)


def test_two_runs_started_together_leave_one_consistent_folder(tmp_path):
    out = tmp_path / "run"
    procs = {s: _start(out, "--strategy", s, "--rounds", "2") for s in ("margin", "entropy")}
    results = {s: (p.wait(timeout=300), p.stderr.read()) for s, p in procs.items()}
    codes = sorted(code for code, _ in results.values())
    assert codes == [0, 2], results
    winner = next(s for s, (code, _) in results.items() if code == 0)
    loser_err = next(err for code, err in results.values() if code == 2)
    assert loser_err.count("\n") == 1 and str(out) in loser_err, loser_err
    assert json.loads((out / "config.json").read_text())["strategy"] == winner
    reference = tmp_path / "reference"
    assert _start(reference, "--strategy", winner, "--rounds", "2").wait(timeout=300) == 0
    assert _records(out) == _records(reference)


def test_a_killed_holder_does_not_block_the_rerun(tmp_path, tiny_data):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from archdal.io import FolderLock; "
        f"FolderLock(__import__('pathlib').Path({str(out)!r}), '--out').acquire(); "
        "print('held', flush=True); time.sleep(60)")], stdout=subprocess.PIPE, text=True,
        cwd=REPO)  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(loop.ConfigError, match=f"is in use by process {holder.pid}"):
        run(tiny_config(rounds=1), out, CPU, progress=None, data=tiny_data)
    assert [p.name for p in out.iterdir()] == [LOCK_FILE]  # nothing written
    holder.kill()
    holder.wait()
    records = run(tiny_config(rounds=1), out, CPU, progress=None, data=tiny_data)
    assert len(records) == 2


def test_a_refused_run_leaves_no_folder(tmp_path, tiny_data, monkeypatch):
    out = tmp_path / "fresh"

    def unreadable(path):
        raise loop.DataError("checkpoint unreadable")

    monkeypatch.setattr(loop, "_read_checkpoint", unreadable)
    with pytest.raises(loop.DataError):
        run(tiny_config(rounds=1), out, CPU, progress=None, data=tiny_data)
    assert not out.exists()


@pytest.mark.parametrize("damage", ["cut", "missing"])  # missing: killed between the two writes
def test_a_cut_rounds_file_is_rewritten_from_the_checkpoint(tmp_path, tiny_data, damage):
    config = tiny_config(rounds=2)
    run(config, tmp_path, CPU, progress=None, data=tiny_data)
    whole = (tmp_path / "rounds.jsonl").read_text()
    if damage == "cut":
        (tmp_path / "rounds.jsonl").write_text(whole[:50])
    else:
        (tmp_path / "rounds.jsonl").unlink()
    lines = []
    run(config, tmp_path, CPU, progress=lines.append, data=tiny_data)
    assert "already complete" in lines[0]
    assert (tmp_path / "rounds.jsonl").read_text() == whole


def test_a_full_disk_is_one_line_saying_what_is_safe(tmp_path, capsys, monkeypatch):
    out, reference = tmp_path / "run", tmp_path / "reference"
    argv = [*ARGS, "--strategy", "margin", "--rounds", "2"]
    assert cli.main([*argv, "--out", str(reference)]) == 0
    real, calls = loop.atomic_write, []

    def full_disk(path, write, mode="w"):
        calls.append(path.name)
        if path.name == "checkpoint.pt" and calls.count("checkpoint.pt") == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, write, mode)

    monkeypatch.setattr(loop, "atomic_write", full_disk)
    capsys.readouterr()
    assert cli.main([*argv, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"could not write {out / 'checkpoint.pt'} (No space left on device)" in err
    assert "the checkpoint holds rounds 0-0; rerunning the same command resumes at round 1" in err
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.setattr(loop, "atomic_write", real)
    assert cli.main([*argv, "--out", str(out)]) == 0
    assert _records(out) == _records(reference)


def test_a_second_sweep_driver_is_refused(tmp_path, capsys):
    with FolderLock(tmp_path / "focus1-smoke", "--name"):
        code = focus1_main(["--storage", str(tmp_path), "--no-report"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert f"--name {tmp_path / 'focus1-smoke'} is in use by process {os.getpid()}" in err
    assert sorted(p.name for p in (tmp_path / "focus1-smoke").iterdir()) == [LOCK_FILE]
