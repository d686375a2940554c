"""The smallest family: an MLP classifier on scikit-learn's 8x8 digits.

It exists as the template for new families (module, loss, data, evaluator, config; about a
hundred lines) and as the trainer's own test bed: its parameters use the ``embed`` and ``mlp``
logical axes, so data, FSDP and tensor parallelism all apply to it.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmodels.train.task import Task

NUM_CLASSES = 10


class MLP(nn.Module):
    """``num_layers`` hidden ReLU layers with dropout, then a linear classifier."""

    hidden: int = 256
    num_layers: int = 2
    dropout: float = 0.1
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x_BxD: jax.Array, *, train: bool) -> jax.Array:
        h = nn.Dense(
            self.hidden,
            dtype=self.dtype,
            kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), (None, "mlp")),
        )(x_BxD.astype(self.dtype))
        for _ in range(self.num_layers - 1):
            h = nn.Dropout(self.dropout, deterministic=not train)(nn.relu(h))
            h = nn.with_logical_constraint(h, ("batch", "mlp"))
            h = nn.Dense(
                self.hidden,
                dtype=self.dtype,
                kernel_init=nn.with_logical_partitioning(
                    nn.initializers.lecun_normal(), ("embed", "mlp")
                ),
            )(h)
        h = nn.Dropout(self.dropout, deterministic=not train)(nn.relu(h))
        logits = nn.Dense(
            NUM_CLASSES,
            dtype=self.dtype,
            kernel_init=nn.with_logical_partitioning(
                nn.initializers.lecun_normal(), ("mlp", "classes")
            ),
        )(h)
        return logits.astype(jnp.float32)


def digits_arrays(split: str, holdout: float = 0.2, seed: int = 0) -> dict[str, np.ndarray]:
    """scikit-learn's digits (ships with the package), pixels scaled to [0, 1], split by rows."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(x))
    n_eval = int(len(x) * holdout)
    rows = order[n_eval:] if split == "train" else order[:n_eval]
    return {"image": (x[rows] / 16.0).astype(np.float32), "label": y[rows].astype(np.int32)}


def build_task(config, mesh) -> Task:
    """Builds the digits-classifier task from ``config.model`` and ``config.data``."""
    del mesh  # this family needs no explicit collectives
    from jaxmodels.data import pipeline

    m = config.model
    model = MLP(m.hidden, m.num_layers, m.dropout, jnp.dtype(config.train.compute_dtype))

    def init(rng):
        return model.init(rng, jnp.zeros((1, 64)), train=False)["params"]

    def loss_fn(params, batch, rng):
        logits = model.apply({"params": params}, batch["image"], train=True, rngs={"dropout": rng})
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
        return loss, {"accuracy": (logits.argmax(-1) == batch["label"]).mean()}

    def eval_fn(params, batch, rng):
        logits = model.apply({"params": params}, batch["image"], train=False)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
        return {"loss": loss, "accuracy": (logits.argmax(-1) == batch["label"]).mean()}

    def data(split, shuffle):
        source = pipeline.ArraySource(digits_arrays(split, config.data.holdout))

        def make(index, count):
            return pipeline.make_iterator(
                source,
                global_batch_size=config.train.batch_size,
                seed=config.seed,
                process_index=index,
                process_count=count,
                shuffle=shuffle,
                repeat=shuffle,
            )

        return make

    return Task(
        init=init,
        loss_fn=loss_fn,
        train_data=data("train", True),
        eval_data=data("eval", False),
        eval_fn=eval_fn,
        batch_axes={"image": ("batch", None), "label": ("batch",)},
    )
