"""Keys every flows config (experiments/flows/*.py) shares: data, sampling, trainer, evaluators;
the nice/realnvp/glow files add the model. Every key is commented here (the shared image-data
keys in :func:`jaxmodels.data.image_data.data_config`)."""

from jaxmodels.config import base_config
from jaxmodels.data.image_data import data_config

ARGS = ("smoke", "toy2d")


def flows_config(args):
    """The shared part of the flows configs: digits by default, ``toy2d`` for 2-D points."""
    c = base_config()
    c.family = "flows"

    c.model.prior = "normal"  # normal | logistic: the factorised prior p_Z
    c.model.preprocess = "logit"  # center (u - 0.5) | logit (RealNVP's logit(a + (1 - 2a) u))
    c.model.logit_alpha = 0.05  # a in the logit preprocessing (RealNVP §4.1)
    c.model.init_batch = 256  # training images that initialise actnorm (Glow §3.1)
    c.model.unroll = 0  # steps of flow per iteration of their scan; 0: all (no loop). XLA's
    # CPU backend runs convolutions in a loop body several times slower: a 28x28 Glow step takes
    # 0.18 CPU-s unrolled, 1.24 at 1, which compiles one step per level (docs/flows.md)

    # name, path, image_size, channels, holdout, split_seed, toy, num_points: the keys every
    # image family shares (jaxmodels.data.image_data.data_config)
    c.data = data_config()
    c.data.num_points = 20000  # toy2d: points per split
    c.data.eval_chunk = 512  # held-out examples per jitted log-likelihood call

    c.sample.num = 100  # samples per grid
    c.sample.temperatures = (1.0, 0.8, 0.6)  # one PNG grid samples_T<T>.png per temperature

    c.train.steps = 3000
    c.train.batch_size = 64
    c.train.optimizer = "adam"
    c.train.learning_rate = 1e-3
    c.train.warmup_steps = 200
    c.train.weight_decay = 0.0
    c.train.grad_clip = 50.0
    c.train.log_every = 100
    c.train.eval_every = 1000
    c.train.checkpoint_every = 1000

    c.evals = ("bits_per_dim",)  # run on the eval schedule; offered: bits_per_dim

    if "toy2d" in args:
        c.data.name = "toy2d"
        c.model.preprocess = "center"  # the points are not in [0, 1); only a shift
        c.model.init_batch = 1024
        c.sample.num = 2000
        c.sample.temperatures = (1.0,)
        c.train.batch_size = 256
    if "smoke" in args:
        c.model.init_batch = 32
        c.data.num_points = 512
        c.sample.num = 16
        c.train.steps = 6
        c.train.batch_size = 16
        c.train.warmup_steps = 2
        c.train.log_every = 2
        c.train.eval_every = 3
        c.train.checkpoint_every = 3
    return c
