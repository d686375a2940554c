"""The ``online_action`` family: TRN / IDN / GRU / MLP detectors on the shared trainer.

``build_task(config, mesh)`` trains on fixed-length windows (grain) and evaluates whole streams:
per-frame mAP (THUMOS'14 protocol), mcAP (TVSeries) and, for TRN, the anticipation mAP of each
decoder step. :func:`experiment_config` holds the commented defaults the configs in
``experiments/online_action/`` start from.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxmodels.models.online_action.model import build_model


def _load_videos(d, split: str, seed: int):
    """``config.data`` -> Videos of ``split`` (train | eval) from the configured source."""
    from jaxmodels.data import online_action as data

    train = split == "train"
    if d.source == "synthetic":
        n = d.num_train_videos if train else d.num_eval_videos
        return data.synthetic_streams(
            n, num_actions=d.num_actions, feature_dim=d.feature_dim, seed=seed + (0 if train else 1)
        )
    if d.source == "sensor":
        n = d.num_train_videos if train else d.num_eval_videos
        return data.sensor_streams(
            split, n, sensor_dir=d.get("sensor_dir") or None, seed=seed + (0 if train else 1)
        )
    if d.source == "files":
        name = d.train_split if train else d.eval_split
        sessions = data.read_sessions(d.split_file, name, d.get("dataset") or None)
        return data.load_feature_dir(d.data_root, sessions, list(d.feature_dirs), d.target_dir)
    raise ValueError(f"config.data.source={d.source!r} is not one of: synthetic, sensor, files")


def _loss(m, ambiguous):
    """The family loss of ``config.model.name`` as ``(outputs, targets) -> (loss, metrics)``."""
    from jaxmodels.losses import online_action as losses

    if m.name == "trn":
        return functools.partial(
            losses.trn_loss, ignore_index=ambiguous, future_offset=m.future_offset
        )
    if m.name == "idn":
        return functools.partial(
            losses.idn_loss,
            ignore_index=ambiguous,
            window=m.window,
            margin=m.margin,
            weight=m.contrastive_weight,
        )
    return functools.partial(losses.frame_loss, ignore_index=ambiguous)


def build_task(config, mesh):
    """Online action detection: windows for training, whole-video mAP / mcAP evaluation."""
    del mesh  # sharding is declared through logical names only
    from jaxmodels.data import online_action as data
    from jaxmodels.data import pipeline
    from jaxmodels.evaluate import online_action as metrics_lib
    from jaxmodels.train.task import Task

    m, d = config.model, config.data
    train_videos = _load_videos(d, "train", config.seed)
    eval_videos = _load_videos(d, "eval", config.seed)
    D, C = train_videos.features[0].shape[1], train_videos.targets[0].shape[1]
    ambiguous = d.ambiguous if d.ambiguous >= 0 else None
    model = build_model(m, D, C, jnp.dtype(config.train.compute_dtype))
    criterion = _loss(m, ambiguous)
    future_steps = m.dec_steps + m.future_offset - 1 if m.name == "trn" else 0

    def init(rng):
        return model.init(rng, jnp.zeros((1, 2, D)))["params"]

    def loss_fn(params, batch, rng):
        out, _ = model.apply(
            {"params": params}, batch["features"], deterministic=False, rngs={"dropout": rng}
        )
        return criterion(out, batch["targets"])

    def eval_fn(params, batch, rng):
        out, _ = model.apply({"params": params}, batch["features"])
        loss, metrics = criterion(out, batch["targets"])
        return dict(metrics, loss=loss)

    def windows(videos, shuffle):
        source = data.WindowSource(videos, d.enc_steps, future_steps, d.window_stride)

        def make(index, count):
            return pipeline.make_iterator(
                source,
                global_batch_size=config.train.batch_size,
                seed=config.seed,
                process_index=index,
                process_count=count,
                shuffle=shuffle,
                repeat=shuffle,
            )

        return make

    @jax.jit
    def predict(params, x_BxLxD):
        out, _ = model.apply({"params": params}, x_BxLxD)
        return {
            k: jax.nn.softmax(v.astype(jnp.float32), -1) for k, v in out.items() if "scores" in k
        }

    def evaluate(params, rng):
        del rng
        length = max(len(x) for x in eval_videos.features)
        probs = {}
        for x, lengths, idx in data.padded_batches(eval_videos, d.eval_batch_videos, length):
            out = jax.device_get(predict(params, x))
            for row, i in enumerate(idx):
                probs[int(i)] = {k: v[row, : lengths[row]] for k, v in out.items()}
        ys = eval_videos.targets
        scores = np.concatenate([probs[i]["scores"] for i in range(len(ys))])
        result = dict(
            mAP=metrics_lib.per_frame_map(scores, np.concatenate(ys), ambiguous=ambiguous),
            mcAP=metrics_lib.calibrated_map(scores, np.concatenate(ys), ambiguous=ambiguous),
        )
        if m.name == "trn":
            future = [probs[i]["future_scores"] for i in range(len(ys))]
            maps = metrics_lib.future_maps(future, ys, offset=m.future_offset, ambiguous=ambiguous)
            result.update({f"future_mAP_{j + 1}": v for j, v in enumerate(maps)})
        return result

    return Task(
        init=init,
        loss_fn=loss_fn,
        train_data=windows(train_videos, True),
        eval_data=windows(eval_videos, False),
        eval_fn=eval_fn,
        evaluate=evaluate,
        batch_axes={"features": ("batch", "length", None), "targets": ("batch", "length", None)},
    )


def experiment_config(name: str, arg: str | None = None):
    """Default config for detector ``name`` on the embedded streams; ``arg`` is a comma list of
    ``smoke`` (a few tiny steps for CI) and ``sensor`` (BasicMotions instead of synthetic)."""
    from jaxmodels.config import base_config

    args = set((arg or "").split(","))
    c = base_config()
    c.family = "online_action"

    m = c.model
    m.name = name  # detector: trn | idn | gru | mlp
    m.hidden_size = 64  # recurrent / hidden width (TRN THUMOS: 4096, IDN: 512); small for CPU
    m.dropout = 0.1  # dropout rate in training (TRN code base: 0.1)
    m.fusion_size = 0  # TRN input projection width; 0: the feature dim (THUMOS: 3072)
    m.dec_steps = 4  # TRN decoder steps (anticipated frames); the paper: 8, halved for the CPU
    m.future_offset = 1  # TRN decoder step j predicts frame t+offset+j (the paper: 1)
    m.window = 16  # IDN frames per output frame, T + 1 (the paper: 16 chunks = 4 s)
    m.margin = 1.0  # IDN contrastive-loss margin m
    m.contrastive_weight = 1.0  # IDN weight of the contrastive loss
    m.embed_size = 64  # GRU input embedding width

    d = c.data
    d.source = "sensor" if "sensor" in args else "synthetic"  # synthetic | sensor | files
    d.enc_steps = 64  # training window length (TRN: 64)
    d.window_stride = 16  # a training window starts every this many frames
    d.eval_batch_videos = 8  # whole videos per evaluation batch
    d.num_train_videos = 160  # generated training streams (synthetic / sensor)
    d.num_eval_videos = 30  # generated evaluation streams (synthetic / sensor)
    d.num_actions = 10  # synthetic action classes (plus background and ambiguous)
    d.feature_dim = 64  # synthetic feature dimension
    d.ambiguous = -1 if d.source == "sensor" else 11  # ambiguous class index (THUMOS 21); -1: none
    d.sensor_dir = ""  # folder with BasicMotions_{TRAIN,TEST}.ts; "": the sktime package's
    d.data_root = ""  # files: root of the TRN/LSTR layout
    d.feature_dirs = ("rgb_kinetics_resnet50", "flow_kinetics_bninception")  # files: D-concat
    d.target_dir = "target_perframe"  # files: per-frame one-hot targets
    d.split_file = ""  # files: data_info.json (or a text list per split)
    d.dataset = "THUMOS"  # files: key of the dataset in data_info.json
    d.train_split = "train"  # files: <split>_session_set used for training
    d.eval_split = "test"  # files: <split>_session_set used for evaluation

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
    if "smoke" in args:
        m.hidden_size = m.embed_size = 16
        m.dec_steps, m.window = 3, 4
        d.enc_steps, d.window_stride = 16, 16
        d.num_train_videos, d.num_eval_videos, d.feature_dim = 8, 2, 16
        t.steps, t.batch_size, t.warmup_steps = 4, 8, 1
        t.log_every = t.eval_every = t.checkpoint_every = 2
        t.eval_batches = 1
    return c
