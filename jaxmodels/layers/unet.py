"""A small DDPM++-style UNet (Song et al. 2021; EDM's ``SongUNet``), NHWC, in linen.

Noise conditioning: ``c_noise`` goes through a positional (Transformer sinusoid) or random
Fourier embedding and a two-layer MLP; an optional class label (with a "null" label
``num_classes`` for classifier-free guidance) is embedded and added. Residual blocks apply the
embedding as an adaptive scale/shift after the first GroupNorm, skips are scaled by 1/sqrt(2),
and self-attention runs at the resolutions in ``attn_resolutions``.

:func:`fit_levels` sizes the levels to an image: how many halvings its side allows, the width
multiplier of each level and where attention runs (8x8 digits: 8, 4; 28x28 MNIST: 28, 14, 7;
32x32 CIFAR-10: 32, 16, 8, 4, as DDPM's).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxmodels.layers.attention import dot_product_attention

CONV_AXES = (None, None, None, "channels")  # kernel (kh, kw, in, out)
ACT_AXES = ("batch", None, None, "channels")


def _conv(features, dtype, kernel=3, zero=False, name=None):
    init = (
        nn.initializers.zeros if zero else nn.initializers.variance_scaling(1, "fan_avg", "uniform")
    )
    return nn.Conv(
        features,
        (kernel, kernel),
        dtype=dtype,
        kernel_init=nn.with_logical_partitioning(init, CONV_AXES),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("channels",)),
        name=name,
    )


def _dense(features, dtype, axes=("embed", "mlp"), zero=False, name=None):
    init = (
        nn.initializers.zeros if zero else nn.initializers.variance_scaling(1, "fan_avg", "uniform")
    )
    return nn.Dense(
        features,
        dtype=dtype,
        kernel_init=nn.with_logical_partitioning(init, axes),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, axes[-1:]),
        name=name,
    )


def _norm(dtype, channels, name=None):
    return nn.GroupNorm(
        num_groups=math.gcd(min(32, max(channels // 4, 1)), channels),
        dtype=dtype,
        scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("channels",)),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("channels",)),
        name=name,
    )


def level_sides(height: int, width: int, min_side: int = 4) -> tuple[int, ...]:
    """The heights of a UNet's levels on ``height`` x ``width`` inputs: the sides are halved
    while both are even and both halves at least ``min_side`` (8 -> 8, 4; 28 -> 28, 14, 7;
    32 -> 32, 16, 8, 4)."""
    sides = [(height, width)]
    while not (sides[-1][0] % 2 or sides[-1][1] % 2) and min(sides[-1]) // 2 >= min_side:
        sides.append((sides[-1][0] // 2, sides[-1][1] // 2))
    return tuple(h for h, _ in sides)


def fit_levels(height: int, width: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(channel_mult, attn_resolutions)`` for ``height`` x ``width`` inputs: a level per
    :func:`level_sides`, widths (1, 2, 2, ...) (DDPM's CIFAR-10 UNet: (1, 2, 2, 2), Ho et al.
    2020, App. B) and self-attention at the first downsampled level of side 16 or less (DDPM:
    16x16 on 32x32 images) and at the lowest level, where DDPM's middle block attends. 8x8
    digits: (1, 2), (4,); 28x28: (1, 2, 2), (14, 7); 32x32: (1, 2, 2, 2), (16, 4); one level
    (an odd side): (1,), no attention."""
    sides = level_sides(height, width)
    small = [s for s in sides[1:] if s <= 16]
    attn = tuple(dict.fromkeys(small[:1] + [sides[-1]])) if len(sides) > 1 else ()
    return (1,) + (2,) * (len(sides) - 1), attn


