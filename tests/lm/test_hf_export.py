"""``jaxmodels export``: an lm run -> a directory ``transformers`` loads, with the run's logits.

A native smoke run (byte tokenizer) exports as Llama; the converters' inverse gives back every
HF weight exactly for each imported architecture; what has no HF counterpart is refused by name.
"""

import sys

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

import jaxmodels
from jaxmodels import main
from jaxmodels.config import load_config
from jaxmodels.convert.write import host_float32
from jaxmodels.hf import from_hf
from jaxmodels.layers.transformer import fuse_projections
from jaxmodels.models.lm import hf as lm_hf
from jaxmodels.models.lm.model import make_model
from jaxmodels.train import loop

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from test_hf_archs import ARCHS, hf_model  # noqa: E402


def _cli(monkeypatch, *args):
    monkeypatch.setattr(sys, "argv", ["jaxmodels", *args])
    with pytest.raises(SystemExit) as e:
        main.run()
    return e.value.code


def hf_logits(out_dir, ids):
    hf = transformers.AutoModelForCausalLM.from_pretrained(out_dir).eval()
    with torch.no_grad():
        return hf(torch.as_tensor(np.asarray(ids))).logits.numpy()


def test_native_run_exports_as_llama(tmp_path, monkeypatch, capsys):
    config = load_config("experiments/lm/rope_lm.py:smoke")
    config.model.num_kv_heads = 1  # GQA
    config.train.steps, config.train.eval_every, config.train.sample_at_end = 2, 0, False
    run, out = tmp_path / "run", tmp_path / "hf"
    loop.train(config, str(run))
    assert _cli(monkeypatch, "export", f"--workdir={run}", f"--out={out}") in (0, None)
    assert "-> " in capsys.readouterr().out
    loaded = jaxmodels.load(str(run))  # the run's own config.json: no flag repeated
    assert loaded.step == 2 and loaded.tokenizer.is_bytes
    ids = loaded.tokenizer.encode("def f(x): return x")[None]
    want = loaded.module.apply({"params": loaded.params}, jnp.asarray(ids))
    got = hf_logits(out, ids)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-4)
    # a second export never writes into a folder that holds files
    assert _cli(monkeypatch, "export", f"--workdir={run}", f"--out={out}") == 1
    assert "exists and is not an empty directory" in capsys.readouterr().err


@pytest.mark.parametrize(
    "kind,fused",
    [(k, False) for k in [*sorted(ARCHS), "Llama"]] + [("Llama", True), ("Qwen2", True)],
)
def test_export_inverts_the_import(kind, fused):
    """Also from fused projections (``fused_projections=True``; Qwen2: q/k/v biases)."""
    hf = hf_model(kind)
    model, params = from_hf(hf)
    params = fuse_projections(params) if fused else params
    lay = lm_hf.layout(hf.config, kind)
    state = lm_hf.decoder_state(host_float32(params), lay, model.num_layers)
    want = {k: v.numpy() for k, v in hf.state_dict().items()}
    if hf.config.tie_word_embeddings:
        want.pop("lm_head.weight")
    assert sorted(state) == sorted(want)
    for k, v in want.items():
        np.testing.assert_allclose(state[k], v, atol=1e-6, err_msg=k)


def test_bloom_export_inverts_the_import():
    torch.manual_seed(0)
    cfg = transformers.BloomConfig(vocab_size=53, hidden_size=24, n_layer=2, n_head=6)
    hf = transformers.BloomForCausalLM(cfg).eval()
    _, params = from_hf(hf)
    state = lm_hf.bloom_state(host_float32(params), cfg)
    want = {k: v.numpy() for k, v in hf.state_dict().items() if k != "lm_head.weight"}
    assert sorted(state) == sorted(want)
    for k, v in want.items():
        np.testing.assert_array_equal(state[k], v, err_msg=k)


def test_a_run_without_hf_counterpart_is_refused_naming_the_misfit():
    config = load_config("experiments/lm/rope_lm.py:smoke")
    config.model.position.name = "alibi"
    config.model.qkv_bias, config.model.qk_norm = True, True
    with pytest.raises(ValueError, match="alibi.*Qwen2 and Qwen3 options together"):
        lm_hf.native_kind(make_model(config, 64))
    config = load_config("experiments/lm/rope_lm.py:smoke")
    config.model.sliding_window = 8
    assert lm_hf.native_kind(make_model(config, 64)) == "Mistral"
