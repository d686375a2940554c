"""Multi-head attention (Vaswani et al. 2017, eq. 1) with grouped-query heads, RoPE and a KV cache.

``softmax(q k^T / sqrt(d) + bias) v`` per head, with ``num_kv_heads`` key/value heads shared by
groups of query heads (GQA, Ainslie et al. 2023; MQA when ``num_kv_heads == 1``). Masks combine
causality, segment ids of packed rows (a token attends only to its own document) and key padding.

The kernel is chosen by ``attention_impl``:

* ``"xla"``: ``jax.nn.dot_product_attention(implementation="xla")``, everywhere.
* ``"cudnn"``: cuDNN flash attention through ``jax.nn.dot_product_attention``; where cuDNN
  refuses the platform, dtype, head size or mask, it falls back to XLA and logs why once.
* ``"splash"``: the Pallas TPU splash kernel (``jax.experimental.pallas.ops.tpu``), with causal
  and segment-id masks handled inside the kernel; falls back to XLA off TPU or for bias/masks.
* ``"blockwise"``: causal self-attention by query blocks that skips fully masked key blocks
  (:mod:`jaxmodels.layers.blockwise_attention`); falls back to XLA when not causal or T != S.
* ``"auto"``: splash on TPU, cuDNN on GPU, blockwise (causal) or XLA on CPU, each where the
  inputs allow.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxmodels.layers import linear_attention as linear
from jaxmodels.layers.blockwise_attention import (
    DEFAULT_BLOCK,
    blockwise_refusal,
    causal_blockwise_attention,
)
from jaxmodels.layers.positions.options import PositionOptions
from jaxmodels.layers.positions.relative import ShawRelativeEmbedding, shaw_attention
from jaxmodels.layers.positions.rotary import rotary_inv_freq, rotate_qk

Dtype = Any
IMPLS = ("auto", "xla", "cudnn", "splash", "blockwise")
ATTENTIONS = ("softmax", "linear")  # softmax (Vaswani et al.) | linear (Katharopoulos et al.)
_SPLASH_BLOCK = 128


@functools.cache
def _warn_once(msg: str) -> None:
    logging.getLogger(__name__).warning(msg)


_KERNEL_LOGS: list[list[str]] = []


@contextlib.contextmanager
def record_kernels():
    """Yields a list that collects the kernel each attention call traced inside actually uses.

    Benchmarks wrap a step's first (tracing) call in it to report ``cudnn``/``splash``/``xla``.
    """
    log: list[str] = []
    _KERNEL_LOGS.append(log)
    try:
        yield log
    finally:
        _KERNEL_LOGS.remove(log)


def _ran(kernel: str) -> str:
    for log in _KERNEL_LOGS:
        log.append(kernel)
    return kernel


def make_mask(
    T: int,
    S: int,
    *,
    causal: bool,
    q_offset: jax.Array | int = 0,
    q_segment_ids: jax.Array | None = None,
    kv_segment_ids: jax.Array | None = None,
    kv_mask: jax.Array | None = None,
) -> jax.Array | None:
    """Returns the boolean mask ``[B|1, 1, T, S]`` (True = attend) or None when nothing is masked.

    ``causal`` lets query ``i`` (absolute index ``q_offset + i``) see keys ``j <= q_offset + i``;
    segment ids keep attention inside one packed document; ``kv_mask`` drops padded keys.
    """
    mask = None
    if causal:
        q_idx = jnp.arange(T)[:, None] + q_offset
        mask = (jnp.arange(S)[None, :] <= q_idx)[None, None]
    if q_segment_ids is not None:
        kv_seg = q_segment_ids if kv_segment_ids is None else kv_segment_ids
        same = (q_segment_ids[:, :, None] == kv_seg[:, None, :])[:, None]
        mask = same if mask is None else mask & same
    if kv_mask is not None:
        keep = kv_mask.astype(bool)[:, None, None, :]
        mask = keep if mask is None else mask & keep
    return mask


# ---------------------------------------------------------------- kernel choice


def _platform() -> str:
    return jax.default_backend()


def cudnn_refusal(q: jax.Array, k: jax.Array, *, has_bias_or_mask: bool) -> str | None:
    """Returns why cuDNN flash attention cannot take these inputs, or None if it can."""
    if _platform() != "gpu":
        return f"backend is {_platform()!r}, not gpu"
    if q.dtype not in (jnp.bfloat16, jnp.float16):
        return f"dtype {q.dtype} (cuDNN needs bfloat16/float16; set train.compute_dtype)"
    cc = str(getattr(jax.devices()[0], "compute_capability", "0"))
    h_max = 256 if float(cc or 0) >= 9.0 else 128
    head_dim = q.shape[-1]
    if head_dim > h_max or head_dim % 8:
        return f"head_dim {head_dim} (cuDNN needs a multiple of 8, at most {h_max})"
    T, S = q.shape[1], k.shape[1]
    if has_bias_or_mask and (T % 2 or S % 2):
        return f"odd lengths T={T}, S={S} with a mask/bias"
    return None


def splash_refusal(q: jax.Array, k: jax.Array, *, causal: bool, has_bias_or_mask: bool):
    """Returns why the Pallas splash kernel cannot take these inputs, or None if it can."""
    if _platform() != "tpu":
        return f"backend is {_platform()!r}, not tpu"
    if has_bias_or_mask:
        return "an additive bias or a padding/decode mask (splash takes causal + segment ids)"
    T, S = q.shape[1], k.shape[1]
    if T % _SPLASH_BLOCK or S % _SPLASH_BLOCK:
        return f"lengths T={T}, S={S} are not multiples of {_SPLASH_BLOCK}"
    if causal and T != S:
        return "causal attention with T != S"
    try:
        from jax.experimental.pallas.ops.tpu.splash_attention import (  # noqa: F401
            splash_attention_kernel,
        )
    except ImportError as e:
        return f"splash kernel unavailable ({e})"
    return None


def resolve_impl(
    impl: str, q: jax.Array, k: jax.Array, *, causal: bool, has_bias_or_mask: bool
) -> str:
    """Maps ``attention_impl`` to the kernel that will run: xla, cudnn, splash or blockwise."""
    if impl not in IMPLS:
        raise ValueError(f"attention_impl must be one of {IMPLS}, got {impl!r}")
    if impl == "xla":
        return "xla"
    blockwise_why = blockwise_refusal(q, k, causal=causal, block=DEFAULT_BLOCK)
    if impl == "blockwise" or (impl == "auto" and _platform() == "cpu"):
        if blockwise_why is None:
            return "blockwise"
        if impl == "blockwise":
            _warn_once(f"attention_impl='blockwise' falls back to xla: {blockwise_why}")
        return "xla"
    cudnn_why = cudnn_refusal(q, k, has_bias_or_mask=has_bias_or_mask)
    splash_why = splash_refusal(q, k, causal=causal, has_bias_or_mask=has_bias_or_mask)
    if impl == "auto":
        return "splash" if splash_why is None else "cudnn" if cudnn_why is None else "xla"
    why = cudnn_why if impl == "cudnn" else splash_why
    if why is not None:
        _warn_once(f"attention_impl={impl!r} falls back to xla: {why}")
        return "xla"
    return impl


# ---------------------------------------------------------------- kernels


def _splash_local(q_BxTxNxD, k_BxSxKxD, v_BxSxKxD, q_seg, kv_seg, *, causal, scale):
    """Pallas TPU splash attention on local arrays, vmapped over the batch (queries pre-scaled)."""
    from jax.experimental.pallas.ops.tpu.splash_attention import (
        splash_attention_kernel as sk,
    )
    from jax.experimental.pallas.ops.tpu.splash_attention import (
        splash_attention_mask as sm,
    )

    T, N, S = q_BxTxNxD.shape[1], q_BxTxNxD.shape[2], k_BxSxKxD.shape[1]
    head_mask = sm.CausalMask((T, S)) if causal else sm.FullMask((T, S))
    kernel = sk.make_splash_mha(sm.MultiHeadMask([head_mask] * N), head_shards=1, q_seq_shards=1)
    q = jnp.swapaxes(q_BxTxNxD * scale, 1, 2)
    k, v = jnp.swapaxes(k_BxSxKxD, 1, 2), jnp.swapaxes(v_BxSxKxD, 1, 2)

    def one(q1, k1, v1, qs, ks):
        return kernel(q1, k1, v1, segment_ids=sk.SegmentIds(q=qs, kv=ks))

    return jnp.swapaxes(jax.vmap(one)(q, k, v, q_seg, kv_seg), 1, 2)


def _splash(q_BxTxNxD, k_BxSxKxD, v_BxSxKxD, *, causal, q_seg, kv_seg, scale, local=None):
    """Splash attention; under a multi-device mesh it runs per shard through ``shard_map``.

    Batch and heads shard as the active logical rules say; ``local`` replaces the kernel (tests).
    """
    B, T = q_BxTxNxD.shape[:2]
    ones = jnp.ones((B, T), jnp.int32)
    q_seg = ones if q_seg is None else q_seg.astype(jnp.int32)
    kv_seg = q_seg if kv_seg is None else kv_seg.astype(jnp.int32)
    fn = functools.partial(local or _splash_local, causal=causal, scale=scale)
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or mesh.size == 1:
        return fn(q_BxTxNxD, k_BxSxKxD, v_BxSxKxD, q_seg, kv_seg)
    spec = nn.logical_to_mesh_axes
    q_spec = spec(("batch", "length", "heads", "head_dim"))
    kv_spec = spec(("batch", "length", "kv_heads", "head_dim"))
    seg_spec = spec(("batch", "length"))
    sharded = jax.shard_map(
        fn,
        mesh=mesh,
        in_specs=(q_spec, kv_spec, kv_spec, seg_spec, seg_spec),
        out_specs=q_spec,
        check_vma=False,
    )
    return sharded(q_BxTxNxD, k_BxSxKxD, v_BxSxKxD, q_seg, kv_seg)


def lengths_mask(lengths_B: jax.Array, S: int) -> jax.Array:
    """``[B, S]`` boolean: key ``j`` is kept where ``j < lengths_B[b]`` (right padding)."""
    return jnp.arange(S)[None, :] < lengths_B[:, None]


def dot_product_attention(
    q_BxTxNxD: jax.Array,
    k_BxSxKxD: jax.Array,
    v_BxSxKxD: jax.Array,
    *,
    causal: bool = False,
    q_segment_ids: jax.Array | None = None,
    kv_segment_ids: jax.Array | None = None,
    mask: jax.Array | None = None,
    bias: jax.Array | None = None,
    kv_lengths_B: jax.Array | None = None,
    impl: str = "auto",
    scale: float | None = None,
) -> jax.Array:
    """Scaled dot-product attention (Vaswani et al. 2017, eq. 1) through the chosen kernel.

    ``causal`` is the top-left aligned lower-triangular mask (``T == S`` self-attention);
    ``mask`` is any extra boolean ``[B|1, 1|N, T, S]`` mask and ``bias`` an additive
    ``[B|1, N|1, T, S]`` bias (ALiBi, T5 relative positions). ``kv_lengths_B`` keeps keys
    ``j < kv_lengths_B[b]`` (right padding) as sequence lengths, which cuDNN takes as its
    padding mask where it refuses a general mask or bias.
    """
    T, D = q_BxTxNxD.shape[1], q_BxTxNxD.shape[-1]
    S = k_BxSxKxD.shape[1]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    has_extra = mask is not None or bias is not None or kv_lengths_B is not None
    kernel = resolve_impl(impl, q_BxTxNxD, k_BxSxKxD, causal=causal, has_bias_or_mask=has_extra)
    if kernel == "splash":
        _ran("splash")
        return _splash(
            q_BxTxNxD,
            k_BxSxKxD,
            v_BxSxKxD,
            causal=causal,
            q_seg=q_segment_ids,
            kv_seg=kv_segment_ids,
            scale=scale,
        )
    seg_mask = make_mask(
        T, S, causal=False, q_segment_ids=q_segment_ids, kv_segment_ids=kv_segment_ids
    )
    if seg_mask is not None:
        mask = seg_mask if mask is None else mask & seg_mask
    if kernel == "blockwise":
        _ran("blockwise")
        if kv_lengths_B is not None:
            keep = lengths_mask(kv_lengths_B, S)[:, None, None, :]
            mask = keep if mask is None else mask & keep
        return causal_blockwise_attention(
            q_BxTxNxD, k_BxSxKxD, v_BxSxKxD, scale=scale, mask=mask, bias=bias
        )
    call = functools.partial(
        jax.nn.dot_product_attention,
        q_BxTxNxD,
        k_BxSxKxD,
        v_BxSxKxD,
        bias=bias,
        mask=mask,
        is_causal=causal,
        scale=scale,
        key_value_seq_lengths=None if kv_lengths_B is None else kv_lengths_B.astype(jnp.int32),
    )
    if kernel == "cudnn":
        try:  # cuDNN checks shapes/masks while tracing; refuse cleanly rather than fail
            out = call(implementation="cudnn")
            _ran("cudnn")
            return out
        except (NotImplementedError, ValueError, RuntimeError) as e:
            _warn_once(f"attention_impl={impl!r}: cuDNN refused ({e}); using xla")
    _ran("xla")
    return call(implementation="xla")


# ---------------------------------------------------------------- module


def _flat_init(init: Callable, n_in: int) -> Callable:
    """Initialises a ``[*in, *out]`` kernel as the 2-D ``[prod(in), prod(out)]`` matrix."""

    def f(key, shape, dtype=jnp.float32):
        flat = (math.prod(shape[:n_in]), math.prod(shape[n_in:]))
        return init(key, flat, dtype).reshape(shape)

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
    adds its relative embeddings here; other encodings act outside (embeddings, ``bias``).
    With ``decode=True`` keys and values are appended to a ``"cache"`` collection
    (``cached_key``/``cached_value`` ``[B, max_len, K, D]`` and ``cache_index``; linear
    attention keeps its running sums ``S``/``z`` instead): initialise it by calling ``init``
    with a ``[B, max_len]`` input, then apply with ``mutable=["cache"]`` on one or more new
    tokens at a time. Cross-attention with ``decode=True`` projects the encoded sequence once:
    the call that passes ``kv_BxSxE`` (the prefill) stores its keys and values
    (``cross_key``/``cross_value`` ``[B, S, K, D]``), and later calls pass ``kv_BxSxE=None``
    (with the same ``kv_mask_BxS``, if any) and read them.
    """

    num_heads: int
    num_kv_heads: int | None = None  # None: same as num_heads (MHA)
    head_dim: int | None = None  # None: d_model // num_heads
    causal: bool = True
    use_bias: bool = False  # biases on q/k/v/o projections
    position: PositionOptions = PositionOptions()  # rope/xpos rotate q, k; shaw acts inside
    attention: str = "softmax"  # softmax | linear (layers.linear_attention, RoFormer eq. 19)
    attention_impl: str = "auto"  # auto | xla | cudnn | splash | blockwise
    decode: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    kernel_init: Callable = nn.initializers.xavier_uniform()

    def _proj(self, heads: int, head_dim: int, axis: str, name: str) -> Projection:
        return Projection(
            (heads, head_dim),
            ("embed", axis, "head_dim"),
            use_bias=self.use_bias,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=self.kernel_init,
            name=name,
        )

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
    def __call__(
        self,
        x_BxTxE: jax.Array,
        *,
        kv_BxSxE: jax.Array | None = None,
        positions_BxT: jax.Array | None = None,
        segment_ids_BxT: jax.Array | None = None,
        kv_segment_ids_BxS: jax.Array | None = None,
        kv_mask_BxS: jax.Array | None = None,
        bias: jax.Array | None = None,
        kv_lengths_B: jax.Array | None = None,
    ) -> jax.Array:
        """Returns ``[B, T, E]``; ``kv_BxSxE`` switches to cross-attention (no RoPE, no cache).

        ``kv_lengths_B`` (keys ``j < length`` are kept) reaches the kernel as sequence lengths;
        the decode-cache and Shaw paths, which build a full mask, fold it into ``kv_mask_BxS``.
        """
        B, T, E = x_BxTxE.shape
        N = self.num_heads
        K = self.num_kv_heads or N
        D = self.head_dim or E // N
        if N % K:
            raise ValueError(f"num_heads={N} must be a multiple of num_kv_heads={K}")
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {self.attention!r}")
        cached_cross = self.decode and self.has_variable("cache", "cross_key")
        cross = kv_BxSxE is not None or cached_cross
        q = self._proj(N, D, "heads", "query")(x_BxTxE)
        if cross and self.decode:
            k, v = self._cross_kv(kv_BxSxE, K, D)
        else:
            src = kv_BxSxE if cross else x_BxTxE
            k = self._proj(K, D, "kv_heads", "key")(src)
            v = self._proj(K, D, "kv_heads", "value")(src)
        q = nn.with_logical_constraint(q, ("batch", "length", "heads", "head_dim"))
        k = nn.with_logical_constraint(k, ("batch", "length", "kv_heads", "head_dim"))
        v = nn.with_logical_constraint(v, ("batch", "length", "kv_heads", "head_dim"))
        if cross:
            out_BxTxNxD = dot_product_attention(
                q, k, v, kv_segment_ids=kv_segment_ids_BxS, impl=self.attention_impl,
                kv_lengths_B=kv_lengths_B,
                mask=None if kv_mask_BxS is None else make_mask(
                    T, k.shape[1], causal=False, kv_mask=kv_mask_BxS),
            )  # fmt: skip
        else:
            out_BxTxNxD = self._self_attention(
                q,
                k,
                v,
                positions_BxT,
                segment_ids_BxT,
                kv_segment_ids_BxS,
                kv_mask_BxS,
                bias,
                kv_lengths_B,
            )
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

    def _cross_kv(self, kv_BxSxE: jax.Array | None, K: int, D: int):
        """Decoding cross-attention: project ``kv_BxSxE`` into the cache, or read it (None)."""
        if kv_BxSxE is None:
            cache = self.variables["cache"]
            return cache["cross_key"], cache["cross_value"]
        k = self._proj(K, D, "kv_heads", "key")(kv_BxSxE)
        v = self._proj(K, D, "kv_heads", "value")(kv_BxSxE)
        self.variable("cache", "cross_key", lambda: k).value = k
        self.variable("cache", "cross_value", lambda: v).value = v
        return k, v

    def _self_attention(self, q, k, v, positions_BxT, segment_ids_BxT, kv_segment_ids_BxS,
                        kv_mask_BxS, bias, kv_lengths_B=None):  # fmt: skip
        """Positions, the KV cache and the kernel for self-attention over ``T`` new tokens."""
        B, T = q.shape[:2]
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
        if self.position.name == "shaw":
            S = k.shape[1]
            full = make_mask(T, S, causal=causal, q_segment_ids=segment_ids_BxT,
                             kv_segment_ids=kv_segment_ids_BxS)  # fmt: skip
            full = mask if full is None else full if mask is None else full & mask
            k_pos = jnp.broadcast_to(jnp.arange(S), (B, S)) if caching else positions_BxT
            return self._shaw(q, k, v, positions_BxT, k_pos, full, bias)
        return dot_product_attention(
            q, k, v, causal=causal, q_segment_ids=segment_ids_BxT,
            kv_segment_ids=kv_segment_ids_BxS, mask=mask, bias=bias, kv_lengths_B=kv_lengths_B,
            impl=self.attention_impl,
        )  # fmt: skip
