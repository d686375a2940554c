"""NICE, RealNVP and Glow as chains of the shared bijectors (:mod:`jaxmodels.layers.bijectors`).

Each flow maps dequantised data u in [0, 1)^D to a latent z of the same shape; the fixed
preprocessing (centring or logit) is its first bijector, so log p(u) = log p_Z(z) + log_det is
exact. ``build_flow(config.model, event_shape)`` returns the bijector; the prior is named by
``config.model.prior``.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

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


class CouplingStep(nn.Module):
    """One coupling of a stack scanned by :func:`couplings`: the partition's parity is the
    step's index, so consecutive couplings transform complementary parts. ``affine`` is
    RealNVP's coupling followed by actnorm (see :func:`_realnvp_coupling`)."""

    coupling: str = "additive"
    mask: str = "odd_even"
    net: str = "mlp"
    hidden: int = 1000
    depth: int = 5

    @nn.compact
    def __call__(self, x, inverse: bool = False, step=0):
        if self.coupling == "additive":
            layer = bj.AdditiveCoupling(self.mask, step, self.net, self.hidden, self.depth)
        else:
            layer = _realnvp_coupling(self.mask, step, self.net, self.hidden, self.depth)
        return layer(x, inverse=inverse)


def _unroll(m, length: int) -> int:
    """Blocks per iteration of a scan of ``length`` (``config.model.unroll``; 0: all)."""
    unroll = getattr(m, "unroll", 0)  # runs saved before the key: 0
    if unroll < 0:
        raise ValueError(f"config.model.unroll={unroll!r} must be >= 0 (0: unroll every step)")
    return min(unroll, length) or length


def couplings(n: int, coupling: str, mask: str, net: str, m) -> nn.Module:
    """``n`` couplings on alternating partitions as one scan (stacked parameters)."""
    kwargs = dict(coupling=coupling, mask=mask, net=net, hidden=m.width, depth=m.depth)
    return bj.Repeat(CouplingStep, n, kwargs, indexed=True, unroll=_unroll(m, n))


def _preprocess(m) -> nn.Module:
    if m.preprocess == "center":
        return bj.Shift(-0.5)
    if m.preprocess == "logit":
        return bj.Logit(m.logit_alpha)
    raise ValueError(f"model.preprocess={m.preprocess!r}: choose one of {PREPROCESS}")


def _dims(event_shape) -> int:
    return int(np.prod(event_shape))


def nice(m, event_shape) -> list[nn.Module]:
    """NICE (Dinh et al. 2014, §5): ``num_couplings`` additive couplings on alternating
    odd/even halves of the flattened image, each m() an MLP, then the diagonal scaling S; z is
    reshaped back to the image's shape, like every flow here.

    S is an actnorm on the flattened vector: exp(S) per dimension plus a bias (which the
    additive couplings could supply anyway, so the family of maps is NICE's), initialised from
    the data (Glow §3.1) instead of S = 0 and learnt at three times Adam's step (see ActNorm).
    On centred MNIST pixels S must reach about 7 for the always-black ones (900-fold), which
    Adam at 1e-3 would need thousands of steps to learn from 0."""
    dim = _dims(event_shape)
    layers = couplings(m.num_couplings, "additive", m.mask, "mlp", m)
    flat = Reshape(tuple(event_shape), (dim,))
    return [flat, layers, bj.ActNorm(), Reshape((dim,), tuple(event_shape))]


def _realnvp_coupling(mask, parity, net, hidden, depth) -> nn.Module:
    """RealNVP's coupling: scale exp(r tanh(h)) (see AffineCoupling), then the normalisation
    of its output with that normalisation's log-determinant (RealNVP §3.7 and Appendix E use
    batch normalisation; this is Glow's actnorm, its data-initialised replacement, Glow §3.1),
    which also lets a flow expand a narrow interval such as MNIST's black pixels."""
    coupling = bj.AffineCoupling(mask, parity, net, hidden, depth, scale="tanh")
    return bj.Chain([coupling, bj.ActNorm()])


def _realnvp_scale(m, level: int) -> nn.Module:
    """One RealNVP scale (§3.6): 3 checkerboard couplings, squeeze, 3 channel couplings,
    factor out half; the last scale is ``final_couplings`` checkerboard couplings."""
    if level == m.num_levels - 1:
        return couplings(m.final_couplings, "affine", "checkerboard", "conv", m)
    layers = [couplings(m.scale_couplings, "affine", "checkerboard", "conv", m), bj.Squeeze()]
    layers.append(couplings(m.scale_couplings, "affine", "channel", "conv", m))
    inner = _realnvp_scale(m, level + 1)
    return bj.Chain([*layers, bj.FactorOut(inner), bj.Squeeze(undo=True)])