def positional_embedding(c_noise_B, dim: int, max_positions: int = 10000):
    """Transformer sinusoids of ``c_noise`` (Vaswani et al. 2017; DDPM's timestep embedding).

    ``I = dim // 2`` (a letter beyond the shape legend) counts the frequencies.
    """
    freqs = (1 / max_positions) ** (jnp.arange(dim // 2, dtype=jnp.float32) / (dim // 2))
    angles_BxI = c_noise_B.astype(jnp.float32)[:, None] * freqs
    return jnp.concatenate([jnp.cos(angles_BxI), jnp.sin(angles_BxI)], axis=-1)


class FourierEmbedding(nn.Module):
    """Random Fourier features of ``c_noise`` (Tancik et al. 2020; NCSN++), fixed frequencies.

    ``I = dim // 2`` (a letter beyond the shape legend) counts the frequencies.
    """

    dim: int
    scale: float = 16.0

    @nn.compact
    def __call__(self, c_noise_B):
        freqs = self.scale * jax.random.normal(jax.random.key(0), (self.dim // 2,))
        angles_BxI = 2 * math.pi * c_noise_B.astype(jnp.float32)[:, None] * freqs
        return jnp.concatenate([jnp.cos(angles_BxI), jnp.sin(angles_BxI)], axis=-1)


class NoiseEmbedding(nn.Module):
    """c_noise (and an optional class label) -> conditioning vector (EDM ``SongUNet.map_*``)."""

    dim: int
    kind: str = "positional"  # positional | fourier
    num_classes: int = 0  # 0: unconditional; else labels in [0, num_classes], num_classes = null
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, c_noise_B, label_B=None):
        base = self.dim // 4 * 2
        if self.kind == "positional":
            emb = positional_embedding(c_noise_B, base)
        elif self.kind == "fourier":
            emb = FourierEmbedding(base)(c_noise_B)
        else:
            raise ValueError(f"model.embedding={self.kind!r}: choose positional or fourier")
        if self.num_classes:
            table = self.param(
                "label_embedding",
                nn.with_logical_partitioning(nn.initializers.normal(1.0), ("classes", None)),
                (self.num_classes + 1, base),
            )
            emb = emb + jnp.take(table, label_B, axis=0)
        emb = nn.silu(_dense(self.dim, self.dtype, (None, "mlp"), name="map0")(emb))
        return nn.silu(_dense(self.dim, self.dtype, ("mlp", "embed"), name="map1")(emb))


class ResBlock(nn.Module):
    """GroupNorm-SiLU-Conv, adaptive scale/shift from the embedding, Dropout-Conv; skip/sqrt 2."""

    features: int
    dropout: float = 0.0
    attention: bool = False
    num_heads: int = 1
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x_BxHxWxC, emb_BxE, *, train: bool):
        h = _conv(self.features, self.dtype)(
            nn.silu(_norm(self.dtype, x_BxHxWxC.shape[-1])(x_BxHxWxC))
        )
        scale_shift = _dense(2 * self.features, self.dtype, ("embed", "channels"))(emb_BxE)
        scale, shift = jnp.split(scale_shift[:, None, None, :], 2, axis=-1)
        h = nn.silu(_norm(self.dtype, self.features)(h) * (1 + scale) + shift)
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        h = _conv(self.features, self.dtype, zero=True)(h)
        skip = x_BxHxWxC
        if skip.shape[-1] != self.features:
            skip = _conv(self.features, self.dtype, kernel=1, name="skip")(skip)
        x = nn.with_logical_constraint((h + skip) / math.sqrt(2), ACT_AXES)
        if self.attention:
            x = SelfAttention(self.num_heads, self.dtype)(x)
        return x


class SelfAttention(nn.Module):
    """Multi-head self-attention over the ``L = H * W`` positions; residual scaled by 1/sqrt(2)."""

    num_heads: int = 1
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x_BxHxWxC):
        B, H, W, C = x_BxHxWxC.shape
        D = C // self.num_heads
        qkv = _conv(3 * C, self.dtype, kernel=1)(_norm(self.dtype, C)(x_BxHxWxC))
        q_BxLxNxD, k_BxLxNxD, v_BxLxNxD = jnp.split(
            qkv.reshape(B, H * W, 3 * self.num_heads, D), 3, axis=2
        )
        o_BxLxNxD = dot_product_attention(q_BxLxNxD, k_BxLxNxD, v_BxLxNxD)
        o = _conv(C, self.dtype, kernel=1, zero=True)(o_BxLxNxD.reshape(B, H, W, C))
        return (x_BxHxWxC + o) / math.sqrt(2)


class UNet(nn.Module):
    """F(c_in x; c_noise, label) for images (B, H, W, C); output has the input's channels."""

    channels: int = 64  # base width
    channel_mult: Sequence[int] = (1, 2)  # width multiplier per resolution level
    num_blocks: int = 2  # residual blocks per level
    attn_resolutions: Sequence[int] = (4,)  # spatial sizes that get self-attention
    num_heads: int = 1
    dropout: float = 0.1
    embedding: str = "positional"
    num_classes: int = 0
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x_BxHxWxC, c_noise_B, label_B=None, *, train: bool = False):
        out_channels = x_BxHxWxC.shape[-1]
        emb = NoiseEmbedding(4 * self.channels, self.embedding, self.num_classes, self.dtype)(
            c_noise_B, label_B
        )
        block = lambda f, res: ResBlock(
            f, self.dropout, res in self.attn_resolutions, self.num_heads, self.dtype
        )
        h = _conv(self.channels, self.dtype)(x_BxHxWxC.astype(self.dtype))
        skips = [h]
        for level, mult in enumerate(self.channel_mult):
            if level:
                h = nn.avg_pool(h, (2, 2), (2, 2))
                skips.append(h)
            for _ in range(self.num_blocks):
                h = block(self.channels * mult, h.shape[1])(h, emb, train=train)
                skips.append(h)
        h = block(h.shape[-1], h.shape[1])(h, emb, train=train)
        for level, mult in reversed(list(enumerate(self.channel_mult))):
            for _ in range(self.num_blocks + 1):
                h = jnp.concatenate([h, skips.pop()], axis=-1)
                h = block(self.channels * mult, h.shape[1])(h, emb, train=train)
            if level:
                B, H, W, C = h.shape
                h = jax.image.resize(h, (B, 2 * H, 2 * W, C), "nearest")
                h = _conv(C, self.dtype)(h)
        h = nn.silu(_norm(self.dtype, h.shape[-1])(h))
        return _conv(out_channels, self.dtype, zero=True)(h).astype(jnp.float32)
