"""NICE, RealNVP and Glow as chains of the shared bijectors (:mod:`jaxmodels.layers.bijectors`).

Each flow maps dequantised data u in [0, 1)^D to a latent z of the same shape; the fixed
preprocessing (centring or logit) is its first bijector, so log p(u) = log p_Z(z) + log_det is
exact. ``build_flow(config.model, event_shape)`` returns the bijector; the prior is named by
``config.model.prior``.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from jaxmodels.layers import bijectors as bj

FLOWS = ("nice", "realnvp", "glow")
PREPROCESS = ("center", "logit")


class Reshape(nn.Module):
    """(B, *in_shape) <-> (B, *out_shape), log_det = 0 (NICE models images as vectors)."""

    in_shape: tuple
    out_shape: tuple

    def __call__(self, x, inverse: bool = False):
        shape = self.in_shape if inverse else self.out_shape
        return x.reshape((x.shape[0],) + tuple(shape)), jnp.zeros(x.shape[0], jnp.float32)


class CouplingPair(nn.Module):
    """Two couplings on complementary partitions, so every dimension is transformed once."""

    coupling: str = "additive"
    mask: str = "odd_even"
    net: str = "mlp"
    hidden: int = 1000
    depth: int = 5

    @nn.compact
    def __call__(self, x, inverse: bool = False):
        cls = bj.AdditiveCoupling if self.coupling == "additive" else bj.AffineCoupling
        layers = [cls(self.mask, p, self.net, self.hidden, self.depth) for p in (0, 1)]
        return bj.Chain(layers)(x, inverse=inverse)


def _preprocess(m) -> nn.Module:
    if m.preprocess == "center":
        return bj.Shift(-0.5)
    if m.preprocess == "logit":
        return bj.Logit(m.logit_alpha)
    raise ValueError(f"model.preprocess={m.preprocess!r}: choose one of {PREPROCESS}")


def nice(m, event_shape) -> list[nn.Module]:
    """NICE (Dinh et al. 2014, §5): ``num_couplings`` additive couplings on alternating
    odd/even halves of the flattened image, each m() an MLP, then the diagonal scaling; z is
    reshaped back to the image's shape, like every flow here."""
    if m.num_couplings % 2:
        raise ValueError(f"model.num_couplings={m.num_couplings} must be even for NICE")
    dim = 1
    for n in event_shape:
        dim *= n
    kwargs = dict(coupling="additive", mask=m.mask, net="mlp", hidden=m.hidden, depth=m.depth)
    pairs = bj.Repeat(CouplingPair, m.num_couplings // 2, kwargs)
    flat = Reshape(tuple(event_shape), (dim,))
    return [flat, pairs, bj.DiagonalScaling(), Reshape((dim,), tuple(event_shape))]


def _affine(mask, parity, m):
    return bj.AffineCoupling(mask, parity, "conv", m.hidden, m.depth)


def _realnvp_scale(m, channels: int, level: int) -> nn.Module:
    """One RealNVP scale (§3.6): 3 checkerboard couplings, squeeze, 3 channel couplings,
    factor out half; the last scale is ``final_couplings`` checkerboard couplings."""
    if level == m.num_levels - 1:
        return bj.Chain([_affine("checkerboard", i % 2, m) for i in range(m.final_couplings)])
    layers = [_affine("checkerboard", i % 2, m) for i in range(m.scale_couplings)]
    layers.append(bj.Squeeze())
    layers += [_affine("channel", i % 2, m) for i in range(m.scale_couplings)]
    inner = _realnvp_scale(m, 2 * channels, level + 1)
    return bj.Chain(layers + [bj.FactorOut(inner), bj.Squeeze(undo=True)])


def realnvp(m, event_shape) -> list[nn.Module]:
    """RealNVP's multi-scale architecture (Dinh et al. 2016, §3.6) with affine couplings;
    for vectors, ``num_couplings`` affine couplings on alternating halves with MLP nets."""
    if len(event_shape) == 1:
        kwargs = dict(coupling="affine", mask="halves", net="mlp", hidden=m.hidden, depth=m.depth)
        return [bj.Repeat(CouplingPair, m.num_couplings // 2, kwargs)]
    return [_realnvp_scale(m, event_shape[-1], 0)]


def _glow_level(m, level: int) -> nn.Module:
    """One Glow level (Kingma & Dhariwal 2018, Fig. 2b): squeeze, K steps of flow
    (actnorm, invertible 1x1 conv, affine coupling), then split (all but the last level)."""
    steps = []
    for k in range(m.steps_per_level):
        seed = level * m.steps_per_level + k
        steps += [bj.ActNorm(), bj.InvConv1x1(seed), _affine("channel", 0, m)]
    if level < m.num_levels - 1:
        steps.append(bj.FactorOut(_glow_level(m, level + 1)))
    return bj.Chain([bj.Squeeze(), *steps, bj.Squeeze(undo=True)])


def glow(m, event_shape) -> list[nn.Module]:
    """Glow's multi-scale flow of ``num_levels`` levels of ``steps_per_level`` steps; for
    vectors, ``num_levels * steps_per_level`` steps with MLP couplings and no squeeze."""
    if len(event_shape) == 1:
        steps = []
        for k in range(m.num_levels * m.steps_per_level):
            coupling = bj.AffineCoupling("halves", 0, "mlp", m.hidden, m.depth)
            steps += [bj.ActNorm(), bj.InvConv1x1(k), coupling]
        return steps
    return [_glow_level(m, 0)]


def build_flow(m, event_shape) -> bj.Chain:
    """The bijector u -> z of ``config.model.flow`` (preprocessing included)."""
    builders = {"nice": nice, "realnvp": realnvp, "glow": glow}
    if m.flow not in builders:
        raise ValueError(f"model.flow={m.flow!r}: choose one of {FLOWS}")
    if m.prior not in bj.priors.PRIORS:
        raise ValueError(f"model.prior={m.prior!r}: choose one of {bj.priors.PRIORS}")
    return bj.Chain([_preprocess(m), *builders[m.flow](m, event_shape)])