def realnvp(m, event_shape) -> list[nn.Module]:
    """RealNVP's multi-scale architecture (Dinh et al. 2016, §3.6) with affine couplings;
    for vectors, ``num_couplings`` affine couplings on alternating halves with MLP nets."""
    if len(event_shape) == 1:
        return [couplings(m.num_couplings, "affine", "halves", "mlp", m)]
    return [_realnvp_scale(m, 0)]


def _glow_steps(m, length: int, seed: int, mask: str, net: str) -> nn.Module:
    """``length`` steps of flow as one scan (stacked parameters)."""
    kwargs = dict(seed=seed, steps=length, mask=mask, net=net, hidden=m.width, depth=m.depth)
    return bj.Repeat(bj.StepOfFlow, length, kwargs, indexed=True, unroll=_unroll(m, length))


def _glow_level(m, level: int) -> nn.Module:
    """One Glow level (Kingma & Dhariwal 2018, Fig. 2b): squeeze, K steps of flow
    (actnorm, invertible 1x1 conv, affine coupling), then split (all but the last level)."""
    k = m.steps_per_level
    layers = [bj.Squeeze(), _glow_steps(m, k, level * k, "channel", "conv")]
    if level < m.num_levels - 1:
        layers.append(bj.FactorOut(_glow_level(m, level + 1)))
    return bj.Chain(layers + [bj.Squeeze(undo=True)])


def glow(m, event_shape) -> list[nn.Module]:
    """Glow's multi-scale flow of ``num_levels`` levels of ``steps_per_level`` steps; for
    vectors, ``num_levels * steps_per_level`` steps with MLP couplings and no squeeze."""
    if len(event_shape) == 1:
        return [_glow_steps(m, m.num_levels * m.steps_per_level, 0, "halves", "mlp")]
    return [_glow_level(m, 0)]


def build_flow(m, event_shape) -> bj.Chain:
    """The bijector u -> z of ``config.model.variant`` (preprocessing included), sized for
    ``event_shape`` where the config leaves a size to the input (:func:`sized`)."""
    builders = {"nice": nice, "realnvp": realnvp, "glow": glow}
    if m.variant not in builders:
        raise ValueError(f"config.model.variant={m.variant!r}: choose one of {FLOWS}")
    if m.prior not in bj.priors.PRIORS:
        raise ValueError(f"model.prior={m.prior!r}: choose one of {bj.priors.PRIORS}")
    m = sized(m, event_shape)
    return bj.Chain([_preprocess(m), *builders[m.variant](m, event_shape)])


def _levels(event_shape, min_side: int, squeeze_first: bool) -> int:
    """The most levels (at most 3) whose squeezes (one per level, or one between levels) leave
    H and W whole and at least ``min_side``; vectors: 1."""
    if len(event_shape) != 3:
        return 1
    h, w = event_shape[:2]
    levels = 1
    for n in (2, 3):
        f = 2 ** (n - 1 + squeeze_first)
        if h % f or w % f or min(h, w) // f < min_side:
            break
        levels = n
    return levels


# Conditioner channels when ``model.width`` is 0: (images up to 16x16 and vectors, larger
# images). The papers' widths (RealNVP 64 with 8 residual blocks, Glow 512) cost seconds per
# step on a CPU at 28x28; these keep a default 3000-step MNIST-size run within about an hour of
# one CPU core (docs/flows.md). Wider runs: set model.width.
CONV_WIDTHS = {"realnvp": (32, 16), "glow": (64, 32)}


def sized(m, event_shape):
    """``config.model`` with the size keys it leaves at 0 derived from ``event_shape``: NICE's
    width min(1000, 4 D), the levels (:func:`_levels`) and :data:`CONV_WIDTHS`."""
    m = m.copy_and_resolve_references()
    if m.variant == "nice" and not m.width:
        m.width = min(1000, 4 * _dims(event_shape))
    if m.variant == "realnvp" and not m.num_levels:
        m.num_levels = _levels(event_shape, 4, squeeze_first=False)
    if m.variant == "glow" and not m.num_levels:
        m.num_levels = _levels(event_shape, 2, squeeze_first=True)
    if m.variant in CONV_WIDTHS and not m.width:
        small, large = CONV_WIDTHS[m.variant]
        m.width = small if max(event_shape[:2]) <= 16 else large
    return m
