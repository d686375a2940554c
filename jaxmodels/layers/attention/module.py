"""Multi-head attention (Vaswani et al. 2017, sec. 3.2.2): projections and the attention modes.

``softmax(q k^T / sqrt(d) + bias) v`` per head, with ``num_kv_heads`` key/value heads shared by
groups of query heads (GQA, Ainslie et al. 2023; MQA when ``num_kv_heads == 1``). The modes:
self-attention (causal or bidirectional, RoPE/xPos rotating q and k, Shaw's relative
embeddings, linear attention), cross-attention into an encoded sequence, and cached decoding
of both. What positions, packing, padding and bias a forward pass has arrives as one
:class:`~jaxmodels.layers.attention.inputs.AttentionInputs`; the kernel that computes the
softmax is chosen in :mod:`jaxmodels.layers.attention.kernels`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxmodels.layers.attention import linear
from jaxmodels.layers.attention.inputs import DEFAULT_INPUTS, AttentionInputs
from jaxmodels.layers.attention.kernels import (
    dot_product_attention,
    lengths_mask,
    make_mask,
    window_mask,
)
from jaxmodels.layers.norms import RMSNorm
from jaxmodels.layers.positions.options import PositionOptions
from jaxmodels.layers.positions.relative import ShawRelativeEmbedding, shaw_attention
from jaxmodels.layers.positions.rotary import rotary_inv_freq, rotate_qk

Dtype = Any
ATTENTIONS = ("softmax", "linear")  # softmax (Vaswani et al.) | linear (Katharopoulos et al.)


def _flat_init(init: Callable, n_in: int) -> Callable:
    """Initialises a ``[*in, *out]`` kernel as the 2-D ``[prod(in), prod(out)]`` matrix."""

    def f(key, shape, dtype=jnp.float32):
        flat = (math.prod(shape[:n_in]), math.prod(shape[n_in:]))
        return init(key, flat, dtype).reshape(shape)

    return f


def fuse_qkv(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
    """``[..., N, D]``, ``[..., K, D]``, ``[..., K, D]`` -> ``[..., K, G + 2, D]`` (``G = N / K``).

    Row ``j`` of the ``K`` axis holds key/value head ``j``'s group: its ``G`` query heads
    ``j G .. j G + G - 1`` (the heads GQA shares it with), its key, its value. Works on kernels
    (``[E, heads, D]``), biases (``[heads, D]``) and scanned stacks (a leading layer axis).
    """
    *lead, N, D = q.shape
    K = k.shape[-2]
    q = q.reshape(*lead, K, N // K, D)
    return jnp.concatenate([q, k[..., None, :], v[..., None, :]], axis=-2)


def split_qkv(qkv: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The inverse of :func:`fuse_qkv`: ``[..., K, G + 2, D]`` -> q ``[..., K G, D]``, k, v."""
    *lead, K, G2, D = qkv.shape
    G = G2 - 2
    return qkv[..., :G, :].reshape(*lead, K * G, D), qkv[..., G, :], qkv[..., G + 1, :]


def _qkv_init(init: Callable, N: int, K: int, D: int) -> Callable:
    """Initialises the flat ``[E, K (G + 2) D]`` fused kernel as three separate projections
    ``init([E, N D])``, ``init([E, K D])`` twice, fused: the same distribution as unfused."""

    def f(key, shape, dtype=jnp.float32):
        E = shape[0]
        kq, kk, kv = jax.random.split(key, 3)
        q = init(kq, (E, N * D), dtype).reshape(E, N, D)
        k, v = (init(r, (E, K * D), dtype).reshape(E, K, D) for r in (kk, kv))
        return fuse_qkv(q, k, v).reshape(shape)

    return f


class Projection(nn.Module):
    """``y = x W + b`` contracting the last ``n_in`` axes of ``x``; ``W: [*in, *features]``."""

    features: tuple[int, ...]
    kernel_names: tuple[str, ...]  # logical names of the kernel axes (in axes, then out axes)
    n_in: int = 1
    use_bias: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    kernel_init: Callable = nn.initializers.xavier_uniform()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        shape = (*x.shape[x.ndim - self.n_in :], *self.features)
        init = nn.with_logical_partitioning(
            _flat_init(self.kernel_init, self.n_in), self.kernel_names
        )
        kernel = self.param("kernel", init, shape, self.param_dtype)
        axes_x = tuple(range(x.ndim - self.n_in, x.ndim))
        y = jax.lax.dot_general(
            x.astype(self.dtype),
            jnp.asarray(kernel, self.dtype),
            ((axes_x, tuple(range(self.n_in))), ((), ())),
        )
        if self.use_bias:
            names = self.kernel_names[self.n_in :]
            b_init = nn.with_logical_partitioning(nn.initializers.zeros, names)
            y = y + jnp.asarray(
                self.param("bias", b_init, self.features, self.param_dtype), y.dtype
            )
        return y


