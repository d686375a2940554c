"""RoPE LM family: KV-cache decoding, sampling filters, text data and packing.

HF Llama parity is in tests/convert and tests/lm/test_hf_finetune.py.
"""

import math
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmodels.config import load_config
from jaxmodels.data import text, tokenizers
from jaxmodels.layers.transformer import BlockConfig
from jaxmodels.models.lm.loss import lm_metrics
from jaxmodels.models.lm.model import DecoderLM
from jaxmodels.models.lm.task import build_task
from jaxmodels.samplers.decode import filter_logits, generate

CONFIG = "experiments/lm/rope_lm.py"


def _config(arg="smoke"):
    return load_config(f"{CONFIG}:{arg}")


def _tiny(tie=True, **kw):
    block = BlockConfig(d_model=32, num_heads=4, num_kv_heads=2, d_ff=48, attention_impl="xla")
    return DecoderLM(vocab_size=64, num_layers=2, block=block, tie_embeddings=tie, **kw)


def test_kv_cache_decoding_equals_full_recomputation():
    model, dec = _tiny(), _tiny(decode=True)
    prompt = jnp.asarray(np.random.default_rng(1).integers(0, 64, (2, 5)), jnp.int32)
    params = nn.unbox(model.init(jax.random.key(0), prompt))["params"]
    N = 7
    cache = dec.init(jax.random.key(0), jnp.zeros((2, 5 + N), jnp.int32))["cache"]

    def apply_fn(p, c, t):
        logits, upd = dec.apply({"params": p, "cache": c}, t, mutable=["cache"])
        return logits, upd["cache"]

    new, step_logits = generate(
        apply_fn, params, cache, prompt, jax.random.key(2), max_new_tokens=N,
        temperature=0.0, return_logits=True,
    )  # fmt: skip
    full = model.apply({"params": params}, jnp.concatenate([prompt, new], axis=1))
    np.testing.assert_allclose(step_logits, full[:, 4 : 4 + N], atol=1e-4)
    np.testing.assert_array_equal(new, jnp.argmax(full[:, 4 : 4 + N], -1))


def test_filter_logits_top_k_and_top_p():
    logits = jnp.log(jnp.array([[0.5, 0.2, 0.15, 0.1, 0.05]]))
    kept = lambda out: np.isfinite(np.asarray(out)) & (np.asarray(out) > -1e30)
    np.testing.assert_array_equal(kept(filter_logits(logits, top_k=2)), [[1, 1, 0, 0, 0]])
    # nucleus 0.8: 0.5 + 0.2 = 0.7 < 0.8, so 0.15 joins; 0.85 >= 0.8 stops there
    np.testing.assert_array_equal(kept(filter_logits(logits, top_p=0.8)), [[1, 1, 1, 0, 0]])
    np.testing.assert_array_equal(kept(filter_logits(logits, top_p=0.3)), [[1, 0, 0, 0, 0]])


def test_pack_segments_positions_and_weights():
    docs = [np.array([10, 11, 12]), np.array([20, 21]), np.array([30, 31, 32, 33])]
    rows = text.pack(docs, seq_len=4, pad_id=99)
    np.testing.assert_array_equal(rows["inputs"], [[10, 11, 12, 20], [21, 30, 31, 32]])
    np.testing.assert_array_equal(rows["targets"], [[11, 12, 20, 21], [30, 31, 32, 33]])
    np.testing.assert_array_equal(rows["segment_ids"], [[1, 1, 1, 2], [1, 2, 2, 2]])
    np.testing.assert_array_equal(rows["positions"], [[0, 1, 2, 0], [0, 0, 1, 2]])
    np.testing.assert_array_equal(rows["weights"], [[1, 1, 0, 1], [0, 1, 1, 1]])
    short = text.pack([np.array([1, 2])], seq_len=4, pad_id=99)
    np.testing.assert_array_equal(short["inputs"], [[1, 2, 99, 99]])
    np.testing.assert_array_equal(short["segment_ids"], [[1, 1, 0, 0]])
    np.testing.assert_array_equal(short["weights"], [[1, 0, 0, 0]])


