"""The diffusion family's task: EDM-unified processes (:mod:`.processes`), a UNet (images) or
MLP (2-D points) denoiser (:mod:`.model`), trained with eq. 8 (:mod:`.loss`) on embedded data
(:mod:`.data`: the shared digits, 2-D toy mixtures) and sampled with any sampler of
:mod:`jaxmodels.samplers` into PNGs (:mod:`.sample`).

``config.model.process`` picks VP, VE, iDDPM, EDM or flow matching; the network is wrapped by
that process's preconditioning and trained with its loss weighting and noise distribution
(EDM Table 1). Sampling uses the EMA parameters when the trainer keeps them.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp

from jaxmodels.evaluate import generative
from jaxmodels.models.diffusion import data, sample
from jaxmodels.models.diffusion.loss import make_eval_fn, make_loss_fn
from jaxmodels.models.diffusion.model import build_network, build_process
from jaxmodels.train.task import Task


def quality(config, samples, labels, reference) -> dict[str, float]:
    """The offline quality metrics of ``samples`` for the configured dataset."""
    d = config.data
    if d.name == "digits":
        labels = labels if config.model.class_conditional else None
        return generative.digits_quality(samples, labels, d.size)
    return generative.mixture_quality(samples, data.toy2d_mixture(d.toy), reference)


def build_task(config, mesh) -> Task:
    """Builds the diffusion task from ``config.model``, ``config.data`` and ``config.sample``."""
    del mesh  # data parallelism and parameter sharding come from the logical rules alone
    from jaxmodels.data import pipeline

    m, s = config.model, config.sample
    num_classes = data.NUM_DIGIT_CLASSES if m.class_conditional else 0
    net = build_network(m, jnp.dtype(config.train.compute_dtype), num_classes)
    process = build_process(m)
    shape = data.example_shape(config.data)
    arrays = {split: data.split_arrays(config.data, split, config.seed) for split in data.SPLITS}
    reference = arrays["eval"]["image"]
    generate = sample.make_generate(net, process, s, shape, num_classes)

    def init(rng):
        x = jnp.zeros((1,) + shape)
        label = jnp.zeros((1,), jnp.int32) if num_classes else None
        return net.init(rng, x, jnp.zeros((1,)), label)["params"]

    def evaluate(params, rng):
        labels = sample.class_labels(s.eval_num, num_classes)
        return quality(config, jax.device_get(generate(params, rng, labels)), labels, reference)

    def write_samples(params, rng, workdir):
        labels = sample.class_labels(s.num, num_classes)
        images = jax.device_get(generate(params, rng, labels))
        path = os.path.join(workdir, "samples.png")
        if config.data.name == "digits":
            sample.save_grid(images, path)
        else:
            sample.save_scatter(images, path, reference)
        metrics = evaluate(params, jax.random.fold_in(rng, 1))
        with open(os.path.join(workdir, "sample_metrics.json"), "w") as f:
            json.dump({"sampler": s.sampler, "steps": s.steps, **metrics}, f, indent=1)
        summary = " ".join(f"{k}={v:.4g}" for k, v in metrics.items())
        return f"wrote {path} ({s.sampler}, {s.steps} steps); {summary}"

    def source(split):
        return pipeline.ArraySource(arrays[split])

    return Task(
        units="images",
        init=init,
        loss_fn=make_loss_fn(net, process, m.label_dropout, num_classes),
        train_data=pipeline.iterator_fn(source("train"), config, train=True),
        eval_data=pipeline.iterator_fn(source("eval"), config, train=False),
        eval_fn=make_eval_fn(net, process, num_classes),
        evaluate=evaluate if s.eval_num else None,
        sample=write_samples,
        batch_axes={"image": ("batch",) + (None,) * len(shape), "label": ("batch",)},
    )
