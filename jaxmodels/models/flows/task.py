"""The flows family: NICE, RealNVP and Glow trained by maximum likelihood on dequantised
images or on 2-D toy points: the shared image data (:mod:`jaxmodels.data.image_data`:
scikit-learn's digits, your arrays or image folders, ``data.path``), read as integer levels.

Training minimises bits/dim (:mod:`loss`); the ``bits_per_dim`` evaluator (``config.evals``)
logs ``eval_bits_per_dim`` over the whole held-out split; ``jaxmodels sample`` writes one PNG
grid per temperature in ``config.sample.temperatures``. Actnorm layers are initialised from a
training batch.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np

from jaxmodels import evaluate
from jaxmodels.data.image_data import image_data
from jaxmodels.models.flows import loss, sample
from jaxmodels.models.flows.model import build_flow
from jaxmodels.train.task import Task


def _digits_fd(u, dataset) -> float:
    """Frechet distance of digit samples to held-out digits (the diffusion family's metric)."""
    from jaxmodels.evaluate.generative import digits_quality

    levels = dataset.levels
    pixels = np.floor(np.clip(np.nan_to_num(np.asarray(u)), 0, 1 - 1e-6) * levels)
    x = pixels / ((levels - 1) / 2) - 1.0  # that metric reads levels 0..16 in [-1, 1]
    return digits_quality(x, None, dataset.shape[0], dataset.split_seed)["fd"]


def _sampler(config, flow, dataset, heldout_bpd, reference):
    levels, event_shape = dataset.levels, dataset.shape
    s, generate = config.sample, sample.make_generate(flow, config.model.prior, event_shape)
    is_digits = dataset.source == "digits"

    def sample_fn(params, rng, workdir):
        out = {"heldout_bits_per_dim": heldout_bpd(params)}
        for i, temperature in enumerate(s.temperatures):
            u = jax.device_get(generate(params, jax.random.fold_in(rng, i), s.num, temperature))
            sample.write_samples(
                u, sample.temperature_path(workdir, temperature), levels, reference
            )
            if is_digits:
                out[f"fd_T{temperature:g}"] = _digits_fd(u, dataset)
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
    dataset = image_data(d)
    train, held_out = dataset.split("train"), dataset.split("eval")
    levels, event_shape = dataset.levels, dataset.shape
    flow = build_flow(m, event_shape)
    # Actnorm's data-dependent init (Glow §3.1) sees a fixed, dequantised training batch.
    u_init = loss.dequantize(train.images[: m.init_batch], levels, jax.random.key(config.seed))
    heldout_bpd = sample.make_heldout_bpd(
        flow, m.prior, levels, held_out.images, d.eval_chunk, config.seed + 1
    )
    dims = int(np.prod(event_shape))
    batch_axes = {"image": ("batch",) + (None,) * len(event_shape), "label": ("batch",)}
    offered = {"bits_per_dim": lambda: lambda params, rng: {"bits_per_dim": heldout_bpd(params)}}
    reference = held_out.images if not levels else None  # the toys' scatter plots
    return Task(
        units="images" if levels else "examples",
        model=flow,
        init=lambda rng: flow.init(rng, u_init)["params"],
        loss_fn=loss.nll_loss(flow, m.prior, levels, dims),
        train_data=pipeline.iterator_fn(train, config, train=True),
        evaluate=evaluate.select(config.get("evals", ()), offered),
        sample=_sampler(config, flow, dataset, heldout_bpd, reference),
        batch_axes=batch_axes,
    )
