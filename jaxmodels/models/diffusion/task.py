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
import numpy as np

from jaxmodels.data import images as image_files
from jaxmodels.evaluate import generative
from jaxmodels.models.diffusion import data, likelihood, reflow, sample
from jaxmodels.models.diffusion.loss import make_eval_fn, make_loss_fn
from jaxmodels.models.diffusion.model import build_network, build_process
from jaxmodels.train.task import Task


def pooled_pixels(images_BxHxWxC, side: int = 8):
    """Images average-pooled to at most ``side`` x ``side`` per channel, flattened: the
    features of the pixel-space Frechet distance used for the user's own images."""
    n, h, w, c = images_BxHxWxC.shape
    fh, fw = max(h // side, 1), max(w // side, 1)
    x = np.asarray(images_BxHxWxC)[:, : h // fh * fh, : w // fw * fw]
    return x.reshape(n, h // fh, fh, w // fw, fw, c).mean((2, 4)).reshape(n, -1)


def quality(config, samples, labels, reference) -> dict[str, float]:
    """The offline quality metrics of ``samples`` for the configured dataset."""
    d = config.data
    samples, reference = data.undo_dequantize(samples, d), data.undo_dequantize(reference, d)
    if d.get("path"):
        fd = generative.frechet_distance_of(pooled_pixels(samples), pooled_pixels(reference))
        return {"fd_pixels": fd}
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
    arrays = {split: data.split_arrays(config.data, split, config.seed) for split in data.SPLITS}
    shape = arrays["train"]["image"].shape[1:]
    reference = arrays["eval"]["image"]
    generate = sample.make_generate(net, process, s, shape, num_classes)
    width = data.bin_width(config.data)
    r = config.get("reflow")
    teacher = reflow.restore_teacher(config, net, shape, num_classes) if r and r.teacher else None
    loss_fn = make_loss_fn(net, process, m.label_dropout, num_classes, width)
    if teacher is not None:  # a reflow round (or distillation) on the teacher's couplings
        velocity = reflow.velocity_fn(net, process, teacher)
        arrays["train"] = reflow.teacher_couplings(
            velocity, r.coupling_seed, r.num_pairs, shape, r.teacher_steps
        )
        loss_fn = reflow.make_reflow_loss_fn(net, process, r.distill)

    log_likelihood = likelihood.make_log_likelihood(net, process, num_classes, s)

    def init(rng):
        if teacher is not None and r.init_from_teacher:
            return teacher
        x = jnp.zeros((1,) + shape)
        label = jnp.zeros((1,), jnp.int32) if num_classes else None
        return net.init(rng, x, jnp.zeros((1,)), label)["params"]

    def evaluate(params, rng):
        labels = sample.class_labels(s.eval_num, num_classes)
        out = quality(config, jax.device_get(generate(params, rng, labels)), labels, reference)
        if r and m.process == "flow":  # straightness and 1-/2-step quality (Liu et al. 2022)
            noise = jax.random.normal(jax.random.fold_in(rng, 1), (s.eval_num,) + shape)
            velocity = reflow.velocity_fn(net, process, params)
            straight, few = jax.device_get(reflow.straightness_and_few_step(velocity, noise, r))
            out["straightness"] = float(straight)
            for k, x in few.items():  # the quality metrics of k-step Euler: euler<k>_fd, ...
                q = quality(config, x, labels, reference)
                out.update({f"euler{k}_{name}": v for name, v in q.items() if name != "fd_floor"})
        if s.get("likelihood_num"):  # PF-ODE bits/dim of the first held-out images
            held_out = reference[: s.likelihood_num]
            key = jax.random.fold_in(rng, 2)
            out.update(
                likelihood.heldout_bits_per_dim(
                    log_likelihood, params, held_out, width, key, s.likelihood_batch
                )
            )
        return out

    def write_samples(params, rng, workdir):
        labels = sample.class_labels(s.num, num_classes)
        images = jax.device_get(generate(params, rng, labels))
        path = os.path.join(workdir, "samples.png")
        if config.data.get("path"):
            image_files.save_grid((images + 1) / 2, path)
        elif config.data.name == "digits":
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
        loss_fn=loss_fn,
        train_data=pipeline.iterator_fn(source("train"), config, train=True),
        eval_data=pipeline.iterator_fn(source("eval"), config, train=False),
        eval_fn=make_eval_fn(net, process, num_classes, width),
        evaluate=evaluate if s.eval_num else None,
        sample=write_samples,
        batch_axes={"image": ("batch",) + (None,) * len(shape), "label": ("batch",)},
    )
