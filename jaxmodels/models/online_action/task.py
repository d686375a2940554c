"""The ``online_action`` family: TRN / IDN / GRU / MLP detectors on the shared trainer.

``build_task(config, mesh)`` trains on fixed-length windows (grain) and offers one evaluator
(``config.evals``), ``map``, on whole streams: per-frame mAP (THUMOS'14 protocol), mcAP
(TVSeries) and the detector's own metrics (TRN: the anticipation mAP of each decoder step).
The detector comes from the table in :mod:`~jaxmodels.models.online_action.detectors`; the
config defaults are in :mod:`~jaxmodels.models.online_action.config`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxmodels import evaluate
from jaxmodels.evaluate import online_action as metrics_lib
from jaxmodels.models.online_action import data
from jaxmodels.models.online_action.detectors import build_model, criterion, detector
from jaxmodels.train.task import Task


def _train_data(videos, config, future_steps: int):
    """Strided windows shuffled and repeated by grain or, when ``data.epochs`` > 0,
    TRN.pytorch's per-epoch offset windows (the source orders its epochs itself, read once)."""
    from jaxmodels.data import pipeline

    d, t = config.data, config.train
    if not d.epochs:
        source = data.WindowSource(videos, d.enc_steps, future_steps, d.window_stride)
        return pipeline.iterator_fn(source, config, train=True)
    source = data.EpochWindows(videos, d.enc_steps, future_steps, d.epochs, config.seed)
    steps = len(source) // t.batch_size
    if t.steps != steps:
        raise ValueError(
            f"data.epochs={d.epochs} of {len(source) // d.epochs} windows at batch "
            f"{t.batch_size} is {steps} steps: pass --config.train.steps={steps}"
        )
    return pipeline.iterator_fn(source, config, train=False)


def frame_map(model, entry, m, videos, batch_videos: int, ambiguous):
    """The ``map`` evaluator: whole videos through the detector, per-frame ``mAP`` (THUMOS'14),
    ``mcAP`` (TVSeries) and the detector's own metrics (TRN: anticipation mAP per step)."""

    @jax.jit
    def predict(params, x_BxLxE):
        out, _ = model.apply({"params": params}, x_BxLxE)
        return {
            k: jax.nn.softmax(v.astype(jnp.float32), -1) for k, v in out.items() if "scores" in k
        }

    def run(params, rng):
        del rng
        length = max(len(x) for x in videos.features)
        probs = {}
        for x, lengths, idx in data.padded_batches(videos, batch_videos, length):
            out = jax.device_get(predict(params, x))
            for row, i in enumerate(idx):
                probs[int(i)] = {k: v[row, : lengths[row]] for k, v in out.items()}
        ys = videos.targets
        outputs = [probs[i] for i in range(len(ys))]
        scores, y = np.concatenate([o["scores"] for o in outputs]), np.concatenate(ys)
        result = dict(
            mAP=metrics_lib.per_frame_map(scores, y, ambiguous=ambiguous),
            mcAP=metrics_lib.calibrated_map(scores, y, ambiguous=ambiguous),
        )
        if entry.metrics is not None:
            result.update(entry.metrics(m, outputs, ys, ambiguous))
        return result

    return run


def build_task(config, mesh):
    """Online action detection: windows for training, whole-video mAP / mcAP evaluation."""
    del mesh  # sharding is declared through logical names only
    from jaxmodels.data import pipeline

    m, d = config.model, config.data
    entry = detector(m.variant)
    train_videos, eval_videos = data.load_splits(d, config.seed)
    D, C = train_videos.features[0].shape[1], train_videos.targets[0].shape[1]
    ambiguous = d.ambiguous if d.ambiguous >= 0 else None
    model = build_model(m, D, C, jnp.dtype(config.train.compute_dtype))
    loss = criterion(m, ambiguous)
    future_steps = entry.future_steps(m)

    def init(rng):
        return model.init(rng, jnp.zeros((1, 2, D)))["params"]

    def loss_fn(params, batch, rng):
        out, _ = model.apply(
            {"params": params}, batch["features"], deterministic=False, rngs={"dropout": rng}
        )
        return loss(out, batch["targets"])

    def eval_fn(params, batch, rng):
        out, _ = model.apply({"params": params}, batch["features"])
        value, metrics = loss(out, batch["targets"])
        return dict(metrics, loss=value)

    offered = {"map": lambda: frame_map(model, entry, m, eval_videos, d.eval_batch_size, ambiguous)}
    eval_source = data.WindowSource(eval_videos, d.enc_steps, future_steps, d.window_stride)
    return Task(
        units="frames",
        units_per_example=d.enc_steps,  # one window of enc_steps frames
        model=model,
        init=init,
        loss_fn=loss_fn,
        train_data=_train_data(train_videos, config, future_steps),
        eval_data=pipeline.iterator_fn(eval_source, config, train=False),
        eval_fn=eval_fn,
        evaluate=evaluate.select(config.evals, offered),
        batch_axes={"features": ("batch", "length", None), "targets": ("batch", "length", None)},
    )
