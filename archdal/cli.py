"""`archdal` command line: `archdal run ...` runs (or resumes) one trajectory.

Its flags are made from the declarations of `RunConfig`'s and `Runtime`'s fields
(`archdal.config.option`): one flag per field, nested options included (`--pretrain-lr`,
`--arch-filters`), each with its help, its allowed values and its default, shown once. The
sweep command lines (`archdal.sweep.cli`) share `Parser` and `main_guard`: a usage error or
an `ArchdalError` is one line on stderr and exit code 2, before any work starts.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from archdal.config import (
    Interval,
    OneOf,
    RunConfig,
    Runtime,
    Setting,
    settings_of,
)
from archdal.errors import ArchdalError
from archdal.loop import run

EXIT_USAGE = 2


class Parser(argparse.ArgumentParser):
    """Usage errors as one line naming the value, exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(EXIT_USAGE)


def main_guard(prog: str, body: Callable[[], int]) -> int:
    """Run a command's checks and work; an `ArchdalError` becomes one line and its exit code
    (2: bad input, found before any work; 1: a failure after work started, such as a full
    disk, from which a rerun resumes)."""
    try:
        return body()
    except ArchdalError as err:
        sys.stderr.write(f"{prog}: error: {err}\n")
        return err.exit_code


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"{text!r} is not JSON ({err.msg})") from err
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{text!r} is not a JSON object")
    return value


_ARG_TYPES: dict[str, Callable[[str], Any]] = {
    "int": int,
    "float": float,
    "str": str,
    "dict[str, Any]": _json_object,
    "Path | None": Path,
    "float | None": float,
}


_METAVARS = {"dict[str, Any]": "JSON"}


def _help(setting: Setting, by_modality: bool) -> str:
    text = setting.spec.metadata.get("help", "").replace("%", "%%")  # argparse formats help
    admits = setting.spec.metadata.get("admits")
    if isinstance(admits, Interval):
        text += f"; {admits.describe()}"
    default = setting.default
    if by_modality:
        return f"{text} (default: {default} for images, {setting.text_default} for text)"
    if setting.kind == "bool" or "(default:" in text:  # a bool's default is off; or said
        return text
    return f"{text} (default: {default!r})" if default == "" else f"{text} (default: {default})"


def add_setting(group: argparse._ArgumentGroup, setting: Setting, dest: str) -> None:
    """One flag for one declared field. A field whose default differs for text is left out
    of the namespace unless given, so `RunConfig.for_dataset` can fill it."""
    by_modality = setting.text_default is not dataclasses.MISSING
    kwargs: dict[str, Any] = {"dest": dest, "help": _help(setting, by_modality)}
    if setting.kind == "bool":
        group.add_argument(setting.flag, action="store_true", **kwargs)
        return
    admits = setting.spec.metadata.get("admits")
    if isinstance(admits, OneOf):
        kwargs["choices"] = admits.allowed()
    else:
        kwargs["type"] = _ARG_TYPES[setting.kind]
        kwargs["metavar"] = _METAVARS.get(setting.kind) or setting.spec.name.split("_")[-1].upper()
    kwargs["default"] = argparse.SUPPRESS if by_modality else setting.default
    group.add_argument(setting.flag, **kwargs)


def _dest(setting: Setting) -> str:
    return "__".join(setting.path)


def _groups(parser: argparse.ArgumentParser) -> dict[tuple[str, ...], argparse._ArgumentGroup]:
    groups = {(): parser.add_argument_group("experiment")}
    for f in dataclasses.fields(RunConfig):
        if "nested" in f.metadata:
            groups[(f.name,)] = parser.add_argument_group(f.metadata["help"])
    return groups


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    groups = _groups(p)
    for setting in settings_of(RunConfig):
        add_setting(groups[setting.path[:-1]], setting, _dest(setting))
    r = p.add_argument_group("runtime")
    r.add_argument("--out", type=Path, required=True, help="run directory (resumed if unfinished)")
    for setting in settings_of(Runtime):
        add_setting(r, setting, f"runtime__{setting.spec.name}")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="archdal", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    run_parser = sub.add_parser("run", help="run or resume one active-learning trajectory")
    add_run_arguments(run_parser)
    return parser


def configs_from_args(args: argparse.Namespace) -> tuple[RunConfig, Runtime]:
    """Every field has its flag (`init_size` ↔ `--init-size`, `pretrain_options.lr` ↔
    `--pretrain-lr`); flags not given take the paper's default for the dataset's modality."""
    given = vars(args)
    arch = {"arch": given["arch"]} if "arch" in given else {}  # its family's protocol
    base = RunConfig.for_dataset(given["dataset"], **arch)
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for setting in settings_of(RunConfig):
        if _dest(setting) not in given:
            continue
        value = given[_dest(setting)]
        if len(setting.path) == 1:
            top[setting.path[0]] = value
        else:
            nested.setdefault(setting.path[0], {})[setting.path[1]] = value
    for name, values in nested.items():
        top[name] = dataclasses.replace(getattr(base, name), **values)
    runtime = Runtime(
        **{s.spec.name: given[f"runtime__{s.spec.name}"] for s in settings_of(Runtime)}
    )
    return dataclasses.replace(base, **top).validate(), runtime.validate()


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        args = build_parser().parse_args(argv)
        config, runtime = configs_from_args(args)
        progress = None if runtime.quiet else lambda line: print(line, flush=True)
        records = run(config, args.out, runtime, progress, epoch_progress=not runtime.quiet)
        if not runtime.quiet:
            print(
                f"final test accuracy {100 * records[-1]['test_acc']:.2f}% — results in {args.out}"
            )
        return 0

    return main_guard("archdal", body)


if __name__ == "__main__":
    sys.exit(main())
