"""Online action detection with IDN (Eun et al., CVPR 2020): IDU over 16-frame windows.

Embedded synthetic streams by default; `:sensor` uses BasicMotions watch-IMU streams (needs the
sktime wheel, which ships the data); `:smoke` is a seconds-long CI run.

jaxmodels train --config experiments/online_action/idn.py --workdir runs/oad-idn
jaxmodels train --config experiments/online_action/idn.py:sensor --workdir runs/oad-idn-sensor
jaxmodels train --config experiments/online_action/idn.py:smoke --workdir /tmp/oad-idn-smoke
jaxmodels eval --config experiments/online_action/idn.py --workdir runs/oad-idn
"""

from jaxmodels.models.online_action.task import experiment_config


def get_config(arg: str | None = None):
    # Every key, commented, is in jaxmodels.models.online_action.task.experiment_config.
    return experiment_config("idn", arg)
