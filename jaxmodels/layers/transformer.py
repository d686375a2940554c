"""Transformer blocks (Vaswani et al. 2017, sec. 3.1) and a layer stack with scan and remat.

One :class:`BlockConfig` describes a block, so decoder LMs, bidirectional encoders (RoFormer)
and text towers (CLIP) share the code: pre-norm (GPT-2/Llama) or post-norm (BERT/RoFormer),
RMSNorm or LayerNorm, gated or plain MLP, causal or bidirectional softmax or linear attention
with any position encoding, and an optional cross-attention sub-layer (encoder-decoder, BLIP
text decoder). What positions, packing, padding, bias and encoded sequence a forward pass has
is one :class:`~jaxmodels.layers.attention.AttentionInputs`, passed whole to every block.

:class:`TransformerStack` runs ``num_layers`` blocks either unrolled (params ``layers_0``,
``layers_1``...) or under ``nn.scan`` (params stacked on a leading logical axis ``"layers"``,
one compiled block), each optionally rematerialised with a named checkpoint policy.

``BlockConfig.fused_projections`` computes self-attention's q/k/v with one matmul and a gated
MLP's gate/up with another (params ``qkv`` and ``gate_up`` instead of ``query``/``key``/
``value`` and ``gate``/``up``); :func:`fuse_projections` and :func:`split_projections` convert
a parameter tree between the two layouts (HF import and export use the separate one).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxmodels.layers.attention import DEFAULT_INPUTS, AttentionInputs, MultiHeadAttention
from jaxmodels.layers.attention.module import fuse_qkv, split_qkv
from jaxmodels.layers.mlp import MLP, fuse_gate_up, split_gate_up
from jaxmodels.layers.norms import make_norm
from jaxmodels.layers.positions.options import NOPE, PositionOptions

Dtype = Any

# Names for jax.checkpoint policies (what the backward pass may keep instead of recomputing).
REMAT_POLICIES = {
    "none": None,  # no remat: keep every activation
    "full": jax.checkpoint_policies.nothing_saveable,  # recompute the whole block
    "nothing_saveable": jax.checkpoint_policies.nothing_saveable,
    "dots_saveable": jax.checkpoint_policies.dots_saveable,  # keep matmul outputs
    "dots_with_no_batch_dims_saveable": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "everything_saveable": jax.checkpoint_policies.everything_saveable,
}


@dataclasses.dataclass(frozen=True)
class BlockConfig:
    """Static description of one transformer block (hashable, so modules can hold it)."""

    d_model: int
    num_heads: int
    d_ff: int
    num_kv_heads: int | None = None  # None: MHA; < num_heads: GQA; 1: MQA
    head_dim: int | None = None  # None: d_model // num_heads
    activation: str = "swiglu"  # see jaxmodels.layers.mlp (swiglu, geglu, gelu, relu, ...)
    norm: str = "rmsnorm"  # rmsnorm | layernorm
    norm_eps: float = 1e-6
    norm_position: str = "pre"  # pre (x + f(norm(x))) | post (norm(x + f(x)))
    use_bias: bool = False  # biases in attention and MLP projections
    qkv_bias: bool = False  # biases on the q/k/v projections only (Qwen2), whatever use_bias
    qk_norm: bool = False  # RMSNorm of each head's queries and keys before RoPE (Qwen3)
    sliding_window: int | None = None  # a query sees its last W keys only (Mistral); None: all
    causal: bool = True
    position: PositionOptions = PositionOptions()  # the model's encoding, passed to attention
    attention: str = "softmax"  # softmax | linear (self-attention; cross-attention is softmax)
    attention_impl: str = "auto"  # auto | xla | cudnn | splash
    dropout_rate: float = 0.0  # residual and MLP dropout
    fused_projections: bool = False  # one matmul for self-attention's q/k/v, one for gate/up
    cross_attention: bool = False  # add a cross-attention sub-layer over `encoded`
    # param name of the self-attention sub-layer (and "<name>_norm" of its norm): blocks that
    # differ only there share every other weight (BLIP's text encoder and decoder, Sec. 3.1)
    self_attention_name: str = "attention"

    def __post_init__(self):
        if self.norm_position not in ("pre", "post"):
            raise ValueError(f"norm_position must be 'pre' or 'post', got {self.norm_position!r}")


# fused param name, the separate ones it replaces, fuse, split
_FUSED = (
    ("qkv", ("query", "key", "value"), fuse_qkv, split_qkv),
    ("gate_up", ("gate", "up"), fuse_gate_up, split_gate_up),
)


def fuse_projections(params: Mapping, name: str = "") -> Any:
    """A parameter tree with separate projections -> ``fused_projections=True``'s: in every
    module, ``query``/``key``/``value`` -> ``qkv`` (:func:`fuse_qkv`; not in a
    ``cross_attention``, which stays separate) and ``gate``/``up`` -> ``gate_up``
    (:func:`fuse_gate_up`). Unrolled and scanned (stacked) layers alike."""
    if not isinstance(params, Mapping):
        return params
    out = {k: fuse_projections(v, k) for k, v in params.items()}
    for fused, parts, fuse, _ in _FUSED:
        if all(p in out for p in parts) and not (fused == "qkv" and name == "cross_attention"):
            pieces = [out.pop(p) for p in parts]
            out[fused] = {k: fuse(*(p[k] for p in pieces)) for k in pieces[0]}
    return out


def split_projections(params: Mapping) -> Any:
    """The inverse of :func:`fuse_projections` (a tree without fused params is returned as is)."""
    if not isinstance(params, Mapping):
        return params
    fused_names = [f[0] for f in _FUSED]
    out = {k: split_projections(v) for k, v in params.items() if k not in fused_names}
    for fused, parts, _, split in _FUSED:
        if fused in params:
            pieces = {k: split(a) for k, a in params[fused].items()}  # kernel, bias -> parts
            out |= {p: {k: s[i] for k, s in pieces.items()} for i, p in enumerate(parts)}
    return out


class TransformerBlock(nn.Module):
    """One block: self-attention, optional cross-attention, MLP, each with a residual.

    Decoding (``decode=True``) caches the cross-attention keys/values of
    ``inputs.encoded_BxSxE`` at the first call; later calls may leave it None.
    """

    config: BlockConfig
    decode: bool = False
    deterministic: bool = True
    scanned: bool = False  # return (x, None) for nn.scan
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def _norm(self, name: str) -> nn.Module:
        c = self.config
        return make_norm(
            c.norm, epsilon=c.norm_eps, dtype=self.dtype, param_dtype=self.param_dtype, name=name
        )

    def _attention(self, name: str, *, cross: bool) -> MultiHeadAttention:
        c = self.config
        return MultiHeadAttention(
            num_heads=c.num_heads,
            num_kv_heads=c.num_kv_heads,
            head_dim=c.head_dim,
            causal=c.causal and not cross,
            cross=cross,
            use_bias=c.use_bias,
            qkv_bias=c.qkv_bias,
            qk_norm=c.qk_norm,
            norm_eps=c.norm_eps,
            sliding_window=None if cross else c.sliding_window,
            position=NOPE if cross else c.position,
            attention="softmax" if cross else c.attention,
            attention_impl=c.attention_impl,
            fused_qkv=c.fused_projections,  # self-attention only (cross keeps its own k/v)
            decode=self.decode,  # cross-attention caches the encoded keys/values
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name=name,
        )

    def _residual(self, x, f, norm_name):
        """Pre-norm ``x + f(norm(x))`` or post-norm ``norm(x + f(x))``, with dropout on f."""
        drop = nn.Dropout(self.config.dropout_rate)
        if self.config.norm_position == "pre":
            y = x + drop(f(self._norm(norm_name)(x)), deterministic=self.deterministic)
        else:
            y = self._norm(norm_name)(x + drop(f(x), deterministic=self.deterministic))
        return nn.with_logical_constraint(y, ("batch", "length", "embed"))

    @nn.compact
    def __call__(self, x_BxLxE: jax.Array, inputs: AttentionInputs = DEFAULT_INPUTS):
        c = self.config
        x = x_BxLxE.astype(self.dtype)
        self_attn = self._attention(c.self_attention_name, cross=False)
        x = self._residual(x, lambda h: self_attn(h, inputs), f"{c.self_attention_name}_norm")
        if c.cross_attention:
            cross_attn = self._attention("cross_attention", cross=True)
            x = self._residual(x, lambda h: cross_attn(h, inputs), "cross_attention_norm")
        mlp = MLP(
            c.d_ff,
            activation=c.activation,
            use_bias=c.use_bias,
            dropout_rate=c.dropout_rate,
            fused=c.fused_projections,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="mlp",
        )
        x = self._residual(x, lambda h: mlp(h, deterministic=self.deterministic), "mlp_norm")
        return (x, None) if self.scanned else x


class TransformerStack(nn.Module):
    """``num_layers`` blocks (unrolled or ``nn.scan``-ned), then a final norm for pre-norm."""

    config: BlockConfig
    num_layers: int
    scan_layers: bool = False
    remat_policy: str = "none"  # see REMAT_POLICIES
    decode: bool = False
    deterministic: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def _block_class(self):
        if self.remat_policy not in REMAT_POLICIES:
            known = sorted(REMAT_POLICIES)
            raise ValueError(f"remat_policy must be one of {known}, got {self.remat_policy!r}")
        if self.remat_policy == "none":
            return TransformerBlock
        return nn.remat(
            TransformerBlock,
            policy=REMAT_POLICIES[self.remat_policy],
            prevent_cse=not self.scan_layers,
        )

    @nn.compact
    def __call__(self, x_BxLxE: jax.Array, inputs: AttentionInputs = DEFAULT_INPUTS) -> jax.Array:
        """Runs the blocks; every one reads the same ``inputs`` (built once by the model)."""
        kw = dict(
            config=self.config,
            decode=self.decode,
            deterministic=self.deterministic,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        block_cls = self._block_class()
        x = x_BxLxE
        if self.scan_layers:
            scan = nn.scan(
                block_cls,
                variable_axes={"params": 0, "cache": 0, "intermediates": 0},
                split_rngs={"params": True, "dropout": True},
                in_axes=(nn.broadcast,),
                length=self.num_layers,
                metadata_params={nn.PARTITION_NAME: "layers"},
            )
            x, _ = scan(scanned=True, name="layers", **kw)(x, inputs)
        else:
            for i in range(self.num_layers):
                x = block_cls(name=f"layers_{i}", **kw)(x, inputs)
        if self.config.norm_position == "pre":
            c = self.config
            x = make_norm(
                c.norm,
                epsilon=c.norm_eps,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name="final_norm",
            )(x)
        return x
