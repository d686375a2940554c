"""The contrastive image–text family: CLIP (softmax loss) and SigLIP (sigmoid loss).

One family, ``config.family = "contrastive"``; ``config.model.variant`` picks the loss:

- ``clip``: the softmax loss of CLIP (Radford et al., 2021), t = exp(t_prime) with
  t_prime = log(1/0.07), t clipped at 100; ``loss_impl`` ``dense`` (GSPMD) or ``allgather``
  (shard_map).
- ``siglip``: the sigmoid loss of SigLIP (Zhai et al., 2023), t_prime = log 10, b = -10;
  ``loss_impl`` ``chunked`` (ring of text blocks, flat memory), ``allgather`` or ``dense``.

The model is :class:`~jaxmodels.models.contrastive.model.TwoTowers`, the data
:mod:`jaxmodels.models.contrastive.data`, the losses :mod:`jaxmodels.losses.contrastive` and
the evaluators (``config.evals``) zero-shot accuracy and retrieval recall@K
(:mod:`jaxmodels.evaluate`).

``config.init.hf`` (an HF ``CLIPModel`` / ``SiglipModel`` directory) starts from an imported
checkpoint instead (:func:`load_import`): its towers, loss and weights, its image size, and its
tokenizer.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax.numpy as jnp

from jaxmodels import evaluate
from jaxmodels.convert.fill import complete_config
from jaxmodels.data.tokenizers import make_tokenizer
from jaxmodels.evaluate import zero_shot_folder
from jaxmodels.evaluate.chunked import chunked_map
from jaxmodels.evaluate.retrieval import CaptionIndex
from jaxmodels.evaluate.zero_shot import class_embeddings, zero_shot_accuracy
from jaxmodels.losses import contrastive
from jaxmodels.models.contrastive import data as contrastive_data
from jaxmodels.models.contrastive.model import TwoTowers, make_model
from jaxmodels.train.task import Task

# config.model.variant -> its loss's implementations (config.model.loss_impl), the first the fastest
LOSSES = {"clip": ("dense", "allgather"), "siglip": ("chunked", "allgather", "dense")}
BATCH_AXES = {
    "image": ("batch", None, None, None),
    "text": ("batch", "length"),
    "text_len": ("batch",),
}


def batch_mesh_axes(config, mesh) -> tuple[str, ...]:
    """The mesh axes the logical ``batch`` axis is sharded over (from ``config.mesh.rules``)."""
    for name, target in config.mesh.rules:
        if name == "batch":
            axes = target if isinstance(target, list | tuple) else (target,)
            return tuple(a for a in axes if a is not None and a in mesh.shape)
    return ()


def make_loss(config, mesh):
    """``(zimg, ztxt, t_prime, b) -> loss`` for ``config.model.variant`` / ``loss_impl``."""
    variant, impl = config.model.variant, config.model.loss_impl
    if variant not in LOSSES:
        raise ValueError(f"config.model.variant={variant!r}: choose one of {list(LOSSES)}")
    if impl not in LOSSES[variant]:
        raise ValueError(
            f"config.model.loss_impl={impl!r} for variant {variant!r}: use {LOSSES[variant]}"
        )
    axes = batch_mesh_axes(config, mesh)
    if impl != "dense" and not axes:
        raise ValueError(f"config.model.loss_impl={impl!r} needs the batch sharded on the mesh")
    kw = dict(mesh=mesh, axis_name=axes)
    table = {
        ("clip", "dense"): lambda zi, zt, tp, b: contrastive.softmax_loss(zi, zt, tp),
        ("clip", "allgather"): lambda zi, zt, tp, b: contrastive.allgather_softmax_loss(
            zi, zt, tp, **kw
        ),
        ("siglip", "dense"): contrastive.sigmoid_loss,
        ("siglip", "chunked"): functools.partial(contrastive.chunked_sigmoid_loss, **kw),
        ("siglip", "allgather"): functools.partial(contrastive.allgather_sigmoid_loss, **kw),
    }
    return table[(variant, impl)]


def batch_metrics(zimg, ztxt, t_prime, b, variant) -> dict:
    """In-batch image->text top-1 accuracy and the current temperature (and bias)."""
    acc = jnp.mean(jnp.argmax(zimg @ ztxt.T, axis=1) == jnp.arange(zimg.shape[0]))
    t = contrastive.clip_temperature(t_prime) if variant == "clip" else jnp.exp(t_prime)
    out = {"batch_i2t_top1": acc, "t": t}
    if variant == "siglip":
        out["b"] = b
    return out


# ----------------------------------------------------------------------------------------------
# config.init.hf: an imported CLIP / SigLIP
# ----------------------------------------------------------------------------------------------


def checkpoint_keys(model: TwoTowers, hf_config) -> dict:
    """``{config key: value}`` of what an imported checkpoint fixes: sizes, pooling, the loss."""
    image, text = model.image, model.text
    keys = {
        "data.image_size": hf_config.vision_config.image_size,
        "model.variant": "clip" if model.b_init is None else "siglip",
        "model.embed_dim": model.embed_dim,
        "model.image.patch_size": image["patch_size"],
        "model.image.pool": image["pool"],
        "model.image.posemb": image["posemb"],
        "model.text.vocab_size": text["vocab_size"],
        "model.text.max_len": text["max_len"],  # a config may ask for shorter texts
        "model.text.pool": text["pool"],
        "model.text.causal": text.get("causal", False),
    }
    for tower, kw in (("image", image), ("text", text)):
        keys |= {f"model.{tower}.{k}": kw[k] for k in ("width", "depth", "mlp_dim", "num_heads")}
    return keys


def with_checkpoint(config, pretrained):
    """``config`` completed with the checkpoint's :func:`checkpoint_keys`
    (:func:`jaxmodels.convert.fill.complete_config`: a contradiction stops the run, naming each
    key); ``model.text.max_len`` may be shorter than the checkpoint's."""
    misfits = []
    if preset := config.model.image.get("preset"):  # a named size: the checkpoint's are the ones
        misfits.append(f"config.model.image.preset={preset!r} (none: imported)")
    return complete_config(
        config,
        checkpoint_keys(pretrained.model, pretrained.hf_config),
        hint="experiments/contrastive/hf.py",
        fits=lambda key, mine, theirs: key == "model.text.max_len" and 0 < mine < theirs,
        misfits=misfits,
    )


