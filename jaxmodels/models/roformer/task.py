"""The RoFormer family's ``build_task``: MLM pre-training (or fine-tuning) on packed text rows.

Text comes from ``config.data`` (the text sources and packing of ``jaxmodels.data.text``);
``config.init.hf`` (a local HF ``RoFormerForMaskedLM`` directory) starts from an imported
checkpoint, with its ``tokenizer.json`` (and its ``[MASK]``) when present. The evaluator
``config.evals`` may choose is ``extrapolation`` (MLM at longer rows than trained).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxmodels import evaluate
from jaxmodels.data.tokenizers import padded_vocab
from jaxmodels.evaluate.chunked import chunked_map
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


def make_model(config, tok, pretrained) -> tuple[RoFormer, int]:
    """The module and its ``[MASK]`` id: imported, or built from ``config.model``."""
    m = {k: v for k, v in config.model.items() if k != "vocab_multiple"}
    dtype = jnp.dtype(config.train.compute_dtype)
    if pretrained is None:
        mask_id = tok.vocab_size  # [MASK] takes the first id after the tokenizer's
        vocab = padded_vocab(mask_id + 1, config.model.get("vocab_multiple", 64))
        return roformer_from_config(m, vocab, dtype=dtype), mask_id
    model = pretrained.model
    mask_id = getattr(tok, "mask_id", None)
    if mask_id is None:
        raise ValueError("config.init.hf: the imported tokenizer.json has no [MASK] token")
    keep = {k: m[k] for k in ("dropout_rate", "attention_impl") if k in m}
    return model.clone(dtype=dtype, **keep), mask_id


def extrapolation(config, model: RoFormer, data, mesh=None, **mask_kw):
    """The ``extrapolation`` evaluator: masked-token loss and accuracy (``mlm_loss_x{k}``,
    ``mlm_accuracy_x{k}``) with rows of ``k * data.seq_len`` tokens, k in
    ``config.extrapolation.factors`` (RoFormer Sec. 3.3: long texts).

    As the LM's sweep (:mod:`jaxmodels.evaluate.extrapolation`), the validation documents form
    one continuous stream; its first ``extrapolation.eval_tokens`` (rounded down to whole rows of
    the longest length) are BERT-masked once, with one key, so every length predicts the same
    masked tokens from the same corrupted input and only the context differs.
    """
    e, L = config.extrapolation, config.data.seq_len
    longest = max(e.factors) * L
    position = config.model.position
    if position.name == "learned" and longest > position.max_len:
        raise ValueError(
            f"config.extrapolation.factors={tuple(e.factors)}: rows of {longest} tokens exceed the "
            f"learned position table (config.model.position.max_len={position.max_len})"
        )
    stream = np.concatenate(data.eval_docs).astype(np.int32)[: e.eval_tokens // longest * longest]
    if not len(stream):
        raise ValueError(
            f"config.extrapolation.eval_tokens={e.eval_tokens} (validation stream: "
            f"{sum(map(len, data.eval_docs))} tokens) holds no row of {longest} tokens"
        )
    tokens = {"inputs": stream[None], "segment_ids": np.ones((1, len(stream)), np.int32)}
    key = jax.random.key(config.seed)
    inputs, targets, chosen, _ = jax.device_get(mlm_batch(tokens, key, **mask_kw))

    def row_sums(params, inputs_BxL, targets_BxL, chosen_BxL):
        logits_BxLxV = model.apply({"params": params}, inputs_BxL)
        _, per_row = jax.vmap(mlm_loss)(logits_BxLxV[:, None], targets_BxL[:, None],
                                        chosen_BxL[:, None])  # fmt: skip
        n_B = chosen_BxL.sum(1)
        return per_row["mlm_loss"] * n_B, per_row["mlm_accuracy"] * n_B, n_B

    sums = chunked_map(row_sums, e.eval_batch_size, mesh=mesh)

    def run(params, rng):
        del rng  # the masks are fixed: every evaluation scores the same tokens
        out = {}
        for k in e.factors:
            rows = [x.reshape(-1, k * L) for x in (inputs, targets, chosen)]
            nats, correct, count = (float(x.sum(dtype=np.float64)) for x in sums(params, *rows))
            out[f"mlm_loss_x{k}"] = nats / max(count, 1.0)
            out[f"mlm_accuracy_x{k}"] = correct / max(count, 1.0)
        return out

    return run


def build_task(config, mesh=None) -> Task:
    """RoFormer MLM on ``config.data`` (``mesh``: the evaluator's outputs are replicated on it)."""
    from jaxmodels.convert import load_pretrained
    from jaxmodels.data.pipeline import ArraySource, iterator_fn
    from jaxmodels.data.text import build_text_data, tile_rows
    from jaxmodels.models.roformer.hf import ARCHITECTURES

    hf_dir = config.get("init", {}).get("hf", "")
    mlm = {"RoFormerForMaskedLM": ARCHITECTURES["RoFormerForMaskedLM"]}  # what this task trains
    pretrained = load_pretrained(hf_dir, mlm, key="config.init.hf") if hf_dir else None
    data = build_text_data(config.data, tokenizer=pretrained and pretrained.tokenizer)
    tok = data.tokenizer
    model, mask_id = make_model(config, tok, pretrained)
    if model.vocab_size <= max(mask_id, tok.vocab_size - 1):
        raise ValueError(f"model vocabulary {model.vocab_size} is too small for the tokenizer")
    random_vocab = 256 if tok.is_bytes else tok.vocab_size
    specials = (tok.pad_id, tok.bos_id, tok.eos_id)
    mask_kw = dict(mask_id=mask_id, random_vocab_size=random_vocab, specials=specials)
    example = jnp.zeros((1, config.data.seq_len), jnp.int32)

    def init(rng):
        return model.init(rng, example)["params"]

    def metrics(params, batch, rng, train: bool):
        k_mask, k_drop = jax.random.split(rng)
        inputs, targets, chosen, keep = mlm_batch(batch, k_mask, **mask_kw)
        logits = model.apply({"params": params}, inputs, keep, None, batch["positions"],
                             batch["segment_ids"], deterministic=not train,
                             rngs={"dropout": k_drop})  # fmt: skip
        loss, out = mlm_loss(logits, targets, chosen)
        return loss, {"loss": loss, **out}

    offered = {"extrapolation": lambda: extrapolation(config, model, data, mesh, **mask_kw)}
    eval_rows = tile_rows(data.eval, config.train.batch_size)
    return Task(
        init=init,
        start_params=pretrained and pretrained.read_params,
        loss_fn=lambda p, b, r: metrics(p, b, r, True),
        eval_fn=lambda p, b, r: metrics(p, b, r, False)[1],
        train_data=iterator_fn(ArraySource(data.train), config, train=True),
        eval_data=iterator_fn(ArraySource(eval_rows), config, train=False),
        batch_axes={k: ("batch", "length") for k in ROW_FIELDS},
        evaluate=evaluate.select(config.evals, offered),
        units="tokens",
        units_per_example=config.data.seq_len,
        model=model,
        tokenizer=tok,
    )
