"""Command line: ``jaxmodels train|eval|sample --config FILE[:ARG] --workdir DIR``.

``jaxmodels compile --config FILE[:ARG]`` lowers and compiles the train step ahead of time
and prints the memory each device needs, without running it. Any config key can be
overridden with ``--config.key=value`` (types are checked; unknown keys
fail with the key's name). Also runs as ``python -m jaxmodels``.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from jaxmodels import registry
from jaxmodels.config import validate

COMMANDS = ("train", "eval", "sample", "compile")
USAGE = (
    "usage: jaxmodels {train,eval,sample} --config FILE[:ARG] --workdir DIR "
    "[--config.key=value ...]\n"
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
flags.mark_flags_as_required(["config"])


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
        from jaxmodels.train import loop

        config = _CONFIG.value
        if command != "compile" and not _WORKDIR.value:
            raise app.UsageError(f"--workdir is required for {command}\n{USAGE}")
        try:
            registry.family_module(config.family)  # an unknown family fails naming the known
            validate(config)
            if command == "compile":
                _compile(config, None)
            else:
                fn = {"train": loop.train, "eval": loop.evaluate, "sample": loop.sample}[command]
                fn(config, _WORKDIR.value, allow_config_change=_ALLOW_CHANGE.value)
        except loop.USER_ERRORS as e:
            print(f"jaxmodels {command}: error: {_with_causes(e)}", file=sys.stderr)
            sys.exit(1)

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
        raise ConfigKeyError(e.args[0] if e.args else e) from e


def _config_file(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            return arg.split("=", 1)[1].partition(":")[0]
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1].partition(":")[0]
    return None


def run(argv: list[str] | None = None) -> None:
    """Console entry point: picks the command, then lets absl parse the flags."""
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] not in COMMANDS:
        print(USAGE, file=sys.stderr)
        sys.exit(2)
    command = argv.pop(1)
    file = _config_file(argv)
    if file is not None and not os.path.isfile(file):
        print(f"jaxmodels {command}: error: --config file {file!r} does not exist", file=sys.stderr)
        sys.exit(2)
    try:
        app.run(_main(command), argv=argv, flags_parser=_parse_flags)
    except ConfigKeyError as e:
        print(f"jaxmodels {command}: error: unknown config key {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    run()
