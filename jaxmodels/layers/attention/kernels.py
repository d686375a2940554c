"""Scaled dot-product attention kernels: masks, the choice of kernel and why one refuses, the call.

``softmax(q k^T * scale + bias) v`` (Vaswani et al. 2017, eq. 1) runs through the kernel that
``attention_impl`` asks for, where the inputs allow it:

* ``"xla"``: ``jax.nn.dot_product_attention(implementation="xla")``, everywhere.
* ``"cudnn"``: cuDNN flash attention through ``jax.nn.dot_product_attention``. It takes causal
  masking and key padding given as sequence lengths natively; a boolean mask or bias becomes
  an additive ``[.., T, S]`` bias that must cover every query (a key-only mask does not).
* ``"splash"``: the Pallas TPU splash kernel (:mod:`.splash`), with causal and segment-id
  masks inside the kernel.
* ``"blockwise"``: causal self-attention by query blocks (:mod:`.blockwise`).
* ``"auto"``: splash on TPU, cuDNN on GPU, blockwise (causal) or XLA on CPU, each where the
  inputs allow.

A requested kernel that refuses the inputs falls back to XLA with a warning (once per reason).
:func:`record_kernels` lets a caller see the kernel each traced call actually ran.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxmodels.layers.attention.blockwise import (
    DEFAULT_BLOCK,
    blockwise_refusal,
    causal_blockwise_attention,
)
from jaxmodels.layers.attention.splash import SPLASH_BLOCK, splash_attention, splash_available

IMPLS = ("auto", "xla", "cudnn", "splash", "blockwise")


@functools.cache
def _warn_once(msg: str) -> None:
    logging.getLogger(__name__).warning(msg)


# ---------------------------------------------------------------- masks


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


def window_mask(q_pos_BxT: jax.Array, k_pos_BxS: jax.Array, window: int) -> jax.Array:
    """``[B, 1, T, S]`` boolean: key ``j`` is among query ``i``'s last ``window`` positions,
    ``pos_j > pos_i - window`` (Mistral's sliding window, Jiang et al. 2023 sec. 2; causality
    is the caller's mask)."""
    return (k_pos_BxS[:, None, :] > q_pos_BxT[:, :, None] - window)[:, None]


def lengths_mask(lengths_B: jax.Array, S: int) -> jax.Array:
    """``[B, S]`` boolean: key ``j`` is kept where ``j < lengths_B[b]`` (right padding)."""
    return jnp.arange(S)[None, :] < lengths_B[:, None]


def right_padding_lengths(mask_BxS: jax.Array) -> jax.Array:
    """Int32 lengths ``[B]`` of a right-padding key mask (its tokens first, then only padding).

    The inverse of :func:`lengths_mask`, for callers whose masks come from right-padded token
    ids. A concrete mask of another pattern (left padding, holes) is refused; a traced one
    (under ``jit``) cannot be checked, so pass right padding only.
    """
    lengths_B = jnp.sum(mask_BxS.astype(jnp.int32), axis=-1)
    if not isinstance(mask_BxS, jax.core.Tracer):
        keep_BxS = np.asarray(mask_BxS).astype(bool)  # numpy: no tracing even inside a trace
        prefix_BxS = np.arange(keep_BxS.shape[-1]) < keep_BxS.sum(-1, keepdims=True)
        bad = np.flatnonzero((keep_BxS != prefix_BxS).any(-1))
        if bad.size:
            raise ValueError(
                f"padding mask rows {bad.tolist()} are not right padding (tokens first, then "
                "padding); this model takes padding as per-row lengths"
            )
    return lengths_B


def _both(a: jax.Array | None, b: jax.Array | None) -> jax.Array | None:
    return a if b is None else b if a is None else a & b


# ---------------------------------------------------------------- kernel choice


def _platform() -> str:
    return jax.default_backend()


class KernelChoice(NamedTuple):
    """The kernel that will run, and why the requested one refused (None when it did not)."""

    kernel: str
    why: str | None = None


def cudnn_refusal(q: jax.Array, k: jax.Array, *, bias_shape: tuple | None) -> str | None:
    """Returns why cuDNN flash attention cannot take these inputs, or None if it can.

    ``bias_shape``: the additive bias cuDNN would receive (boolean masks and bias combined), or
    None; key padding given as sequence lengths is never a reason to refuse. Mirrors the checks
    of jax's ``jax._src.cudnn.fused_attention_stablehlo`` for bf16/fp16.
    """
    if _platform() != "gpu":
        return f"backend is {_platform()!r}, not gpu"
    if q.dtype not in (jnp.bfloat16, jnp.float16):
        return f"dtype {q.dtype} (cuDNN needs bfloat16/float16; set train.compute_dtype)"
    cc = str(getattr(jax.devices()[0], "compute_capability", "0"))
    h_max = 256 if float(cc or 0) >= 9.0 else 128
    head_dim = q.shape[-1]
    if head_dim > h_max or head_dim % 8:
        return f"head_dim {head_dim} (cuDNN needs a multiple of 8, at most {h_max})"
    if bias_shape is None:
        return None
    T, S = q.shape[1], k.shape[1]
    if tuple(bias_shape[-2:]) != (T, S):
        return (
            f"a mask/bias of shape {tuple(bias_shape)} does not cover every query and key "
            f"([.., {T}, {S}]); give key padding as sequence lengths"
        )
    if T % 2 or S % 2:
        return f"odd lengths T={T}, S={S} with a mask/bias"
    return None


def splash_refusal(q: jax.Array, k: jax.Array, *, causal: bool, has_extra: bool) -> str | None:
    """Returns why the Pallas splash kernel cannot take these inputs, or None if it can.

    ``has_extra``: a bias, a boolean mask or sequence lengths (splash takes causal + segments).
    """
    if _platform() != "tpu":
        return f"backend is {_platform()!r}, not tpu"
    if has_extra:
        return "an additive bias, a padding/decode mask or lengths (splash takes causal + segments)"
    T, S = q.shape[1], k.shape[1]
    if T % SPLASH_BLOCK or S % SPLASH_BLOCK:
        return f"lengths T={T}, S={S} are not multiples of {SPLASH_BLOCK}"
    if causal and T != S:
        return "causal attention with T != S"
    return splash_available()


def choose_kernel(
    impl: str,
    q: jax.Array,
    k: jax.Array,
    *,
    causal: bool,
    mask: jax.Array | None = None,
    bias: jax.Array | None = None,
    segment_mask: jax.Array | None = None,
    has_lengths: bool = False,
) -> KernelChoice:
    """Maps ``attention_impl`` to the kernel that will run: xla, cudnn, splash or blockwise.

    ``mask`` is the caller's boolean mask and ``segment_mask`` the one its segment ids make
    (splash takes segments natively, the other kernels as this mask).
    """
    if impl not in IMPLS:
        raise ValueError(f"attention_impl must be one of {IMPLS}, got {impl!r}")
    if impl == "xla":
        return KernelChoice("xla")
    if impl == "blockwise" or (impl == "auto" and _platform() == "cpu"):
        why = blockwise_refusal(q, k, causal=causal, block=DEFAULT_BLOCK)
        return KernelChoice("blockwise") if why is None else KernelChoice("xla", why)
    extra = mask is not None or bias is not None or has_lengths
    splash_why = splash_refusal(q, k, causal=causal, has_extra=extra)
    shapes = [x.shape for x in (mask, segment_mask, bias) if x is not None]
    bias_shape = jnp.broadcast_shapes(*shapes) if shapes else None  # what cuDNN adds
    cudnn_why = cudnn_refusal(q, k, bias_shape=bias_shape)
    if impl == "auto":
        return KernelChoice(
            "splash" if splash_why is None else "cudnn" if cudnn_why is None else "xla"
        )
    why = cudnn_why if impl == "cudnn" else splash_why
    return KernelChoice(impl) if why is None else KernelChoice("xla", why)


# ---------------------------------------------------------------- which kernel ran

_RECORDERS: contextvars.ContextVar[tuple[list[str], ...]] = contextvars.ContextVar(
    "attention_kernel_recorders", default=()
)


@contextlib.contextmanager
def record_kernels():
    """Yields a list, owned by the caller, of the kernel each attention call traced inside ran.

    Benchmarks wrap a step's first (tracing) call in it to report ``cudnn``/``splash``/``xla``.
    The list is reachable only through this context (a ``contextvars`` value, so threads and
    nested recorders keep their own).
    """
    log: list[str] = []
    token = _RECORDERS.set((*_RECORDERS.get(), log))
    try:
        yield log
    finally:
        _RECORDERS.reset(token)


def _ran(kernel: str) -> None:
    for log in _RECORDERS.get():
        log.append(kernel)


# ---------------------------------------------------------------- the call


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
    ``j < kv_lengths_B[b]`` (right padding) as sequence lengths, the padding cuDNN takes.
    """
    T, D = q_BxTxNxD.shape[1], q_BxTxNxD.shape[-1]
    S = k_BxSxKxD.shape[1]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    seg_mask = make_mask(
        T, S, causal=False, q_segment_ids=q_segment_ids, kv_segment_ids=kv_segment_ids
    )
    kernel, why = choose_kernel(
        impl, q_BxTxNxD, k_BxSxKxD, causal=causal, mask=mask, bias=bias,
        segment_mask=seg_mask, has_lengths=kv_lengths_B is not None,
    )  # fmt: skip
    if why is not None and impl != "auto":
        _warn_once(f"attention_impl={impl!r} falls back to xla: {why}")
    if kernel == "splash":
        _ran("splash")
        return splash_attention(
            q_BxTxNxD, k_BxSxKxD, v_BxSxKxD, causal=causal, q_segment_ids=q_segment_ids,
            kv_segment_ids=kv_segment_ids, scale=scale,
        )  # fmt: skip
    mask = _both(mask, seg_mask)
    if kernel == "blockwise":
        _ran("blockwise")
        if kv_lengths_B is not None:
            mask = _both(mask, lengths_mask(kv_lengths_B, S)[:, None, None, :])
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
        try:  # cuDNN checks more while tracing (versions, GPUs); refuse cleanly rather than fail
            out = call(implementation="cudnn")
            _ran("cudnn")
            return out
        except (NotImplementedError, ValueError, RuntimeError) as e:
            _warn_once(f"attention_impl={impl!r}: cuDNN refused ({e}); using xla")
    _ran("xla")
    return call(implementation="xla")
