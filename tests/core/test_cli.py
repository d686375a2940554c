"""The command line: short messages for the user's mistakes, full tracebacks for the rest."""

import signal
import sys

import pytest

from jaxmodels import main
from jaxmodels.config import load_config, validate
from jaxmodels.train import loop, preemption

SMOKE = "experiments/mlp/digits.py:smoke"


def _cli(monkeypatch, *args):
    """Runs the CLI as the shell would (ml_collections reads overrides from ``sys.argv``)."""
    monkeypatch.setattr(sys, "argv", ["jaxmodels", *args])
    main.run()


def _run(capsys, monkeypatch, *args):
    with pytest.raises(SystemExit) as e:
        _cli(monkeypatch, *args)
    return e.value.code, capsys.readouterr().err


def test_missing_config_file_is_one_line(capsys, monkeypatch, tmp_path):
    code, err = _run(
        capsys,
        monkeypatch,
        "train",
        "--config=experiments/mlp/nope.py:smoke",
        f"--workdir={tmp_path}",
    )
    assert code == 2 and err.strip() == (
        "jaxmodels train: error: --config file 'experiments/mlp/nope.py' does not exist"
    )


def test_only_a_bad_config_key_is_shortened(capsys, tmp_path, monkeypatch):
    code, err = _run(capsys, monkeypatch, "train", f"--config={SMOKE}", "--config.train.stepz=3")
    assert code == 2 and err.strip() == (  # it was an escaped repr of ml_collections' KeyError
        "jaxmodels train: error: unknown config key config.train.stepz: config.train has no key "
        "'stepz'; did you mean config.train.steps?"
    )
    code, err = _run(capsys, monkeypatch, "train", f"--config={SMOKE}", "--config.trian.steps=3")
    assert code == 2 and err.strip().endswith(
        "config has no key 'trian'; did you mean config.train?"
    )
    # A key the family's configs used to have names its new name (config.OLD_KEYS).
    code, err = _run(capsys, monkeypatch, "train", f"--config={SMOKE}", "--config.model.hidden=3")
    assert code == 2 and err.strip() == (
        "jaxmodels train: error: unknown config key config.model.hidden: renamed "
        "config.model.width (the config vocabulary: GLOSSARY in jaxmodels/config.py)"
    )

    def broken(config, workdir, **kw):
        return {}["a key the family forgot"]  # a bug inside training, not a config key

    monkeypatch.setattr(loop, "train", broken)
    with pytest.raises(KeyError, match="a key the family forgot"):
        _cli(monkeypatch, "train", f"--config={SMOKE}", f"--workdir={tmp_path}")

    def wrapped(config, workdir, **kw):
        try:
            (tmp_path / "missing" / "f").read_text()
        except FileNotFoundError as e:
            raise ValueError("config.data.path is unusable") from e

    monkeypatch.setattr(loop, "train", wrapped)
    code, err = _run(capsys, monkeypatch, "train", f"--config={SMOKE}", f"--workdir={tmp_path}")
    assert code == 1 and "config.data.path is unusable" in err
    assert "caused by FileNotFoundError" in err  # the cause is kept


def test_model_sizes_are_checked_naming_the_key(capsys, monkeypatch, tmp_path):
    code, err = _run(
        capsys,
        monkeypatch,
        "train",
        f"--config={SMOKE}",
        f"--workdir={tmp_path / 'run'}",
        "--config.model.width=-1",
    )
    assert code == 1 and "config.model.width=-1 must be a positive integer" in err
    assert "Traceback" not in err and not (tmp_path / "run").exists()
    blip = load_config("experiments/blip/pretrain.py:smoke")
    blip.model.image.width = 0  # nested under config.model
    with pytest.raises(ValueError, match=r"config.model.image.width=0 must be a positive integer"):
        validate(blip)


def test_a_held_out_split_smaller_than_one_example_names_the_key(capsys, monkeypatch, tmp_path):
    run = tmp_path / "run"
    args = ["train", f"--config={SMOKE}", f"--workdir={run}", "--config.data.holdout=0.0001"]
    code, err = _run(capsys, monkeypatch, *args)
    assert code == 1 and "config.data.holdout=0.0001 holds out 0 of the 1797 examples" in err
    assert not run.exists()  # the failed build left no empty workdir behind (it used to)


def test_gs_without_the_gcs_extra_names_the_extra(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "gcsfs", None)  # as if not installed
    code, err = _run(capsys, monkeypatch, "train", f"--config={SMOKE}", "--workdir=gs://bkt/run")
    assert code == 1 and "gs://bkt/run: gs:// paths need the `gcs` extra" in err
    assert "pip install 'jaxmodels[gcs]'" in err and "Traceback" not in err


def test_ctrl_c_outside_training_is_one_line(capsys, monkeypatch, tmp_path):
    def interrupted(config, workdir, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "evaluate", interrupted)
    with pytest.raises((SystemExit, KeyboardInterrupt)) as e:
        _cli(monkeypatch, "eval", f"--config={SMOKE}", f"--workdir={tmp_path}")
    assert e.type is SystemExit and e.value.code == 130
    assert capsys.readouterr().err.strip() == "jaxmodels eval: interrupted (Ctrl-C)"


def test_stop_on_signals_and_exit_at_once_on_second_ctrl_c(monkeypatch):
    exits = []
    monkeypatch.setattr(preemption.os, "_exit", exits.append)
    with preemption.Stop() as stop:
        assert not stop.at(1)
        signal.raise_signal(signal.SIGTERM)
        assert stop.at(2) and stop.requested == "SIGTERM" and exits == []
    with preemption.Stop() as stop:
        signal.raise_signal(signal.SIGINT)
        assert stop.requested == "SIGINT" and exits == []
        signal.raise_signal(signal.SIGINT)
        assert exits == [130]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
