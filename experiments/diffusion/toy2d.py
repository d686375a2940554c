"""EDM diffusion on a 2-D toy mixture (8 Gaussians on a ring) with an MLP denoiser.

jaxmodels train --config experiments/diffusion/toy2d.py --workdir runs/diffusion-toy2d
jaxmodels sample --config experiments/diffusion/toy2d.py --workdir runs/diffusion-toy2d
jaxmodels train --config experiments/diffusion/toy2d.py:smoke --workdir /tmp/toy2d-smoke

The toy density is analytic, so `evaluate` reports the data log-density of the samples.
"""

import os

from jaxmodels.config import config_args, load_config


def get_config(arg: str | None = None):
    args = config_args(arg, ("smoke",))
    # Start from the digits config (same sampler/trainer keys).
    c = load_config(os.path.join(os.path.dirname(__file__), "digits.py"))
    m, d, s, t = c.model, c.data, c.sample, c.train
    m.arch = "mlp"  # residual MLP on points
    m.width = 128  # hidden units
    m.depth = 3  # residual blocks
    m.class_conditional = False  # unconditional
    m.sigma_data = 1.4  # the ring's std (radius 2)

    d.name = "toy2d"
    d.toy = "ring"  # ring (8 Gaussians, radius 2) | grid (3x3 Gaussians)
    d.num_points = 8192  # training points (a fresh draw of the same size is held out)

    s.num = 2000  # points in the scatter plot
    s.eval_num = 2000  # points per quality evaluation
    c.evals = ("quality",)  # offered: quality, likelihood, reflow

    t.steps = 3000
    t.batch_size = 256
    t.ema_halflife_examples = 100_000
    t.log_every = 100
    t.eval_every = 1000
    t.eval_batches = 4
    t.checkpoint_every = 1000

    if "smoke" in args:
        m.width = 16
        d.num_points = 256
        s.steps = 4
        s.num = 50
        s.eval_num = 50
        t.steps = 4
        t.batch_size = 32
        t.warmup_steps = 2
        t.ema_halflife_examples = 500
        t.log_every = 2
        t.eval_every = 4  # one evaluation, at the end
        t.eval_batches = 2
        t.checkpoint_every = 4
    return c
