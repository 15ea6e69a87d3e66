"""Sweep grids and the sweep command lines' checks: no Ray cluster is started here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from archdal import RunConfig, Runtime
from archdal.errors import ConfigError, DataError
from archdal.sweep.cli import focus1_main
from archdal.sweep.grid import check_budgets, expand, parse_setting, trial_name
from archdal.sweep.hparams import load_hparams, save_hparams
from archdal.sweep.presets import PRESETS


def test_paper_preset_is_the_papers_full_grid():
    configs = expand(PRESETS["paper"])
    images = [c for c in configs if not c.is_text]
    texts = [c for c in configs if c.is_text]
    assert len(images) == 4 * 6 * 7 * 2 * 3 == 1008
    assert len(texts) == 4 * 3 * 7 * 2 * 3 == 504
    c = images[0]
    assert (c.init_size, c.acq_size, c.rounds, c.max_epochs, c.patience, c.width) == (
        1000,
        1000,
        25,
        500,
        50,
        1.0,
    )
    t = texts[0]
    assert (t.init_size, t.acq_size, t.rounds, t.max_epochs, t.optimizer) == (
        100,
        100,
        25,
        5,
        "adamw",
    )
    assert {x.dataset for x in images} == {"mnist", "fashion_mnist", "cifar10", "svhn"}
    assert {x.dataset for x in texts} == {"ag_news", "banking77", "dbpedia", "qnli"}
    assert {x.arch for x in texts} == {"bert", "distilbert", "roberta"}
    assert {x.pretrain for x in configs} == {"none", "unsupervised"}
    assert len({trial_name(x) for x in configs}) == 1512


def test_dataset_and_arch_overrides_go_to_the_grid_of_their_modality():
    configs = expand(
        PRESETS["paper"], {"datasets": ("mnist", "banking77"), "archs": ("resnet18", "bert")}
    )
    assert len(configs) == 2 * 7 * 2 * 3
    assert {(c.dataset, c.arch, c.init_size, c.optimizer) for c in configs} == {
        ("mnist", "resnet18", 1000, "sgd"),
        ("banking77", "bert", 100, "adamw"),
    }
    with pytest.raises(ConfigError, match="leave no trial"):
        expand(PRESETS["paper"], {"datasets": ("mnist",), "archs": ("bert",)})
    with pytest.raises(ConfigError, match="does not fit the text dataset"):
        expand(PRESETS["smoke"], {"datasets": ("banking77",)})


def test_text_small_uses_the_locally_installed_minilm():
    configs = expand(PRESETS["text-small"])
    assert len(configs) == 7
    path = Path(configs[0].model_path)
    assert (path / "config.json").exists()
    assert {(c.dataset, c.arch, c.max_length, c.init_size) for c in configs} == {
        ("banking77", "bert", 64, 100)
    }


def test_factor_overrides_and_settings_reach_every_trial():
    configs = expand(
        PRESETS["paper"],
        {"datasets": ("mnist",), "init_sizes": (1000, 5000), "acq_sizes": (500, 1500)},
        {"width": 0.5},
    )
    assert len(configs) == 6 * 7 * 2 * 3 * 2 * 2
    assert {(c.init_size, c.acq_size) for c in configs} == {
        (1000, 500),
        (1000, 1500),
        (5000, 500),
        (5000, 1500),
    }
    assert {c.width for c in configs} == {0.5}


@pytest.mark.parametrize(
    ("factors", "settings", "message"),
    [
        ({"strategies": ("margin", "bogus")}, {}, "unknown strategy 'bogus'"),
        ({"archs": ("resnet101",)}, {}, "unknown arch 'resnet101'"),
        ({"seeds": (0, 0)}, {}, "repeats a value"),
        ({"seeds": ()}, {}, "needs at least one value"),
        ({}, {"strategy": "margin"}, "cannot change a sweep factor"),
        ({"init_sizes": (0,)}, {}, "init-size must be positive"),
    ],
)
def test_bad_grids_are_refused(factors, settings, message):
    with pytest.raises(ConfigError, match=message):
        expand(PRESETS["smoke"], factors, settings)


def test_set_parses_by_field_type_and_names_the_allowed_keys():
    assert parse_setting("max-epochs=7") == ("max_epochs", 7)
    assert parse_setting("width=0.25") == ("width", 0.25)
    assert parse_setting("augment=on") == ("augment", True)
    with pytest.raises(ConfigError, match="not a valid int"):
        parse_setting("max_epochs=many")
    with pytest.raises(ConfigError, match=r"KEY one of .*max_epochs"):
        parse_setting("epochs=3")


def test_budgets_are_checked_against_the_real_split():
    too_many = expand(PRESETS["smoke"], {"acq_sizes": (900,)})  # digits: ~1,300 pool images
    with pytest.raises(ConfigError, match="exceeds the unlabelled pool"):
        check_budgets(too_many, Runtime())
    check_budgets(expand(PRESETS["smoke"]), Runtime())


def test_hparams_file_round_trip_and_coverage(tmp_path: Path):
    path = tmp_path / "h.json"
    save_hparams(
        path, {"digits/resnet18": {"lr": 0.02, "weight_decay": 1e-5, "batch_size": 32}}, {}
    )
    hparams = load_hparams(path)
    (config,) = expand(PRESETS["smoke"], {"strategies": ("random",)}, hparams=hparams)
    assert (config.lr, config.weight_decay, config.batch_size) == (0.02, 1e-5, 32)
    with pytest.raises(ConfigError, match="no entry for digits/vgg11"):
        expand(PRESETS["smoke"], {"archs": ("vgg11",)}, hparams=hparams)
    path.write_text(json.dumps({"best": {}}))
    with pytest.raises(DataError, match="not an archdal hyperparameter file"):
        load_hparams(path)


def test_trials_of_a_seed_share_their_split():
    """Paired comparisons: the split depends on dataset, seed and sizes, not strategy or arch."""
    from archdal.data import load_dataset, make_split

    data = load_dataset("digits", None, False)
    configs = expand(PRESETS["smoke"], {"archs": ("resnet18", "vgg11")})
    splits = {
        trial_name(c): make_split(
            data.train_y, data.num_classes, c.init_size, c.pool_size, c.val_fraction, c.seed
        ).initial.tolist()
        for c in configs
    }
    assert len({tuple(v) for v in splits.values()}) == 1


# --------------------------------------------------------------------- command-line checks


def _focus1(capsys, *argv: str) -> tuple[int, str, str]:
    code = focus1_main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_dry_run_prints_the_grid_and_count(capsys):
    code, out, _ = _focus1(capsys, "--preset", "paper", "--dry-run")
    assert code == 0
    assert out.strip().endswith("1512 trials")
    assert "svhn-resnet50-badge-unsupervised-s2-i1000-a1000" in out
    assert "qnli-roberta-badge-unsupervised-s2-i100-a100" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--strategies", "bogus"], "unknown strategy 'bogus'"),
        (["--address", "127.0.0.1:1"], "cannot reach a Ray cluster at --address '127.0.0.1:1'"),
        (["--address", "nowhere"], "is not 'auto', HOST:PORT"),
        (["--resume"], "no experiment to resume"),
        (["--max-concurrent", "0"], "--max-concurrent must be at least 1"),
        (["--seeds-per-trial", "0"], "--seeds-per-trial must be at least 1, got 0"),
        (["--set", "rounds=40", "--acq-sizes", "40"], "exceeds the unlabelled pool"),
    ],
)
def test_errors_are_one_line_before_anything_is_written(capsys, tmp_path, argv, message):
    storage = tmp_path / "results"
    code, _, err = _focus1(capsys, "--storage", str(storage), *argv)
    assert code == 2
    assert message in err
    assert err.count("\n") == 1
    assert not (storage / "focus1-smoke").exists()


def test_frozen_presets_run_ten_seeds_a_trial_unless_told():
    from archdal.sweep.cli import build_focus1_parser

    for preset, expected in (("frozen-images", 10), ("smoke", 1)):
        assert PRESETS[preset].seeds_per_trial == expected
    args = build_focus1_parser().parse_args(["--preset", "frozen-images", "--seeds-per-trial", "3"])
    assert args.seeds_per_trial == 3
    # None: the preset's value (test_seeds_per_trial runs frozen-images without the flag)
    assert build_focus1_parser().parse_args([]).seeds_per_trial is None


def test_unwritable_storage_is_refused(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code, _, err = _focus1(capsys, "--storage", str(blocker / "results"))
    assert code == 2
    assert "is not writable" in err


def test_an_existing_experiment_needs_resume_and_the_same_grid(capsys, tmp_path):
    from archdal.analysis.results import SWEEP_FILE
    from archdal.sweep.tune import Sweep, check_new_or_resumable, write_sweep_file

    configs = expand(PRESETS["smoke"])
    sweep = Sweep(storage=tmp_path, name="focus1-smoke")
    write_sweep_file(sweep, configs, {})
    code, _, err = _focus1(capsys, "--storage", str(tmp_path))
    assert code == 2
    assert "already exists" in err and "--resume" in err
    assert (tmp_path / "focus1-smoke" / SWEEP_FILE).exists()
    with pytest.raises(ConfigError, match="no experiment to resume"):
        check_new_or_resumable(sweep, configs, resume=True)  # no Tune state yet


def test_local_ray_too_small_for_a_trial_is_refused(capsys, tmp_path):
    code, _, err = _focus1(
        capsys, "--storage", str(tmp_path), "--num-cpus", "1", "--gpus-per-trial", "0.5"
    )
    import ray

    ray.shutdown()
    assert code == 2
    assert "asks for 0.5 GPU but the local Ray has 0" in err


def test_run_config_round_trips_through_a_trial_param_dict():
    config = expand(PRESETS["small"])[0]
    assert RunConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_sweeps_drop_tunes_frequent_snapshot_warning_and_keep_its_other_warnings(caplog, tmp_path):
    """Frozen trials checkpoint every round within a fraction of a second; Tune's
    "snapshotting has been triggered multiple times" warning then printed hundreds of times
    a sweep (589 in the frozen-images preset) over the status table."""
    import logging

    from archdal.sweep.tune import Sweep, _run_config

    _run_config(Sweep(storage=tmp_path, name="quiet"))
    log = logging.getLogger("ray.tune.execution.experiment_state")
    with caplog.at_level(logging.WARNING):
        log.warning("Experiment state snapshotting has been triggered multiple times in the "
                    "last 5.0 seconds and may become a bottleneck.")  # fmt: skip
        log.warning("Saving the experiment state took 40 s, which may be a bottleneck.")
    assert [r.getMessage()[:6] for r in caplog.records] == ["Saving"]
