"""Attention: the module (projections and modes) over kernels that compute the softmax.

- :mod:`.module`: :class:`MultiHeadAttention` (self, cross, cached decoding, GQA, RoPE/xPos,
  Shaw, linear) and its :class:`Projection`.
- :mod:`.inputs`: :class:`AttentionInputs`, the one frozen value a model builds per forward
  pass (positions, segment ids, key padding as a mask or lengths, logit bias, the encoded
  sequence) and hands to every layer.
- :mod:`.kernels`: masks, the choice of kernel (``attention_impl``) and why one refuses,
  ``dot_product_attention``, :func:`record_kernels`; :mod:`.splash` (Pallas TPU, per shard),
  :mod:`.blockwise` (causal, CPU) and :mod:`.linear` (Katharopoulos et al. 2020) beside it.
"""

from jaxmodels.layers.attention.inputs import DEFAULT_INPUTS, AttentionInputs
from jaxmodels.layers.attention.kernels import (
    IMPLS,
    choose_kernel,
    dot_product_attention,
    lengths_mask,
    make_mask,
    record_kernels,
    right_padding_lengths,
)
from jaxmodels.layers.attention.module import ATTENTIONS, MultiHeadAttention, Projection

__all__ = [
    "ATTENTIONS",
    "DEFAULT_INPUTS",
    "IMPLS",
    "AttentionInputs",
    "MultiHeadAttention",
    "Projection",
    "choose_kernel",
    "dot_product_attention",
    "lengths_mask",
    "make_mask",
    "record_kernels",
    "right_padding_lengths",
]