def load_import(config):
    """``(pretrained, config)``: ``config.init.hf``'s checkpoint
    (:func:`jaxmodels.convert.load_pretrained`, the weights read when the run starts from them)
    and ``config`` completed with what it fixes (:func:`with_checkpoint`); ``(None, config)``
    without one."""
    hf_dir = (config.get("init") or {}).get("hf", "")
    if not hf_dir:
        return None, config
    from jaxmodels.convert import load_pretrained
    from jaxmodels.models.contrastive.hf import ARCHITECTURES

    pretrained = load_pretrained(hf_dir, ARCHITECTURES, key="config.init.hf")
    return pretrained, with_checkpoint(config, pretrained)


def imported_model(config, pretrained, tokenizer) -> TwoTowers:
    """The imported ``TwoTowers`` with this run's dtype, attention kernel, remat policy and
    ``model.text.mask_padding``; a tokenizer whose ids it cannot read is refused."""
    m, model = config.model, pretrained.model
    if m.scan_layers:
        raise ValueError(
            "config.init.hf imports unrolled layers: set config.model.scan_layers=False"
        )
    if tokenizer.vocab_size > model.text["vocab_size"]:
        raise ValueError(
            f"config.init.hf: the tokenizer's {tokenizer.vocab_size} ids exceed the checkpoint's "
            f"text vocabulary of {model.text['vocab_size']}"
        )
    eos = model.text.get("eos_id")
    if model.text["pool"] == "eos" and tokenizer.eos_id != eos:
        raise ValueError(
            f"config.init.hf: the text tower pools at eos_token_id={eos} (config.json), but the "
            f"tokenizer's EOS is {tokenizer.eos_id}"
        )
    shared = dict(attention_impl=m.attention_impl, remat_policy=m.remat_policy)
    text = model.text | shared | {"mask_padding": m.text.get("mask_padding", True)}
    return model.clone(
        image=model.image | shared, text=text, dtype=jnp.dtype(config.train.compute_dtype)
    )


