"""BLIP pre-training (Li et al., ICML 2022, Sec. 3.2): ITC + ITM + LM on image-caption pairs.

The wiring of the family's parts into a :class:`~jaxmodels.train.task.Task`:

- ``loss = L_itc + L_itm + L_lm``, each logged (:mod:`~jaxmodels.models.blip.loss`);
- with ``model.momentum`` > 0 (BLIP: 0.995) ITC is momentum distillation, the momentum
  encoders and queues being the task's model state (:mod:`~jaxmodels.models.blip.momentum`);
- the evaluators ``config.evals`` chooses, ``retrieval`` (recall@K by ITC and after ITM
  re-ranking), ``captioning`` (BLEU-4 / CIDEr-D of beam-search captions against the
  most-frequent-caption baseline) and ``zero_shot`` (ITC on a labelled folder, added by
  ``config.zero_shot.dir``) (:mod:`~jaxmodels.models.blip.evaluators`);
- ``jaxmodels sample``: beam and nucleus captions of held-out images
  (:mod:`~jaxmodels.models.blip.sample`).

``config.init.hf`` (an HF ``BlipForConditionalGeneration`` directory) starts a captioner instead
(:func:`load_import`): the checkpoint's ViT and text decoder, its image size and widths, its
directory's tokenizer, and L_lm alone (it has no ITC / ITM parts to train).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from absl import logging

from jaxmodels import evaluate
from jaxmodels.convert.fill import complete_config
from jaxmodels.evaluate import zero_shot_folder
from jaxmodels.layers.vit import patch_grid
from jaxmodels.models.blip import data
from jaxmodels.models.blip.evaluators import Scorer, evaluators
from jaxmodels.models.blip.loss import captioning_losses, pretrain_losses
from jaxmodels.models.blip.model import BLIP
from jaxmodels.models.blip.momentum import momentum_distillation
from jaxmodels.models.blip.sample import Captioner, make_sample
from jaxmodels.models.blip.tokens import SCENES, TokenLayout, layout_of, make_layout
from jaxmodels.train.task import Task

__all__ = ["Scorer", "build_task", "make_model", "pair_data", "train_pairs"]  # Scorer: for CapFilt


def make_model(config, layout: TokenLayout | None = None) -> BLIP:
    """BLIP of ``config.model`` for ``layout``'s vocabulary (default: ``config.data``'s); the
    image size and the text rows are checked against the towers first."""
    m, d = config.model, config.data
    layout = layout or make_layout(d)
    patch_grid(d.image_size, m.image.patch_size)
    check_rows(layout, m.text.max_len, d.max_len)
    image = dict(m.image, attention_impl=m.attention_impl)
    text = dict(m.text, vocab_size=layout.vocab_size, attention_impl=m.attention_impl)
    dtype = jnp.dtype(config.train.compute_dtype)
    return BLIP(image, text, m.embed_dim, m.t_init, dtype=dtype)


def check_rows(layout: TokenLayout, table: int, max_len: int) -> None:
    """The decoder's rows must fit the text position table (``model.text.max_len``)."""
    if table < layout.caption_len:
        raise ValueError(
            f"config.model.text.max_len={table} (the position table) < {layout.caption_len}, "
            f"the decoder's rows: config.data.max_len={max_len} plus the prompt's "
            f"{layout.caption_len - max_len} tokens"
        )


# ----------------------------------------------------------------------------------------------
# config.init.hf: an imported BLIP captioner (BlipForConditionalGeneration)
# ----------------------------------------------------------------------------------------------


def checkpoint_keys(model: BLIP, hf_config) -> dict:
    """``{config key: value}`` of what an imported captioner fixes: image size, widths, depths,
    and no momentum distillation (that is of ITC, which a captioner has not)."""
    image, text = model.image, model.text
    keys = {
        "data.image_size": hf_config.vision_config.image_size,
        "model.image.patch_size": image["patch_size"],
        "model.image.activation": image["activation"],
        "model.image.norm_eps": image["norm_eps"],
        "model.text.max_len": text["max_len"],  # the position table
        "model.momentum": 0.0,
    }
    for tower, kw in (("image", image), ("text", text)):
        keys |= {f"model.{tower}.{k}": kw[k] for k in ("width", "depth", "mlp_dim", "num_heads")}
    return keys


