"""The smallest family: an MLP classifier on scikit-learn's 8x8 digits.

It exists as the template for new families (a folder with the module in ``model.py`` and
``build_task`` in ``task.py``, offering its evaluators by name to ``config.evals``; configs in
``experiments/mlp/``, tests in ``tests/mlp/``) and as the trainer's own test bed: its
parameters use the ``embed`` and ``mlp`` logical axes, so data, FSDP and tensor parallelism all
apply to it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmodels import evaluate
from jaxmodels.data import digits
from jaxmodels.evaluate.chunked import chunked_map
from jaxmodels.models.mlp.model import MLP
from jaxmodels.train.task import Task


def digits_arrays(split: str, holdout: float = 0.2) -> dict[str, np.ndarray]:
    """The shared digits split, pixels scaled to [0, 1] and flattened to 64 features."""
    images, labels = digits.digits(split, holdout)
    flat = images.reshape(len(images), -1).astype(np.float32) / digits.LEVELS
    return {"image": flat, "label": labels}


def calibration(model: MLP, arrays: dict[str, np.ndarray], chunk_size: int, mesh):
    """The ``calibration`` evaluator: ECE, accuracy and confidence of the softmax on a whole
    split (:mod:`jaxmodels.evaluate.calibration`), as ``calibration_<metric>``."""
    from jaxmodels.evaluate.calibration import calibration as metrics

    def probs(params, image_BxE):
        return jax.nn.softmax(model.apply({"params": params}, image_BxE, train=False))

    predict = chunked_map(probs, chunk_size, mesh=mesh)

    def run(params, rng):
        del rng  # deterministic
        out = metrics(predict(params, arrays["image"]), arrays["label"])
        return {f"calibration_{k}": v for k, v in out.items()}

    return run


def build_task(config, mesh) -> Task:
    """Builds the digits-classifier task from ``config.model`` and ``config.data``."""
    from jaxmodels.data import pipeline

    m = config.model
    model = MLP(m.width, m.depth, m.dropout_rate, jnp.dtype(config.train.compute_dtype))

    def init(rng):
        return model.init(rng, jnp.zeros((1, 64)), train=False)["params"]

    def metrics(params, batch, rng, train: bool):
        rngs = {"dropout": rng} if train else {}
        logits = model.apply({"params": params}, batch["image"], train=train, rngs=rngs)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
        return loss, {"loss": loss, "accuracy": (logits.argmax(-1) == batch["label"]).mean()}

    def loss_fn(params, batch, rng):
        loss, out = metrics(params, batch, rng, train=True)
        return loss, {"accuracy": out["accuracy"]}

    def data(split: str, train: bool):
        source = pipeline.ArraySource(digits_arrays(split, config.data.holdout))
        return pipeline.iterator_fn(source, config, train=train)

    held_out = digits_arrays("eval", config.data.holdout)
    bs = config.train.batch_size
    offered = {"calibration": lambda: calibration(model, held_out, bs, mesh)}
    return Task(
        units="images",  # 8x8 digits
        model=model,
        init=init,
        loss_fn=loss_fn,
        train_data=data("train", True),
        eval_data=data("eval", False),
        eval_fn=lambda params, batch, rng: metrics(params, batch, rng, train=False)[1],
        batch_axes={"image": ("batch", None), "label": ("batch",)},
        evaluate=evaluate.select(config.evals, offered),  # the evaluators named in config.evals
    )
