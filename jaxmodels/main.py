"""Command line: ``jaxmodels train|eval|sample --config FILE[:ARG] --workdir DIR``.

``jaxmodels compile --config FILE[:ARG]`` lowers and compiles the train step ahead of time
and prints the memory each device needs, without running it. Any config key can be
overridden with ``--config.key=value`` (types are checked; unknown keys
fail with the key's name). Also runs as ``python -m jaxmodels``.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from jaxmodels.config import validate

COMMANDS = ("train", "eval", "sample", "compile")
USAGE = (
    "usage: jaxmodels {train,eval,sample} --config FILE[:ARG] --workdir DIR "
    "[--config.key=value ...]\n"
    "       jaxmodels compile --config FILE[:ARG] [--config.key=value ...]"
)

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file[:arg]")
_WORKDIR = flags.DEFINE_string("workdir", None, "directory for checkpoints, metrics and samples")
flags.mark_flags_as_required(["config"])


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
        fn = {"train": loop.train, "eval": loop.evaluate, "sample": loop.sample}
        fn = {**fn, "compile": _compile}[command]
        if command != "compile" and not _WORKDIR.value:
            raise app.UsageError(f"--workdir is required for {command}\n{USAGE}")
        try:
            validate(config)
            fn(config, _WORKDIR.value)
        except (loop.NonFiniteLossError, FileNotFoundError, ValueError) as e:
            print(f"jaxmodels {command}: error: {e}", file=sys.stderr)
            sys.exit(1)

    return main


def run(argv: list[str] | None = None) -> None:
    """Console entry point: picks the command, then lets absl parse the flags."""
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] not in COMMANDS:
        print(USAGE, file=sys.stderr)
        sys.exit(2)
    command = argv.pop(1)
    try:
        app.run(_main(command), argv=argv)
    except (AttributeError, KeyError) as e:  # ml_collections: override of a key that is absent
        print(f"jaxmodels {command}: error: unknown config key {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    run()
