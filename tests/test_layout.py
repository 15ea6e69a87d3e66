"""The package's shape: Ray only in archdal/sweep, no import cycle, registries that a new
entry joins with one module, reaching `archdal run` and a sweep."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from archdal import registry
from archdal.data import make_split
from archdal.families import load_data

from .conftest import REPO

PACKAGE = REPO / "archdal"


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module a file imports, top-level and inside functions alike."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            named = {f"{node.module}.{alias.name}" for alias in node.names}
            # `from archdal import registry` imports a submodule, not the package's names
            found |= named & MODULES.keys() if named <= MODULES.keys() else named | {node.module}
    return found


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def test_only_the_sweep_layer_imports_ray():
    offenders = {
        name: sorted(m for m in _imports(path) if m == "ray" or m.startswith("ray."))
        for name, path in MODULES.items()
        if not name.startswith("archdal.sweep")
    }
    assert not {k: v for k, v in offenders.items() if v}
    assert any(m.startswith("ray") for m in _imports(MODULES["archdal.sweep.tune"]))


def test_import_archdal_and_the_analysis_pull_in_no_ray():
    code = ("import sys, archdal, archdal.analysis.report, archdal.sweep.grid; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'ray'))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def _graph() -> dict[str, set[str]]:
    """archdal module → the archdal modules it imports (a name imported from a package that
    is one of its submodules is an edge to that submodule)."""
    return {
        name: {m for m in _imports(path) if m in MODULES and m != name}
        for name, path in MODULES.items()
    }


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_import_graph_has_no_cycle():
    graph = _graph()
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))
    # The checker finds a cycle where there is one.
    assert _cycle(graph | {"archdal.io": {"archdal.loop"}}) is not None


def test_the_catalogues_are_the_registries():
    from archdal.models import IMAGE_ARCHS
    from archdal.sweep.presets import CNN_ARCHS, PAPER_STRATEGIES
    from archdal.textmodels import TEXT_ARCHS

    assert registry.STRATEGIES.names()[:7] == PAPER_STRATEGIES
    assert registry.archs_of("image") == IMAGE_ARCHS + CNN_ARCHS
    assert registry.archs_of("text") == TEXT_ARCHS
    assert registry.DATASETS.names()[:4] == ("mnist", "fashion_mnist", "cifar10", "svhn")


TOY = '''"""A strategy added as one function and one registry entry."""
from archdal.strategies import REGISTRY, Strategy


def select_first(view, n, rng):
    import torch

    return torch.arange(n)


REGISTRY.register(Strategy("first_rows", frozenset(), select_first))
'''


@pytest.fixture()
def toy_plugin(tmp_path):
    (tmp_path / "toy_strategy.py").write_text(TOY)
    env = dict(os.environ, ARCHDAL_PLUGINS="toy_strategy")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path), env.get("PYTHONPATH")]))
    env.pop("RAY_ADDRESS", None)
    return env


def test_a_toy_strategy_runs_through_archdal_run(tmp_path, toy_plugin):
    out = tmp_path / "run"
    argv = ["run", "--dataset", "digits", "--width", "0.125", "--strategy", "first_rows",
            "--init-size", "20", "--acq-size", "10", "--rounds", "2", "--pool-size", "200",
            "--max-epochs", "2", "--patience", "1", "--device", "cpu", "--quiet"]  # fmt: skip
    cmd = [sys.executable, "-m", "archdal", *argv, "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=toy_plugin, cwd=REPO)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    config = json.loads((out / "config.json").read_text())
    from archdal import RunConfig, Runtime

    data = load_data(RunConfig.from_dict(config), Runtime())
    split = make_split(data.train_y, data.num_classes, 20, 200, config["val_fraction"], 0)
    pool = split.pool.tolist()
    assert records[0]["acquired"] == pool[:10]  # the first rows of the unlabelled pool
    assert records[1]["acquired"] == pool[10:20]
    # Without the plugin the name is unknown, in one line.
    env = {k: v for k, v in toy_plugin.items() if k != "ARCHDAL_PLUGINS"}
    done = subprocess.run([*cmd[:-1], str(tmp_path / "other")], capture_output=True, text=True,
                          env=env, cwd=REPO)  # fmt: skip
    assert done.returncode == 2 and "invalid choice: 'first_rows'" in done.stderr
    bad = dict(toy_plugin, ARCHDAL_PLUGINS="no_such_module")
    done = subprocess.run([*cmd[:-1], str(tmp_path / "other")], capture_output=True, text=True,
                          env=bad, cwd=REPO)  # fmt: skip
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "$ARCHDAL_PLUGINS names module 'no_such_module'" in done.stderr
    assert not (tmp_path / "other").exists()


@pytest.mark.slow
def test_a_toy_strategy_runs_through_a_sweep(tmp_path, toy_plugin):
    argv = [sys.executable, str(REPO / "sweeps" / "focus1.py"), "--storage", str(tmp_path),
            "--strategies", "random", "first_rows", "--set", "max_epochs=2", "--set",
            "patience=1", "--no-report", "--num-cpus", "2"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, env=toy_plugin, cwd=REPO,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "focus1: 2/2 trials finished" in done.stdout
    # The console is the status table: a header, then a row per trial with its factors.
    assert "trial" in done.stdout and "test %" in done.stdout
    assert "digits-resnet18-first_rows-none-s0-i40-a40" in done.stdout
    assert "acquired_digest" not in done.stdout  # not Ray's per-trial result dump
    from archdal.analysis.results import load_rounds

    table = load_rounds(tmp_path / "focus1-smoke")
    assert sorted(table["strategy"].unique()) == ["first_rows", "random"]
    assert (table.groupby("strategy")["round"].max() == 2).all()
