"""Normalizing-flow bijectors as linen modules: ``y, log_det = layer(x)`` and
``x, log_det = layer(y, inverse=True)`` (see :mod:`.base`)."""

from jaxmodels.layers.bijectors import priors
from jaxmodels.layers.bijectors.base import (
    MASKS,
    Chain,
    Repeat,
    partition_mask,
    sum_except_batch,
)
from jaxmodels.layers.bijectors.coupling import (
    AdditiveCoupling,
    AffineCoupling,
    ConvConditioner,
    DiagonalScaling,
    MLPConditioner,
)
from jaxmodels.layers.bijectors.elementwise import Logit, Shift
from jaxmodels.layers.bijectors.glow import ActNorm, InvConv1x1, StepOfFlow
from jaxmodels.layers.bijectors.multiscale import FactorOut, Squeeze, squeeze, unsqueeze

__all__ = [
    "MASKS",
    "ActNorm",
    "AdditiveCoupling",
    "AffineCoupling",
    "Chain",
    "ConvConditioner",
    "DiagonalScaling",
    "FactorOut",
    "InvConv1x1",
    "Logit",
    "MLPConditioner",
    "Repeat",
    "Shift",
    "Squeeze",
    "StepOfFlow",
    "partition_mask",
    "priors",
    "squeeze",
    "sum_except_batch",
    "unsqueeze",
]
