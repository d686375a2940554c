"""Glow (Kingma & Dhariwal 2018): actnorm, invertible 1x1 convolution, affine coupling.

jaxmodels train --config experiments/flows/glow.py --workdir runs/glow
jaxmodels train --config experiments/flows/glow.py:toy2d --workdir runs/glow_toy
jaxmodels train --config experiments/flows/glow.py:smoke --workdir /tmp/glow-smoke
"""

from jaxmodels.config import config_args
from jaxmodels.models.flows.defaults import ARGS, flows_config


def get_config(arg: str | None = None):
    args = config_args(arg, ARGS)
    c = flows_config(args)
    c.model.variant = "glow"
    c.model.prior = "normal"  # Glow: Gaussian (the learnt split priors are not used here)
    c.model.preprocess = "logit"  # RealNVP's logit; Glow's code centres (x / levels - 0.5:
    # model.preprocess=center), which leaves every expansion of a saturated pixel's interval 1/L
    # wide to actnorm; on MNIST 1.85 bits/dim after 3000 steps, 2.21 centred (docs/flows.md)
    c.model.num_levels = 0  # L; 0: the most (up to 3) whose squeezes leave sides >= 2 (8x8
    # digits: 2, 8x8 -> 4x4x4 -> 2x2x8; 28x28: 2; 32x32: 3, Glow's value on CIFAR-10)
    c.model.steps_per_level = 8  # K, one scan per level (Glow: 32 on CIFAR-10)
    c.model.width = 0  # conditioner channels; 0: 64 up to 16x16, 32 above (model.CONV_WIDTHS)
    # (Glow: 512)
    c.model.depth = 0  # residual blocks per conditioner; 0 is Glow's NN(): 3x3, 1x1, 3x3
    if "toy2d" in args:
        c.model.num_levels = 1
        c.model.steps_per_level = 6
    if "smoke" in args:
        c.model.width = 8
        c.model.steps_per_level = 2
    return c
