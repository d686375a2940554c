"""RoPE decoder-only language model (Llama-style: pre-norm RMSNorm, RoPE on q/k, SwiGLU MLP).

``build_task(config, mesh)`` gives the core everything to train, evaluate and sample it: next-token
cross-entropy over packed rows (padding and document boundaries masked), accuracy and, for the
byte tokenizer, bits per byte; sampling decodes with a KV cache (``jaxmodels.samplers.decode``).
"""

from __future__ import annotations

import math
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxmodels.layers.position_encoding import (
    AbsolutePositions,
    PositionOptions,
    RelativePositionBias,
)
from jaxmodels.layers.transformer import BlockConfig, TransformerStack
from jaxmodels.samplers.decode import generate
from jaxmodels.train.flops import transformer_train_flops
from jaxmodels.train.task import Task

Dtype = Any


class DecoderLM(nn.Module):
    """Token embedding -> ``num_layers`` pre-norm blocks -> final norm -> vocabulary logits."""

    vocab_size: int
    num_layers: int
    block: BlockConfig
    tie_embeddings: bool = True
    embed_init_std: float = 0.02
    scan_layers: bool = False
    remat_policy: str = "none"
    decode: bool = False
    deterministic: bool = True
    position: PositionOptions = PositionOptions()  # the block's rope fields follow it
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def _positions(self, B: int, T: int) -> jax.Array:
        """Default positions ``0..T-1``, offset by the tokens already decoded when caching."""
        offset = 0
        if self.decode:
            if self.position.name in ("t5", "alibi"):
                raise ValueError(
                    f"position={self.position.name!r} does not support KV-cache decoding"
                )
            index = self.variable("cache", "position_index", lambda: jnp.array(0, jnp.int32))
            offset = index.value
            if self.has_variable("cache", "position_index") and not self.is_initializing():
                index.value = offset + T
        return jnp.broadcast_to(offset + jnp.arange(T, dtype=jnp.int32), (B, T))

    @nn.compact
    def __call__(
        self,
        tokens_BxL: jax.Array,
        positions_BxL: jax.Array | None = None,
        segment_ids_BxL: jax.Array | None = None,
    ) -> jax.Array:
        """Returns float32 logits ``[B, L, vocab_size]``."""
        init = nn.initializers.normal(self.embed_init_std)
        embedding_VxE = self.param(
            "embedding",
            nn.with_logical_partitioning(init, ("vocab", "embed")),
            (self.vocab_size, self.block.d_model),
            self.param_dtype,
        )
        x = jnp.take(embedding_VxE, tokens_BxL, axis=0).astype(self.dtype)
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        bias = None
        if self.position.name in ("learned", "sinusoidal", "t5", "alibi"):
            if positions_BxL is None:
                positions_BxL = self._positions(*tokens_BxL.shape)
            pe = AbsolutePositions(self.position, self.block.d_model, name="positions", **kw)
            pe_BxLxE = pe(positions_BxL)
            x = x if pe_BxLxE is None else x + pe_BxLxE
            bias = RelativePositionBias(
                self.position, self.block.num_heads, causal=True, name="relative_bias", **kw
            )(positions_BxL, positions_BxL)
        x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
        x = TransformerStack(
            self.block,
            num_layers=self.num_layers,
            scan_layers=self.scan_layers,
            remat_policy=self.remat_policy,
            decode=self.decode,
            deterministic=self.deterministic,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="decoder",
        )(x, positions_BxL, segment_ids_BxL, None, bias)
        if self.tie_embeddings:
            w_ExV = embedding_VxE.T
        else:
            w_ExV = self.param(
                "unembedding",
                nn.with_logical_partitioning(
                    nn.initializers.normal(1 / math.sqrt(self.block.d_model)), ("embed", "vocab")
                ),
                (self.block.d_model, self.vocab_size),
                self.param_dtype,
            )
        logits = jnp.einsum(
            "ble,ev->blv", x, w_ExV.astype(self.dtype), preferred_element_type=jnp.float32
        )
        return nn.with_logical_constraint(logits, ("batch", "length", "vocab"))