def test_packed_document_logits_are_independent_of_neighbours():
    model = _tiny()
    rng = np.random.default_rng(2)
    a, b = rng.integers(0, 64, 5), rng.integers(0, 64, 6)
    rows = text.pack([a, b], seq_len=10, pad_id=0)
    params = jax.jit(model.init)(jax.random.key(0), rows["inputs"])
    apply = jax.jit(model.apply)
    packed = apply(params, rows["inputs"], rows["positions"], rows["segment_ids"])
    alone = apply(params, jnp.asarray(b[None, :5]))
    np.testing.assert_allclose(packed[0, 5:10], alone[0], atol=1e-5)


def test_metrics_mask_and_bits_per_byte():
    logits = jnp.zeros((1, 3, 320))
    batch = {"targets": jnp.array([[5, 257, 7]]), "weights": jnp.array([[1.0, 1.0, 0.0]])}
    loss, m = lm_metrics(logits, batch, is_bytes=True)
    np.testing.assert_allclose(loss, math.log(320), rtol=1e-6)
    np.testing.assert_allclose(m["bits_per_byte"], math.log2(320), rtol=1e-6)


def test_loss_and_accuracy_equal_log_softmax_and_argmax():
    """``token_nll_top1`` (no argmax: the top-1 test reuses the log-sum-exp's max) against
    ``jax.nn.log_softmax`` and ``argmax``: values and gradients; bf16 logits, float32 loss."""
    rng = np.random.default_rng(0)
    logits = jnp.asarray(3 * rng.normal(size=(2, 6, 40)), jnp.float32)
    targets = jnp.asarray(rng.integers(0, 40, (2, 6)))
    targets = targets.at[0, :3].set(jnp.argmax(logits[0, :3], -1))  # some hits
    w = jnp.asarray(rng.integers(0, 2, (2, 6)), jnp.float32).at[0, 0].set(1.0)
    batch = {"targets": targets, "weights": w}

    def reference(z):
        logp = jax.nn.log_softmax(z.astype(jnp.float32), axis=-1)
        nll = -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
        hit = jnp.argmax(z, -1) == targets
        return (nll * w).sum() / w.sum(), (hit * w).sum() / w.sum()

    @jax.jit
    def both(z):
        loss, m = lm_metrics(z, batch, is_bytes=False)
        got = jax.grad(lambda z: lm_metrics(z, batch, is_bytes=False)[0])(z)
        return loss, m["accuracy"], got, reference(z), jax.grad(lambda z: reference(z)[0])(z)

    for z in (logits, logits.astype(jnp.bfloat16)):
        loss, accuracy, got, (ref_loss, ref_acc), ref = both(z)
        assert loss.dtype == jnp.float32
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
        assert float(accuracy) == float(ref_acc) > 0
        assert got.dtype == z.dtype
        np.testing.assert_allclose(got.astype(jnp.float32), ref.astype(jnp.float32), atol=1e-7)


def test_bf16_logits_and_their_gradient_matmuls_run_in_bf16():
    """The unembedding used to emit float32 logits, so its two gradient matmuls took a float32
    cotangent; every dot that touches the vocabulary (64 here) now has bf16 operands."""
    model = _tiny(dtype=jnp.bfloat16)
    tokens = jnp.zeros((2, 8), jnp.int32)
    params = model.init(jax.random.key(0), tokens)["params"]
    batch = {"targets": tokens, "weights": jnp.ones((2, 8))}

    def loss(p):
        logits = model.apply({"params": p}, tokens)
        assert logits.dtype == jnp.bfloat16
        return lm_metrics(logits, batch, is_bytes=False)[0]

    text = jax.jit(jax.grad(loss)).lower(params).as_text()
    t = r"tensor<((?:\d+x)*)([a-z]+\d*)>"
    dots = re.findall(rf"stablehlo\.dot_general .*: \({t}, {t}\) -> {t}", text)
    vocab = [d for d in dots if any("64x" in d[i] for i in (0, 2, 4))]
    assert len(vocab) == 3  # the unembedding and its two gradients (the embedding is tied)
    assert all(d[1] == d[3] == "bf16" for d in vocab), vocab


