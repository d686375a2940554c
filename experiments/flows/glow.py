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
    c.model.flow = "glow"
    c.model.prior = "normal"  # Glow: Gaussian (the learnt split priors are not used here)
    c.model.preprocess = "center"  # Glow's code: x / levels - 0.5
    c.model.num_levels = 0  # L (Glow: 3 on CIFAR-10); 8x8 digits -> 4x4x4 -> 2x2x8
    c.model.steps_per_level = 8  # K (Glow: 32 on CIFAR-10)
    c.model.hidden = 0  # conditioner channels (Glow: 512)
    c.model.depth = 1  # residual blocks per conditioner (Glow's NN(): one hidden 1x1 layer)
    if "toy2d" in args:
        c.model.num_levels = 1
        c.model.steps_per_level = 6
    if "smoke" in args:
        c.model.hidden = 8
        c.model.steps_per_level = 2
    return c
