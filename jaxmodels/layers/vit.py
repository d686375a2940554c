"""Vision Transformer (Dosovitskiy et al., 2021) image tower and a bidirectional encoder stack.

Pre-LN encoder blocks (ViT eq. 2-3), patch embedding as a strided convolution (eq. 1), learned
or fixed 2-D sin-cos positions (MAE/big_vision ``posemb_sincos_2d``), and pooling by class token
(``cls``), global average (``gap``) or multihead attention pooling (``map``, Lee et al., 2019;
used by SigLIP). Parameters carry logical axis names; activations are constrained to
``(batch, length, embed)``.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Dtype = Any

# name: (width, depth, mlp_dim, heads). Ti/S: DeiT (Touvron et al., 2021, Table 1);
# B/L/H: ViT (Dosovitskiy et al., 2021, Table 1); So400m: shape-optimised ViT
# (Alabdulmohsin et al., 2023, "Getting ViT in Shape", Table 1/Sec. 5), the SigLIP So400m tower.
VARIANTS = {
    "Ti": (192, 12, 768, 3),
    "S": (384, 12, 1536, 6),
    "B": (768, 12, 3072, 12),
    "L": (1024, 24, 4096, 16),
    "H": (1280, 32, 5120, 16),
    "So400m": (1152, 27, 4304, 16),
}


def decode_variant(variant: str) -> dict[str, int]:
    """``"B/16"`` -> ``dict(width=768, depth=12, mlp_dim=3072, num_heads=12, patch_size=16)``."""
    name, _, patch = variant.partition("/")
    if name not in VARIANTS:
        raise ValueError(f"ViT variant {variant!r}: unknown size {name!r}; one of {list(VARIANTS)}")
    width, depth, mlp_dim, heads = VARIANTS[name]
    out = dict(width=width, depth=depth, mlp_dim=mlp_dim, num_heads=heads)
    if patch:
        out["patch_size"] = int(patch)
    return out


def posemb_sincos_2d(h: int, w: int, width: int, temperature: float = 10_000.0) -> np.ndarray:
    """Fixed 2-D sin-cos positions (1, h*w, width): a quarter of the channels per sin/cos of y/x."""
    if width % 4:
        raise ValueError(f"sincos2d position embedding needs width % 4 == 0, got {width}")
    y, x = np.mgrid[:h, :w]
    omega = 1.0 / temperature ** (np.arange(width // 4) / (width // 4 - 1 or 1))
    y = y.reshape(-1)[:, None] * omega[None]
    x = x.reshape(-1)[:, None] * omega[None]
    pe = np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1)
    return pe[None].astype(np.float32)


def _layer_norm(dtype, param_dtype, name=None):
    return nn.LayerNorm(
        epsilon=1e-6,
        dtype=dtype,
        param_dtype=param_dtype,
        scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
        name=name,
    )


class Attention(nn.Module):
    """Multi-head attention (Vaswani et al., 2017, eq. 1) via ``jax.nn.dot_product_attention``."""

    num_heads: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    implementation: str | None = None  # None (XLA) | "cudnn"

    @nn.compact
    def __call__(self, x_q, x_kv, *, kv_lengths=None, is_causal=False):
        width = x_q.shape[-1]
        n, h = self.num_heads, width // self.num_heads

        def param(name, shape, names, in_axis, out_axis, bias_shape, bias_names):
            init = nn.initializers.xavier_uniform(in_axis=in_axis, out_axis=out_axis)
            w = self.param(name, nn.with_logical_partitioning(init, names), shape, self.param_dtype)
            zeros = nn.with_logical_partitioning(nn.initializers.zeros, bias_names)
            bias = self.param(f"{name}_bias", zeros, bias_shape, self.param_dtype)
            return w.astype(self.dtype), bias.astype(self.dtype)

        def proj(name, x_BxTxW):
            qkv_names = ("embed", "heads", "head_dim")
            w, bias = param(name, (width, n, h), qkv_names, 0, (1, 2), (n, h), qkv_names[1:])
            return jnp.einsum("btw,wnh->btnh", x_BxTxW.astype(self.dtype), w) + bias

        q_BxTxNxH, k_BxSxNxH, v_BxSxNxH = proj("query", x_q), proj("key", x_kv), proj("value", x_kv)
        out_BxTxNxH = jax.nn.dot_product_attention(
            q_BxTxNxH,
            k_BxSxNxH,
            v_BxSxNxH,
            is_causal=is_causal,
            key_value_seq_lengths=kv_lengths,
            implementation=self.implementation,
        )
        out_names = ("heads", "head_dim", "embed")
        w, bias = param("out", (n, h, width), out_names, (0, 1), 2, (width,), ("embed",))
        return jnp.einsum("btnh,nhw->btw", out_BxTxNxH, w) + bias


class MlpBlock(nn.Module):
    """Transformer MLP (ViT eq. 3): Dense -> GELU -> Dense."""

    mlp_dim: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        width = x.shape[-1]
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        zeros = nn.initializers.zeros
        h = nn.Dense(
            self.mlp_dim,
            kernel_init=nn.with_logical_partitioning(
                nn.initializers.xavier_uniform(), ("embed", "mlp")
            ),
            bias_init=nn.with_logical_partitioning(nn.initializers.normal(1e-6), ("mlp",)),
            name="fc1",
            **kw,
        )(x)
        h = nn.with_logical_constraint(nn.gelu(h, approximate=True), ("batch", "length", "mlp"))
        return nn.Dense(
            width,
            kernel_init=nn.with_logical_partitioning(
                nn.initializers.xavier_uniform(), ("mlp", "embed")
            ),
            bias_init=nn.with_logical_partitioning(zeros, ("embed",)),
            name="fc2",
            **kw,
        )(h)


class EncoderBlock(nn.Module):
    """Pre-LN transformer block (ViT eq. 2-3): x + MSA(LN(x)), then x + MLP(LN(x))."""

    mlp_dim: int
    num_heads: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    attention_impl: str | None = None
    is_causal: bool = False

    @nn.compact
    def __call__(self, x, kv_lengths=None):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        h = _layer_norm(**kw, name="ln1")(x)
        attn = Attention(self.num_heads, implementation=self.attention_impl, name="attn", **kw)
        x = x + attn(h, h, kv_lengths=kv_lengths, is_causal=self.is_causal)
        x = x + MlpBlock(self.mlp_dim, name="mlp", **kw)(_layer_norm(**kw, name="ln2")(x))
        return nn.with_logical_constraint(x, ("batch", "length", "embed"))


class _ScanBlock(EncoderBlock):
    """``EncoderBlock`` with the ``(carry, x) -> (carry, y)`` signature ``nn.scan`` needs."""

    def __call__(self, x, kv_lengths):
        return super().__call__(x, kv_lengths), None


class Encoder(nn.Module):
    """``depth`` encoder blocks and a final LayerNorm; optional remat and scan over layers."""

    depth: int
    mlp_dim: int
    num_heads: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    attention_impl: str | None = None
    is_causal: bool = False
    remat: bool = False
    scan: bool = False

    @nn.compact
    def __call__(self, x, kv_lengths=None):
        kw = dict(
            mlp_dim=self.mlp_dim,
            num_heads=self.num_heads,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            attention_impl=self.attention_impl,
            is_causal=self.is_causal,
        )
        if self.scan:
            block = nn.remat(_ScanBlock, prevent_cse=False) if self.remat else _ScanBlock
            stack = nn.scan(
                block,
                variable_axes={"params": 0},
                split_rngs={"params": True},
                in_axes=nn.broadcast,
                length=self.depth,
                metadata_params={nn.PARTITION_NAME: "layers"},
            )
            x, _ = stack(**kw, name="blocks")(x, kv_lengths)
        else:
            block = nn.remat(EncoderBlock) if self.remat else EncoderBlock
            for i in range(self.depth):
                x = block(**kw, name=f"block{i}")(x, kv_lengths)
        return _layer_norm(self.dtype, self.param_dtype, name="ln_final")(x)


class MAPHead(nn.Module):
    """Multihead attention pooling (Lee et al., 2019, "Set Transformer", PMA): a learned probe."""

    mlp_dim: int
    num_heads: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x_BxTxW):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        width = x_BxTxW.shape[-1]
        init = nn.with_logical_partitioning(nn.initializers.xavier_uniform(), (None, None, "embed"))
        probe = self.param("probe", init, (1, 1, width), self.param_dtype).astype(self.dtype)
        probe_Bx1xW = jnp.broadcast_to(probe, (x_BxTxW.shape[0], 1, width))
        x = Attention(self.num_heads, name="attn", **kw)(probe_Bx1xW, x_BxTxW)
        x = x + MlpBlock(self.mlp_dim, name="mlp", **kw)(_layer_norm(**kw, name="ln")(x))
        return x[:, 0]


class ViT(nn.Module):
    """ViT image tower: images (B, H, W, C) in [-1, 1] -> pooled features (B, width)."""

    width: int
    depth: int
    mlp_dim: int
    num_heads: int
    patch_size: int
    posemb: str = "learn"  # learn | sincos2d
    pool: str = "map"  # map | gap | cls
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    attention_impl: str | None = None
    remat: bool = False
    scan: bool = False

    @nn.compact
    def __call__(self, images_BxHxWxC):
        p = self.patch_size
        conv_init = nn.with_logical_partitioning(
            nn.initializers.lecun_normal(), (None, None, "channels", "embed")
        )
        x = nn.Conv(
            self.width,
            (p, p),
            strides=(p, p),
            padding="VALID",
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=conv_init,
            bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
            name="embedding",
        )(images_BxHxWxC.astype(self.dtype))
        b, h, w, _ = x.shape
        x = x.reshape(b, h * w, self.width) + self._positions(h, w)
        if self.pool == "cls":
            cls = self.param(
                "cls",
                nn.with_logical_partitioning(nn.initializers.zeros, (None, None, "embed")),
                (1, 1, self.width),
                self.param_dtype,
            )
            x = jnp.concatenate(
                [jnp.broadcast_to(cls.astype(self.dtype), (b, 1, self.width)), x], 1
            )
        x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
        x = Encoder(
            self.depth,
            self.mlp_dim,
            self.num_heads,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            attention_impl=self.attention_impl,
            remat=self.remat,
            scan=self.scan,
            name="encoder",
        )(x)
        return self._pool(x)

    def _positions(self, h, w):
        if self.posemb == "sincos2d":
            return jnp.asarray(posemb_sincos_2d(h, w, self.width), self.dtype)
        if self.posemb != "learn":
            raise ValueError(f"model.image.posemb={self.posemb!r}: use 'learn' or 'sincos2d'")
        init = nn.with_logical_partitioning(
            nn.initializers.normal(1 / np.sqrt(self.width)), (None, "length", "embed")
        )
        return self.param("pos_embedding", init, (1, h * w, self.width), self.param_dtype).astype(
            self.dtype
        )

    def _pool(self, x_BxTxW):
        if self.pool == "map":
            kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
            return MAPHead(self.mlp_dim, self.num_heads, name="map_head", **kw)(x_BxTxW)
        if self.pool == "gap":
            return jnp.mean(x_BxTxW, axis=1)
        if self.pool == "cls":
            return x_BxTxW[:, 0]
        raise ValueError(f"model.image.pool={self.pool!r}: use 'map', 'gap' or 'cls'")
