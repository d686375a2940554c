"""Online action detection with an LSTM: TRN's encoder without its decoder (the TRN ablation).

Embedded synthetic streams by default; `:sensor` uses BasicMotions watch-IMU streams (needs the
sktime wheel, which ships the data); `:smoke` is a seconds-long CI run.

jaxmodels train --config experiments/online_action/lstm.py --workdir runs/oad-lstm
jaxmodels train --config experiments/online_action/lstm.py:smoke --workdir /tmp/oad-lstm-smoke
"""

from jaxmodels.config import config_args
from jaxmodels.models.online_action.config import experiment_config


def get_config(arg: str | None = None):
    # Every key, commented, is in jaxmodels.models.online_action.config.experiment_config and
    # the detector's options in jaxmodels.models.online_action.detectors.DETECTORS.
    return experiment_config("lstm", config_args(arg, ("smoke", "sensor")))
