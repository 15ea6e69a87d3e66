"""The frozen family: heads on cached embeddings through the same loop, pool view and CLI."""

from __future__ import annotations

import json

import pytest
import torch

from archdal import ConfigError, RunConfig, Runtime, Trajectory, run, strip_timing
from archdal import representations as rep
from archdal.cli import main
from archdal.config import EncoderOptions
from archdal.pool import EMBEDDINGS, MC, PROBS, compute_view
from archdal.strategies import REGISTRY

CPU = Runtime(device="cpu")


def frozen_config(**overrides) -> RunConfig:
    base = dict(
        arch="frozen", encoder="pixels", encoder_options=EncoderOptions(dims=16), head="mlp",
        strategy="random", init_size=20, acq_size=10, rounds=2, pool_size=300, max_epochs=30,
        patience=10, mc_samples=3, head_hidden=32,
    )  # fmt: skip
    return RunConfig.for_dataset("synthetic", **(base | overrides))


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    from archdal import make_synthetic

    images = make_synthetic(n_train=600, n_test=200, num_classes=4, size=16, noise=0.3)
    return rep.image_features(images, frozen_config(), tmp_path_factory.mktemp("cache"))


def test_the_frozen_protocol_applies_and_flags_override_it():
    config = frozen_config()
    assert (config.optimizer, config.lr, config.max_epochs) == ("sgd", 0.1, 30)
    text = RunConfig.for_dataset("banking77", arch="frozen", encoder="minilm")
    assert (text.lr, text.batch_size, text.init_size) == (0.1, 64, 100)


@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_same_seed_same_records_other_seed_other_picks(features, head):
    config = frozen_config(head=head, strategy="margin")
    a = [Trajectory(config, CPU, features).run_round() for _ in range(1)]
    b_traj = Trajectory(config, CPU, features)
    b = [b_traj.run_round()]
    assert strip_timing(a) == strip_timing(b)
    assert a[0]["test_acc"] > 0.6  # 4 classes: chance is 0.25
    other = Trajectory(frozen_config(head=head, strategy="margin", seed=1), CPU, features)
    assert other.run_round()["acquired"] != a[0]["acquired"]


@pytest.mark.parametrize("strategy", sorted(REGISTRY))
def test_every_strategy_through_a_frozen_head(features, strategy, tmp_path):
    config = frozen_config(strategy=strategy)
    records = run(config, tmp_path / "r", CPU, progress=None, data=features)
    acquired = [i for r in records for i in r["acquired"]]
    assert [r["n_labeled"] for r in records] == [20, 30, 40]
    assert len(acquired) == len(set(acquired)) == 20
    pool = set(Trajectory(config, CPU, features).split.pool.tolist())
    assert set(acquired) <= pool
    assert records[-1]["test_acc"] > 0.6


def test_resume_equals_an_uninterrupted_frozen_run(features, tmp_path):
    config = frozen_config(strategy="badge", rounds=3)
    full = run(config, tmp_path / "full", CPU, progress=None, data=features)
    traj = Trajectory(config, CPU, features)
    traj.run_round()
    resumed = Trajectory(config, CPU, features)
    resumed.load_state_dict(traj.state_dict())
    while not resumed.done:
        resumed.run_round()
    assert strip_timing(resumed.records) == strip_timing(full)


def test_the_pool_view_reads_the_embeddings_and_the_mlp_dropout(features):
    linear = Trajectory(frozen_config(head="linear"), CPU, features)
    model = linear.new_model()
    x = features.train_x[:50]
    view = compute_view(model, x, frozenset({EMBEDDINGS}), 16)
    standardized = (x - linear.adapter.mean) / linear.adapter.std
    assert torch.allclose(view.embeddings, standardized)  # the neck is the identity
    mlp = Trajectory(frozen_config(head="mlp"), CPU, features).new_model()
    view = compute_view(mlp, x, frozenset({PROBS, MC}), 16, mc_samples=4)
    assert view.embeddings is None and view.mc_mean_probs.shape == (50, 4)
    assert not torch.allclose(view.mc_mean_probs, view.probs)  # dropout was sampled
    assert torch.allclose(view.mc_mean_probs.sum(dim=1), torch.ones(50))