class MultiHeadAttention(nn.Module):
    """Self- or cross-attention with q/k/v/o projections named (embed, heads|kv_heads, head_dim).

    ``position`` is the model's whole :class:`PositionOptions`: RoPE/xPos rotate q and k, Shaw
    adds its relative embeddings here; other encodings act outside (embeddings, the bias in
    :class:`AttentionInputs`). ``cross=True`` attends to ``inputs.encoded_BxSxE`` (no positions,
    not causal). With ``decode=True`` keys and values are appended to a ``"cache"`` collection
    (``cached_key``/``cached_value`` ``[B, max_len, K, D]`` and ``cache_index``; linear
    attention keeps its running sums ``S``/``z`` instead): initialise it by calling ``init``
    with a ``[B, max_len]`` input, then apply with ``mutable=["cache"]`` on one or more new
    tokens at a time. Cross-attention with ``decode=True`` projects the encoded sequence once:
    the call whose inputs carry ``encoded_BxSxE`` (the prefill) stores its keys and values
    (``cross_key``/``cross_value`` ``[B, S, K, D]``), and later calls, with
    ``encoded_BxSxE=None`` (and the same ``encoded_mask_BxS``, if any), read them.

    ``fused_qkv=True`` computes self-attention's q, k and v with one matmul: params ``qkv``
    (kernel ``[E, K, G + 2, D]``, bias ``[K, G + 2, D]``, ``G = N / K``; layout in
    :func:`fuse_qkv`) instead of ``query``/``key``/``value``. Each key/value head's group
    (its queries, key and value) is one row of the ``kv_heads`` axis, so tensor parallelism
    splits whole groups over devices as it splits the heads unfused. Cross-attention keeps
    separate projections (its keys and values read another sequence).
    """

    num_heads: int
    num_kv_heads: int | None = None  # None: same as num_heads (MHA)
    head_dim: int | None = None  # None: d_model // num_heads
    causal: bool = True
    cross: bool = False  # attend to inputs.encoded_BxSxE instead of x itself
    use_bias: bool = False  # biases on q/k/v/o projections
    qkv_bias: bool = False  # biases on q/k/v only (Qwen2)
    qk_norm: bool = False  # RMSNorm over each head's D features of q and k, before RoPE (Qwen3)
    norm_eps: float = 1e-6  # epsilon of the q/k RMSNorm
    sliding_window: int | None = None  # query i sees keys j with i - W < j (Mistral); None: all
    position: PositionOptions = PositionOptions()  # rope/xpos rotate q, k; shaw acts inside
    attention: str = "softmax"  # softmax | linear (attention.linear, RoFormer eq. 19)
    attention_impl: str = "auto"  # auto | xla | cudnn | splash | blockwise (attention.kernels)
    fused_qkv: bool = False  # one projection for self-attention's q, k, v (param "qkv")
    decode: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    kernel_init: Callable = nn.initializers.xavier_uniform()

    def _proj(
        self, features: tuple[int, ...], names: tuple[str, ...], name: str, kernel_init=None
    ) -> Projection:
        return Projection(
            features,
            ("embed", *names),
            use_bias=self.use_bias or self.qkv_bias,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=kernel_init or self.kernel_init,
            name=name,
        )

    def _kv(self, x_BxSxE: jax.Array, K: int, D: int) -> tuple[jax.Array, jax.Array]:
        names = ("kv_heads", "head_dim")
        return tuple(self._proj((K, D), names, n)(x_BxSxE) for n in ("key", "value"))

    def _qkv(self, x_BxTxE: jax.Array, N: int, K: int, D: int):
        """q ``[B, T, N, D]``, k and v ``[B, T, K, D]`` of self-attention, fused or not."""
        if not self.fused_qkv:
            q = self._proj((N, D), ("heads", "head_dim"), "query")(x_BxTxE)
            return (q, *self._kv(x_BxTxE, K, D))
        init = _qkv_init(self.kernel_init, N, K, D)
        names = ("kv_heads", "qkv", "head_dim")
        return split_qkv(self._proj((K, N // K + 2, D), names, "qkv", init)(x_BxTxE))

    def _shaw(self, q, k, v, q_pos_BxT, k_pos_BxS, mask, bias):
        """Shaw et al. 2018 eqs. 3-6 with per-layer clipped relative embeddings (GQA repeated)."""
        rel, w_k, w_v = ShawRelativeEmbedding(
            q.shape[-1],
            self.position.shaw_max_distance,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="shaw",
        )(q_pos_BxT, k_pos_BxS)
        groups = q.shape[2] // k.shape[2]
        k, v = (jnp.repeat(x, groups, axis=2) for x in (k, v))
        return shaw_attention(q, k, v, rel, w_k, w_v, bias=bias, mask=mask).astype(q.dtype)

    def _linear(self, q, k, v, positions_BxT, segment_ids_BxT, kv_mask_BxS, bias):
        """Linear attention with RoPE on phi(q), phi(k) in the numerator (RoFormer eq. 19)."""
        p = self.position
        if self.sliding_window is not None:
            raise ValueError("attention='linear' has no sliding window: set sliding_window=None")
        if bias is not None or p.name in ("shaw", "xpos"):
            raise ValueError(
                f"attention='linear' takes no logit bias and no position={p.name!r}; "
                "use rope, none or an absolute encoding"
            )
        groups = q.shape[2] // k.shape[2]
        k, v = (jnp.repeat(x, groups, axis=2) for x in (k, v))
        inv_freq = rotary_inv_freq(p, q.shape[-1], q.shape[1])[0] if p.rotary else None
        kw = dict(inv_freq=inv_freq, rope_layout=p.rope_layout)
        if self.decode:
            B, _, N, D = q.shape
            zeros = lambda *shape: jnp.zeros(shape, jnp.float32)  # noqa: E731
            S = self.variable("cache", "linear_S", zeros, B, N, D, v.shape[-1])
            z = self.variable("cache", "linear_z", zeros, B, N, D)
            if not self.is_initializing():
                out, (S.value, z.value) = linear.linear_attention_decode(
                    q, k, v, (S.value, z.value), positions_BxT=positions_BxT, **kw
                )
                return out
        return linear.linear_attention(
            q, k, v, causal=self.causal, positions_BxL=positions_BxT, mask_BxL=kv_mask_BxS,
            segment_ids_BxL=segment_ids_BxT, **kw,
        )  # fmt: skip

    @nn.compact
    def __call__(self, x_BxTxE: jax.Array, inputs: AttentionInputs = DEFAULT_INPUTS) -> jax.Array:
        """Returns ``[B, T, E]``: ``x_BxTxE`` attending to itself, or to the encoded sequence.

        ``inputs.kv_lengths_B`` (keys ``j < length`` are kept) reaches the kernel as sequence
        lengths; the decode-cache, Shaw and linear paths, which take a key mask, fold it in.
        """
        B, T, E = x_BxTxE.shape
        N = self.num_heads
        K = self.num_kv_heads or N
        D = self.head_dim or E // N
        if N % K:
            raise ValueError(f"num_heads={N} must be a multiple of num_kv_heads={K}")
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {self.attention!r}")
        if self.cross:
            q = self._proj((N, D), ("heads", "head_dim"), "query")(x_BxTxE)
            k, v = self._cross_kv(inputs.encoded_BxSxE, K, D)
        else:
            q, k, v = self._qkv(x_BxTxE, N, K, D)
        if self.qk_norm:
            kw = dict(epsilon=self.norm_eps, dtype=self.dtype, param_dtype=self.param_dtype)
            q = RMSNorm(axis_name="head_dim", name="query_norm", **kw)(q)
            k = RMSNorm(axis_name="head_dim", name="key_norm", **kw)(k)
        q = nn.with_logical_constraint(q, ("batch", "length", "heads", "head_dim"))
        k = nn.with_logical_constraint(k, ("batch", "length", "kv_heads", "head_dim"))
        v = nn.with_logical_constraint(v, ("batch", "length", "kv_heads", "head_dim"))
        if self.cross:
            enc_mask = inputs.encoded_mask_BxS
            out_BxTxNxD = dot_product_attention(
                q, k, v, impl=self.attention_impl,
                mask=None if enc_mask is None else make_mask(
                    T, k.shape[1], causal=False, kv_mask=enc_mask),
            )  # fmt: skip
        else:
            out_BxTxNxD = self._self_attention(q, k, v, inputs)
        out_BxTxNxD = nn.with_logical_constraint(
            out_BxTxNxD, ("batch", "length", "heads", "head_dim")
        )
        return Projection(
            (E,),
            ("heads", "head_dim", "embed"),
            n_in=2,
            use_bias=self.use_bias,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=self.kernel_init,
            name="out",
        )(out_BxTxNxD)

    def _cross_kv(self, encoded_BxSxE: jax.Array | None, K: int, D: int):
        """Keys and values of the encoded sequence; decoding caches them at the first call."""
        if encoded_BxSxE is None:
            if not (self.decode and self.has_variable("cache", "cross_key")):
                raise ValueError(
                    "cross-attention needs inputs.encoded_BxSxE (when decoding, at the prefill)"
                )
            cache = self.variables["cache"]
            return cache["cross_key"], cache["cross_value"]
        k, v = self._kv(encoded_BxSxE, K, D)
        if self.decode:
            self.variable("cache", "cross_key", lambda: k).value = k
            self.variable("cache", "cross_value", lambda: v).value = v
        return k, v

    def _self_attention(self, q, k, v, inputs: AttentionInputs):
        """Positions, the KV cache and the kernel for self-attention over ``T`` new tokens."""
        B, T = q.shape[:2]
        positions_BxT, segment_ids_BxT = inputs.positions_BxL, inputs.segment_ids_BxL
        kv_mask_BxS, kv_lengths_B = inputs.kv_mask_BxL, inputs.kv_lengths_B
        bias = inputs.bias_BxNxLxL
        caching = self.decode and self.has_variable("cache", "cache_index")
        if self.decode:
            cache_i = self.variable("cache", "cache_index", lambda: jnp.array(0, jnp.int32))
        offset = cache_i.value if caching else 0
        if kv_lengths_B is not None and (
            caching or self.attention == "linear" or self.position.name == "shaw"
        ):  # these paths take a key mask, not sequence lengths
            S = self.variables["cache"]["cached_key"].shape[1] if caching else k.shape[1]
            keep_BxS = lengths_mask(kv_lengths_B, S)
            kv_mask_BxS = keep_BxS if kv_mask_BxS is None else keep_BxS & kv_mask_BxS
            kv_lengths_B = None
        if positions_BxT is None:
            positions_BxT = jnp.broadcast_to(offset + jnp.arange(T, dtype=jnp.int32), (B, T))
        if self.attention == "linear":
            if caching:
                cache_i.value = offset + T
            return self._linear(q, k, v, positions_BxT, segment_ids_BxT, kv_mask_BxS, bias)
        if self.position.rotary:
            q, k = rotate_qk(q, k, positions_BxT, self.position)
        causal, mask = self.causal, None
        if self.decode:
            cache_k = self.variable("cache", "cached_key", jnp.zeros, k.shape, k.dtype)
            cache_v = self.variable("cache", "cached_value", jnp.zeros, v.shape, v.dtype)
        if caching:
            idx = (0, offset, 0, 0)
            cache_k.value = jax.lax.dynamic_update_slice(cache_k.value, k, idx)
            cache_v.value = jax.lax.dynamic_update_slice(cache_v.value, v, idx)
            cache_i.value = offset + T
            k, v = cache_k.value, cache_v.value
            # a key is visible once written; causally, up to the query's absolute position
            mask = make_mask(T, k.shape[1], causal=True, q_offset=offset, kv_mask=kv_mask_BxS)
            causal, kv_mask_BxS, segment_ids_BxT = False, None, None
        elif kv_mask_BxS is not None:
            mask = make_mask(T, k.shape[1], causal=False, kv_mask=kv_mask_BxS)
        if self.sliding_window is not None:
            k_pos_BxS = jnp.broadcast_to(jnp.arange(k.shape[1]), (B, k.shape[1]))
            recent = window_mask(positions_BxT, k_pos_BxS if caching else positions_BxT,
                                 self.sliding_window)  # fmt: skip
            mask = recent if mask is None else mask & recent
        if self.position.name == "shaw":
            S = k.shape[1]
            full = make_mask(T, S, causal=causal, q_segment_ids=segment_ids_BxT)
            full = mask if full is None else full if mask is None else full & mask
            k_pos = jnp.broadcast_to(jnp.arange(S), (B, S)) if caching else positions_BxT
            return self._shaw(q, k, v, positions_BxT, k_pos, full, bias)
        return dot_product_attention(
            q, k, v, causal=causal, q_segment_ids=segment_ids_BxT, mask=mask, bias=bias,
            kv_lengths_B=kv_lengths_B, impl=self.attention_impl,
        )  # fmt: skip
