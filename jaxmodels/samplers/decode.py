"""Autoregressive decoding with a KV cache: greedy, temperature, top-k, nucleus (top-p), beam.

``generate`` prefills the cache with the prompt, then runs one ``lax.scan`` step per new token
(no Python loop per token); every step feeds the last token and the cache to ``apply_fn``.
An optional ``prefill_fn`` (same signature) runs the prompt pass instead, e.g. an
encoder-decoder that reads its encoder output there and caches it for the steps.
``beam_search`` keeps the ``beam_size`` best partial sequences per row in the same way,
reordering the cache rows of the surviving beams after each step.

Shape letter beyond the legend (docs/architecture.md): ``J``, the beams kept per row
(``beam_size``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

# (params, cache, tokens_BxT) -> (logits_BxTxV, new_cache)
ApplyFn = Callable[[Any, Any, jax.Array], tuple[jax.Array, Any]]


def filter_logits(logits_BxV: jax.Array, *, top_k: int = 0, top_p: float = 1.0) -> jax.Array:
    """Sets logits outside the top-k set and outside the nucleus (Holtzman et al. 2020) to -inf."""
    neg = jnp.finfo(logits_BxV.dtype).min
    if top_k and top_k < logits_BxV.shape[-1]:
        kth = jax.lax.top_k(logits_BxV, top_k)[0][..., -1:]
        logits_BxV = jnp.where(logits_BxV < kth, neg, logits_BxV)
    if top_p < 1.0:
        sorted_desc = jnp.sort(logits_BxV, axis=-1)[..., ::-1]
        probs = jax.nn.softmax(sorted_desc, axis=-1)
        # keep the smallest prefix whose mass reaches top_p (the first token always stays)
        mass_before = jnp.cumsum(probs, axis=-1) - probs
        n_keep = jnp.sum(mass_before < top_p, axis=-1, keepdims=True)
        cutoff = jnp.take_along_axis(sorted_desc, n_keep - 1, axis=-1)
        logits_BxV = jnp.where(logits_BxV < cutoff, neg, logits_BxV)
    return logits_BxV


def sample_token(
    logits_BxV: jax.Array,
    rng: jax.Array,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
) -> jax.Array:
    """Draws one token per row: argmax when ``temperature == 0``, else from softmax(l / T)."""
    logits_BxV = logits_BxV.astype(jnp.float32)
    if temperature == 0.0:
        return jnp.argmax(logits_BxV, axis=-1).astype(jnp.int32)
    logits_BxV = filter_logits(logits_BxV / temperature, top_k=top_k, top_p=top_p)
    return jax.random.categorical(rng, logits_BxV, axis=-1).astype(jnp.int32)


@functools.partial(
    jax.jit,
    static_argnames=(
        "apply_fn",
        "prefill_fn",
        "max_new_tokens",
        "temperature",
        "top_k",
        "top_p",
        "eos_id",
        "pad_id",
        "return_logits",
    ),
)
def generate(
    apply_fn: ApplyFn,
    params: Any,
    cache: Any,
    prompt_BxL: jax.Array,
    rng: jax.Array,
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    eos_id: int | None = None,
    pad_id: int = 0,
    return_logits: bool = False,
    prefill_fn: ApplyFn | None = None,
):
    """Returns ``tokens_BxT``, ``T = max_new_tokens`` new tokens (``pad_id`` after ``eos_id``).

    ``cache`` must hold at least ``L + T`` positions (``L``: the prompt's length). With
    ``return_logits`` also returns the ``BxTxV`` logits each token was drawn from.
    """
    opts = dict(temperature=temperature, top_k=top_k, top_p=top_p)
    logits, cache = (prefill_fn or apply_fn)(params, cache, prompt_BxL)
    rng, first_rng = jax.random.split(rng)
    first_logits = logits[:, -1].astype(jnp.float32)
    first = sample_token(first_logits, first_rng, **opts)
    B = prompt_BxL.shape[0]

    def step(carry, step_rng):
        cache, token, done, last_logits = carry
        emitted = jnp.where(done, pad_id, token)
        done = done | (token == eos_id) if eos_id is not None else done
        logits, cache = apply_fn(params, cache, token[:, None])
        logits = logits[:, -1].astype(jnp.float32)
        nxt = sample_token(logits, step_rng, **opts)
        return (cache, nxt, done, logits), (emitted, last_logits)

    done = jnp.zeros((B,), bool)
    carry = (cache, first, done, first_logits)
    _, (tokens, logits) = jax.lax.scan(step, carry, jax.random.split(rng, max_new_tokens))
    tokens_BxT = tokens.T
    return (tokens_BxT, jnp.swapaxes(logits, 0, 1)) if return_logits else tokens_BxT


def _reorder_rows(tree, src_BxJ: jax.Array):
    """Gathers beams ``src_BxJ`` from every cache leaf with a leading ``B * J`` axis."""
    B, J = src_BxJ.shape
    flat = (jnp.arange(B)[:, None] * J + src_BxJ).reshape(-1)

    def take(x):
        return x[flat] if x.ndim and x.shape[0] == B * J else x

    return jax.tree.map(take, tree)


@functools.partial(
    jax.jit,
    static_argnames=("apply_fn", "prefill_fn", "beam_size", "max_new_tokens", "eos_id", "pad_id"),
)
def beam_search(
    apply_fn: ApplyFn,
    params: Any,
    cache: Any,
    prompt_BxL: jax.Array,
    *,
    beam_size: int,
    max_new_tokens: int,
    eos_id: int | None = None,
    pad_id: int = 0,
    length_penalty: float = 1.0,
    prefill_fn: ApplyFn | None = None,
):
    """Beam search (e.g. BLIP's captioning, beam 3): returns ``(tokens_BxT, scores_B)``.

    ``J = beam_size`` beams, ``T = max_new_tokens``.
    ``cache`` holds ``B * J`` rows (beam-major within each row: row ``b * J + j``) and
    ``apply_fn`` sees that many rows. Scores are summed log-probabilities; a beam that emitted
    ``eos_id`` is finished, extends only with ``pad_id`` at no cost, and keeps its place in the
    beam. The best beam maximises ``score / length ** length_penalty`` (length up to its EOS).
    """
    B, J = prompt_BxL.shape[0], beam_size
    logits, cache = (prefill_fn or apply_fn)(params, cache, jnp.repeat(prompt_BxL, J, axis=0))
    logp = jax.nn.log_softmax(logits[:, -1].astype(jnp.float32), axis=-1)
    V = logp.shape[-1]
    scores = jnp.where(jnp.arange(J) == 0, 0.0, -jnp.inf)[None].repeat(B, 0)  # one live beam
    pad_row = jnp.where(jnp.arange(V) == pad_id, 0.0, -jnp.inf)

    def step(carry, n):
        cache, logp_BJxV, scores_BxJ, tokens_BxJxT, done_BxJ, length_BxJ = carry
        logp_BxJxV = jnp.where(done_BxJ[..., None], pad_row, logp_BJxV.reshape(B, J, V))
        cand_BxJV = (scores_BxJ[..., None] + logp_BxJxV).reshape(B, J * V)
        scores_BxJ, idx_BxJ = jax.lax.top_k(cand_BxJV, J)
        src_BxJ, tok_BxJ = idx_BxJ // V, (idx_BxJ % V).astype(jnp.int32)
        pick = lambda x: jnp.take_along_axis(x, src_BxJ.reshape(B, J, *[1] * (x.ndim - 2)), 1)
        tokens_BxJxT = pick(tokens_BxJxT).at[:, :, n].set(tok_BxJ)
        done_BxJ, length_BxJ = pick(done_BxJ), pick(length_BxJ)
        length_BxJ = length_BxJ + (~done_BxJ)
        if eos_id is not None:
            done_BxJ = done_BxJ | (tok_BxJ == eos_id)
        cache = _reorder_rows(cache, src_BxJ)
        logits, cache = apply_fn(params, cache, tok_BxJ.reshape(B * J, 1))
        logp = jax.nn.log_softmax(logits[:, -1].astype(jnp.float32), axis=-1)
        return (cache, logp, scores_BxJ, tokens_BxJxT, done_BxJ, length_BxJ), None

    tokens = jnp.full((B, J, max_new_tokens), pad_id, jnp.int32)
    done, length = jnp.zeros((B, J), bool), jnp.zeros((B, J), jnp.int32)
    carry = (cache, logp, scores, tokens, done, length)
    carry, _ = jax.lax.scan(step, carry, jnp.arange(max_new_tokens))
    _, _, scores, tokens, _, length = carry
    normed = scores / jnp.maximum(length, 1).astype(jnp.float32) ** length_penalty
    best_B = jnp.argmax(normed, axis=1)
    take = lambda x: jnp.take_along_axis(x, best_B.reshape(B, 1, *[1] * (x.ndim - 2)), 1)[:, 0]
    return take(tokens), take(scores)
