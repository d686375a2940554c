"""Online action detection with TRN (Xu et al., ICCV 2019): LSTM encoder, 8-step decoder.

Embedded synthetic streams by default; `:sensor` uses BasicMotions watch-IMU streams (needs the
sktime wheel, which ships the data); `:smoke` is a seconds-long CI run; `:thumos` is
TRN.pytorch's THUMOS'14 recipe on the TRN/LSTR feature layout (set data.data_root,
data.split_file and the train.steps the first attempt names).

jaxmodels train --config experiments/online_action/trn.py --workdir runs/oad-trn
jaxmodels train --config experiments/online_action/trn.py:sensor --workdir runs/oad-trn-sensor
jaxmodels train --config experiments/online_action/trn.py:smoke --workdir /tmp/oad-trn-smoke
jaxmodels train --config experiments/online_action/trn.py:thumos --workdir runs/trn-thumos \
  --config.data.data_root=DATA/THUMOS --config.data.split_file=DATA/data_info.json \
  --config.train.steps=N
jaxmodels eval --config experiments/online_action/trn.py --workdir runs/oad-trn
"""

from jaxmodels.config import config_args
from jaxmodels.models.online_action.config import experiment_config


def get_config(arg: str | None = None):
    # Every key, commented, is in jaxmodels.models.online_action.config.experiment_config and
    # the detector's options in jaxmodels.models.online_action.detectors.DETECTORS.
    return experiment_config("trn", config_args(arg, ("smoke", "sensor", "thumos")))
