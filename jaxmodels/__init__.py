"""jaxmodels: model families on one shared JAX/Flax core.

Importing the package is cheap: it pulls in neither grain, tensorflow-datasets nor orbax.
"""

__version__ = "0.1.0"
