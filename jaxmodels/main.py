"""Command line: ``jaxmodels train|eval|sample --config FILE[:ARG] --workdir DIR``.

``eval``, ``sample`` and ``export --workdir DIR --out HF_DIR`` (the run as an HF
``from_pretrained`` directory) take the run's own ``config.json`` when ``--config`` is left
out. ``jaxmodels compile --config FILE[:ARG]`` lowers and compiles the train step ahead of time
and prints the memory each device needs, without running it. Any config key can be
overridden with ``--config.key=value`` (types are checked; unknown keys
fail with the key's name). Also runs as ``python -m jaxmodels``.
"""

from __future__ import annotations

import difflib
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from jaxmodels import config as config_module
from jaxmodels import registry
from jaxmodels.config import load_config, renamed, saved_config, validate

COMMANDS = ("train", "eval", "sample", "export", "compile")
SAVED_RUN = ("eval", "sample", "export")  # commands whose --config defaults to DIR/config.json
USAGE = (
    "usage: jaxmodels train --config FILE[:ARG] --workdir DIR [--config.key=value ...]\n"
    "       jaxmodels {eval,sample} [--config FILE[:ARG]] --workdir DIR [--config.key=value ...]\n"
    "       jaxmodels export [--config FILE[:ARG]] --workdir DIR --out HF_DIR\n"
    "       jaxmodels compile --config FILE[:ARG] [--config.key=value ...]"
)

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file[:arg]")
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "directory (local or gs://) for checkpoints, metrics and samples"
)
_ALLOW_CHANGE = flags.DEFINE_bool(
    "allow_config_change",
    False,
    "resume although config keys differ from the run's config.json (model, data, optimizer...)",
)
_OUT = flags.DEFINE_string(
    "out", None, "export: a new (or empty) directory for the HF from_pretrained files"
)


class ConfigKeyError(Exception):
    """A ``--config.key=value`` override names a key the config does not have."""


def _compile(config, workdir):
    from jaxmodels.train import aot

    del workdir
    print(aot.format_report(aot.compile_report(config)))


def _main(command: str):
    def main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}\n{USAGE}")
        if not flags.FLAGS["verbosity"].present:
            logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
        from jaxmodels.train import loop, preemption

        config = _CONFIG.value
        if config is None:
            raise app.UsageError(f"--config is required for {command}\n{USAGE}")
        if command != "compile" and not _WORKDIR.value:
            raise app.UsageError(f"--workdir is required for {command}\n{USAGE}")
        if command == "export" and not _OUT.value:
            raise app.UsageError(f"--out is required for export\n{USAGE}")
        try:
            registry.family_module(config.family)  # an unknown family fails naming the known
            validate(config)
            if command == "compile":
                _compile(config, None)
            elif command == "export":
                loop.export(config, _WORKDIR.value, _OUT.value,
                            allow_config_change=_ALLOW_CHANGE.value)  # fmt: skip
            else:
                fn = {"train": loop.train, "eval": loop.evaluate, "sample": loop.sample}[command]
                fn(config, _WORKDIR.value, allow_config_change=_ALLOW_CHANGE.value)
        except loop.USER_ERRORS as e:
            print(f"jaxmodels {command}: error: {_with_causes(e)}", file=sys.stderr)
            sys.exit(1)
        except preemption.Interrupted as e:
            print(f"jaxmodels {command}: {e}", file=sys.stderr)
            sys.exit(e.exit_code)

    return main


def _with_causes(e: BaseException) -> str:
    """The message and, on following lines, the chain of causes (each ``Type: message``)."""
    lines, seen = [str(e)], {id(e)}
    cause = e.__cause__
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        lines.append(f"  caused by {type(cause).__name__}: {cause}")
        cause = cause.__cause__
    return "\n".join(lines)


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's parser, with an override of a missing config key turned into ``ConfigKeyError``.

    Only here: an ``AttributeError``/``KeyError`` raised later, while training, keeps its
    traceback.
    """
    try:
        return app.parse_flags_with_usage(argv)
    except (AttributeError, KeyError) as e:  # ml_collections: override of an absent key
        raise ConfigKeyError(_unknown_key(argv, e)) from e


def _unknown_key(argv: list[str], error: BaseException) -> str:
    """``config.train.stepz: config.train has no key 'stepz'; did you mean config.train.steps?``
    for the first ``--config.KEY`` override the config lacks (else ml_collections' message); a
    key the family's configs used to have names its new name (``config.OLD_KEYS``)."""
    try:
        config = load_config(_config_spec(argv))
    except Exception:  # the file failed to load: absl's own error follows on a rerun
        config = None
    for arg in argv if config is not None else ():
        if not arg.startswith("--config."):
            continue
        key = arg.removeprefix("--config.").split("=", 1)[0]
        node, known = config, []
        for part in key.split("."):
            where = ".".join(["config", *known])
            if not hasattr(node, "keys"):
                return f"config.{key}: {where}={node!r} has no keys"
            if part not in node:
                new = renamed(config.get("family", ""), key)
                if new is not None:
                    return (
                        f"config.{key}: renamed config.{new} (the config vocabulary: GLOSSARY "
                        "in jaxmodels/config.py)"
                    )
                close = difflib.get_close_matches(part, list(node.keys()), n=1)
                hint = f"; did you mean {where}.{close[0]}?" if close else ""
                return f"config.{key}: {where} has no key {part!r}{hint}"
            node, known = node[part], [*known, part]
    while isinstance(error, BaseException) and error.args:  # ml_collections nests a KeyError
        error = error.args[0]
    return str(error)


def _config_spec(argv: list[str]) -> str | None:
    """The ``FILE[:ARG]`` of ``--config``."""
    return _flag_value(argv, "config")


def _flag_value(argv: list[str], name: str) -> str | None:
    """The value of ``--name=VALUE`` or ``--name VALUE`` in ``argv``."""
    for i, arg in enumerate(argv):
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
        if arg == f"--{name}" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def run(argv: list[str] | None = None) -> None:
    """Console entry point: picks the command, then lets absl parse the flags."""
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] not in COMMANDS:
        print(USAGE, file=sys.stderr)
        sys.exit(2)
    command = argv.pop(1)
    spec = _config_spec(argv)
    if spec is None and command in SAVED_RUN and _flag_value(argv, "workdir"):
        workdir = _flag_value(argv, "workdir")
        try:  # the run's own config: jaxmodels/config.py:DIR (its get_config reads DIR/config.json)
            saved_config(workdir)
        except (FileNotFoundError, ValueError) as e:
            print(f"jaxmodels {command}: error: {e}", file=sys.stderr)
            sys.exit(2)
        spec = f"{config_module.__file__}:{workdir}"
        argv.insert(1, f"--config={spec}")
    file = None if spec is None else spec.partition(":")[0]
    if file is not None and not os.path.isfile(file):
        print(f"jaxmodels {command}: error: --config file {file!r} does not exist", file=sys.stderr)
        sys.exit(2)
    try:
        app.run(_main(command), argv=argv, flags_parser=_parse_flags)
    except ConfigKeyError as e:
        print(f"jaxmodels {command}: error: unknown config key {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # Ctrl-C before training starts its own handling, or in eval
        print(f"jaxmodels {command}: interrupted (Ctrl-C)", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    run()
