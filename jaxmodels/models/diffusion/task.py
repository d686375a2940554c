"""The diffusion family's task: EDM-unified processes (:mod:`.processes`), a UNet (images) or
MLP (2-D points) denoiser (:mod:`.model`), trained with eq. 8 (:mod:`.loss`) on the shared image
data (:mod:`jaxmodels.data.image_data`: digits, 2-D toy mixtures, your arrays or image folders;
scaled by :mod:`.data`) and sampled with any sampler of :mod:`jaxmodels.samplers` into PNGs
(:mod:`.sample`).

``config.model.process`` picks VP, VE, iDDPM, EDM or flow matching; the network is wrapped by
that process's preconditioning and trained with its loss weighting and noise distribution
(EDM Table 1). Sampling uses the EMA parameters when the trainer keeps them. The evaluators
named in ``config.evals`` run on schedule: ``quality`` (sample quality: the digits' classifier
FD and accuracy, the toys' mixture metrics, or a pixel FD on your images), ``likelihood``
(PF-ODE bits/dim of held-out images) and ``reflow`` (straightness and few-step quality).
"""

from __future__ import annotations

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxmodels import evaluate
from jaxmodels.data import images as image_files
from jaxmodels.data import toy2d
from jaxmodels.data.image_data import image_data
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


def class_count(dataset, class_conditional: bool) -> int:
    """The number of classes a class-conditional model sees (0 for an unconditional one)."""
    if class_conditional and not dataset.num_classes:
        raise ValueError(
            f"config.model.class_conditional=True needs labelled data, and the {dataset.source} "
            f"data {dataset.path!r} has no classes: put the images in class subfolders, or set "
            "config.model.class_conditional=False"
        )
    return dataset.num_classes if class_conditional else 0


def make_quality(dataset, held_out, width: float, labelled: bool):
    """``(samples, labels) -> metrics``, the offline quality of samples for ``dataset``: the
    digits' classifier FD (with accuracy when ``labelled``), the toys' mixture metrics, or the
    Frechet distance of pooled pixels to the held-out images (read once, in chunks), beside
    its floor: the same distance for as many real training images as there are samples."""

    def features(images):
        chunks = (images[i : i + 256] for i in range(0, len(images), 256))
        return np.concatenate([pooled_pixels(data.scale(c, dataset.levels, 0.0)) for c in chunks])

    @functools.cache
    def reference_features():
        return features(held_out.images)

    @functools.cache
    def fd_floor(n: int) -> float:
        train = dataset.split("train").images
        return generative.frechet_distance_of(features(train[:n]), reference_features())

    def quality(samples, labels) -> dict[str, float]:
        samples = data.undo_dequantize(samples, dataset.levels, width)
        if dataset.source == "digits":
            labels = labels if labelled else None
            return generative.digits_quality(samples, labels, dataset.shape[0], dataset.split_seed)
        if not dataset.levels:
            mixture = toy2d.mixture(dataset.toy)
            return generative.mixture_quality(samples, mixture, held_out.images)
        fd = generative.frechet_distance_of(pooled_pixels(samples), reference_features())
        return {"fd_pixels": fd, "fd_floor": fd_floor(len(samples))}

    return quality


