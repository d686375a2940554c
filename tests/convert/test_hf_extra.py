"""The ``hf`` extra: a safetensors directory imports without torch; without ``transformers`` the
error names ``pip install 'jaxmodels[hf]'``; a refused checkpoint names what does not fit."""

import os
import subprocess
import sys

import pytest
import torch
import transformers

from jaxmodels.convert import MissingHFError, read
from jaxmodels.hf import from_hf

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("llama")
    cfg = transformers.LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=24, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32,
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(cfg).save_pretrained(path, safe_serialization=True)
    return path


def test_a_safetensors_directory_imports_without_torch(llama_dir):
    code = (
        "import sys; sys.modules['torch'] = None\n"  # import torch now fails, as uninstalled
        "from jaxmodels.hf import from_hf\n"
        f"model, params = from_hf({str(llama_dir)!r})\n"
        "print(type(model).__name__, sorted(params))\n"
    )
    env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["DecoderLM", "['decoder',", "'embedding',", "'unembedding']"]


def test_without_transformers_the_error_names_the_extra(llama_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(MissingHFError, match=r"pip install 'jaxmodels\[hf\]'"):
        read(str(llama_dir), key="config.init.hf")


def test_a_checkpoint_missing_a_weight_is_refused_naming_it(llama_dir, tmp_path):
    from safetensors.numpy import load_file, save_file

    state = load_file(str(llama_dir / "model.safetensors"))
    del state["model.layers.0.mlp.up_proj.weight"]
    (tmp_path / "config.json").write_bytes((llama_dir / "config.json").read_bytes())
    save_file(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError, match="'layers.0.mlp.up_proj.weight' is missing"):
        from_hf(str(tmp_path))
