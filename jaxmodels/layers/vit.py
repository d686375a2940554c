"""Vision Transformer (Dosovitskiy et al., 2021) image tower.

Pre-LN encoder blocks (ViT eq. 2-3; the shared :mod:`jaxmodels.layers.transformer` stack with
LayerNorm, GELU MLP and biases), patch embedding as a strided convolution (eq. 1), learned
or fixed 2-D sin-cos positions (MAE/big_vision ``posemb_sincos_2d``), and pooling by class token
(``cls``), global average (``gap``) or multihead attention pooling (``map``, Lee et al., 2019;
used by SigLIP). CLIP's variant (Radford et al., 2021) drops the patch embedding's bias
(``patch_bias=False``) and normalises the embedded tokens before the blocks (``pre_norm``).
Parameters carry logical axis names; activations are constrained to ``(batch, length, embed)``.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jaxmodels.layers.attention import AttentionInputs, MultiHeadAttention
from jaxmodels.layers.mlp import MLP
from jaxmodels.layers.norms import make_norm
from jaxmodels.layers.positions.options import NOPE
from jaxmodels.layers.transformer import BlockConfig, TransformerStack

Dtype = Any

# name: (width, depth, mlp_dim, heads). Ti/S: DeiT (Touvron et al., 2021, Table 1);
# B/L/H: ViT (Dosovitskiy et al., 2021, Table 1); So400m: shape-optimised ViT
# (Alabdulmohsin et al., 2023, "Getting ViT in Shape", Table 1/Sec. 5), the SigLIP So400m tower.
PRESETS = {
    "Ti": (192, 12, 768, 3),
    "S": (384, 12, 1536, 6),
    "B": (768, 12, 3072, 12),
    "L": (1024, 24, 4096, 16),
    "H": (1280, 32, 5120, 16),
    "So400m": (1152, 27, 4304, 16),
}


def decode_preset(preset: str) -> dict[str, int]:
    """``"B/16"`` -> ``dict(width=768, depth=12, mlp_dim=3072, num_heads=12, patch_size=16)``."""
    name, _, patch = preset.partition("/")
    if name not in PRESETS:
        raise ValueError(f"ViT preset {preset!r}: unknown size {name!r}; one of {list(PRESETS)}")
    width, depth, mlp_dim, heads = PRESETS[name]
    out = dict(width=width, depth=depth, mlp_dim=mlp_dim, num_heads=heads)
    if patch:
        out["patch_size"] = int(patch)
    return out


def patch_grid(image_size: int, patch_size: int, positions: int | None = None) -> int:
    """Patches per side of a square ``image_size`` image; a clear error, naming the config keys,
    when the patches do not tile it or (``positions``: patches in a checkpoint's learned position
    table) when the grid is not the one the table was trained for."""
    if patch_size < 1 or image_size < patch_size or image_size % patch_size:
        raise ValueError(
            f"config.data.image_size={image_size} is not a multiple of "
            f"config.model.image.patch_size={patch_size}: the patches would not tile the image"
        )
    grid = image_size // patch_size
    if positions is not None and grid * grid != positions:
        side = int(round(positions**0.5))
        raise ValueError(
            f"config.data.image_size={image_size} with config.model.image.patch_size={patch_size} "
            f"gives {grid}x{grid} patches, but the model's position table holds {positions} "
            f"(image_size={side * patch_size} for {side}x{side})"
        )
    return grid


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


def encoder_config(
    width,
    mlp_dim,
    num_heads,
    *,
    causal=False,
    attention_impl="auto",
    activation="gelu_tanh",
    norm_eps=1e-6,
):
    """The ViT/CLIP encoder block as the shared :class:`BlockConfig`: pre-LN, GELU MLP, biases."""
    return BlockConfig(
        d_model=width,
        num_heads=num_heads,
        d_ff=mlp_dim,
        activation=activation,
        norm="layernorm",
        norm_eps=norm_eps,
        norm_position="pre",
        use_bias=True,
        causal=causal,
        position=NOPE,
        attention_impl=attention_impl,
    )


class MAPHead(nn.Module):
    """Multihead attention pooling (Lee et al., 2019, "Set Transformer", PMA): a learned probe."""

    mlp_dim: int
    num_heads: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    attention_impl: str = "auto"
    activation: str = "gelu_tanh"  # its MLP's activation (the tower's)
    norm_eps: float = 1e-6  # its LayerNorm's epsilon (the tower's)

    @nn.compact
    def __call__(self, x_BxSxE):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        width = x_BxSxE.shape[-1]
        init = nn.with_logical_partitioning(nn.initializers.xavier_uniform(), (None, None, "embed"))
        probe = self.param("probe", init, (1, 1, width), self.param_dtype).astype(self.dtype)
        probe_Bx1xE = jnp.broadcast_to(probe, (x_BxSxE.shape[0], 1, width))
        attn = MultiHeadAttention(
            self.num_heads,
            causal=False,
            cross=True,
            use_bias=True,
            position=NOPE,
            attention_impl=self.attention_impl,
            name="attention",
            **kw,
        )
        x = attn(probe_Bx1xE, AttentionInputs(encoded_BxSxE=x_BxSxE))
        h = make_norm("layernorm", epsilon=self.norm_eps, name="norm", **kw)(x)
        x = x + MLP(self.mlp_dim, activation=self.activation, use_bias=True, name="mlp", **kw)(h)
        return x[:, 0]


class ViT(nn.Module):
    """ViT image tower: images (B, H, W, C) in [-1, 1] -> pooled features (B, width)."""

    width: int
    depth: int
    mlp_dim: int
    num_heads: int
    patch_size: int
    posemb: str = "learn"  # learn | sincos2d
    pool: str = "map"  # map | gap | cls | none (all tokens, B x T x width)
    activation: str = "gelu_tanh"  # MLP activation (BLIP's ViT: exact "gelu")
    norm_eps: float = 1e-6  # LayerNorm epsilon (BLIP's ViT: 1e-5)
    patch_bias: bool = True  # a bias in the patch embedding (CLIP's has none)
    pre_norm: bool = False  # LayerNorm of the embedded tokens before the blocks (CLIP's ln_pre)
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    attention_impl: str = "auto"  # auto | xla | cudnn | splash (jaxmodels.layers.attention)
    remat_policy: str = "none"  # jaxmodels.layers.transformer.REMAT_POLICIES
    scan_layers: bool = False

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
            use_bias=self.patch_bias,
            bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
            name="embedding",
        )(images_BxHxWxC.astype(self.dtype))
        b, h, w, _ = x.shape
        x = x.reshape(b, h * w, self.width) + self._positions(h, w)
        if self.pool in ("cls", "none"):
            cls = self.param(
                "cls",
                nn.with_logical_partitioning(nn.initializers.zeros, (None, None, "embed")),
                (1, 1, self.width),
                self.param_dtype,
            )
            x = jnp.concatenate(
                [jnp.broadcast_to(cls.astype(self.dtype), (b, 1, self.width)), x], 1
            )
        if self.pre_norm:
            kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
            x = make_norm("layernorm", epsilon=self.norm_eps, name="pre_norm", **kw)(x)
        x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
        block = encoder_config(
            self.width,
            self.mlp_dim,
            self.num_heads,
            attention_impl=self.attention_impl,
            activation=self.activation,
            norm_eps=self.norm_eps,
        )
        x = TransformerStack(
            block,
            self.depth,
            scan_layers=self.scan_layers,
            remat_policy=self.remat_policy,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
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

    def _pool(self, x_BxLxE):
        if self.pool == "map":
            kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
            head = MAPHead(
                self.mlp_dim,
                self.num_heads,
                attention_impl=self.attention_impl,
                activation=self.activation,
                norm_eps=self.norm_eps,
                name="map_head",
                **kw,
            )
            return head(x_BxLxE)
        if self.pool == "gap":
            return jnp.mean(x_BxLxE, axis=1)
        if self.pool == "cls":
            return x_BxLxE[:, 0]
        if self.pool == "none":
            return x_BxLxE
        raise ValueError(f"model.image.pool={self.pool!r}: use 'map', 'gap', 'cls' or 'none'")
