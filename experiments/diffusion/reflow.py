"""Rectified flow, rounds 1, 2, ... and one-step distillation (Liu et al. 2022) on a 2-D toy
(default) or digits (``:digits``). Round 1 is flow matching; each later round trains on the
(noise, sample) couplings of the round before, initialised from it:

jaxmodels train --config experiments/diffusion/reflow.py --workdir runs/rf1
jaxmodels train --config experiments/diffusion/reflow.py --workdir runs/rf2 \
  --config.reflow.teacher=runs/rf1
jaxmodels train --config experiments/diffusion/reflow.py --workdir runs/rf2_distill \
  --config.reflow.teacher=runs/rf2 --config.reflow.distill=True

Every evaluation logs the straightness and the Frechet distance of 1- and 2-step Euler samples.
"""

import os

from jaxmodels.config import config_args, load_config
from jaxmodels.models.diffusion.reflow import reflow_config


def get_config(arg: str | None = None):
    args = config_args(arg, ("smoke", "digits"))
    base = "digits.py" if "digits" in args else "toy2d.py"
    smoke = ":smoke" if "smoke" in args else ""
    c = load_config(os.path.join(os.path.dirname(__file__), base) + smoke)
    c.model.variant = "flow"  # rectified flow: x_t = (1 - t) x_0 + t n, v = n - x_0
    c.model.class_conditional = False  # couplings are unconditional here
    c.sample.sampler = "heun"
    c.reflow = reflow_config()
    c.evals = ("quality", "reflow")  # offered: quality, likelihood, reflow (straightness)
    c.train.ema_halflife_examples = 0.0  # rounds restore plain parameters
    c.train.steps = 1500  # per round
    c.train.eval_every = 1500  # one evaluation, at the end of the round
    c.sample.eval_num = 1000  # points per evaluation (FD, straightness)
    c.reflow.num_pairs = 8192  # couplings per round (the toy's training set is 8192 points)
    if "digits" in args:
        c.reflow.num_pairs = 4096
        c.sample.eval_num = 500
    if "smoke" in args:
        c.train.steps = 4
        c.train.eval_every = 4
        c.sample.eval_num = 50
        c.reflow.num_pairs = 64
        c.reflow.teacher_steps = 4
        c.reflow.straightness_steps = 4
    return c
