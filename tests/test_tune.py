"""The Ray Tune layer end to end: real Ray clusters on this machine, real data, real kills.

Every sweep runs `sweeps/focus1.py` in a subprocess, as a user would, so each test gets its
own Ray and a killed process cannot take pytest with it.
"""

from __future__ import annotations

import copy
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from archdal import RunConfig, Runtime, Trajectory
from archdal.analysis.results import _read_results, load_rounds, trial_dirs
from archdal.sweep.tune import digest

from .conftest import REPO

FOCUS1 = [sys.executable, str(REPO / "sweeps" / "focus1.py")]
FOCUS2 = [sys.executable, str(REPO / "sweeps" / "focus2.py")]
HPARAMS = [sys.executable, str(REPO / "sweeps" / "tune_hparams.py")]
RAY = str(Path(sys.executable).parent / "ray")
# Small enough for seconds per round on one CPU thread, real enough to learn.
TINY = [
    *("--set", "width=0.125", "--set", "max_epochs=5", "--set", "patience=3"),
    *("--init-sizes", "20", "--acq-sizes", "20"),
]

pytestmark = pytest.mark.slow


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    env.update(extra)
    return env


def run_sweep(storage: Path, *argv: str, script=FOCUS1, timeout: int = 300, **env: str):
    done = subprocess.run(
        [*script, "--storage", str(storage), *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(**env),
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def start_sweep(storage: Path, *argv: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*FOCUS1, "--storage", str(storage), *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_env(**env),
        cwd=REPO,
        start_new_session=True,  # its own process group: the driver and the Ray it started
    )


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 240.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            raise AssertionError(f"the sweep ended (exit {proc.returncode}) before the event")
        time.sleep(0.2)
    raise AssertionError("timed out waiting for the sweep")


def trial_rows(experiment: Path) -> dict[str, list[dict]]:
    return {t.name: _read_results(t / "result.json") for t in trial_dirs(experiment)}


def reference_records(trial: Path) -> list[dict]:
    """The same trial's config run in this process without Ray, on one thread as the trial."""
    return run_alone(RunConfig.from_dict(json.loads((trial / "params.json").read_text())["run"]))


def run_alone(config: RunConfig) -> list[dict]:
    """A trajectory's records from this process without Ray, on one thread as a trial."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trajectory = Trajectory(config, Runtime(device="cpu"))
        while not trajectory.done:
            trajectory.run_round()
    finally:
        torch.set_num_threads(threads)
    return trajectory.records


def assert_same_rounds(rows, reference) -> None:
    assert [r["round"] for r in rows] == [r["round"] for r in reference]
    for row, ref in zip(rows, reference, strict=True):
        assert row["n_labeled"] == ref["n_labeled"]
        assert row["test_acc"] == ref["test_acc"]
        assert row["val_acc"] == ref["val_acc"]
        assert row["acquired_digest"] == digest(torch.tensor(ref["acquired"], dtype=torch.long))


def overlap(rows_by_trial: dict[str, list[dict]]) -> float:
    """Seconds during which every trial was running, from the trials' own timestamps."""
    starts = [rows[0]["round_start"] for rows in rows_by_trial.values()]
    ends = [rows[-1]["round_end"] for rows in rows_by_trial.values()]
    return min(ends) - max(starts)


def test_local_sweep_on_mnist_reports_every_round_once(tmp_path, data_dir):
    storage = tmp_path / "results"
    done = run_sweep(
        storage,
        *("--datasets", "mnist", "--strategies", "random", "badge", "--num-cpus", "2"),
        *("--set", "pool_size=300", "--set", "val_fraction=0.01", "--set", "rounds=2"),
        *("--data-dir", str(data_dir)),
        *TINY,
    )
    experiment = storage / "focus1-smoke"
    assert f"2/2 trials finished; results in {experiment}" in done.stdout
    table = load_rounds(experiment)
    assert len(table) == 2 * 3
    assert sorted(table.groupby("strategy")["round"].apply(list).tolist()) == [[0, 1, 2]] * 2
    assert table["n_labeled"].tolist() == [20, 40, 60] * 2
    assert (table["timesteps_total"] == table["n_labeled"]).all()
    assert (table["dataset"] == "mnist").all() and set(table["device"]) == {"cpu"}
    # Paired: one split, and round 0 (same initial pool, same seed) is the same model.
    assert table["split_digest"].nunique() == 1
    first = table[table["round"] == 0]
    assert first["test_acc"].nunique() == 1 and first["test_acc"].iloc[0] > 0.15
    assert table.groupby("strategy")["acquired_digest"].apply(lambda d: d.iloc[0]).nunique() == 2

    # TensorBoard: test accuracy against the number of labels, per trial.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for trial in trial_dirs(experiment):
        events = EventAccumulator(str(trial))
        events.Reload()
        scalars = events.Scalars("ray/tune/test_acc")
        assert [s.step for s in scalars] == [20, 40, 60]
        rows = table[table["trial"] == trial.name]
        assert [round(s.value, 5) for s in scalars] == [round(v, 5) for v in rows["test_acc"]]

    # The sweep ends with the analysis report of what it ran.
    assert f"focus1: report {experiment / 'report' / 'report.html'}" in done.stdout
    check_report(experiment / "report", table)
    # A replayed round (a trial restored from an older snapshot reports it again) is kept
    # once, the last report winning; the report command reads the same table.
    trial = trial_dirs(experiment)[0]
    lines = (trial / "result.json").read_text().splitlines()
    replay = json.loads(lines[1]) | {"test_acc": 0.5}
    with open(trial / "result.json", "a") as fh:
        fh.write(json.dumps(replay) + "\n")
    replayed = load_rounds(experiment)
    assert len(replayed) == len(table)
    row = replayed[(replayed["trial"] == trial.name) & (replayed["round"] == 1)]
    assert row["test_acc"].tolist() == [0.5]
    report = subprocess.run(
        [sys.executable, str(REPO / "analysis" / "report.py"), str(experiment),
         "--out", str(tmp_path / "report")],
        capture_output=True, text=True, env=_env(), cwd=REPO,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    check_report(tmp_path / "report", replayed)


def check_report(out: Path, table) -> None:
    """summary.csv has a row per strategy, every figure is a real PNG (and PDF), and the
    HTML embeds and links each of them."""
    import pandas as pd

    summary = pd.read_csv(out / "summary.csv")
    assert sorted(summary["strategy"]) == sorted(table["strategy"].unique())
    final = table[table["round"] == table["round"].max()].groupby("strategy")["test_acc"].mean()
    assert summary.set_index("strategy")["final_acc_mean"].to_dict() == pytest.approx(
        final.to_dict()
    )
    assert summary.set_index("strategy").loc["random", "gain_pp_mean"] == 0
    page = (out / "report.html").read_text()
    pngs = sorted((out / "figures").glob("*.png"))
    assert {p.stem for p in pngs} >= {"labeling_efficiency", "accuracy_gain", "learning_curves",
                                      "strategy_ranks", "spread_across_strategies"}  # fmt: skip
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
        assert png.with_suffix(".pdf").stat().st_size > 1000
        assert f"figures/{png.name}" in page
    assert page.count("data:image/png;base64,") == len(pngs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.machine_wide_ray
def test_address_auto_on_a_two_node_cluster(tmp_path):
    port = _free_port()
    # Token auth, as `ray start` uses by default: one mode and one token for every node and
    # the driver (given here, so no ~/.ray/auth_token is needed or written).
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env = _env(**auth)
    subprocess.run([RAY, "stop", "--force"], capture_output=True, env=env)
    try:
        subprocess.run(
            [RAY, "start", "--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false"],
            check=True,
            capture_output=True,
            env=env,
        )
        subprocess.run(
            [RAY, "start", f"--address=127.0.0.1:{port}", "--num-cpus=1"],
            check=True,
            capture_output=True,
            env=env,
        )
        storage = tmp_path / "results"
        done = run_sweep(
            storage, "--address", "auto", "--strategies", "random", "margin", *TINY, **auth
        )
        assert "2/2 trials finished" in done.stdout
        rows = trial_rows(storage / "focus1-smoke")
        assert [len(r) for r in rows.values()] == [3, 3]
        # One CPU per node and per trial: running at the same time means on both nodes.
        assert overlap(rows) > 0
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True, env=env)


def test_quarter_gpu_trials_share_one_declared_gpu(tmp_path):
    storage = tmp_path / "results"
    run_sweep(
        storage,
        *("--num-cpus", "2", "--num-gpus", "1", "--gpus-per-trial", "0.25"),
        *("--cpus-per-trial", "0.5", "--strategies", "random", "margin", "entropy", "badge"),
        *TINY,
    )
    rows = trial_rows(storage / "focus1-smoke")
    assert len(rows) == 4 and all(len(r) == 3 for r in rows.values())
    assert overlap(rows) > 0, "the four 0.25-GPU trials did not run at the same time"
    expected = "cuda" if torch.cuda.is_available() else "cpu"  # no GPU here: CPU fallback
    assert {r["device"] for trial in rows.values() for r in trial} == {expected}


def kill_worker_when(storage: Path, argv: list[str], report) -> dict:
    """Start a sweep, SIGKILL the worker of the report `report()` returns once it returns
    one, and wait for the sweep to finish anyway; returns that report."""
    proc = start_sweep(storage, *argv)
    try:
        victim = wait_for(report, proc)
        os.kill(victim["pid"], signal.SIGKILL)
        assert proc.wait(timeout=300) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return victim


def test_a_killed_worker_resumes_its_trajectory_from_the_last_round(tmp_path):
    storage = tmp_path / "results"
    experiment = storage / "focus1-smoke"

    def first_report():
        rows = (
            [r for t in trial_rows(experiment).values() for r in t] if experiment.exists() else []
        )
        return rows[0] if rows and not rows[-1]["final"] else None

    argv = ["--strategies", "badge", "--set", "rounds=4", "--num-cpus", "2", *TINY]
    victim = kill_worker_when(storage, argv, first_report)
    (trial,) = trial_dirs(experiment)
    rows = _read_results(trial / "result.json")
    pids = [r["pid"] for r in rows]
    assert victim["pid"] in pids and len(set(pids)) == 2, "the trial was not restarted"
    restarted = pids.index(next(p for p in pids if p != victim["pid"]))
    # the round the checkpoint holds is reported again, then the trajectory goes on from it
    replay, resumed = rows[restarted], rows[restarted + 1]
    assert replay["replayed"] and replay["round"] >= victim["round"]
    assert resumed["round"] == replay["round"] + 1, "not resumed"
    assert_same_rounds(load_rounds(experiment).to_dict("records"), reference_records(trial))


@pytest.mark.machine_wide_ray
def test_a_killed_driver_resumes_without_rerunning_finished_trials(tmp_path):
    storage = tmp_path / "results"
    experiment = storage / "focus1-smoke"
    argv = ["--strategies", "random", "margin", "badge", "--max-concurrent", "1", *TINY]
    proc = start_sweep(storage, *argv, "--num-cpus", "2", TUNE_GLOBAL_CHECKPOINT_S="0.5")
    try:

        def one_finished_one_started():
            if not experiment.exists():
                return None
            rows = trial_rows(experiment)
            finished = [name for name, r in rows.items() if r and r[-1]["final"]]
            started = [name for name, r in rows.items() if r and not r[-1]["final"]]
            return (finished, started) if finished and started else None

        finished, _ = wait_for(one_finished_one_started, proc)
        time.sleep(1.0)  # let the experiment snapshot see the finished trial
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    subprocess.run([RAY, "stop", "--force"], capture_output=True, env=_env())
    before = {name: (experiment / name / "result.json").read_bytes() for name in finished}
    incomplete = [n for n, r in trial_rows(experiment).items() if not (r and r[-1]["final"])]
    assert incomplete, "the driver died too late: nothing was left to resume"

    done = run_sweep(storage, *argv, "--num-cpus", "2", "--resume")
    assert "3/3 trials finished" in done.stdout
    for name, data in before.items():
        assert (experiment / name / "result.json").read_bytes() == data, f"{name} ran again"
    table = load_rounds(experiment)
    assert table.groupby("trial")["round"].apply(list).tolist() == [[0, 1, 2]] * 3
    other = subprocess.run(
        [*FOCUS1, "--storage", str(storage), "--resume", "--strategies", "random", *TINY],
        capture_output=True,
        text=True,
        env=_env(),
    )
    assert other.returncode == 2 and "started with a different grid" in other.stderr


def test_tuned_hyperparameters_feed_the_sweep(tmp_path):
    storage = tmp_path / "results"
    out = tmp_path / "hparams.json"
    run_sweep(
        storage,
        *("--num-samples", "3", "--num-cpus", "2", "--out", str(out), *TINY),
        *("--lr-range", "0.01", "0.1", "--batch-sizes", "16", "32"),
        script=HPARAMS,
    )
    from archdal.sweep.hparams import load_hparams

    best = load_hparams(out)["digits/resnet18"]
    assert 0.01 <= best["lr"] <= 0.1 and best["batch_size"] in (16, 32)
    assert best["trials"] == 3 and 0 < best["val_acc"] <= 1
    dry = run_sweep(storage, "--hparams", str(out), "--dry-run", *TINY)
    assert f"lr={best['lr']}" in dry.stdout and f"batch_size={best['batch_size']}" in dry.stdout


def test_cluster_yaml_passes_rays_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    validate_config(prepare_config(copy.deepcopy(config)))  # what `ray up` runs first
    types = config["available_node_types"]
    assert types[config["head_node_type"]]["resources"] == {"CPU": 0}  # no trials on the head
    workers = [t for name, t in types.items() if name != config["head_node_type"]]
    assert all(t["resources"].get("GPU", 0) >= 1 and t["min_workers"] == 0 for t in workers)
    broken = copy.deepcopy(config)
    broken["available_node_types"]["head"]["cpus"] = 4
    with pytest.raises(Exception, match="Additional properties"):
        validate_config(prepare_config(broken))


def test_text_trials_run_through_the_same_sweep(tmp_path, data_dir):
    from .text_support import banking77_texts, save_tiny_model

    model = save_tiny_model("distilbert", banking77_texts(data_dir), tmp_path / "distilbert")
    storage = tmp_path / "results"
    run_sweep(
        storage,
        *("--preset", "text-small", "--archs", "distilbert", "--strategies", "random", "badge"),
        *("--set", f"model_path={model}", "--set", "pool_size=200", "--set", "rounds=1"),
        *("--set", "max_length=24", "--set", "val_fraction=0.03", "--set", "max_epochs=2"),
        *("--set", "lr=0.001", "--init-sizes", "30", "--acq-sizes", "10", "--num-cpus", "2"),
        *("--data-dir", str(data_dir), "--cache-dir", str(tmp_path / "cache")),
        HF_HUB_OFFLINE="1",
    )
    table = load_rounds(storage / "focus1-text-small")
    assert len(table) == 2 * 2
    assert set(table["dataset"]) == {"banking77"} and set(table["arch"]) == {"distilbert"}
    assert table["n_labeled"].tolist() == [30, 40] * 2
    assert table["split_digest"].nunique() == 1
    assert table[table["round"] == 0]["test_acc"].nunique() == 1


def test_focus2_sweep_feeds_stage_one_into_the_al_trials(tmp_path, data_dir):
    storage = tmp_path / "results"
    argv = [
        *("--datasets", "mnist", "--data-dir", str(data_dir), "--num-cpus", "2"),
        *("--archs", "cnn1", "depth_dropout", "--arch-modes", "fixed", "spo", "upo"),
        *("--set", "val_fraction=0.01", "--set", "max_epochs=10"),
    ]
    done = run_sweep(storage, *argv, script=FOCUS2)
    assert "focus2: 2/2 architecture optimizations finished" in done.stdout
    assert "focus2: 6/6 trials finished" in done.stdout
    stage = storage / "focus2-smoke-archopt"
    files = sorted((stage / "results").glob("*.pt"))
    assert [f.name.split("-s0")[0] for f in files] == ["mnist-depth_dropout-spo",
                                                       "mnist-depth_dropout-upo"]  # fmt: skip
    optimized = {
        row["arch_file"]: row["architecture"] for row in load_rounds(stage).to_dict("records")
    }
    table = load_rounds(storage / "focus2-smoke")
    assert len(table) == 6 * 2
    for row in table[table["arch_mode"] != "fixed"].to_dict("records"):
        assert row["arch_source"] in optimized
        assert row["architecture"] == optimized[row["arch_source"]]  # loaded, then kept
    assert set(table[table["arch_mode"] == "fixed"]["arch_source"]) == {""}
    report = storage / "focus2-smoke" / "report"
    assert (report / "figures" / "architecture_evolution.png").stat().st_size > 5000
    summary = pd_read(report / "summary.csv")
    assert set(summary["arch_mode"]) == {"fixed", "spo", "upo"}

    again = run_sweep(storage, *argv, "--resume", script=FOCUS2)
    assert "2/2 architecture optimizations finished" in again.stdout
    assert [f.stat().st_mtime for f in files] == [f.stat().st_mtime for f in sorted(
        (stage / "results").glob("*.pt"))]  # fmt: skip
    assert len(load_rounds(storage / "focus2-smoke")) == 6 * 2


def pd_read(path: Path):
    import pandas as pd

    return pd.read_csv(path)
