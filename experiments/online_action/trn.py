"""Online action detection with TRN (Xu et al., ICCV 2019): LSTM encoder, 8-step decoder.

Embedded synthetic streams by default; `:sensor` uses BasicMotions watch-IMU streams (needs the
sktime wheel, which ships the data); `:smoke` is a seconds-long CI run.

jaxmodels train --config experiments/online_action/trn.py --workdir runs/oad-trn
jaxmodels train --config experiments/online_action/trn.py:sensor --workdir runs/oad-trn-sensor
jaxmodels train --config experiments/online_action/trn.py:smoke --workdir /tmp/oad-trn-smoke
jaxmodels eval --config experiments/online_action/trn.py --workdir runs/oad-trn
"""

from jaxmodels.models.online_action.task import experiment_config


def get_config(arg: str | None = None):
    # Every key, commented, is in jaxmodels.models.online_action.task.experiment_config.
    return experiment_config("trn", arg)
