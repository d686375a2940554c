"""Online action detection with a per-frame MLP (no recurrence): the baseline TRN must beat.

Embedded synthetic streams by default; `:sensor` uses BasicMotions watch-IMU streams (needs the
sktime wheel, which ships the data); `:smoke` is a seconds-long CI run.

jaxmodels train --config experiments/online_action/mlp.py --workdir runs/oad-mlp
jaxmodels train --config experiments/online_action/mlp.py:sensor --workdir runs/oad-mlp-sensor
jaxmodels train --config experiments/online_action/mlp.py:smoke --workdir /tmp/oad-mlp-smoke
jaxmodels eval --config experiments/online_action/mlp.py --workdir runs/oad-mlp
"""

from jaxmodels.config import config_args
from jaxmodels.models.online_action.config import experiment_config


def get_config(arg: str | None = None):
    # Every key, commented, is in jaxmodels.models.online_action.config.experiment_config and
    # the detector's options in jaxmodels.models.online_action.detectors.DETECTORS.
    return experiment_config("mlp", config_args(arg, ("smoke", "sensor")))
