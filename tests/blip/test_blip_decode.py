"""Beam search (samplers.decode) against exhaustive search and greedy decoding."""

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxmodels.samplers.decode import beam_search, generate

V, P, N = 3, 2, 3  # vocabulary, prompt length, new tokens
T = P + N


def _toy():
    """A 'model' whose next-token logits depend on the whole prefix held in its cache."""
    w = jax.random.normal(jax.random.key(0), (T * V, V)) * 2.0

    def logits_of(tokens_BxT, length):
        onehot = jax.nn.one_hot(tokens_BxT, V) * (jnp.arange(T) < length)[None, :, None]
        return jnp.tanh(onehot.reshape(tokens_BxT.shape[0], -1) @ w) * 3.0

    def apply_fn(params, cache, new_BxS):
        del params
        idx = cache["index"]
        toks = jax.lax.dynamic_update_slice(cache["tokens"], new_BxS, (0, idx))
        out = [logits_of(toks, idx + s + 1) for s in range(new_BxS.shape[1])]
        return jnp.stack(out, 1), {"tokens": toks, "index": idx + new_BxS.shape[1]}

    return apply_fn, logits_of


def _cache(rows):
    return {"tokens": jnp.zeros((rows, T), jnp.int32), "index": jnp.array(0, jnp.int32)}


def _exhaustive(logits_of, prompt):
    best, best_seq = -np.inf, None
    for seq in itertools.product(range(V), repeat=N):
        toks = jnp.asarray([*prompt, *seq, *[0] * (T - P - N)])[None]
        score = sum(float(jax.nn.log_softmax(logits_of(toks, P + n))[0, seq[n]]) for n in range(N))
        if score > best:
            best, best_seq = score, seq
    return best_seq, best


def test_beam_search_equals_exhaustive_search_when_the_beam_holds_every_prefix(variant):
    apply_fn, logits_of = _toy()
    prompts = jnp.asarray([[1, 2], [0, 0], [2, 1]], jnp.int32)
    K = V ** (N - 1)  # every partial sequence fits in the beam: beam search is exact
    search = variant(lambda c, p: beam_search(apply_fn, None, c, p, beam_size=K, max_new_tokens=N))
    tokens, scores = search(_cache(len(prompts) * K), prompts)
    for b, prompt in enumerate(np.asarray(prompts)):
        seq, score = _exhaustive(logits_of, list(prompt))
        assert tuple(np.asarray(tokens[b])) == seq
        chex.assert_trees_all_close(scores[b], score, atol=0, rtol=1e-5)


def test_beam_of_one_is_greedy_and_eos_pads_the_rest():
    apply_fn, _ = _toy()
    prompts = jnp.asarray([[1, 2], [0, 1]], jnp.int32)
    greedy = generate(
        apply_fn, None, _cache(2), prompts, jax.random.key(0), max_new_tokens=N, temperature=0.0
    )
    beam, _ = beam_search(apply_fn, None, _cache(2), prompts, beam_size=1, max_new_tokens=N)
    chex.assert_trees_all_equal(beam, greedy)
    eos = int(greedy[0, 0])  # the first greedy token of row 0 ends that row at once
    pad = (eos + 1) % V
    out, _ = beam_search(
        apply_fn, None, _cache(2), prompts, beam_size=1, max_new_tokens=N, eos_id=eos, pad_id=pad
    )
    assert int(out[0, 0]) == eos and (np.asarray(out[0, 1:]) == pad).all()
