"""Length extrapolation: the decoder LM trained on length-L rows, evaluated at L, 2L, 4L, 8L.

Text is one continuous stream (documents concatenated, positions ``0..L-1`` in every row, no
segment masking), as in Press et al. 2022 (ALiBi), so longer evaluation rows really hold longer
contexts. ``Task.evaluate`` reports validation bits per byte ``bpb_x{k}`` at length ``k * L``
over the same validation tokens for every k, and for rotary encodings also with each RoPE
scaling applied at inference (``bpb_x{k}_{scaling}``, factor s = k, trained length L).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxmodels.models.lm import model as lm
from jaxmodels.train.task import Task

# RoPE scalings tried at inference on k*L tokens (trained at L): name -> options for factor k.
SCALINGS = {
    "linear": lambda k, L: {"type": "linear", "factor": k},
    "ntk": lambda k, L: {"type": "ntk", "factor": k},
    "yarn": lambda k, L: {"type": "yarn", "factor": k, "original_max_position_embeddings": L},
    "llama3": lambda k, L: {
        "type": "llama3",
        "factor": k,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": L,
    },
}


def stream_rows(token_docs: list[np.ndarray], seq_len: int, pad_id: int, max_tokens: int = 0):
    """Concatenates documents into one stream cut into ``seq_len`` rows (positions 0..L-1)."""
    from jaxmodels.data.text import pack

    stream = np.concatenate(token_docs)
    if max_tokens:
        stream = stream[: max_tokens + 1]
    return pack([stream], seq_len, pad_id)


def _stream_data(config):
    """Tokenised (train stream docs, validation stream docs, tokenizer) from ``config.data``."""
    from jaxmodels.data.text import load_documents
    from jaxmodels.data.tokenizers import make_tokenizer

    tok = make_tokenizer(config.data)
    train, val = load_documents(config.data)

    def encode(docs):
        return [np.concatenate([[tok.bos_id], tok.encode(t), [tok.eos_id]]) for t in docs if t]

    return encode(train), encode(val), tok


def bpb_sweep(config, params, val_docs, tok, vocab: int) -> dict[str, float]:
    """Validation bits per byte at each ``k * L`` (and per RoPE scaling for rotary encodings)."""
    e, L = config.extrapolation, config.data.seq_len
    base = lm.make_model(config, vocab)
    rotary = base.position.name in ("rope", "xpos")
    out = {}
    for k in e.factors:
        rows = stream_rows(val_docs, k * L, tok.pad_id, e.eval_tokens)
        variants = {"": base.position}
        if rotary and k > 1 and base.position.name == "rope":
            variants |= {f"_{n}": base.position.with_scaling(f(k, L)) for n, f in SCALINGS.items()}
        for suffix, position in variants.items():
            model = base.clone(position=position, block=_with_rotary(base.block, position))
            out[f"bpb_x{k}{suffix}"] = _bpb(model, params, rows, e.eval_batch_size)
    return out


def _with_rotary(block, position):
    import dataclasses

    return dataclasses.replace(block, **position.attention_kwargs())


def _bpb(model, params, rows, batch_size: int) -> float:
    """Mean bits per byte over all rows (weighted by byte targets), in fixed-size batches."""

    @jax.jit
    def sums(params, batch):
        logits = model.apply({"params": params}, batch["inputs"], batch["positions"])
        logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
        nll = -jnp.take_along_axis(logp, batch["targets"][..., None], axis=-1)[..., 0]
        w = batch["weights"] * (batch["targets"] < 256)
        return (nll * w).sum(), w.sum()

    n = len(rows["inputs"])
    total, count = 0.0, 0.0
    for i in range(0, n, batch_size):
        idx = np.arange(i, i + batch_size) % n  # wrap to keep one static shape
        valid = (np.arange(i, i + batch_size) < n).astype(np.float32)[:, None]
        batch = {key: rows[key][idx] for key in ("inputs", "positions", "targets")}
        batch["weights"] = rows["weights"][idx] * valid
        s, c = jax.device_get(sums(params, batch))
        total, count = total + float(s), count + float(c)
    return total / max(count, 1.0) / math.log(2)


def build_task(config, mesh=None) -> Task:
    """The LM family's task on stream rows, plus the length sweep as ``Task.evaluate``."""
    del mesh
    from jaxmodels.data.pipeline import ArraySource, make_iterator

    train_docs, val_docs, tok = _stream_data(config)
    vocab = lm.padded_vocab(config.model.vocab_size or tok.vocab_size, config.model.vocab_multiple)
    L, B = config.data.seq_len, config.train.batch_size
    train_rows = stream_rows(train_docs, L, tok.pad_id)
    eval_rows = lm._at_least(
        stream_rows(val_docs, L, tok.pad_id, config.extrapolation.eval_tokens), B
    )
    model = lm.make_model(config, vocab)

    def init(rng):
        return model.init(rng, jnp.zeros((1, L), jnp.int32))["params"]

    def forward(params, batch):
        return model.apply({"params": params}, batch["inputs"], batch["positions"])

    def loss_fn(params, batch, rng):
        return lm.lm_metrics(forward(params, batch), batch, is_bytes=tok.is_bytes)

    def eval_fn(params, batch, rng):
        return loss_fn(params, batch, rng)[1]

    def data(rows, train: bool):
        def make(process_index, process_count):
            return make_iterator(ArraySource(rows), global_batch_size=B, seed=config.seed,
                                 process_index=process_index, process_count=process_count,
                                 shuffle=train, repeat=train)  # fmt: skip

        return make

    axes = ("batch", "length")
    return Task(
        units="tokens",
        units_per_example=L,
        flops_per_example=lm.lm_train_flops(config, init, vocab),
        init=init,
        loss_fn=loss_fn,
        train_data=data(train_rows, True),
        eval_data=data(eval_rows, False),
        eval_fn=eval_fn,
        evaluate=lambda params, rng: bpb_sweep(config, params, val_docs, tok, vocab),
        batch_axes={k: axes for k in ("inputs", "targets", "segment_ids", "positions", "weights")},
    )
