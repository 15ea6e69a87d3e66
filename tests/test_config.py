"""Each RunConfig field is declared once: one check, the flags and `--set` come from it."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from archdal import RunConfig
from archdal.cli import build_parser
from archdal.config import (
    FACTORS,
    Checked,
    Interval,
    NotEmpty,
    OneOf,
    Runtime,
    check_fields,
    settings_of,
)
from archdal.errors import ConfigError
from archdal.sweep.cli import build_focus1_parser, build_hparams_parser
from archdal.sweep.grid import expand, parse_setting
from archdal.sweep.presets import PRESETS

SETTINGS = list(settings_of(RunConfig))
WRONG_TYPE = {
    "int": "3", "float": "x", "str": 3, "bool": "yes", "dict[str, Any]": [1], "float | None": "x",
}  # fmt: skip


def _outside(admits) -> object | None:
    """A value of the right type that the declaration does not admit."""
    if isinstance(admits, Interval):
        if admits.low is not None:
            return admits.low if admits.low_open else admits.low - 1
        return admits.high + 1
    if isinstance(admits, OneOf):
        return "no-such-name"
    if isinstance(admits, NotEmpty):
        return ""
    if isinstance(admits, Checked):
        return {"no_such_setting": 1}
    return None


def _with(config: RunConfig, path: tuple[str, ...], value: object) -> RunConfig:
    if len(path) == 1:
        return dataclasses.replace(config, **{path[0]: value})
    inner = dataclasses.replace(getattr(config, path[0]), **{path[1]: value})
    return dataclasses.replace(config, **{path[0]: inner})


@pytest.mark.parametrize("setting", SETTINGS, ids=[s.key for s in SETTINGS])
def test_every_field_refuses_a_bad_value_naming_its_flag(setting):
    base = RunConfig()
    check_fields(base)  # the defaults are admitted
    with pytest.raises(ConfigError, match=rf"^{setting.label} must be a "):
        _with(base, setting.path, WRONG_TYPE[setting.kind]).validate()
    outside = _outside(setting.spec.metadata.get("admits"))
    if outside is None:
        return
    named = "unknown pdarts settings" if setting.kind == "dict[str, Any]" else setting.label
    with pytest.raises(ConfigError, match=named):
        _with(base, setting.path, outside).validate()


def test_intervals_say_what_they_admit():
    assert Interval(0, low_open=True).describe() == "positive"
    assert Interval(0).describe() == "zero or positive"
    assert Interval(2).describe() == "at least 2"
    assert Interval(0, 1, low_open=True, high_open=True).describe() == "in (0, 1)"
    assert Interval(0, 1, low_open=True).describe() == "in (0, 1]"
    assert not Interval(0, 1, high_open=True).admits(1) and Interval(0, 1).admits(1)


def test_runtime_fields_are_checked_the_same_way():
    with pytest.raises(ConfigError, match="unknown device 'tpu'; choose from: auto, cpu, cuda"):
        Runtime(device="tpu").validate()
    with pytest.raises(ConfigError, match="eval-batch-size must be zero or positive, got -1"):
        Runtime(eval_batch_size=-1).validate()


def test_eval_batch_is_the_devices_unless_given():
    assert Runtime().eval_batch("cpu") == 256 and Runtime().eval_batch("cuda") == 1024
    assert Runtime(eval_batch_size=64).eval_batch("cuda") == 64


def _option_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    actions = list(parser._actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                actions += _option_actions(sub)
    return [a for a in actions if a.option_strings and a.dest != "help"]


def test_archdal_run_has_one_flag_per_field_with_its_default_once():
    actions = _option_actions(build_parser())
    flags = [a.option_strings[0] for a in actions]
    for setting in [*SETTINGS, *settings_of(Runtime)]:
        assert flags.count(setting.flag) == 1, setting.flag
    assert len(flags) == len(set(flags)) == len(SETTINGS) + len(list(settings_of(Runtime))) + 1
    for action in actions:
        assert (action.help or "").count("(default:") <= 1, action.option_strings
    arch = next(a for a in actions if a.option_strings == ["--arch-filters"])
    assert "(default: 64)" in arch.help
    lr = next(a for a in actions if a.option_strings == ["--lr"])
    assert lr.help.endswith("(default: 0.05 for images, 2e-05 for text)")


@pytest.mark.parametrize("parser", [build_focus1_parser(), build_focus1_parser(2),
                                    build_hparams_parser()])  # fmt: skip
def test_sweep_help_shows_each_default_once_and_lists_the_set_keys(parser):
    for action in _option_actions(parser):
        assert (action.help or "").count("(default:") <= 1, action.option_strings
    epilog = parser.epilog.splitlines()
    for setting in SETTINGS:
        listed = [line for line in epilog if line.strip().startswith(f"{setting.key} (")]
        assert len(listed) == (setting.key not in FACTORS.values()), setting.key


def test_nested_options_are_flags_and_set_keys():
    args = build_parser().parse_args(["run", "--out", "x", "--arch", "depth_dropout",
                                      "--arch-mode", "joint", "--arch-filters", "8",
                                      "--arch-pdarts", '{"channels": 4}'])  # fmt: skip
    from archdal.cli import configs_from_args

    config, _ = configs_from_args(args)
    assert config.arch_options.filters == 8 and config.arch_options.pdarts == {"channels": 4}
    assert parse_setting("arch_options.filters=16") == ("arch_options.filters", 16)
    assert parse_setting("arch-filters=16") == ("arch_options.filters", 16)
    assert parse_setting("pretrain-lr=0.5") == ("pretrain_options.lr", 0.5)
    assert parse_setting('arch_options.pdarts={"epochs": 2}') == ("arch_options.pdarts",
                                                                  {"epochs": 2})  # fmt: skip
    configs = expand(PRESETS["smoke"], settings=dict([parse_setting("pretrain_options.clusters=7"),
                                                       parse_setting("max_epochs=3")]))  # fmt: skip
    assert {(c.pretrain_options.clusters, c.pretrain_options.epochs, c.max_epochs)
            for c in configs} == {(7, 10, 3)}  # fmt: skip
    with pytest.raises(ConfigError, match="pretrain-clusters must be at least 2, got 1"):
        expand(PRESETS["smoke"], settings=dict([parse_setting("pretrain_options.clusters=1")]))
    with pytest.raises(ConfigError, match="not a valid dict"):
        parse_setting("arch_options.pdarts=[1]")
