"""jaxmodels: model families on one shared JAX/Flax core.

Importing the package is cheap: it pulls in neither grain, tensorflow-datasets nor orbax.
``jaxmodels.load(workdir)`` (a trained run's module, parameters and tokenizer, read only) is
imported on first use: :func:`jaxmodels.train.loop.load`.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "load":
        from jaxmodels.train.loop import load

        return load
    raise AttributeError(f"module 'jaxmodels' has no attribute {name!r}")
