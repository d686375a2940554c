"""The LM family's ``build_task``: packed text rows, next-token loss, evaluators, KV-cache sampling.

``config.init.hf`` (an HF ``*ForCausalLM`` directory of an architecture in ``hf.ARCHITECTURES``)
starts from an imported checkpoint instead of ``config.model``'s random init: its architecture
and weights, and its ``tokenizer.json`` as the tokenizer when present.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from jaxmodels import evaluate
from jaxmodels.data.tokenizers import padded_vocab
from jaxmodels.layers.flops import transformer_train_flops
from jaxmodels.layers.transformer import fuse_projections
from jaxmodels.models.lm.loss import lm_metrics
from jaxmodels.models.lm.model import DecoderLM, make_model
from jaxmodels.models.lm.sample import make_sampler
from jaxmodels.train.task import Task

ROW_FIELDS = ("inputs", "targets", "segment_ids", "positions", "weights")


def load_causal_lm(hf_dir: str):
    """``config.init.hf``: a ``*ForCausalLM`` directory as a ``DecoderLM`` with logits, its
    tokenizer, and its weights read only when the run starts from them."""
    from jaxmodels.convert import load_pretrained
    from jaxmodels.models.lm.hf import ARCHITECTURES

    causal = {k: v for k, v in ARCHITECTURES.items() if k.endswith("ForCausalLM")}
    return load_pretrained(hf_dir, causal, key="config.init.hf")


def imported_model(config, pretrained) -> DecoderLM:
    """The imported ``DecoderLM`` with this run's dtype, kernel, dropout, remat and projection
    fusion choices."""
    m = config.model
    if m.scan_layers:
        raise ValueError(
            "config.init.hf imports unrolled layers: set config.model.scan_layers=False"
        )
    block = dataclasses.replace(
        pretrained.model.block,
        attention_impl=m.attention_impl,
        dropout_rate=m.dropout_rate,
        fused_projections=m.get("fused_projections", False),
    )
    return pretrained.model.clone(
        block=block, remat_policy=m.remat_policy, dtype=jnp.dtype(config.train.compute_dtype)
    )


def start_params(model: DecoderLM, pretrained):
    """Reads the imported weights in ``model``'s layout (fused with ``fused_projections``)."""
    if not model.block.fused_projections:
        return pretrained.read_params
    return lambda: fuse_projections(pretrained.read_params())


def extrapolation(config, model: DecoderLM, data):
    """The length sweep (``jaxmodels.evaluate.extrapolation``) on the validation documents."""
    from jaxmodels.evaluate.extrapolation import length_sweep

    e = config.extrapolation

    def make_logits(scaling):
        position = model.block.position
        if scaling is not None:
            position = position.with_scaling(scaling)
        m = model.clone(block=dataclasses.replace(model.block, position=position))
        return lambda params, inputs, positions: m.apply({"params": params}, inputs, positions)

    scalings = tuple(e.scalings) if model.block.position.name == "rope" else ()
    tok = data.tokenizer
    return lambda params, rng: length_sweep(
        make_logits, params, data.eval_docs, seq_len=config.data.seq_len, factors=e.factors,
        eval_tokens=e.eval_tokens, batch_size=e.eval_batch_size, pad_id=tok.pad_id,
        is_bytes=tok.is_bytes, scalings=scalings,
    )  # fmt: skip


def build_task(config, mesh=None) -> Task:
    """The LM family's :class:`~jaxmodels.train.task.Task` (``mesh`` is unused: rules suffice)."""
    from jaxmodels.data.pipeline import ArraySource, iterator_fn
    from jaxmodels.data.text import build_text_data, tile_rows

    hf_dir = config.get("init", {}).get("hf", "")
    pretrained = load_causal_lm(hf_dir) if hf_dir else None
    data = build_text_data(config.data, tokenizer=pretrained and pretrained.tokenizer)
    tok, L = data.tokenizer, config.data.seq_len
    if pretrained:
        model = imported_model(config, pretrained)
    else:
        m = config.model
        model = make_model(config, padded_vocab(m.vocab_size or tok.vocab_size, m.vocab_multiple))
    if model.vocab_size < tok.vocab_size:
        raise ValueError(f"model vocabulary {model.vocab_size} < tokenizer size {tok.vocab_size}")
    train_model = model.clone(deterministic=config.model.dropout_rate == 0.0)
    example = jnp.zeros((1, L), jnp.int32)

    def init(rng):
        return model.init(rng, example)["params"]

    def forward(m, params, batch, rng):
        return m.apply({"params": params}, batch["inputs"], batch["positions"],
                       batch["segment_ids"], rngs={"dropout": rng})  # fmt: skip

    def loss_fn(params, batch, rng):
        return lm_metrics(forward(train_model, params, batch, rng), batch, is_bytes=tok.is_bytes)

    def eval_fn(params, batch, rng):
        return lm_metrics(forward(model, params, batch, rng), batch, is_bytes=tok.is_bytes)[1]

    offered = {"extrapolation": functools.partial(extrapolation, config, model, data)}
    return Task(
        units="tokens",
        units_per_example=L,
        flops_per_example=train_flops(model, init, L),
        init=init,
        start_params=pretrained and start_params(model, pretrained),
        loss_fn=loss_fn,
        train_data=iterator_fn(ArraySource(data.train), config, train=True),
        batch_axes={k: ("batch", "length") for k in ROW_FIELDS},
        eval_data=iterator_fn(
            ArraySource(tile_rows(data.eval, config.train.batch_size)), config, train=False
        ),
        eval_fn=eval_fn,
        evaluate=evaluate.select(config.evals, offered),
        sample=make_sampler(model, tok, config.sample),
        model=model,
        tokenizer=tok,
    )


def train_flops(model, init, seq_len: int) -> float:
    """Model FLOPs of one training row (:func:`jaxmodels.layers.flops.transformer_train_flops`);
    N is every parameter except an untied input embedding (a lookup, not a matmul)."""
    b = model.block
    n = sum(x.size for x in jax.tree.leaves(jax.eval_shape(init, jax.random.key(0))))
    n -= 0 if model.tie_embeddings else model.vocab_size * b.d_model
    attn_dim = b.num_heads * (b.head_dim or b.d_model // b.num_heads)
    return transformer_train_flops(
        n, num_layers=model.num_layers, seq_len=seq_len, attn_dim=attn_dim
    )
