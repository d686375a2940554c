"""RealNVP (Dinh et al. 2016): affine couplings, checkerboard/channel masks, multi-scale.

jaxmodels train --config experiments/flows/realnvp.py --workdir runs/realnvp
jaxmodels train --config experiments/flows/realnvp.py:toy2d --workdir runs/realnvp_toy
jaxmodels train --config experiments/flows/realnvp.py:smoke --workdir /tmp/realnvp-smoke
"""

from jaxmodels.config import config_args
from jaxmodels.models.flows.defaults import ARGS, flows_config


def get_config(arg: str | None = None):
    args = config_args(arg, ARGS)
    c = flows_config(args)
    c.model.variant = "realnvp"
    c.model.prior = "normal"  # RealNVP §3.1: isotropic unit Gaussian
    c.model.preprocess = "logit"  # RealNVP §4.1: logit(a + (1 - 2a) u), a = 0.05
    c.model.num_levels = 0  # scales; 0: the most (up to 3) whose squeezes leave sides >= 4
    # (8x8 digits: 2, 8x8x1 -> 4x4x4 -> factor out; 28x28 and 32x32: 3)
    c.model.scale_couplings = 3  # RealNVP §3.6: 3 checkerboard + 3 channel couplings per scale
    c.model.final_couplings = 4  # RealNVP §3.6: 4 checkerboard couplings at the last scale
    c.model.width = 0  # conditioner channels; 0: 32 up to 16x16, 16 above (model.CONV_WIDTHS)
    # (RealNVP: 64 feature maps on CIFAR-10)
    c.model.depth = 0  # residual blocks per conditioner (RealNVP: 8 on CIFAR-10); 0: 3x3, 1x1, 3x3
    c.model.num_couplings = 6  # toy2d only: affine couplings on alternating halves
    if "toy2d" in args:
        c.model.preprocess = "center"
        c.model.width = 64
    if "smoke" in args:
        c.model.width = 8
        c.model.depth = 1
    return c