def load_import(config):
    """``(pretrained, config)``: ``config.init.hf``'s captioner
    (:func:`jaxmodels.convert.load_pretrained`, the weights read when the run starts from them)
    and ``config`` completed with what it fixes (:func:`checkpoint_keys`; a contradiction stops
    the run naming each key); ``(None, config)`` without one. A ``BlipForImageTextRetrieval``
    directory is refused: the family trains and exports captioners only."""
    hf_dir = (config.get("init") or {}).get("hf", "")
    if not hf_dir:
        return None, config
    from jaxmodels.convert import load_pretrained
    from jaxmodels.models.blip.hf import ARCHITECTURES, CAPTIONER

    captioner = {CAPTIONER: ARCHITECTURES[CAPTIONER]}
    pretrained = load_pretrained(hf_dir, captioner, key="config.init.hf")
    keys = checkpoint_keys(pretrained.model, pretrained.hf_config)
    return pretrained, complete_config(config, keys, hint="experiments/blip/hf.py")


def import_layout(config, pretrained) -> TokenLayout:
    """The layout over the checkpoint directory's tokenizer (else ``config.data.tokenizer``'s
    when it names one): its ids must fit the checkpoint's vocabulary and its [DEC] be the
    decoder's ``bos_token_id``."""
    d, text = config.data, pretrained.hf_config.text_config
    if pretrained.tokenizer is not None:
        layout = layout_of(pretrained.tokenizer, d.max_len, "config.init.hf's tokenizer")
    elif d.get("tokenizer", SCENES) in ("", SCENES):
        raise ValueError(
            f"config.init.hf={config.init.hf!r} holds no tokenizer.json or SentencePiece model: "
            "name the checkpoint's tokenizer with config.data.tokenizer"
        )
    else:
        layout = make_layout(d)
    if layout.vocab_size > text.vocab_size:
        raise ValueError(
            f"config.init.hf: the tokenizer's {layout.vocab_size} ids (with [DEC] and [ENC]) "
            f"exceed the checkpoint's text vocabulary of {text.vocab_size}"
        )
    if layout.dec_id != text.bos_token_id:
        raise ValueError(
            f"config.init.hf: the decoder starts at bos_token_id={text.bos_token_id} "
            f"(config.json), but the tokenizer's [DEC] is {layout.dec_id}"
        )
    return layout


def imported_model(config, pretrained, layout: TokenLayout) -> BLIP:
    """The imported captioner with this run's dtype and attention kernel; its rows checked."""
    m, model = config.model, pretrained.model
    check_rows(layout, model.text["max_len"], config.data.max_len)
    kernel = dict(attention_impl=m.attention_impl)
    return model.clone(
        image=model.image | kernel,
        text=model.text | kernel,
        dtype=jnp.dtype(config.train.compute_dtype),
    )


def train_pairs(config) -> tuple[np.ndarray, list[str]]:
    """Training images and captions: rendered scenes (``data.noise`` corrupted) or a file."""
    d = config.data
    if d.name == "file":
        return data.load_pairs(d.path, d.image_size)
    if d.name != "scenes":
        raise ValueError(
            f"config.data.name={d.name!r}: use 'scenes', 'file', 'webdataset', 'csv' or 'tfds'"
        )
    images, captions = data.split("train", d.train_size, d.image_size, d.split_seed, d.object_scale)
    if d.noise:
        captions, _ = data.corrupt(captions, d.noise, d.split_seed)
    return images, list(captions)


def held_out_pairs(config):
    """Held-out ``(images, captions)`` of an in-memory dataset, or None: the file
    ``data.eval_path`` when set; else, for rendered scenes and files in their words (a CapFilt
    output), the held-out scenes; a file of other captions has none."""
    d = config.data
    if d.name == "file" and d.eval_path:
        return data.load_pairs(d.eval_path, d.image_size, "config.data.eval_path")
    if d.name == "file" and d.get("tokenizer", SCENES) != SCENES:
        logging.warning(
            "config.data.path=%r has no held-out pairs (config.data.eval_path): no evaluation "
            "and no samples",
            d.path,
        )
        return None
    images, captions = data.split("eval", d.eval_size, d.image_size, d.split_seed, d.object_scale)
    return images, list(captions)


