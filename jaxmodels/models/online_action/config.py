"""The commented defaults the configs in ``experiments/online_action/`` start from.

:func:`experiment_config` builds the shared keys plus the ``config.model`` keys the chosen
detector declares in :data:`~jaxmodels.models.online_action.detectors.DETECTORS`, and applies
the presets named in the config arg (each config file checks its arg with
:func:`jaxmodels.config.config_args`).
"""

from __future__ import annotations

from collections.abc import Set

from jaxmodels.config import base_config
from jaxmodels.models.online_action.detectors import detector


def experiment_config(name: str, args: Set[str] = frozenset()):
    """Config of detector ``name`` on the embedded streams, with ``args`` (the parts of the config
    arg, checked by the config file with :func:`jaxmodels.config.config_args`) among ``smoke`` (a
    few tiny steps for CI), ``sensor`` (BasicMotions instead of synthetic), ``thumos``
    (TRN.pytorch's recipe, :func:`thumos_recipe`) and ``released`` (IDN's released cell,
    :func:`released_idu`)."""
    entry = detector(name)
    c = base_config()
    c.family = "online_action"

    m = c.model
    m.name = name  # detector: a key of DETECTORS (trn | idn | gru | mlp)
    m.hidden_size = 64  # recurrent / hidden width (TRN THUMOS: 4096, IDN: 512); small for CPU
    m.dropout = 0.1  # dropout rate in training (TRN code base: 0.1)
    for key, option in entry.options.items():  # the detector's own keys (see DETECTORS)
        m[key] = option.default

    d = c.data
    d.source = "sensor" if "sensor" in args else "synthetic"  # synthetic | sensor | files
    d.enc_steps = 64  # training window length (TRN: 64)
    d.window_stride = 16  # a training window starts every this many frames (when epochs = 0)
    d.epochs = 0  # >0: TRN.pytorch's non-overlapping windows, offset redrawn per epoch, x epochs
    d.eval_batch_videos = 8  # whole videos per evaluation batch
    d.num_train_videos = 160  # generated training streams (synthetic / sensor)
    d.num_eval_videos = 30  # generated evaluation streams (synthetic / sensor)
    d.num_actions = 10  # synthetic action classes (plus background and ambiguous)
    d.feature_dim = 64  # synthetic feature dimension
    d.cue_lead = (0, 0)  # synthetic: a cue precedes every action by [lo, hi] frames; (0, 0): off
    d.ambiguous = -1 if d.source == "sensor" else 11  # ambiguous class index (THUMOS 21); -1: none
    d.sensor_dir = ""  # folder with BasicMotions_{TRAIN,TEST}.ts; "": the sktime package's
    d.data_root = ""  # files: root of the TRN/LSTR layout
    d.feature_dirs = ("rgb_kinetics_resnet50", "flow_kinetics_bninception")  # files: D-concat
    d.target_dir = "target_perframe"  # files: per-frame one-hot targets
    d.split_file = ""  # files: data_info.json, or text lists per split: lists/{split}.txt
    d.dataset = "THUMOS"  # files: key of the dataset in data_info.json
    d.train_split = "train"  # files: <split>_session_set used for training
    d.eval_split = "test"  # files: <split>_session_set used for evaluation

    c.evals = ("map",)  # offered: map (per-frame mAP, mcAP and the detector's own metrics)

    t = c.train
    t.steps = 1000
    t.batch_size = 16  # windows per step (TRN: 32)
    t.learning_rate = 3e-3
    t.warmup_steps = 50
    t.weight_decay = 1e-4
    t.log_every = 100
    t.eval_every = 500
    t.eval_batches = 10
    t.checkpoint_every = 500
    if "sensor" in args:
        d.num_train_videos, d.num_eval_videos = 64, 12
    if "thumos" in args:
        thumos_recipe(c)
    if "released" in args:
        released_idu(c)
    if "smoke" in args:
        _smoke(c, entry)
    return c


def thumos_recipe(c) -> None:
    """TRN.pytorch's THUMOS'14 recipe (``configs/base_configs.py``, ``configs/thumos/``,
    ``tools/trn_thumos/train.py``, ``lib/utils/net_utils.py``): hidden 4096, 8 decoder steps
    (offset 0), dropout 0.1; Adam lr 5e-4 with L2 5e-4 (``torch.optim.Adam(weight_decay=)``), no
    clipping, batch 32, 21 epochs of non-overlapping 64-frame windows with a random start offset
    per epoch; Linear weights N(0, 0.001), LSTM weights orthogonal and biases N(0, 1). The
    original also divides the learning rate by 10 for its 21st epoch; this preset keeps it flat.
    Set ``data.data_root`` and ``data.split_file``; ``train.steps`` must be 21 epochs' worth
    (the task names the number once it has read the features).
    """
    m, d, t = c.model, c.data, c.train
    m.hidden_size, m.dec_steps, m.future_offset, m.dropout = 4096, 8, 0, 0.1
    m.linear_init_std = 0.001
    d.source, d.ambiguous, d.enc_steps, d.epochs = "files", 21, 64, 21
    d.window_stride = 64  # the eval-loss windows: non-overlapping too
    t.optimizer, t.learning_rate, t.weight_decay, t.grad_clip = "adam", 5e-4, 5e-4, 0.0
    t.b1, t.b2, t.eps = 0.9, 0.999, 1e-8  # torch.optim.Adam defaults
    t.batch_size, t.schedule, t.warmup_steps = 32, "constant", 0
    t.eval_batches = 0


def released_idu(c) -> None:
    """IDN's cell as the authors' released code runs it (hjeun/idu ``IDUCell.type1``): hard-sigmoid
    gates without biases (Keras' ``hard_sigmoid``, the cell's unused bias left out), hidden 512."""
    m = c.model
    m.hidden_size, m.gate_activation, m.cell_bias, m.reset_after = 512, "hard_sigmoid", False, False


def _smoke(c, entry) -> None:
    """A seconds-long run: tiny model, few short videos, four steps."""
    m, d, t = c.model, c.data, c.train
    m.hidden_size = 16
    for key, option in entry.options.items():
        if option.smoke is not None:
            m[key] = option.smoke
    d.enc_steps, d.window_stride = 16, 16
    d.num_train_videos, d.num_eval_videos, d.feature_dim = 8, 2, 16
    t.steps, t.batch_size, t.warmup_steps = 4, 8, 1
    t.log_every = t.eval_every = t.checkpoint_every = 2
    t.eval_batches = 1
