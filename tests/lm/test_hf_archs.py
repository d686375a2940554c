"""Llama's kin imported into the lm family's DecoderLM: logits equal HF's on padded batches.

Random-config ``transformers`` models on CPU (no downloads), fp32. Every RMSNorm weight is
drawn at random too (HF initialises them to ones, Gemma's to zeros), so a norm read without
Gemma's ``1 + w`` or a q/k norm left out shows.
"""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from jaxmodels.hf import from_hf
from jaxmodels.layers.transformer import fuse_projections
from jaxmodels.models.lm.model import DecoderLM

ATOL = 1e-4
BASE = dict(
    vocab_size=67, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, intermediate_size=40, max_position_embeddings=32,
)  # fmt: skip
ARCHS = {
    "Mistral": dict(sliding_window=4),  # shorter than the rows: the window masks
    "Qwen2": dict(tie_word_embeddings=False),  # q/k/v biases
    "Qwen3": dict(head_dim=16),  # q/k norms, head width 16 != 32 / 4
    "Gemma": dict(head_dim=16, num_key_value_heads=1),  # GeGLU, 1 + w, sqrt(E), tied
}


def hf_model(kind: str, cls: str = "ForCausalLM", **kw):
    """A random ``<kind><cls>`` with every norm weight drawn at random."""
    torch.manual_seed(0)
    config = getattr(transformers, f"{kind}Config")(**{**BASE, **ARCHS.get(kind, {}), **kw})
    hf = getattr(transformers, f"{kind}{cls}")(config).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "norm" in name:
                p.copy_(torch.empty_like(p).uniform_(-0.5, 0.5) + (0.0 if kind == "Gemma" else 1.0))
    return hf


def padded_batch(L: int = 11, left: bool = False):
    """Two rows of ids; the second padded by 3 (on the right, or the left)."""
    ids = torch.randint(3, BASE["vocab_size"], (2, L), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(2, L, dtype=torch.long)
    mask[1, L - 3 :] = 0
    return ids, torch.flip(mask, dims=[1]) if left else mask


def max_logit_diff(hf, model, params, ids, mask) -> float:
    """max |HF - ours| over the non-padded positions (padding is unspecified in both)."""
    with torch.no_grad():
        out = hf(input_ids=ids, attention_mask=mask)
    want = out.logits if hasattr(out, "logits") else out.last_hidden_state
    got = model.apply({"params": params}, jnp.asarray(ids.numpy()), None, jnp.asarray(mask.numpy()))
    assert got.shape == want.shape
    keep = mask.numpy().astype(bool)
    return float(np.abs(np.asarray(got)[keep] - want.numpy()[keep]).max())


@pytest.mark.parametrize("kind", sorted(ARCHS))
@pytest.mark.parametrize("left", [False, True])
def test_causal_lm_parity(kind, left):
    hf = hf_model(kind)
    model, params = from_hf(hf)
    assert isinstance(model, DecoderLM) and model.logits
    assert max_logit_diff(hf, model, params, *padded_batch(left=left)) <= ATOL


@pytest.mark.parametrize("kind", ["Llama", *sorted(ARCHS)])
def test_fused_projections_parity(kind):
    """``fused_projections=True`` with the imported weights fused: HF's logits still."""
    hf = hf_model(kind)
    model, params = from_hf(hf)
    fused = model.clone(block=dataclasses.replace(model.block, fused_projections=True))
    assert max_logit_diff(hf, fused, fuse_projections(params), *padded_batch()) <= ATOL


def test_base_model_returns_the_hidden_state():
    hf = hf_model("Qwen3", "Model")
    model, params = from_hf(hf)
    assert not model.logits
    assert max_logit_diff(hf, model, params, *padded_batch()) <= ATOL


def test_what_does_not_fit_is_refused_by_name():
    with pytest.raises(ValueError, match="Qwen2 with sliding-window layers"):
        from_hf(hf_model("Qwen2", use_sliding_window=True, max_window_layers=1))
    with pytest.raises(ValueError, match="Llama hidden_act='gelu'"):
        from_hf(hf_model("Llama", hidden_act="gelu"))
    small = dict(vocab_size=11, hidden_size=8, num_hidden_layers=1, num_attention_heads=2)
    opt = transformers.OPTForCausalLM(transformers.OPTConfig(ffn_dim=8, **small))
    with pytest.raises(ValueError, match="'OPTForCausalLM' is not supported; supported: .*Gemma"):
        from_hf(opt)
