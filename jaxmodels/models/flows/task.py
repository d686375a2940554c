"""The flows family: NICE, RealNVP and Glow trained by maximum likelihood on dequantised
images (scikit-learn's digits or the user's files, ``data.path``) or on 2-D toy points.

Training minimises bits/dim (:mod:`loss`); every evaluation logs ``eval_bits_per_dim`` over
the whole held-out split; ``jaxmodels sample`` writes one PNG grid per temperature in
``config.sample.temperatures``. Actnorm layers are initialised from a training batch.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np

from jaxmodels.models.flows import data, loss, sample
from jaxmodels.models.flows.model import build_flow
from jaxmodels.train.task import Task


def _digits_fd(u, levels: int) -> float:
    """Frechet distance of digit samples to held-out digits (the diffusion family's metric)."""
    from jaxmodels.evaluate.generative import digits_quality

    pixels = np.floor(np.clip(np.nan_to_num(np.asarray(u)), 0, 1 - 1e-6) * levels)
    return digits_quality(pixels / 8.0 - 1.0)["fd"]  # that metric reads levels 0..16 in [-1, 1]


def _sampler(config, flow, levels, event_shape, heldout_bpd, reference):
    s, generate = config.sample, sample.make_generate(flow, config.model.prior, event_shape)
    is_digits = levels == 17 and tuple(event_shape) == (8, 8, 1)

    def sample_fn(params, rng, workdir):
        out = {"heldout_bits_per_dim": heldout_bpd(params)}
        for i, temperature in enumerate(s.temperatures):
            u = jax.device_get(generate(params, jax.random.fold_in(rng, i), s.num, temperature))
            sample.write_samples(
                u, sample.temperature_path(workdir, temperature), levels, reference
            )
            if is_digits:
                out[f"fd_T{temperature:g}"] = _digits_fd(u, levels)
        with open(os.path.join(workdir, "sample_metrics.json"), "w") as f:
            json.dump(out, f, indent=1)
        summary = " ".join(f"{k}={v:.4g}" for k, v in out.items())
        return f"wrote {len(s.temperatures)} grids samples_T*.png in {workdir}; {summary}"

    return sample_fn


def build_task(config, mesh) -> Task:
    """Builds the flow task from ``config.model``, ``config.data`` and ``config.sample``."""
    del mesh  # pure data parallelism from the logical rules
    from jaxmodels.data import pipeline

    m, d = config.model, config.data
    x_train, levels = data.arrays(d, "train", config.seed)
    x_eval, _ = data.arrays(d, "eval", config.seed)
    event_shape = x_train.shape[1:]
    flow = build_flow(m, event_shape)
    # Actnorm's data-dependent init (Glow §3.1) sees a fixed, dequantised training batch.
    u_init = loss.dequantize(x_train[: m.init_batch], levels, jax.random.key(config.seed))
    heldout_bpd = sample.make_heldout_bpd(
        flow, m.prior, levels, x_eval, d.eval_chunk, config.seed + 1
    )
    dims = int(np.prod(event_shape))
    batch_axes = {"image": ("batch",) + (None,) * len(event_shape)}
    source = pipeline.ArraySource({"image": x_train})
    return Task(
        units="images" if levels else "examples",
        init=lambda rng: flow.init(rng, u_init)["params"],
        loss_fn=loss.nll_loss(flow, m.prior, levels, dims),
        train_data=pipeline.iterator_fn(source, config, train=True),
        evaluate=lambda params, rng: {"bits_per_dim": heldout_bpd(params)},
        sample=_sampler(config, flow, levels, event_shape, heldout_bpd, x_eval),
        batch_axes=batch_axes,
    )
