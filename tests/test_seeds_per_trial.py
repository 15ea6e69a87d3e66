"""Several trajectories a trial (`--seeds-per-trial`): grouping, reading, killing, resuming.

A frozen-encoder trajectory lasts seconds, less than Ray's cost of a trial, so one trial may
run K seeds of one setting in turn; each must still be its own rows in the results table and
resume on its own after a crash.
"""

from __future__ import annotations

import json
import subprocess

import pandas as pd
import pytest

from archdal import RunConfig
from archdal.analysis.results import _read_results, load_rounds, trial_dirs
from archdal.sweep.grid import expand, group_name, group_seeds, trial_name
from archdal.sweep.presets import PRESETS

from .conftest import REPO
from .test_tune import (
    FOCUS1,
    _env,
    assert_same_rounds,
    kill_worker_when,
    run_alone,
)


def frozen_digits(strategies=("random", "margin"), seeds=(0, 1, 2, 3, 4)) -> list[RunConfig]:
    return expand(
        PRESETS["frozen-images"],
        {"datasets": ("digits",), "encoders": ("pixels",), "strategies": strategies,
         "seeds": seeds},
    )  # fmt: skip


def test_seeds_of_one_setting_share_a_trial_in_runs_of_k():
    configs = frozen_digits()
    groups = group_seeds(configs, 2)
    # 2 settings × 5 seeds: runs of 2, 2 and 1 per setting, every config exactly once
    assert [len(g) for g in groups] == [2, 2, 1, 2, 2, 1]
    assert sorted(c.to_dict().__repr__() for g in groups for c in g) == sorted(
        c.to_dict().__repr__() for c in configs
    )
    for group in groups:
        assert len({c.strategy for c in group}) == 1
        assert len({c.seed for c in group}) == len(group)
    assert [c.seed for c in groups[0]] == [0, 1] and [c.seed for c in groups[2]] == [4]
    assert group_seeds(configs, 1) == [[c] for c in configs]
    assert group_name(groups[0]) == trial_name(groups[0][0]).replace("-s0-", "-s0to1-")
    assert "-s4-" in group_name(groups[2]) and "to" not in group_name(groups[2])


def _write_trial(folder, params, rows) -> None:
    folder.mkdir(parents=True)
    (folder / "params.json").write_text(json.dumps(params))
    (folder / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_a_trial_of_several_trajectories_reads_as_one_trial_each(tmp_path):
    configs = frozen_digits(strategies=("margin",), seeds=(0, 1, 2))

    def rows(seed: int, trajectory: int | None) -> list[dict]:
        extra = {} if trajectory is None else {"trajectory": trajectory}
        return [{"round": r, "n_labeled": 100 * (r + 1), "test_acc": seed + r / 10,
                 "final": r == 2} | extra for r in range(3)]  # fmt: skip

    apart = tmp_path / "apart"
    for c in configs:
        _write_trial(apart / f"t{c.seed}", {"run": c.to_dict()}, rows(c.seed, None))
    together = tmp_path / "together"
    # trajectory 2 has not reported yet; trajectory 1's round 2 was replayed after a restore
    reports = rows(0, 0) + rows(1, 1) + rows(1, 1)[2:]
    _write_trial(together / "bundle", {"runs": [c.to_dict() for c in configs]}, reports)

    a = load_rounds(apart)
    b = load_rounds(together)
    assert sorted(b["trial"].unique()) == ["bundle/t0", "bundle/t1"]
    assert len(b) == 6  # the replayed round counts once
    keep = ["seed", "strategy", "arch", "round", "n_labeled", "test_acc"]
    pd.testing.assert_frame_equal(
        a[a["seed"] < 2][keep].reset_index(drop=True), b[keep].reset_index(drop=True)
    )


@pytest.mark.slow
def test_a_killed_trial_of_several_seeds_resumes_at_its_current_trajectory(tmp_path):
    storage = tmp_path / "results"
    experiment = storage / "focus1-frozen-images"
    argv = ["--preset", "frozen-images", "--datasets", "digits", "--encoders", "pixels",
            "--strategies", "margin", "--seeds", "0", "1", "2", "--num-cpus", "1",
            "--no-report", "--cache-dir", str(tmp_path / "cache")]  # fmt: skip

    def in_second_trajectory():
        folders = trial_dirs(experiment) if experiment.exists() else []
        rows = _read_results(folders[0] / "result.json") if folders else []
        return rows[-1] if rows and rows[-1].get("trajectory") == 1 else None

    # the preset's 10 seeds a trial: one trial of three
    victim = kill_worker_when(storage, argv, in_second_trajectory)
    (trial,) = trial_dirs(experiment)
    assert "-s0to2-" in trial.name
    rows = _read_results(trial / "result.json")
    pids = [r["pid"] for r in rows]
    assert len(set(pids)) == 2, "the trial was not restarted"
    restarted = pids.index(next(p for p in pids if p != victim["pid"]))
    # The new worker first reports again the round its checkpoint holds, then goes on.
    replay, resumed = rows[restarted], rows[restarted + 1]
    where = [(r["trajectory"], r["round"], r["pid"] == victim["pid"]) for r in rows]
    assert replay.get("replayed") and not resumed.get("replayed"), where
    held = (replay["trajectory"], replay["round"])
    assert held >= (victim["trajectory"], victim["round"]), where
    assert held[0] >= 1, f"a finished trajectory ran again: {where}"
    step = (held[0] + 1, 0) if replay["final"] else (held[0], held[1] + 1)
    assert (resumed["trajectory"], resumed["round"]) == step, where

    table = load_rounds(experiment)
    assert sorted(table["seed"].unique()) == [0, 1, 2] and table["trial"].nunique() == 3
    runs = json.loads((trial / "params.json").read_text())["runs"]
    for index, run in enumerate(runs):
        reference = run_alone(RunConfig.from_dict(run))
        assert_same_rounds(table[table["trial"] == f"{trial.name}/t{index}"].to_dict("records"),
                           reference)  # fmt: skip

    other = subprocess.run([*FOCUS1, "--storage", str(storage), *argv, "--resume",
                            "--seeds-per-trial", "1"],
                           capture_output=True, text=True, env=_env(), cwd=REPO)  # fmt: skip
    assert other.returncode == 2 and "--seeds-per-trial 10" in other.stderr, other.stderr
    assert len(other.stderr.strip().splitlines()) == 1
