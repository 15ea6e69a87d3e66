"""The report command on experiment folders laid out as Ray Tune writes them."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from archdal import RunConfig
from archdal.analysis import stats
from archdal.analysis.report import build_report, main
from archdal.analysis.results import load_rounds
from archdal.errors import DataError

from .conftest import REPO

ARCHS = ("resnet18", "vgg11")
STRATEGIES = ("random", "margin", "badge")


def accuracy(arch: str, strategy: str, pretrain: str, seed: int, round_: int) -> float:
    """Distinct, known curves: badge > margin > random on resnet18, reversed on vgg11."""
    order = STRATEGIES.index(strategy) if arch == "resnet18" else 2 - STRATEGIES.index(strategy)
    return 0.5 + 0.1 * round_ + 0.01 * order * round_ + 0.002 * seed + 0.01 * (pretrain != "none")


def write_experiment(path, rounds=2, seeds=(0, 1), skip=(), strategies=STRATEGIES):
    """params.json + result.json per trial, as Tune writes them; `skip` leaves trials out."""
    path.mkdir(parents=True)
    for arch in ARCHS:
        for strategy in strategies:
            for pretrain in ("none", "unsupervised"):
                for seed in seeds:
                    if (arch, strategy, seed) in skip:
                        continue
                    config = RunConfig(dataset="mnist", arch=arch, strategy=strategy,
                                       pretrain=pretrain, seed=seed, init_size=100,
                                       acq_size=100, rounds=rounds)  # fmt: skip
                    trial = path / f"{arch}-{strategy}-{pretrain}-{seed}"
                    trial.mkdir()
                    (trial / "params.json").write_text(json.dumps({"run": config.to_dict()}))
                    lines = [
                        json.dumps({"round": r, "n_labeled": 100 * (r + 1), "final": r == rounds,
                                    "test_acc": accuracy(arch, strategy, pretrain, seed, r)})
                        for r in range(rounds + 1)
                    ]  # fmt: skip
                    (trial / "result.json").write_text("\n".join(lines) + "\n")
    return path


def test_report_tables_figures_and_html(tmp_path):
    experiment = write_experiment(tmp_path / "focus1-test")
    page = build_report([experiment], tmp_path / "report")
    out = page.parent
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == len(ARCHS) * len(STRATEGIES) * 2
    badge = summary.query("arch == 'resnet18' and strategy == 'badge' and pretrain == 'none'")
    # rounds 1, 2: gain 2·0.01·r over random, in pp → mean of 2 and 4
    assert badge["gain_pp_mean"].item() == pytest.approx(3.0)
    assert badge["rank"].item() == 1 and badge["seeds"].item() == 2
    # 0.74 at round 2 is above random's best (0.70): censored, one round of two
    assert badge["efficiency_censored_share_mean"].item() == pytest.approx(0.5)
    # targets 0.55 … 0.70: random needs 150 … 300 labels, badge (0.12 per 100) less
    badge_needs = [100 + 100 * 0.05 / 0.12, 100 + 100 * 0.10 / 0.12,
                   200 + 100 * 0.03 / 0.12, 200 + 100 * 0.08 / 0.12]  # fmt: skip
    at_targets = sum(r / b for r, b in zip([150, 200, 250, 300], badge_needs, strict=True)) / 4
    assert badge["efficiency_at_targets_mean"].item() == pytest.approx(at_targets)
    agreement = pd.read_csv(out / "rank_agreement.csv")
    assert sorted(agreement["pretrain"]) == ["none", "unsupervised"]
    assert agreement["kendall_tau"].tolist() == pytest.approx([-1.0, -1.0])
    spread = pd.read_csv(out / "spread_strategies.csv")
    assert spread.query("arch == 'vgg11' and round == 2 and pretrain == 'none'")[
        "spread_pp"
    ].item() == pytest.approx(4.0)
    html = page.read_text()
    for name in ("labeling_efficiency", "accuracy_gain", "learning_curves", "strategy_ranks",
                 "spread_across_strategies", "spread_across_archs"):  # fmt: skip
        png = out / "figures" / f"{name}.png"
        assert png.stat().st_size > 5000 and (out / "figures" / f"{name}.pdf").exists()
        assert f"figures/{name}.png" in html
    assert "focus1-test" in html and "Kendall" in html
    for term in ("<dt>censored</dt>", "<dt>efficiency at targets</dt>", "<th>censored %</th>",
                 "<th>eff. at targets</th>"):  # fmt: skip
        assert term in html

    # Written again in place: the old report is replaced, nothing is left beside it.
    build_report([experiment], out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["focus1-test", "report"]


def test_report_says_how_sure_it_is(tmp_path):
    """Six seeds of curves whose strategy order flips between the architectures: the
    interaction test finds it, intervals and critical-difference diagrams are written; at two
    seeds the report says the seeds are too few."""
    experiment = write_experiment(tmp_path / "six", seeds=range(6))
    page = build_report([experiment], tmp_path / "report", stats.Options(resamples=200))
    out = page.parent
    summary = pd.read_csv(out / "summary.csv")
    badge = summary.query("arch == 'resnet18' and strategy == 'badge' and pretrain == 'none'")
    # AUC per seed rises by 0.002 a seed: its mean's interval lies within the seeds' range
    assert badge["auc_ci_low"].item() < badge["auc_mean"].item() < badge["auc_ci_high"].item()
    assert badge["auc_ci_high"].item() - badge["auc_ci_low"].item() < 0.01
    interaction = pd.read_csv(out / "interaction.csv")
    assert len(interaction) == 2  # pretraining none / unsupervised
    assert interaction["p_value"].tolist() == pytest.approx([1 / 32, 1 / 32])
    assert interaction["verdict"].str.startswith("the architecture changes").all()
    rankings = pd.read_csv(out / "rankings.csv")
    first = rankings.query("arch == 'resnet18' and pretrain == 'none'").sort_values("mean_rank")
    assert first["strategy"].tolist() == ["badge", "margin", "random"]
    assert first["friedman_p"].iloc[0] < 0.05  # six seeds agree on the order
    figures = {p.stem for p in (out / "figures").glob("critical_difference_*.png")}
    assert "critical_difference_mnist_resnet18_none" in figures
    assert "critical_difference_all" in figures
    needed = pd.read_csv(out / "seeds_needed.csv")
    assert len(needed) == 2 * 2 * 3  # archs × pretraining × pairs of three strategies
    html = page.read_text()
    for heading in ("How sure are the rankings?", "Does the architecture change the ranking?",
                    "How many seeds are enough?", "<dt>interaction test</dt>"):  # fmt: skip
        assert heading in html

    two = build_report([write_experiment(tmp_path / "two")], tmp_path / "report-two")
    verdicts = pd.read_csv(two.parent / "interaction.csv")["verdict"]
    assert verdicts.str.startswith("too few seeds").all()
    assert "too few seeds to say" in two.read_text()


def test_report_options_are_checked_before_any_work(tmp_path, capsys):
    experiment = write_experiment(tmp_path / "e")
    for flag, value in (("--level", "1.5"), ("--posthoc", "tukey"), ("--resamples", "5")):
        with pytest.raises(SystemExit) as exit_info:
            main([str(experiment), "--out", str(tmp_path / "r"), flag, value])
        assert exit_info.value.code == 2
        assert value in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_report_of_random_alone_compares_architectures_only(tmp_path):
    """A sweep of random alone (architectures at equal labels) has curves and the spread
    across architectures, and no figure that compares strategies."""
    experiment = write_experiment(tmp_path / "random-only", strategies=("random",))
    page = build_report([experiment], tmp_path / "report")
    figures = sorted(p.stem for p in (page.parent / "figures").glob("*.png"))
    assert figures == ["learning_curves", "spread_across_archs"]
    spread = pd.read_csv(page.parent / "spread_architectures.csv")
    # resnet18 vs vgg11 under random: order 0 vs 2 → 0.02·r apart, r = 2 → 4 pp
    row = spread.query("round == 2 and pretrain == 'none'")
    assert row["spread_pp"].item() == pytest.approx(4.0)
    assert row["best_arch"].item() == "vgg11"
    assert pd.read_csv(page.parent / "summary.csv")["strategy"].unique().tolist() == ["random"]


def test_report_on_a_running_experiment_cuts_to_common_rounds(tmp_path):
    experiment = write_experiment(tmp_path / "running")
    trial = experiment / "vgg11-margin-none-1"
    lines = (trial / "result.json").read_text().splitlines()
    (trial / "result.json").write_text(lines[0] + "\n" + lines[1][:10])  # a cut last line
    build_report([experiment], tmp_path / "report")
    rounds = pd.read_csv(tmp_path / "report" / "rounds.csv")
    vgg = rounds.query("arch == 'vgg11' and pretrain == 'none'")
    assert vgg["round"].max() == 0
    assert rounds.query("arch == 'resnet18'")["round"].max() == 2
    # progress counts every trial's last report, not the cut table: 23 of 24 finished
    assert "<td>24 of ?</td><td>23</td>" in (tmp_path / "report" / "report.html").read_text()


def test_trials_without_their_random_seed_are_listed_not_compared(tmp_path):
    experiment = write_experiment(tmp_path / "e", skip={("vgg11", "random", 1)})
    build_report([experiment], tmp_path / "report")
    unpaired = pd.read_csv(tmp_path / "report" / "unpaired.csv")
    assert set(unpaired["arch"]) == {"vgg11"} and set(unpaired["seed"]) == {1}
    summary = pd.read_csv(tmp_path / "report" / "summary.csv")
    assert (summary.query("arch == 'vgg11'")["seeds"] == 1).all()
    assert "left out of gain" in (tmp_path / "report" / "report.html").read_text()


def test_report_errors_are_one_line_and_write_nothing(tmp_path, capsys):
    assert main([str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), "--out", str(tmp_path / "r")]) == 2
    assert "holds no Ray Tune trials" in capsys.readouterr().err
    experiment = write_experiment(tmp_path / "no-random", skip={
        (a, "random", s) for a in ARCHS for s in (0, 1)})  # fmt: skip
    assert main([str(experiment), "--out", str(tmp_path / "r")]) == 2
    assert "add random" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep")
    with pytest.raises(DataError, match="holds no archdal report"):
        build_report([write_experiment(tmp_path / "ok")], other)
    assert (other / "mine.txt").read_text() == "keep"


def test_several_experiments_load_into_one_table(tmp_path):
    first = write_experiment(tmp_path / "a", seeds=(0,))
    second = write_experiment(tmp_path / "b", seeds=(1,))
    table = load_rounds([first, second])
    assert set(table["experiment"]) == {"a", "b"}
    assert len(table) == 2 * len(ARCHS) * len(STRATEGIES) * 2 * 3


def test_report_script_runs_as_a_user_would(tmp_path):
    experiment = write_experiment(tmp_path / "e", seeds=(0,))
    done = subprocess.run(
        [sys.executable, str(REPO / "analysis" / "report.py"), str(experiment), "--out",
         str(tmp_path / "r")], capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "report:" in done.stdout and (tmp_path / "r" / "report.html").exists()


def _with_encoder_outputs(experiment, digest_of):
    """Each trial's result rows given the encoder output `digest_of(trial name)` read."""
    for trial in experiment.iterdir():
        path = trial / "result.json"
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        extra = {"representation_digest": digest_of(trial.name),
                 "representation_made_on": "torch 2.14.1, CPU AVX2, cpu"}  # fmt: skip
        path.write_text("".join(json.dumps(r | extra) + "\n" for r in rows))


