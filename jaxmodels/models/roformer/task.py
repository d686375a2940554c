"""The RoFormer family's ``build_task``: MLM pre-training (or fine-tuning) on packed text rows.

Text comes from ``config.data`` (the text sources and packing of ``jaxmodels.data.text``);
``config.init.hf`` (a local HF ``RoFormerForMaskedLM`` directory) starts from an imported
checkpoint, with its ``tokenizer.json`` (and its ``[MASK]``) when present.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmodels.data.tokenizers import padded_vocab
from jaxmodels.losses.mlm import bert_mask, mlm_loss
from jaxmodels.models.roformer.model import RoFormer, roformer_from_config
from jaxmodels.train.task import Task

ROW_FIELDS = ("inputs", "targets", "segment_ids", "positions", "weights")


def mlm_batch(batch, rng, *, mask_id: int, random_vocab_size: int, specials: tuple[int, ...]):
    """BERT-corrupts ``batch["inputs"]``; returns (inputs, targets, chosen, token mask)."""
    tokens, seg = batch["inputs"], batch["segment_ids"]
    maskable = seg > 0
    for sid in specials:
        maskable = maskable & (tokens != sid)
    inputs, chosen = bert_mask(
        rng, tokens, mask_id=mask_id, random_vocab_size=random_vocab_size, maskable_BxL=maskable
    )
    return inputs, tokens, chosen, seg > 0


def _model(config, tok, pretrained) -> tuple[RoFormer, int]:
    """The module and its ``[MASK]`` id: imported, or built from ``config.model``."""
    m = {k: v for k, v in config.model.items() if k != "vocab_multiple"}
    dtype = jnp.dtype(config.train.compute_dtype)
    if pretrained is None:
        mask_id = tok.vocab_size  # [MASK] takes the first id after the tokenizer's
        vocab = padded_vocab(mask_id + 1, config.model.get("vocab_multiple", 64))
        return roformer_from_config(m, vocab, dtype=dtype), mask_id
    model = pretrained.model
    if not isinstance(model, RoFormer) or not model.mlm_head:
        raise ValueError("config.init.hf: the roformer family fine-tunes RoFormerForMaskedLM")
    mask_id = getattr(tok, "mask_id", None)
    if mask_id is None:
        raise ValueError("config.init.hf: the imported tokenizer.json has no [MASK] token")
    keep = {k: m[k] for k in ("dropout_rate", "attention_impl") if k in m}
    return model.clone(dtype=dtype, **keep), mask_id


def build_task(config, mesh=None) -> Task:
    """RoFormer MLM on ``config.data``."""
    del mesh
    from jaxmodels.convert.hf import init_from, load_pretrained
    from jaxmodels.data.pipeline import ArraySource, iterator_fn
    from jaxmodels.data.text import build_text_data, tile_rows

    hf_dir = config.get("init", {}).get("hf", "")
    pretrained = load_pretrained(hf_dir) if hf_dir else None
    data = build_text_data(config.data, tokenizer=pretrained and pretrained.tokenizer)
    tok = data.tokenizer
    model, mask_id = _model(config, tok, pretrained)
    if model.vocab_size <= max(mask_id, tok.vocab_size - 1):
        raise ValueError(f"model vocabulary {model.vocab_size} is too small for the tokenizer")
    random_vocab = 256 if tok.is_bytes else tok.vocab_size
    specials = (tok.pad_id, tok.bos_id, tok.eos_id)
    example = jnp.zeros((1, config.data.seq_len), jnp.int32)

    def init(rng):
        return model.init(rng, example)["params"]

    def metrics(params, batch, rng, train: bool):
        k_mask, k_drop = jax.random.split(rng)
        inputs, targets, chosen, keep = mlm_batch(
            batch, k_mask, mask_id=mask_id, random_vocab_size=random_vocab, specials=specials
        )
        logits = model.apply({"params": params}, inputs, keep, None, batch["positions"],
                             batch["segment_ids"], deterministic=not train,
                             rngs={"dropout": k_drop})  # fmt: skip
        loss, out = mlm_loss(logits, targets, chosen)
        return loss, {"loss": loss, **out}

    eval_rows = tile_rows(data.eval, config.train.batch_size)
    return Task(
        init=init_from(model, pretrained.params, example) if pretrained else init,
        loss_fn=lambda p, b, r: metrics(p, b, r, True),
        eval_fn=lambda p, b, r: metrics(p, b, r, False)[1],
        train_data=iterator_fn(ArraySource(data.train), config, train=True),
        eval_data=iterator_fn(ArraySource(eval_rows), config, train=False),
        batch_axes={k: ("batch", "length") for k in ROW_FIELDS},
        units="tokens",
        units_per_example=config.data.seq_len,
    )
