"""The diffusion family's networks: the raw F (the UNet of :mod:`jaxmodels.layers.unet` for
images, :class:`DenoiserMLP` for points) and the denoiser D = F wrapped in a process's
preconditioning (EDM eq. 7)."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from jaxmodels.layers.unet import NoiseEmbedding, UNet, fit_levels, level_sides
from jaxmodels.models.diffusion import processes


class DenoiserMLP(nn.Module):
    """F(c_in x; c_noise) for points (B, E): a residual SiLU MLP conditioned additively."""

    width: int = 128
    depth: int = 3
    embedding: str = "positional"
    num_classes: int = 0
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x_BxE, c_noise_B, label_B=None, *, train: bool = False):
        del train
        dense = lambda f, axes: nn.Dense(
            f,
            dtype=self.dtype,
            kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), axes),
        )
        emb = NoiseEmbedding(self.width, self.embedding, self.num_classes, self.dtype)(
            c_noise_B, label_B
        )
        h = dense(self.width, (None, "mlp"))(x_BxE.astype(self.dtype))
        for _ in range(self.depth):
            u = nn.silu(
                nn.LayerNorm(dtype=self.dtype)(h) + dense(self.width, ("embed", "mlp"))(emb)
            )
            h = h + dense(self.width, ("mlp", "embed"))(u)
        return dense(x_BxE.shape[-1], ("embed", None))(nn.silu(h)).astype(jnp.float32)


def build_network(m, dtype, num_classes: int, shape: tuple[int, ...]):
    """The raw network F from ``config.model`` for examples of ``shape`` ((H, W, C) images or
    (E,) points); ``num_classes`` > 0 adds a null label."""
    if m.arch == "unet":
        channel_mult, attn_resolutions = unet_levels(m, shape)
        return UNet(
            m.channels, channel_mult, m.num_blocks, attn_resolutions,
            m.num_heads, m.dropout, m.embedding, num_classes, dtype,
        )  # fmt: skip
    if m.arch == "mlp":
        return DenoiserMLP(m.width, m.depth, m.embedding, num_classes, dtype)
    raise ValueError(f"model.arch={m.arch!r}: choose unet or mlp")


def unet_levels(m, shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``model.channel_mult`` and ``model.attn_resolutions``, each fitted to the (H, W, C)
    images (:func:`jaxmodels.layers.unet.fit_levels`) when it is ``()``; a ``channel_mult``
    with more levels than the sides halve evenly into, or an attention side (other than 0,
    "none") that no level has, fails naming the key."""
    if len(shape) != 3:
        raise ValueError(f"model.arch='unet' needs (H, W, C) images, not examples of {shape}")
    fitted_mult, fitted_attn = fit_levels(*shape[:2])
    channel_mult = tuple(m.channel_mult) or fitted_mult
    attn_resolutions = tuple(m.attn_resolutions) or fitted_attn
    sides = level_sides(*shape[:2], min_side=1)
    if len(channel_mult) > len(sides):
        halvings = " -> ".join(map(str, sides))
        raise ValueError(
            f"config.model.channel_mult={channel_mult} has {len(channel_mult)} levels, but "
            f"{shape[0]}x{shape[1]} images halve evenly only to {halvings} ({len(sides)} "
            "levels); set fewer, or () to fit the levels to the images"
        )
    used = sides[: len(channel_mult)]
    if set(attn_resolutions) - {0} - set(used):
        raise ValueError(
            f"config.model.attn_resolutions={attn_resolutions}: the levels of "
            f"{shape[0]}x{shape[1]} images with channel_mult={channel_mult} have sides {used}; "
            "name some of them, (0,) for no attention, or () to fit them to the images"
        )
    return channel_mult, attn_resolutions


def build_process(m) -> processes.Process:
    """The diffusion process from ``config.model.process`` (EDM gets ``model.sigma_data``)."""
    kwargs = {"sigma_data": m.sigma_data} if m.process == "edm" else {}
    return processes.get_process(m.process, **kwargs)


def make_denoiser(net, process, params, *, train=False, rng=None):
    """D(x; sigma, label) = the preconditioned network (EDM eq. 7)."""

    def raw(x_in, c_noise, label=None):
        rngs = {"dropout": rng} if train else None
        return net.apply({"params": params}, x_in, c_noise, label, train=train, rngs=rngs)

    return processes.precondition(process, raw)