def make_model(config, vocab_size: int, **overrides) -> DecoderLM:
    """Builds the module from ``config.model`` (see experiments/lm/rope_lm.py for the keys)."""
    m = config.model
    position = lm_position(m)
    block = BlockConfig(
        d_model=m.d_model,
        num_heads=m.num_heads,
        d_ff=m.d_ff,
        num_kv_heads=m.num_kv_heads or None,
        head_dim=m.head_dim or None,
        activation=m.activation,
        norm=m.norm,
        norm_eps=m.norm_eps,
        causal=True,
        attention_impl=m.attention_impl,
        dropout_rate=m.dropout_rate,
        **position.attention_kwargs(),
    )
    kw = dict(
        position=position,
        vocab_size=vocab_size,
        num_layers=m.num_layers,
        block=block,
        tie_embeddings=m.tie_embeddings,
        embed_init_std=m.embed_init_std,
        scan_layers=m.scan_layers,
        remat_policy=m.remat_policy,
        dtype=jnp.dtype(config.train.compute_dtype),
    )
    kw.update(overrides)
    return DecoderLM(**kw)


def lm_position(m) -> PositionOptions:
    """``config.model.position`` (optional) over the legacy ``rope_base``/``rope_layout`` keys."""
    opts = {"rope_base": m.rope_base, "rope_layout": m.rope_layout, "max_len": 2048}
    opts.update(dict(m.get("position", None) or {}))
    return PositionOptions.from_config(opts)


