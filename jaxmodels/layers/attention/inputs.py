"""One frozen value for what the attention layers of one forward pass read besides the tokens."""

from __future__ import annotations

import flax.struct
import jax


@flax.struct.dataclass
class AttentionInputs:
    """Positions, packing, padding, logit bias and the encoded sequence of one forward pass.

    A model builds it once from its batch and passes it whole, stack -> block -> attention;
    every layer reads the same value (``nn.scan`` broadcasts it, remat traces it like any
    argument). Self-attention reads the first five fields, cross-attention the last two. Every
    field is optional; ``AttentionInputs()`` is plain unmasked attention over ``0..L-1``.
    """

    # token positions for RoPE/xPos/Shaw; None: 0..L-1, continuing the KV cache when decoding
    positions_BxL: jax.Array | None = None
    # packed rows: a token attends only to tokens of its own segment (document)
    segment_ids_BxL: jax.Array | None = None
    # key padding as a mask (True/1 = a token, any pattern)
    kv_mask_BxL: jax.Array | None = None
    # key padding as lengths (keys j < kv_lengths_B[b] kept: right padding), what cuDNN takes
    kv_lengths_B: jax.Array | None = None
    # additive logit bias [B|1, N, L, L] (T5 buckets, ALiBi), the same in every layer
    bias_BxNxLxL: jax.Array | None = None
    # what cross-attention attends to; None: the keys/values its decode cache holds
    encoded_BxSxE: jax.Array | None = None
    # the encoded sequence's padding (True = a token)
    encoded_mask_BxS: jax.Array | None = None


DEFAULT_INPUTS = AttentionInputs()  # unmasked, unpacked, positions 0..L-1
