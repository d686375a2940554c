"""Online action detection with IDN (Eun et al., CVPR 2020): IDU over 16-frame windows.

Embedded synthetic streams by default; `:sensor` uses BasicMotions watch-IMU streams (needs the
sktime wheel, which ships the data); `:smoke` is a seconds-long CI run; `:released` runs the
IDU cell as the authors' released code does (hard-sigmoid gates without biases, hidden 512).

jaxmodels train --config experiments/online_action/idn.py --workdir runs/oad-idn
jaxmodels train --config experiments/online_action/idn.py:sensor --workdir runs/oad-idn-sensor
jaxmodels train --config experiments/online_action/idn.py:smoke --workdir /tmp/oad-idn-smoke
jaxmodels eval --config experiments/online_action/idn.py --workdir runs/oad-idn
"""

from jaxmodels.config import config_args
from jaxmodels.models.online_action.config import experiment_config


def get_config(arg: str | None = None):
    # Every key, commented, is in jaxmodels.models.online_action.config.experiment_config and
    # the detector's options in jaxmodels.models.online_action.detectors.DETECTORS.
    return experiment_config("idn", config_args(arg, ("smoke", "sensor", "released")))
