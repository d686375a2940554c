"""MLP classifier on scikit-learn's digits: the template family and the trainer's test bed.

jaxmodels train --config experiments/mlp/digits.py --workdir runs/digits
jaxmodels train --config experiments/mlp/digits.py:smoke --workdir /tmp/digits-smoke
jaxmodels eval --config experiments/mlp/digits.py --workdir runs/digits --config.evals=calibration
"""

from jaxmodels.config import base_config, config_args


def get_config(arg: str | None = None):
    args = config_args(arg, ("smoke",))
    c = base_config()
    c.family = "mlp"

    c.model.width = 256  # units per hidden layer (logical axis "mlp")
    c.model.depth = 2  # hidden layers
    c.model.dropout_rate = 0.1  # dropout probability in training

    c.data.holdout = 0.2  # fraction of the 1797 digits held out for evaluation

    c.evals = ()  # offered: calibration (ECE, accuracy, confidence on the held-out digits)

    c.train.steps = 600
    c.train.batch_size = 64
    c.train.learning_rate = 1e-3
    c.train.warmup_steps = 50
    c.train.weight_decay = 1e-4
    c.train.log_every = 50
    c.train.eval_every = 200
    c.train.eval_batches = 0  # the whole held-out set
    c.train.checkpoint_every = 200

    if "smoke" in args:
        c.model.width = 32
        c.train.steps = 8
        c.train.batch_size = 16
        c.train.warmup_steps = 2
        c.train.log_every = 2
        c.train.eval_every = 4
        c.train.eval_batches = 2
        c.train.checkpoint_every = 4
    return c