def pair_data(config, layout: TokenLayout):
    """``(train_data, eval_data, held-out (images, captions) or None, training captions)``:
    scenes or an ``.npz`` in memory, or a file source (webdataset, csv, tfds) through grain,
    whose training captions are a sample of ``data.eval_size`` (the baseline caption's pool);
    captions laid out by ``layout``."""
    from jaxmodels.data import image_text_sources, pipeline

    d = config.data
    if d.name in image_text_sources.NAMES:
        files = image_text_sources.streamed(config, layout.encode_caption, d.eval_size)
        pairs = files.held_out
        held = (pairs.images, list(pairs.captions)) if pairs else None
        return files.train, files.eval, held, image_text_sources.caption_sample(d, d.eval_size)
    images, captions = train_pairs(config)
    held = held_out_pairs(config)

    def source(imgs, caps):
        return pipeline.ArraySource({"image": imgs, **layout.encode(caps)})

    train = pipeline.iterator_fn(source(images, captions), config, train=True)
    evaluation = pipeline.iterator_fn(source(*held), config, train=False) if held else None
    return train, evaluation, held, captions


def build_task(config, mesh) -> Task:
    """Builds the BLIP task from ``config.model`` / ``config.data`` (see experiments/blip/).

    GSPMD places everything (hard negatives are drawn over the global batch); ``mesh`` only
    replicates the evaluators' outputs. Without held-out pairs there is no evaluator to run.
    """
    pretrained, config = load_import(config)
    if pretrained:
        layout = import_layout(config, pretrained)
        model = imported_model(config, pretrained, layout)
    else:
        layout = make_layout(config.data)
        model = make_model(config, layout)
    d, objectives = config.data, captioning_losses if pretrained else pretrain_losses
    train_data, eval_data, held, captions = pair_data(config, layout)

    def init(rng):
        image = jnp.zeros((1, d.image_size, d.image_size, 3), jnp.uint8)
        ids = jnp.ones((1, d.max_len), jnp.int32)
        pixels = data.pixels(image, model.image_mean, model.image_std)
        return model.init(rng, pixels, ids, ids > 0)["params"]

    def losses(params, batch, rng, bank=None, alpha=0.4):
        args = (batch, rng, layout, config.model.label_smoothing, bank, alpha)
        return model.apply({"params": params}, *args, method=objectives)

    def eval_fn(params, batch, rng):  # in-batch ITC: no momentum model at evaluation
        loss, metrics = losses(params, batch, rng)
        return {**metrics, "loss": loss}

    loss_fn, momentum = losses, {}
    if config.model.get("momentum", 0.0):
        init_state, loss_fn = momentum_distillation(model, layout, config, losses)
        momentum = dict(init_model_state=init_state)

    captioner = Captioner(model, layout, config.mesh.rules)
    offered = evaluators(config, mesh, model, layout, captioner, held, captions)
    if not model.encoder:  # a captioner: no ITC features or ITM head to rank or classify with
        offered = {k: v for k, v in offered.items() if k == "captioning"}
    chosen = zero_shot_folder.evals(config)
    held_out = {}
    if held:  # retrieval, captioning and the sampler read held-out pairs
        held_out = dict(sample=make_sample(captioner, *held, config.sample.get("num", 16)))
    else:  # none held out: of config.evals only what needs no held-out pairs (zero_shot) runs
        chosen = [name for name in chosen if name in offered]
    return Task(
        units="images",  # image-caption pairs
        model=model,
        tokenizer=layout.tokenizer,
        init=init,
        start_params=pretrained and pretrained.read_params,
        loss_fn=loss_fn,
        eval_fn=eval_fn,
        evaluate=evaluate.select(chosen, offered),
        train_data=train_data,
        eval_data=eval_data,
        batch_axes={
            "image": ("batch", None, None, None),
            "text": ("batch", "length"),
            "caption": ("batch", "length"),
        },
        **held_out,
        **momentum,
    )