def test_images_given_to_a_frozen_trajectory_are_refused(tiny_data):
    with pytest.raises(ConfigError, match="arch frozen trains on embeddings, not ImageData"):
        Trajectory(frozen_config(), CPU, tiny_data)


def _cli_error(tmp_path, capsys, *args: str) -> str:
    out, cache = tmp_path / "out", tmp_path / "cache"
    code = main(["run", "--out", str(out), "--cache-dir", str(cache), "--device", "cpu", *args])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert not out.exists() and not cache.exists()
    return err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "digits", "--encoder", "pixels", "--strategy", "bald"], "use --head mlp"),
        (["--dataset", "digits", "--encoder", "minilm"], "embeds texts, but dataset 'digits'"),
        (["--dataset", "banking77", "--encoder", "pixels"], "embeds images, but dataset"),
        (["--dataset", "banking77", "--encoder", "{tmp}"], "is not a model directory"),
        (["--dataset", "digits"], "arch frozen needs --encoder"),
    ],
)
def test_bad_frozen_configs_are_one_line_and_write_nothing(tmp_path, capsys, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert message in _cli_error(tmp_path, capsys, "--arch", "frozen", *args)


def test_frozen_options_need_arch_frozen(tmp_path, capsys):
    err = _cli_error(tmp_path, capsys, "--dataset", "digits", "--head", "mlp")
    assert "head applies to arch frozen" in err


def test_a_truncated_cache_stops_archdal_run_with_one_line(tmp_path, capsys):
    args = ["--dataset", "digits", "--arch", "frozen", "--encoder", "pixels", "--rounds", "1",
            "--init-size", "20", "--acq-size", "10", "--max-epochs", "2", "--quiet"]  # fmt: skip
    cache = tmp_path / "cache"
    assert main(["run", "--out", str(tmp_path / "ok"), "--cache-dir", str(cache), *args]) == 0
    (entry,) = (cache / "representations").glob("*.pt")
    entry.write_bytes(entry.read_bytes()[:100])
    code = main(["run", "--out", str(tmp_path / "out"), "--cache-dir", str(cache), *args])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "is unreadable" in err
    assert not (tmp_path / "out").exists()


def test_archdal_run_frozen_pixels_on_mnist(tmp_path, data_dir):
    out = tmp_path / "mnist"
    code = main(["run", "--dataset", "mnist", "--arch", "frozen", "--encoder", "pixels",
                 "--strategy", "margin", "--init-size", "100", "--acq-size", "100",
                 "--rounds", "2", "--pool-size", "5000", "--val-fraction", "0.02", "--seed", "0",
                 "--out", str(out), "--data-dir", str(data_dir), "--cache-dir",
                 str(tmp_path / "cache"), "--device", "cpu", "--quiet"])  # fmt: skip
    assert code == 0
    records = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert [r["n_labeled"] for r in records] == [100, 200, 300]
    assert records[-1]["test_acc"] > 0.75  # 64 PCA components, 300 labels, 10 classes
    config = json.loads((out / "config.json").read_text())
    assert (config["encoder"], config["head"], config["lr"]) == ("pixels", "linear", 0.1)


def test_frozen_presets_have_encoders_as_the_architecture_factor():
    from archdal.sweep.grid import expand, trial_name
    from archdal.sweep.presets import LINEAR_HEAD_STRATEGIES, PRESETS

    assert PRESETS["frozen-text"].grids[0].factors["encoders"] == ("minilm", "mpnet")
    text = expand(PRESETS["frozen-text"], {"encoders": ("minilm",)})  # mpnet: not in CI
    assert len(text) == 3 * 1 * len(LINEAR_HEAD_STRATEGIES) * 10
    assert {c.encoder for c in text} == {"minilm"} and {c.head for c in text} == {"linear"}
    assert {(c.init_size, c.acq_size, c.rounds, c.lr) for c in text} == {(200, 200, 9, 0.1)}
    images = expand(PRESETS["frozen-images"], {"seeds": (0, 1)})
    assert len(images) == 2 * 3 * len(LINEAR_HEAD_STRATEGIES) * 2
    assert {c.encoder for c in images} == {"pixels", "deepcluster", "simclr"}
    assert {c.pretrain_options.augment for c in images} == {True}  # DeepCluster on views
    names = [trial_name(c) for c in text + images]
    assert len(set(names)) == len(names)
    assert "banking77-frozen-minilm-badge-none-s0-i200-a200" in names
    minilm = {"encoders": ("minilm",)}
    bald = expand(PRESETS["frozen-text"], minilm | {"strategies": ("bald",)}, {"head": "mlp"})
    assert {c.head for c in bald} == {"mlp"}
    with pytest.raises(ConfigError, match="use --head mlp"):
        expand(PRESETS["frozen-text"], minilm | {"strategies": ("bald",)})
    with pytest.raises(ConfigError, match="embeds texts, but dataset 'mnist'"):
        expand(PRESETS["frozen-images"], {"encoders": ("minilm",)})


def test_frozen_flags_reach_the_config_with_the_frozen_protocol(tmp_path):
    from archdal.cli import build_parser, configs_from_args

    argv = ["run", "--out", str(tmp_path), "--dataset", "mnist", "--arch", "frozen",
            "--encoder", "pixels", "--head", "mlp", "--head-hidden", "16", "--encoder-dims", "8",
            "--encoder-normalize", "--encoder-seed", "2", "--lr", "0.3"]  # fmt: skip
    config, _ = configs_from_args(build_parser().parse_args(argv))
    assert (config.head, config.head_hidden, config.lr) == ("mlp", 16, 0.3)
    assert config.encoder_options == EncoderOptions(normalize=True, dims=8, seed=2)
    assert (config.max_epochs, config.weight_decay) == (200, 5e-4)  # the frozen protocol


def test_the_analysis_labels_frozen_trials_by_encoder_and_head(tmp_path):
    from archdal.analysis.results import load_rounds

    for encoder, head in (("pixels", "linear"), ("deepcluster", "mlp")):
        config = RunConfig.for_dataset("mnist", arch="frozen", encoder=encoder, head=head)
        trial = tmp_path / "exp" / encoder
        trial.mkdir(parents=True)
        (trial / "params.json").write_text(json.dumps({"run": config.to_dict()}))
        (trial / "result.json").write_text(json.dumps({"round": 0, "test_acc": 0.5}) + "\n")
    table = load_rounds(tmp_path / "exp")
    assert sorted(table["arch"]) == ["frozen-deepcluster-mlp", "frozen-pixels-linear"]
    assert sorted(table["encoder"]) == ["deepcluster", "pixels"]


def test_the_sweep_help_lists_the_frozen_presets():
    from archdal.sweep.cli import build_focus1_parser

    text = build_focus1_parser().format_help()  # a bare % in a description would break it
    assert "frozen-text" in text and "frozen-images" in text and "--encoders" in text


def test_every_round_records_which_encoder_output_it_read_and_what_made_it(tmp_path):
    """Two runs can be told apart by encoder: each record carries the cache entry's value
    digest (the AL seed does not change it, other settings do) and what made the entry; an
    entry written before archdal recorded that reads as unknown."""
    from archdal import make_synthetic

    images = make_synthetic(n_train=200, n_test=40, num_classes=4, size=8, noise=0.3)
    features = rep.image_features(images, frozen_config(), tmp_path)
    pca = rep.embed_pixels(images.train_x, images.test_x, 16, 0)
    expected = rep.tensor_digest(pca["test"], pca["train"])[:16]  # splits in name order
    runs = [Trajectory(frozen_config(rounds=1, max_epochs=5, seed=s), CPU, features)
            for s in (0, 1)]  # fmt: skip
    records = [run.run_round() for run in runs for _ in range(2)]
    made_on = f"torch {torch.__version__}, CPU {torch.backends.cpu.get_cpu_capability()}, cpu"
    assert [r["representation_digest"] for r in records] == [expected] * 4
    assert [r["representation_made_on"] for r in records] == [made_on] * 4
    (path,) = (tmp_path / "representations").glob("*.pt")
    entry = torch.load(path, weights_only=True)
    assert entry.pop("made_on") == made_on
    torch.save(entry, path)  # as an older archdal wrote it
    old = rep.image_features(images, frozen_config(), tmp_path)
    assert old.provenance == {"representation_digest": expected,
                              "representation_made_on": rep.UNKNOWN_ORIGIN}  # fmt: skip
    other = frozen_config(encoder_options=EncoderOptions(dims=8))
    assert rep.image_features(images, other, tmp_path).entry_digest != expected
