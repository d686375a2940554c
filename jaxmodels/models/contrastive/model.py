"""Two-tower image-text models: CLIP (softmax loss) and SigLIP (sigmoid loss).

One family, registered as ``clip`` and ``siglip``; ``config.model.loss`` picks the loss:

- ``softmax``: CLIP (Radford et al., 2021), t = exp(t_prime) with t_prime = log(1/0.07),
  t clipped at 100; ``loss_impl`` ``dense`` (GSPMD) or ``allgather`` (shard_map).
- ``sigmoid``: SigLIP (Zhai et al., 2023), t_prime = log 10, b = -10; ``loss_impl``
  ``chunked`` (ring of text blocks, flat memory), ``allgather`` or ``dense``.

Towers: a ViT (:mod:`jaxmodels.layers.vit`) and a byte-level text transformer
(:mod:`jaxmodels.layers.text_encoder`), each followed by a linear projection to ``embed_dim``
and L2 normalisation.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxmodels.layers.text_encoder import TextTransformer
from jaxmodels.layers.vit import ViT, decode_variant
from jaxmodels.losses import contrastive
from jaxmodels.train.task import Task

Dtype = Any
LOSSES = {"softmax": ("dense", "allgather"), "sigmoid": ("chunked", "allgather", "dense")}


def _l2_normalize(x, eps=1e-6):
    x = x.astype(jnp.float32)
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps))


def _head(embed_dim, dtype, param_dtype, name):
    init = nn.with_logical_partitioning(nn.initializers.lecun_normal(), ("embed", None))
    return nn.Dense(
        embed_dim,
        use_bias=False,
        dtype=dtype,
        param_dtype=param_dtype,
        kernel_init=init,
        name=name,
    )


class TwoTowers(nn.Module):
    """Image and text towers with projection heads, plus the learnable t_prime and bias b."""

    image: dict
    text: dict
    embed_dim: int
    t_prime_init: float
    b_init: float | None  # None: no bias (CLIP)
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        self.img = ViT(**self.image, **kw, name="img")
        self.txt = TextTransformer(**self.text, **kw, name="txt")
        self.img_head = _head(self.embed_dim, **kw, name="img_head")
        self.txt_head = _head(self.embed_dim, **kw, name="txt_head")
        const = lambda v: nn.with_logical_partitioning(nn.initializers.constant(v), ())
        self.t_prime = self.param("t_prime", const(self.t_prime_init), (), jnp.float32)
        if self.b_init is not None:
            self.b = self.param("b", const(self.b_init), (), jnp.float32)

    def encode_image(self, images_BxHxWxC):
        """uint8 images -> L2-normalised embeddings (B, embed_dim)."""
        x = images_BxHxWxC.astype(jnp.float32) / 127.5 - 1.0
        return _l2_normalize(self.img_head(self.img(x)))

    def encode_text(self, tokens_BxL):
        return _l2_normalize(self.txt_head(self.txt(tokens_BxL)))

    def __call__(self, images, tokens):
        b = self.b if self.b_init is not None else jnp.zeros((), jnp.float32)
        return self.encode_image(images), self.encode_text(tokens), self.t_prime, b


def tower_kwargs(config) -> tuple[dict, dict]:
    """``config.model.image``/``text`` -> keyword arguments of ViT / TextTransformer."""
    m = config.model
    image = dict(m.image)
    variant = image.pop("variant", "")
    if variant:
        image.update(decode_variant(variant))
    text = dict(m.text)
    for tower in (image, text):
        tower.update(
            attention_impl=m.attention_impl, remat_policy=m.remat_policy, scan_layers=m.scan_layers
        )
    return image, text


def make_model(config) -> TwoTowers:
    m = config.model
    image, text = tower_kwargs(config)
    b_init = m.b_init if m.loss == "sigmoid" else None
    return TwoTowers(
        image,
        text,
        m.embed_dim,
        m.t_prime_init,
        b_init,
        dtype=jnp.dtype(config.train.compute_dtype),
    )


def batch_mesh_axes(config, mesh) -> tuple[str, ...]:
    """The mesh axes the logical ``batch`` axis is sharded over (from ``config.mesh.rules``)."""
    for name, target in config.mesh.rules:
        if name == "batch":
            axes = target if isinstance(target, list | tuple) else (target,)
            return tuple(a for a in axes if a is not None and a in mesh.shape)
    return ()


def make_loss(config, mesh):
    """``(zimg, ztxt, t_prime, b) -> loss`` for ``config.model.loss`` / ``loss_impl``."""
    loss, impl = config.model.loss, config.model.loss_impl
    if loss not in LOSSES:
        raise ValueError(f"config.model.loss={loss!r}: choose one of {list(LOSSES)}")
    if impl not in LOSSES[loss]:
        raise ValueError(f"config.model.loss_impl={impl!r} for loss {loss!r}: use {LOSSES[loss]}")
    axes = batch_mesh_axes(config, mesh)
    if impl != "dense" and not axes:
        raise ValueError(f"config.model.loss_impl={impl!r} needs the batch sharded on the mesh")
    kw = dict(mesh=mesh, axis_name=axes)
    table = {
        ("softmax", "dense"): lambda zi, zt, tp, b: contrastive.softmax_loss(zi, zt, tp),
        ("softmax", "allgather"): lambda zi, zt, tp, b: contrastive.allgather_softmax_loss(
            zi, zt, tp, **kw
        ),
        ("sigmoid", "dense"): contrastive.sigmoid_loss,
        ("sigmoid", "chunked"): functools.partial(contrastive.chunked_sigmoid_loss, **kw),
        ("sigmoid", "allgather"): functools.partial(contrastive.allgather_sigmoid_loss, **kw),
    }
    return table[(loss, impl)]


def batch_metrics(zimg, ztxt, t_prime, b, loss_name) -> dict:
    """In-batch image->text top-1 accuracy and the current temperature (and bias)."""
    acc = jnp.mean(jnp.argmax(zimg @ ztxt.T, axis=1) == jnp.arange(zimg.shape[0]))
    t = contrastive.clip_temperature(t_prime) if loss_name == "softmax" else jnp.exp(t_prime)
    out = {"batch_i2t_top1": acc, "t": t}
    if loss_name == "sigmoid":
        out["b"] = b
    return out


def build_task(config, mesh) -> Task:
    """Builds the CLIP / SigLIP task: model, loss, (image, caption) data and evaluators."""
    from jaxmodels.data import image_text

    model = make_model(config)
    loss = make_loss(config, mesh)
    data = image_text.build(config)
    m = config.model

    def init(rng):
        images = jnp.zeros((1, *data.image_shape), jnp.uint8)
        tokens = jnp.ones((1, m.text.max_len), jnp.int32)
        return model.init(rng, images, tokens)["params"]

    def loss_fn(params, batch, rng):
        del rng  # no stochastic layers
        zimg, ztxt, t_prime, b = model.apply({"params": params}, batch["image"], batch["text"])
        value = loss(zimg, ztxt, t_prime, b)
        return value, batch_metrics(zimg, ztxt, t_prime, b, m.loss)

    evaluate = make_evaluate(config, mesh, model, data)
    return Task(
        units="images",  # image-text pairs
        init=init,
        loss_fn=loss_fn,
        train_data=data.train,
        eval_data=data.eval,
        evaluate=evaluate,
        batch_axes={"image": ("batch", None, None, None), "text": ("batch", "length")},
    )


# ----------------------------------------------------------------------------------------------
# Evaluators run on schedule and by `jaxmodels eval`
# ----------------------------------------------------------------------------------------------


def embedders(config, mesh, model: TwoTowers):
    """``(params, images) -> zimg`` and ``(params, texts) -> ztxt`` in padded, jitted batches."""
    from jaxmodels.layers.text_encoder import byte_tokenize

    rules, bs, max_len = config.mesh.rules, config.data.eval_batch_size, config.model.text.max_len
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

    def batched(method):
        @functools.partial(jax.jit, out_shardings=replicated)  # every process can read it
        def apply(params, x):
            with nn.logical_axis_rules(rules):
                return model.apply({"params": params}, x, method=method)

        def run(params, x):
            out = []
            for i in range(0, len(x), bs):
                chunk = x[i : i + bs]
                pad = np.zeros((bs - len(chunk), *chunk.shape[1:]), chunk.dtype)
                out.append(np.asarray(apply(params, np.concatenate([chunk, pad])))[: len(chunk)])
            return np.concatenate(out)

        return run

    embed_images, embed_tokens = batched(TwoTowers.encode_image), batched(TwoTowers.encode_text)
    return embed_images, lambda p, texts: embed_tokens(p, byte_tokenize(texts, max_len))


def make_evaluate(config, mesh, model: TwoTowers, data):
    """Zero-shot top-1 per embedded task and image<->text recall@1/5/10 on held-out pairs."""
    from jaxmodels.evaluate.retrieval import recall_at_k
    from jaxmodels.evaluate.zero_shot import class_embeddings, zero_shot_accuracy

    embed_images, embed_texts = embedders(config, mesh, model)

    def evaluate(params, rng):
        del rng
        out = {}
        for name, task in data.zero_shot.items():
            zcls = class_embeddings(
                lambda ps: embed_texts(params, ps), task.classnames, task.templates
            )
            acc = zero_shot_accuracy(embed_images(params, task.images), zcls, task.labels)
            out[f"zeroshot_{name}_top1"] = acc["top1"]
        if data.retrieval is not None:
            pairs = data.retrieval
            # images sharing a caption string all match it
            captions, ids = np.unique(np.asarray(pairs.captions), return_inverse=True)
            zimg = embed_images(params, pairs.images)
            out.update(
                recall_at_k(
                    zimg, embed_texts(params, list(captions)), ids, np.arange(len(captions))
                )
            )
        return out

    return evaluate
