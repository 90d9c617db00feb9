"""The ``torch-pet`` command: ``train``, ``evaluate`` and ``main`` (the README's main job).

* ``torch-pet train --dataset methane|qm9|extxyz ...`` trains PET (energies + forces, or a
  QM9 target) and writes checkpoints, ``metrics.jsonl``, ``learning_curve.png`` and the
  resolved ``config.yaml``; ``torch-pet train --config run.yaml`` reads the options from a
  YAML run file laid out like that ``config.yaml`` (``out``, ``resume``, ``data:``,
  ``model:``, ``training:``); options given on the command line override the file, and a
  key of the file that is no option is an error.
* ``torch-pet evaluate --checkpoint run/best.pt --dataset methane`` evaluates y0 and the
  ECSE-symmetrized yS on a test split and prints the results table.
* ``torch-pet preprocess data.xyz out/`` converts an extended-XYZ file into an on-disk
  dataset, read lazily by ``torch-pet train --dataset ondisk --data out/``.
* ``torch-pet main`` trains PET and its distance-only auxiliary model on the bundled
  distorted-methane set, evaluates y0 and yS and writes the table and plots to ``--out``.

This module only parses and dispatches: the options (type, default, help, check) are
generated from the job configs of :mod:`torch_pet.commands`, which run the jobs. A bad
option, file or device ends the command with one line on stderr and exit code 2.
"""
import argparse
import dataclasses
import os
import sys
import typing
from typing import Dict, List, Optional

from torch_pet import commands
from torch_pet.config import OptionError, UnknownKeyError, choices_of, is_section

COMMANDS = {
    "train": (commands.TrainJob, commands.train, "train PET on a dataset"),
    "evaluate": (commands.EvaluateJob, commands.evaluate,
                 "evaluate y0 and the ECSE-symmetrized yS of a checkpoint"),
    "main": (commands.MainJob, commands.main_job,
             "the main job: methane, y0 vs yS table and plots"),
    "preprocess": (commands.PreprocessJob, commands.preprocess,
                   "convert an extended-XYZ file into an on-disk dataset (read lazily)"),
}
# Options that may also be given as positional arguments, in this order.
POSITIONALS = {"preprocess": ("data", "out")}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _unwrap_optional(tp):
    if typing.get_origin(tp) is typing.Union:
        return [a for a in typing.get_args(tp) if a is not type(None)][0]
    return tp


def add_config_options(parser: argparse.ArgumentParser, cls: type, flags: Dict[str, str],
                       prefix: tuple = ()) -> None:
    """One option per field of ``cls`` (sections flattened: ``training.epochs`` ->
    ``--epochs``), with the field's type, choices, default and help; ``flags`` maps each
    dotted field path to its flag. Defaults stay unset (argparse.SUPPRESS), so that only
    the options given override the run file."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        path = ".".join(prefix + (field.name,))
        if is_section(field):
            add_config_options(parser, hints[field.name], flags, prefix + (field.name,))
            continue
        if not field.metadata.get("cli", True):
            continue
        flag = "--" + field.name.replace("_", "-")
        tp = _unwrap_optional(hints[field.name])
        default = field.default if field.default is not None else "none"
        if isinstance(default, tuple):
            default = " ".join(map(str, default))
        help_text = field.metadata["help"]
        if "default" not in help_text:
            help_text += f" (default: {default})"
        kwargs = dict(dest=path, default=argparse.SUPPRESS, help=help_text.replace("%", "%%"))
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(tp) is tuple:
            args = typing.get_args(tp)
            kwargs["type"] = args[0]
            kwargs["nargs"] = "+" if args[-1] is Ellipsis else len(args)
        else:
            kwargs["type"] = tp
        if choices_of(field) is not None:
            kwargs["choices"] = choices_of(field)
        if tp is not bool and "choices" not in kwargs:
            kwargs["metavar"] = field.metadata.get("metavar") or field.name.upper()
        parser.add_argument(flag, **kwargs)
        flags[path] = flag


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="torch-pet", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser,
                                help="what to do")
    for name, (cls, _, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--config", metavar="RUN.yaml",
                       help="read the options from this YAML run file (laid out like the "
                            "config.yaml a run writes); options given here override it")
        add_config_options(p, cls, flags={})
        for name in POSITIONALS.get(name, ()):
            p.add_argument(f"{name}_positional", nargs="?", default=argparse.SUPPRESS,
                           metavar=name.upper(), help=f"same as --{name}")
    return parser


def _read_run_file(path: str) -> dict:
    import yaml

    if not os.path.isfile(path):
        raise OptionError("config", f"{path} does not exist or is not a file")
    try:
        with open(path) as f:
            tree = yaml.safe_load(f)
    except yaml.YAMLError as err:
        raise OptionError("config", f"{path} is not valid YAML ({err})") from None
    except OSError as err:
        raise OptionError("config", f"{path} cannot be read ({err.strerror})") from None
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise OptionError("config", f"{path} must hold a mapping of options, got a "
                          f"{type(tree).__name__}")
    return tree


def resolve_job(cls: type, options: Dict[str, object], run_file: Optional[str] = None):
    """The job config: field defaults, then the run file, then the command-line
    ``options`` (dotted field paths)."""
    tree = _read_run_file(run_file) if run_file else {}
    for path, value in options.items():
        *sections, name = path.split(".")
        node = tree
        for key in sections:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                raise OptionError(key, f"must be a mapping of options in {run_file}, got "
                                  f"{child!r}")
            node[key] = dict(child)
            node = node[key]
        node[name] = value
    return cls.from_dict(tree)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _describe(err: Exception, cls: type, given: Dict[str, object],
              run_file: Optional[str]) -> str:
    if isinstance(err, UnknownKeyError):
        return f"{run_file or 'options'}: unknown key '{err.path}': {err.problem}"
    if isinstance(err, OptionError):
        flags: Dict[str, str] = {}
        add_config_options(_Parser(), cls, flags)
        by_name = {path.rsplit(".", 1)[-1]: flag for path, flag in flags.items()}
        by_name["config"] = "--config"
        flag = flags.get(err.path) or by_name.get(err.path.rsplit(".", 1)[-1])
        from_file = run_file is not None and not any(
            path == err.path or path.rsplit(".", 1)[-1] == err.path for path in given)
        if flag is None or (from_file and "." in err.path):
            label = f"'{err.path}'" + (f" in {run_file}" if run_file else "")
        else:
            label = flag
        return f"{label} {err.problem}"
    return str(err)


def main(argv: Optional[List[str]] = None) -> int:
    args = vars(build_parser().parse_args(argv))
    command = args.pop("command")
    run_file = args.pop("config", None)
    for name in POSITIONALS.get(command, ()):
        if f"{name}_positional" in args:
            value = args.pop(f"{name}_positional")
            if name in args and args[name] != value:
                print(f"torch-pet {command}: error: {name.upper()} given twice ({value} and "
                      f"--{name} {args[name]})", file=sys.stderr)
                return 2
            args[name] = value
    cls, run, _ = COMMANDS[command]
    try:
        job = resolve_job(cls, args, run_file)
        run(job)
    except (ValueError, TypeError, OSError, FloatingPointError) as err:
        message = _one_line(_describe(err, cls, args, run_file))
        print(f"torch-pet {command}: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