def build_task(config, mesh) -> Task:
    """Builds the diffusion task from ``config.model``, ``config.data`` and ``config.sample``."""
    del mesh  # data parallelism and parameter sharding come from the logical rules alone
    from jaxmodels.data import pipeline

    m, s = config.model, config.sample
    dataset = image_data(config.data)
    num_classes = class_count(dataset, m.class_conditional)
    shape, held_out = dataset.shape, dataset.split("eval")
    net = build_network(m, jnp.dtype(config.train.compute_dtype), num_classes, shape)
    process = build_process(m)
    generate = sample.make_generate(net, process, s, shape, num_classes)
    width = data.bin_width(dataset, config.data.dequantize)
    r = config.get("reflow")
    teacher = reflow.restore_teacher(config, net, shape, num_classes) if r and r.teacher else None
    loss_fn = make_loss_fn(net, process, m.label_dropout, num_classes, width)
    scaled = data.scaled_records(dataset.levels, width)
    train_data = pipeline.iterator_fn(dataset.split("train"), config, train=True, transform=scaled)
    if teacher is not None:  # a reflow round (or distillation) on the teacher's couplings
        velocity = reflow.velocity_fn(net, process, teacher)
        couplings = reflow.teacher_couplings(
            velocity, r.coupling_seed, r.num_pairs, shape, r.teacher_steps
        )
        train_data = pipeline.iterator_fn(pipeline.ArraySource(couplings), config, train=True)
        loss_fn = reflow.make_reflow_loss_fn(net, process, r.distill)

    def init(rng):
        if teacher is not None and r.init_from_teacher:
            return teacher
        x = jnp.zeros((1,) + shape)
        label = jnp.zeros((1,), jnp.int32) if num_classes else None
        return net.init(rng, x, jnp.zeros((1,)), label)["params"]

    quality = make_quality(dataset, held_out, width, labelled=bool(num_classes))
    offered = evaluators(config, net, process, generate, quality, dataset, width, num_classes)
    run_evals = evaluate.select(config.get("evals", ()), offered)

    def write_samples(params, rng, workdir):
        labels = sample.class_labels(s.num, num_classes)
        images = jax.device_get(generate(params, rng, labels))
        path = os.path.join(workdir, "samples.png")
        if not dataset.levels:
            sample.save_scatter(images, path, held_out.images)
        elif dataset.source == "digits":
            sample.save_grid(images, path)
        else:
            image_files.save_grid((images + 1) / 2, path, scale=max(2, 32 // shape[0]))
        metrics = run_evals(params, jax.random.fold_in(rng, 1)) if run_evals else {}
        with open(os.path.join(workdir, "sample_metrics.json"), "w") as f:
            json.dump({"sampler": s.sampler, "steps": s.steps, **metrics}, f, indent=1)
        summary = " ".join(f"{k}={v:.4g}" for k, v in metrics.items())
        return f"wrote {path} ({s.sampler}, {s.steps} steps); {summary}"

    return Task(
        units="images",
        model=net,
        init=init,
        loss_fn=loss_fn,
        train_data=train_data,
        eval_data=pipeline.iterator_fn(held_out, config, train=False, transform=scaled),
        eval_fn=make_eval_fn(net, process, num_classes, width),
        evaluate=run_evals,
        sample=write_samples,
        batch_axes={"image": ("batch",) + (None,) * len(shape), "label": ("batch",)},
    )


def _needs(value, evaluator: str, key: str) -> None:
    if not value:
        raise ValueError(f"config.evals has {evaluator!r}: set config.{key} > 0")


def evaluators(config, net, process, generate, quality, dataset, width, num_classes):
    """The evaluators this family offers ``config.evals`` (each built only when chosen):

    - ``quality``: ``sample.eval_num`` samples scored by ``quality`` (fd, accuracy, ... on
      digits; fd, data_logp, ... on the toys; fd_pixels and fd_floor on your images);
    - ``likelihood``: PF-ODE bits/dim of the first ``sample.likelihood_num`` held-out images
      (0: all);
    - ``reflow``: straightness and the quality of 1- and 2-step Euler samples (Liu et al.
      2022), for the ``flow`` process with ``config.reflow``.
    """
    m, s, r = config.model, config.sample, config.get("reflow")

    def quality_eval():
        _needs(s.eval_num, "quality", "sample.eval_num")

        def run(params, rng):
            labels = sample.class_labels(s.eval_num, num_classes)
            return quality(jax.device_get(generate(params, rng, labels)), labels)

        return run

    def reflow_eval():
        _needs(s.eval_num, "reflow", "sample.eval_num")
        if not (r and m.process == "flow"):
            raise ValueError(
                "config.evals has 'reflow': it needs config.reflow and config.model.process="
                "'flow' (experiments/diffusion/reflow.py)"
            )

        def run(params, rng):
            labels = sample.class_labels(s.eval_num, num_classes)
            noise = jax.random.normal(jax.random.fold_in(rng, 1), (s.eval_num, *dataset.shape))
            velocity = reflow.velocity_fn(net, process, params)
            straight, few = jax.device_get(reflow.straightness_and_few_step(velocity, noise, r))
            out = {"straightness": float(straight)}
            for k, x in few.items():  # the quality metrics of k-step Euler: euler<k>_fd, ...
                q = quality(x, labels)
                out.update({f"euler{k}_{name}": v for name, v in q.items() if name != "fd_floor"})
            return out

        return run

    def likelihood_eval():
        log_likelihood = likelihood.make_log_likelihood(net, process, num_classes, s)
        held_out = dataset.split("eval").images[: s.likelihood_num or None]
        images = data.scale(held_out, dataset.levels, width)  # bins' lower edges, or points

        def run(params, rng):
            key = jax.random.fold_in(rng, 2)
            return likelihood.heldout_bits_per_dim(
                log_likelihood, params, images, width, key, s.likelihood_batch
            )

        return run

    return {"quality": quality_eval, "likelihood": likelihood_eval, "reflow": reflow_eval}
