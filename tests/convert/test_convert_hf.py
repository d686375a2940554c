"""HF import parity: random-init transformers models on CPU vs ``from_hf`` (fp32, <= 1e-4)."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxmodels.hf import from_hf
from jaxmodels.models.lm.model import DecoderLM
from jaxmodels.models.roformer.model import RoFormer

ATOL = 1e-4


def _inputs(vocab, B=2, L=7, pad=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (B, L), generator=g)
    mask = torch.ones(B, L, dtype=torch.long)
    mask[1, L - pad :] = 0  # right padding in the second row
    return ids, mask


def _compare(hf, model, params, ids, mask, **kw):
    with torch.no_grad():
        out = hf(input_ids=ids, attention_mask=mask, **kw)
    ref = out.logits if hasattr(out, "logits") else out.last_hidden_state
    ids, mask = jnp.asarray(ids.numpy()), jnp.asarray(mask.numpy())
    if isinstance(model, DecoderLM):  # the lm family's module: padding is segment 0
        got = model.apply({"params": params}, ids, None, mask)
    else:
        got = model.apply({"params": params}, ids, mask)
    mask = np.asarray(mask)
    keep = mask.astype(bool)  # padded positions are unspecified in both
    diff = np.abs(np.asarray(got)[keep] - ref.numpy()[keep]).max()
    assert got.shape == ref.shape
    assert diff <= ATOL, diff
    return diff


def _roformer_config(**kw):
    from transformers import RoFormerConfig

    base = dict(
        vocab_size=61,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=64,
    )
    return RoFormerConfig(**{**base, **kw})


@pytest.mark.parametrize(
    "cls_name,embedding_size", [("RoFormerModel", 16), ("RoFormerForMaskedLM", None)]
)
def test_roformer_parity(cls_name, embedding_size):
    import transformers

    torch.manual_seed(0)
    hf = getattr(transformers, cls_name)(_roformer_config(embedding_size=embedding_size)).eval()
    model, params = from_hf(hf)
    assert isinstance(model, RoFormer)  # the roformer family's own module
    ids, mask = _inputs(61)
    _compare(hf, model, params, ids, mask)


def _llama(cls_name, **kw):
    import transformers

    base = dict(
        vocab_size=67,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=40,
        max_position_embeddings=16,
    )
    torch.manual_seed(0)
    return getattr(transformers, cls_name)(transformers.LlamaConfig(**{**base, **kw})).eval()


LLAMA3 = {
    "rope_type": "llama3",
    "rope_theta": 500.0,
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8,
}
YARN = {
    "rope_type": "yarn",
    "rope_theta": 1000.0,
    "factor": 4.0,
    "original_max_position_embeddings": 8,
}


@pytest.mark.parametrize(
    "cls_name,kw,L,left_pad",
    [
        ("LlamaModel", {"rope_parameters": LLAMA3}, 13, False),  # GQA 4:2, llama3 scaling
        ("LlamaForCausalLM", {"rope_parameters": LLAMA3, "num_key_value_heads": 1}, 11, True),
        ("LlamaForCausalLM", {"rope_parameters": YARN, "tie_word_embeddings": True}, 9, False),
    ],
)
def test_llama_parity(cls_name, kw, L, left_pad):
    hf = _llama(cls_name, **kw)
    model, params = from_hf(hf)
    assert isinstance(model, DecoderLM)  # the lm family's own module and param tree
    untied = cls_name == "LlamaForCausalLM" and not kw.get("tie_word_embeddings")
    assert ("unembedding" in params) == untied and "embedding" in params
    ids, mask = _inputs(67, L=L)
    if left_pad:
        mask = torch.flip(mask, dims=[1])
    _compare(hf, model, params, ids, mask)


def test_local_safetensors_dir(tmp_path):
    hf = _llama("LlamaForCausalLM", rope_parameters=LLAMA3)
    hf.save_pretrained(tmp_path, safe_serialization=True)
    model, params = from_hf(str(tmp_path))
    ids, mask = _inputs(67, L=5)
    _compare(hf, model, params, ids, mask)


def test_clear_errors(tmp_path):
    from transformers import GPT2Config, GPT2Model

    with pytest.raises(ValueError, match="GPT2Model.*not supported"):
        from_hf(GPT2Model(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=10)))
    with pytest.raises(FileNotFoundError, match="config.json"):
        from_hf(str(tmp_path))
    with pytest.raises(ValueError, match="rope_type 'longrope'"):
        from_hf(
            _llama(
                "LlamaModel",
                rope_parameters={
                    "rope_type": "longrope",
                    "rope_theta": 1e4,
                    "short_factor": [1.0] * 4,
                    "long_factor": [1.0] * 4,
                    "original_max_position_embeddings": 8,
                },
            )
        )


@pytest.mark.parametrize("cls_name,n_head", [("BloomForCausalLM", 6)])  # 6: non-power-of-2
def test_bloom_alibi_parity(cls_name, n_head):
    import transformers

    torch.manual_seed(0)
    cfg = transformers.BloomConfig(vocab_size=53, hidden_size=24, n_layer=2, n_head=n_head)
    hf = getattr(transformers, cls_name)(cfg).eval()
    model, params = from_hf(hf)
    ids, mask = _inputs(53, L=9)
    _compare(hf, model, params, ids, mask)


@pytest.mark.parametrize("ff", ["gated-gelu"])
def test_t5_encoder_relative_bias_parity(ff):
    import transformers

    torch.manual_seed(0)
    buckets = dict(relative_attention_num_buckets=8, relative_attention_max_distance=12)
    cfg = transformers.T5Config(vocab_size=59, d_model=24, d_kv=8, d_ff=40, num_layers=2,
                                num_heads=3, feed_forward_proj=ff, **buckets)  # fmt: skip
    hf = transformers.T5EncoderModel(cfg).eval()
    model, params = from_hf(hf)
    ids, mask = _inputs(59, L=19)  # longer than max_distance: the log buckets are used
    _compare(hf, model, params, ids, mask)
