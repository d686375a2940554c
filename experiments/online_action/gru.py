"""Online action detection with a GRU (a plain RNN baseline, after MiniROAD, ICCV 2023).

Embedded synthetic streams by default; `:sensor` uses BasicMotions watch-IMU streams (needs the
sktime wheel, which ships the data); `:smoke` is a seconds-long CI run.

jaxmodels train --config experiments/online_action/gru.py --workdir runs/oad-gru
jaxmodels train --config experiments/online_action/gru.py:sensor --workdir runs/oad-gru-sensor
jaxmodels train --config experiments/online_action/gru.py:smoke --workdir /tmp/oad-gru-smoke
jaxmodels eval --config experiments/online_action/gru.py --workdir runs/oad-gru
"""

from jaxmodels.config import config_args
from jaxmodels.models.online_action.config import experiment_config


def get_config(arg: str | None = None):
    # Every key, commented, is in jaxmodels.models.online_action.config.experiment_config and
    # the detector's options in jaxmodels.models.online_action.detectors.DETECTORS.
    return experiment_config("gru", config_args(arg, ("smoke", "sensor")))