def test_report_says_when_a_setting_read_more_than_one_encoder_output(tmp_path):
    one = write_experiment(tmp_path / "one-output")
    _with_encoder_outputs(one, lambda name: "aaaa")
    page = build_report([one], tmp_path / "r1").read_text()
    assert "Each setting's trials read one encoder output" in page
    outputs = pd.read_csv(tmp_path / "r1" / "encoder_outputs.csv")
    assert len(outputs) == len(ARCHS) * 2 and set(outputs["outputs"]) == {1}
    assert set(outputs["trials"]) == {len(STRATEGIES) * 2}  # strategies × seeds
    mixed = write_experiment(tmp_path / "mixed-outputs")
    _with_encoder_outputs(mixed, lambda name: "bbbb" if name.endswith("-1") else "aaaa")
    page = build_report([mixed], tmp_path / "r2").read_text()
    assert "Some settings read more than one encoder output" in page
    outputs = pd.read_csv(tmp_path / "r2" / "encoder_outputs.csv")
    assert set(outputs["outputs"]) == {2} and set(outputs["seeds"]) == {1}
    write_experiment(tmp_path / "no-outputs")
    build_report([tmp_path / "no-outputs"], tmp_path / "r3")
    assert "encoder output" not in (tmp_path / "r3" / "report.html").read_text()
