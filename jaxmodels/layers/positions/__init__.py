"""Position encodings, all in this package and selected by name (``PositionOptions.name``).

- ``options``: :class:`PositionOptions`, the one frozen value a model passes down whole
  (``BlockConfig.position`` -> ``MultiHeadAttention.position`` -> :func:`rotary.rotate_qk`).
- ``absolute``: ``sinusoidal`` and ``learned``, added to the embeddings
  (:class:`AbsolutePositions`).
- ``relative``: ``shaw`` (inside attention), ``t5`` and ``alibi`` (logit bias,
  :class:`RelativePositionBias`).
- ``rotary``: ``rope`` and ``xpos`` on q and k (:func:`rotate_qk`).
- ``rope_scaling``: RoPE frequencies and their scalings (``linear``, ``ntk``, ``dynamic``,
  ``yarn``, ``llama3``).

A model asks three questions of its options: what to add to the embeddings, what bias to add to
the attention logits, and (inside attention) whether and how to rotate q and k.
"""

from jaxmodels.layers.positions.absolute import AbsolutePositions
from jaxmodels.layers.positions.options import NOPE, POSITIONS, PositionOptions
from jaxmodels.layers.positions.relative import RelativePositionBias
from jaxmodels.layers.positions.rotary import rotate_qk

__all__ = [
    "NOPE",
    "POSITIONS",
    "AbsolutePositions",
    "PositionOptions",
    "RelativePositionBias",
    "rotate_qk",
]