def run_tokenizer(config, pretrained):
    """The tokenizer of the run: an import's own (else ``config.data.tokenizer``, unless that is
    the byte default, which no checkpoint reads), or ``config.data.tokenizer``'s."""
    if pretrained is None or pretrained.tokenizer is not None:
        return pretrained.tokenizer if pretrained else make_tokenizer(config.data)
    if config.data.get("tokenizer", "byte") == "byte":
        raise ValueError(
            f"config.init.hf={config.init.hf!r} holds no tokenizer.json or SentencePiece model: "
            "name the checkpoint's tokenizer with config.data.tokenizer"
        )
    return make_tokenizer(config.data)


def build_task(config, mesh) -> Task:
    """Builds the CLIP / SigLIP task: model, loss, (image, caption) data and evaluators.

    The tokenizer (``config.data.tokenizer``, or an import's own) sizes the text embedding and
    encodes the captions; the towers are checked (vocabulary, image size against the patches)
    before any data is read.
    """
    pretrained, config = load_import(config)
    tokenizer = run_tokenizer(config, pretrained)
    if pretrained:
        model = imported_model(config, pretrained, tokenizer)
    else:
        model = make_model(config, tokenizer)
    loss = make_loss(config, mesh)
    data = contrastive_data.build(config, tokenizer)
    m = config.model

    def init(rng):
        images = jnp.zeros((1, *data.image_shape), jnp.uint8)
        tokens = jnp.ones((1, m.text.max_len), jnp.int32)
        return model.init(rng, images, tokens, jnp.ones((1,), jnp.int32))["params"]

    def loss_fn(params, batch, rng):
        del rng  # no stochastic layers
        z = model.apply({"params": params}, batch["image"], batch["text"], batch["text_len"])
        return loss(*z), batch_metrics(*z, m.variant)

    return Task(
        units="images",  # image-text pairs
        model=model,
        tokenizer=tokenizer,
        init=init,
        start_params=pretrained and pretrained.read_params,
        loss_fn=loss_fn,
        train_data=data.train,
        eval_data=data.eval,
        evaluate=evaluate.select(
            zero_shot_folder.evals(config), evaluators(config, mesh, model, data)
        ),
        batch_axes=BATCH_AXES,
    )


# ----------------------------------------------------------------------------------------------
# Evaluators, chosen by name in config.evals (run on schedule and by `jaxmodels eval`)
# ----------------------------------------------------------------------------------------------


def evaluators(config, mesh, model: TwoTowers, data) -> dict:
    """``{name: builder}``: ``zeroshot`` (top-1 per embedded task, ``zeroshot_<task>_top1``),
    ``retrieval`` (image<->text recall@1/5/10 on held-out pairs, ``i2t_recall@K``/``t2i_...``)
    and ``zero_shot`` (the labelled folder ``config.zero_shot.dir``,
    :mod:`jaxmodels.evaluate.zero_shot_folder`)."""
    rules, bs = config.mesh.rules, config.data.eval_batch_size

    def embedder(method):
        def apply(params, *xs):
            with nn.logical_axis_rules(rules):
                return model.apply({"params": params}, *xs, method=method)

        return chunked_map(apply, bs, mesh=mesh)

    embed_images = embedder(TwoTowers.encode_image)
    embed_tokens = embedder(TwoTowers.encode_text)

    def embed_texts(params, texts):
        return embed_tokens(params, *data.tokenizer.encode_batch(texts, config.model.text.max_len))

    def zeroshot(params, rng):
        out = {}
        for name, task in data.zero_shot.items():
            zcls = class_embeddings(
                lambda ps: embed_texts(params, ps), task.classnames, task.templates
            )
            acc = zero_shot_accuracy(embed_images(params, task.images), zcls, task.labels)
            out[f"zeroshot_{name}_top1"] = acc["top1"]
        return out

    def retrieval(params, rng):
        if data.retrieval is None:
            return {}
        index = CaptionIndex.of(data.retrieval.captions)
        zimg = embed_images(params, data.retrieval.images)
        return index.recall(zimg @ embed_texts(params, index.captions).T)

    def folder():
        return zero_shot_folder.evaluator(
            config.get("zero_shot"), embed_images, embed_texts, data.image_shape[0]
        )

    return {"zeroshot": lambda: zeroshot, "retrieval": lambda: retrieval, "zero_shot": folder}