def test_bf16_logits_loss_within_rounding_of_float32_logits():
    """Before, the bf16 model's unembedding emitted float32 logits from the same bf16 operands;
    rounding a logit to bf16 moves it by at most 2^-8 of its size (unit roundoff), so the
    log-sum-exp and the target's logit each move by at most 2^-8 max|z| and the loss by at most
    2^-7 max|z|. The gradients agree to 1% in norm (their cotangent is rounded the same way)."""
    model = _tiny(dtype=jnp.bfloat16)
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 64, (2, 8)), jnp.int32)
    params = nn.unbox(model.init(jax.random.key(0), tokens))["params"]
    batch = {"targets": jnp.roll(tokens, -1, axis=1), "weights": jnp.ones((2, 8))}
    hidden = model.clone(logits=False)

    def logits(p, old):
        if not old:
            return model.apply({"params": p}, tokens)
        x = hidden.apply({"params": p}, tokens)  # the old unembedding: float32 logits
        w = p["embedding"].astype(jnp.bfloat16)
        return jnp.einsum("ble,ve->blv", x, w, preferred_element_type=jnp.float32)

    @jax.jit
    def both(p):
        loss = lambda p, old: lm_metrics(logits(p, old), batch, is_bytes=False)[0]  # noqa: E731
        z = [logits(p, old).astype(jnp.float32) for old in (False, True)]
        return z, [jax.value_and_grad(loss)(p, old) for old in (False, True)]

    (z_new, z_old), ((l_new, g_new), (l_old, g_old)) = both(params)
    zmax = float(jnp.abs(z_old).max())
    assert float(jnp.abs(z_new - z_old).max()) <= 2**-8 * zmax
    assert abs(float(l_new - l_old)) <= 2**-7 * zmax
    for a, b in zip(jax.tree.leaves(g_new), jax.tree.leaves(g_old), strict=True):
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        assert np.linalg.norm(a - b) <= 1e-2 * np.linalg.norm(b)


def test_text_sources_and_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.data.path"):
        text.read_text_file(str(tmp_path / "missing.txt"))
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\xff\xfe")
    with pytest.raises(ValueError, match="not UTF-8"):
        text.read_text_file(str(bad))
    tok = tokenizers.ByteTokenizer()
    assert tok.decode(np.concatenate([[tok.bos_id], tok.encode("héllo"), [tok.eos_id]])) == "héllo"
    train, val = text.split_text("line one\nline two\nline three\n", 0.3)
    assert train + val == "line one\nline two\nline three\n" and val
    docs = text.embedded_documents()
    assert sum(map(len, docs)) > 500_000 and docs == text.embedded_documents()


def test_build_task_on_a_file(tmp_path):
    f = tmp_path / "corpus.txt"
    f.write_text("hello world, this is a tiny corpus.\n" * 40, encoding="utf-8")
    c = _config()
    c.data.path = str(f)
    task = build_task(c, None)
    params = nn.unbox(task.init(jax.random.key(0)))
    batch = next(task.train_data(0, 1))
    assert batch["inputs"].shape == (c.train.batch_size, c.data.seq_len)
    loss, m = jax.jit(task.loss_fn)(params, batch, jax.random.key(1))
    assert np.isfinite(loss) and abs(float(loss) - math.log(320)) < 0.5
    evals = list(task.eval_data(0, 1))
    assert evals and evals[0]["inputs"].shape == batch["inputs"].shape
    out = task.sample(params, jax.random.key(2), str(tmp_path))
    assert "--- prompt 'The '" in out and (tmp_path / "samples.txt").stat().st_size > 0
