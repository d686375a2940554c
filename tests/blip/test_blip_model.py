"""BLIP module: shapes of the three modes, encoder/decoder weight sharing, KV-cached decoding,
the attention kernel each call chooses on a GPU."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import traverse_util

from jaxmodels.models.blip.model import BLIP

B, L, SIZE, V = 2, 9, 16, 40
IMAGE = dict(width=32, depth=1, mlp_dim=64, num_heads=2, patch_size=8, activation="gelu")
TEXT = dict(vocab_size=V, width=32, depth=2, mlp_dim=48, num_heads=2, max_len=16)


@functools.cache
def _setup():
    model = BLIP(IMAGE, TEXT, embed_dim=16)
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.normal(size=(B, SIZE, SIZE, 3)), jnp.float32)
    ids = jnp.asarray(rng.integers(0, V, size=(B, L)), jnp.int32)
    mask = jnp.ones((B, L), bool).at[1, 6:].set(False)
    boxed = jax.jit(model.init)(jax.random.key(0), images, ids, mask)["params"]
    return model, boxed, images, ids, mask


def test_modes_have_the_documented_shapes_and_params_carry_logical_names():
    model, boxed, images, ids, mask = _setup()
    leaves = jax.tree.leaves(boxed, is_leaf=lambda x: hasattr(x, "names"))
    assert all(hasattr(x, "names") for x in leaves)  # every param has logical axis names
    params = nn.unbox(boxed)
    out = jax.jit(model.apply)({"params": params}, images, ids, mask)
    assert out["zimg"].shape == out["ztxt"].shape == (B, 16)
    np.testing.assert_allclose(np.linalg.norm(out["zimg"], axis=-1), 1.0, rtol=1e-5)
    assert out["itm"].shape == (B, 2) and out["logits"].shape == (B, L, V)


def _perturb(params, name):
    flat = traverse_util.flatten_dict(params)
    flat = {k: v + 0.5 if name in k else v for k, v in flat.items()}
    return traverse_util.unflatten_dict(flat)


def test_decoder_shares_every_weight_but_self_attention_with_the_encoder():
    model, boxed, images, ids, mask = _setup()
    params = nn.unbox(boxed)
    layer = params["text"]["layers"]["layers_0"]
    assert set(layer) == {
        "attention",
        "attention_norm",  # encoder self-attention (bidirectional) ...
        "causal_attention",
        "causal_attention_norm",  # ... and the decoder's own causal self-attention
        "cross_attention",
        "cross_attention_norm",
        "mlp",
        "mlp_norm",
    }

    apply = jax.jit(model.apply)

    def run(p):
        out = apply({"params": p}, images, ids, mask)
        return np.asarray(out["itm"]), np.asarray(out["logits"]), np.asarray(out["ztxt"])

    itm, logits, ztxt = run(params)
    itm_c, logits_c, ztxt_c = run(_perturb(params, "causal_attention"))
    np.testing.assert_array_equal(itm_c, itm)  # encoder does not use the decoder's SA
    np.testing.assert_array_equal(ztxt_c, ztxt)
    assert not np.allclose(logits_c, logits)
    itm_x, logits_x, ztxt_x = run(_perturb(params, "cross_attention"))
    assert not np.allclose(itm_x, itm) and not np.allclose(logits_x, logits)  # shared
    np.testing.assert_array_equal(ztxt_x, ztxt)  # unimodal mode has no cross-attention
    itm_m, logits_m, _ = run(_perturb(params, "mlp"))
    assert not np.allclose(itm_m, itm) and not np.allclose(logits_m, logits)  # shared


def test_decoder_is_causal_and_kv_cached_decoding_matches_the_full_pass():
    model, boxed, images, ids, _ = _setup()
    params = nn.unbox(boxed)
    caption = jax.jit(
        lambda p, x, t: model.apply({"params": p}, x, t, None, method="caption_logits")
    )
    full = np.asarray(caption(params, images, ids))
    again = caption(params, images, ids.at[:, -1].set((ids[:, -1] + 1) % V))
    np.testing.assert_allclose(np.asarray(again)[:, :-1], full[:, :-1], atol=1e-5)  # causal

    decoder = model.clone(decode=True)
    image = model.apply({"params": params}, images, method="image_tokens")
    shapes = jax.eval_shape(
        lambda: decoder.init(jax.random.key(0), image, ids, None, method="decoder_logits")
    )
    cache = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes["cache"])

    @jax.jit
    def step(cache, image, chunk):
        variables = {"params": params, "cache": cache}
        return decoder.apply(
            variables, image, chunk, None, method="decoder_logits", mutable=["cache"]
        )

    # the prefill reads the image and caches its cross-attention keys/values; the steps get None
    logits, mut = step(cache, image, ids[:, :4])
    steps, cache = [np.asarray(logits)], mut["cache"]
    cross = cache["text"]["layers"]["layers_0"]["cross_attention"]
    assert cross["cross_key"].shape[:2] == image.shape[:2]
    for t in range(4, L):
        logits, mut = step(cache, None, ids[:, t : t + 1])
        cache = mut["cache"]
        steps.append(np.asarray(logits))
    np.testing.assert_allclose(np.concatenate(steps, 1), full, atol=1e-4)
    with pytest.raises(ValueError, match="needs the image tokens"):
        model.apply({"params": params}, None, ids, None, method="decoder_logits")


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
def test_on_a_gpu_every_attention_call_chooses_cudnn_in_bf16(dtype, gpu_kernel_choices):
    """Seen from a pretend GPU: the text side's right padding reaches attention as lengths,
    which cuDNN takes with or without the decoder's causal mask, so every call (ViT, text,
    encoder self/cross, decoder self/cross) chooses cuDNN in bf16; float32 (the CPU configs) is
    refused."""
    model, _, images, ids, mask = _setup()
    gpu_kernel_choices.clear()  # what a first _setup() traced (float32)
    jax.eval_shape(lambda: model.clone(dtype=dtype).init(jax.random.key(0), images, ids, mask))
    assert len(gpu_kernel_choices) == 11  # per layer: 1 ViT, 2 text, 2 x 2 encoder and decoder
    if dtype == jnp.bfloat16:
        assert set(gpu_kernel_choices) == {("cudnn", None)}, gpu_kernel_choices
    else:  # the same inputs in float32: refused (test_attention_kernels: for the dtype)
        assert {c.kernel for c in gpu_kernel_choices} == {"xla"}, gpu_kernel_choices