def padded_vocab(n: int, multiple: int) -> int:
    """Rounds the tokenizer's vocabulary up to a multiple (faster, shardable matmuls)."""
    return -(-n // multiple) * multiple if multiple > 1 else n


def lm_metrics(logits_BxLxV, batch, *, is_bytes: bool) -> tuple[jax.Array, dict]:
    """Weighted next-token cross-entropy, accuracy and (byte tokenizer) bits per byte."""
    targets, w = batch["targets"], batch["weights"].astype(jnp.float32)
    logp = jax.nn.log_softmax(logits_BxLxV.astype(jnp.float32), axis=-1)
    nll_BxL = -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    denom = jnp.maximum(w.sum(), 1.0)
    loss = (nll_BxL * w).sum() / denom
    correct = (jnp.argmax(logits_BxLxV, -1) == targets).astype(jnp.float32)
    metrics = {"loss": loss, "accuracy": (correct * w).sum() / denom}
    if is_bytes:
        wb = w * (targets < 256)
        metrics["bits_per_byte"] = (nll_BxL * wb).sum() / jnp.maximum(wb.sum(), 1.0) / math.log(2)
    return loss, metrics


def _sampler(config, tokenizer, vocab_size: int):
    """Returns ``(params, rng, workdir) -> text``: decodes ``config.sample`` prompts."""
    s = config.sample
    dec = make_model(config, vocab_size, decode=True, scan_layers=config.model.scan_layers)

    def apply_fn(params, cache, tokens):
        logits, upd = dec.apply({"params": params, "cache": cache}, tokens, mutable=["cache"])
        return logits, upd["cache"]

    def sample(params, rng, workdir: str) -> str:
        prompts = list(s.prompts) if not isinstance(s.prompts, str) else [s.prompts]
        outputs = []
        for prompt in prompts:
            ids = np.concatenate([[tokenizer.bos_id], tokenizer.encode(prompt)]).astype(np.int32)
            prompt_BxP = jnp.asarray(np.tile(ids, (s.num_samples, 1)))
            total = prompt_BxP.shape[1] + s.max_new_tokens
            shape = jax.ShapeDtypeStruct((s.num_samples, total), jnp.int32)
            cache = jax.tree.map(
                lambda a: jnp.zeros(a.shape, a.dtype),
                jax.eval_shape(dec.init, jax.random.key(0), shape)["cache"],
            )
            rng, key = jax.random.split(rng)
            new = generate(apply_fn, params, nn.unbox(cache), prompt_BxP, key,
                           max_new_tokens=s.max_new_tokens, temperature=s.temperature,
                           top_k=s.top_k, top_p=s.top_p, eos_id=tokenizer.eos_id,
                           pad_id=tokenizer.pad_id)  # fmt: skip
            for row in np.asarray(new):
                outputs.append(f"--- prompt {prompt!r}\n{prompt}{tokenizer.decode(row)}")
        text = "\n".join(outputs)
        if workdir:
            os.makedirs(workdir, exist_ok=True)
            with open(os.path.join(workdir, "samples.txt"), "w", encoding="utf-8") as f:
                f.write(text + "\n")
        return text

    return sample


def build_task(config, mesh=None) -> Task:
    """The LM family's :class:`~jaxmodels.train.task.Task` (``mesh`` is unused: rules suffice)."""
    from jaxmodels.data.pipeline import ArraySource, make_iterator
    from jaxmodels.data.text import build_text_data

    data = build_text_data(config.data)
    tok = data.tokenizer
    vocab = padded_vocab(config.model.vocab_size or tok.vocab_size, config.model.vocab_multiple)
    if vocab < tok.vocab_size:
        raise ValueError(f"config.model.vocab_size={vocab} < tokenizer size {tok.vocab_size}")
    model = make_model(config, vocab)
    train_model = model.clone(deterministic=config.model.dropout_rate == 0.0)
    B = config.train.batch_size
    L = config.data.seq_len

    def init(rng):
        return model.init(rng, jnp.zeros((1, L), jnp.int32))["params"]

    def forward(m, params, batch, rng):
        return m.apply(
            {"params": params},
            batch["inputs"],
            batch["positions"],
            batch["segment_ids"],
            rngs={"dropout": rng},
        )

    def loss_fn(params, batch, rng):
        return lm_metrics(forward(train_model, params, batch, rng), batch, is_bytes=tok.is_bytes)

    def eval_fn(params, batch, rng):
        return lm_metrics(forward(model, params, batch, rng), batch, is_bytes=tok.is_bytes)[1]

    def train_data(process_index, process_count):
        return make_iterator(ArraySource(data.train), global_batch_size=B, seed=config.seed,
                             process_index=process_index, process_count=process_count)  # fmt: skip

    eval_rows = _at_least(data.eval, B)

    def eval_data(process_index, process_count):
        return make_iterator(ArraySource(eval_rows), global_batch_size=B, seed=config.seed,
                             process_index=process_index, process_count=process_count,
                             shuffle=False, repeat=False)  # fmt: skip

    axes = ("batch", "length")
    names = ("inputs", "targets", "segment_ids", "positions", "weights")
    return Task(
        units="tokens",
        units_per_example=L,
        flops_per_example=lm_train_flops(config, init, vocab),
        init=init,
        loss_fn=loss_fn,
        train_data=train_data,
        batch_axes={k: axes for k in names},
        eval_data=eval_data,
        eval_fn=eval_fn,
        sample=_sampler(config, tok, vocab),
    )


def lm_train_flops(config, init, vocab_size: int) -> float:
    """Model FLOPs of one training row (:func:`jaxmodels.train.flops.transformer_train_flops`);
    N is every parameter except an untied input embedding (a lookup, not a matmul)."""
    m = config.model
    n = sum(x.size for x in jax.tree.leaves(jax.eval_shape(init, jax.random.key(0))))
    n -= 0 if m.tie_embeddings else vocab_size * m.d_model
    attn_dim = m.num_heads * (m.head_dim or m.d_model // m.num_heads)
    return transformer_train_flops(
        n, num_layers=m.num_layers, seq_len=config.data.seq_len, attn_dim=attn_dim
    )


def _at_least(arrays: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
    """Tiles a small validation set up to one full batch (whole batches keep shapes static)."""
    n = len(arrays["inputs"])
    reps = -(-rows // n)
    return arrays if reps == 1 else {k: np.concatenate([v] * reps) for k, v in arrays.items()}
