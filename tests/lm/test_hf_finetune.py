"""An imported HF Llama is the lm family's DecoderLM: same logits, fine-tunes, samples, exports.

A tiny random ``LlamaForCausalLM`` and a byte-level BPE ``tokenizer.json`` (trained here with the
``tokenizers`` library) are saved to a directory; ``--config.init.hf`` points the LM family at it.
Once trained, the run samples and exports with its own config.json after that directory is gone
(it keeps ``DIR/init_hf``), and ``transformers`` loads the export with the run's logits.
"""

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmodels
from jaxmodels.config import load_config, saved_config, validate
from jaxmodels.data.tokenizers import HFTokenizer
from jaxmodels.hf import from_hf
from jaxmodels.layers.transformer import fuse_projections
from jaxmodels.models.lm.model import DecoderLM
from jaxmodels.models.lm.task import build_task
from jaxmodels.train import loop

TEXT = "The quick brown fox jumps over the lazy dog. def f(x): return x + 1\n" * 40


def _tokenizer(path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([TEXT], trainer)
    tok.save(str(path))
    return tok.get_vocab_size()


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    path = tmp_path_factory.mktemp("llama")
    vocab = _tokenizer(path / "tokenizer.json")
    cfg = transformers.LlamaConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        tie_word_embeddings=False,
    )  # fmt: skip
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(cfg).eval()
    hf.save_pretrained(path, safe_serialization=True)
    return path, hf


def test_import_equals_hf_then_finetunes_samples_and_exports(llama_dir, tmp_path):
    import torch
    import transformers

    path, hf = llama_dir
    tok = HFTokenizer(str(path / "tokenizer.json"))
    assert (tok.pad_id, tok.bos_id, tok.eos_id) == (0, 1, 2)
    assert tok.decode(tok.encode("lazy dog.")) == "lazy dog."
    model, params = from_hf(str(path))
    assert isinstance(model, DecoderLM) and params["unembedding"].shape == (32, tok.vocab_size)
    ids = np.concatenate([[tok.bos_id], tok.encode("The quick brown fox")])[None]
    with torch.no_grad():
        want = hf(torch.as_tensor(ids)).logits.numpy()
    got = model.apply({"params": params}, jnp.asarray(ids))
    np.testing.assert_allclose(got, want, atol=1e-4)

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    moved = tmp_path / "llama"  # a copy that goes away after training
    shutil.copytree(path, moved)
    config = load_config("experiments/lm/rope_lm.py:smoke")
    config.init.hf, config.data.path = str(moved), str(corpus)
    config.model.attention_impl = "xla"
    config.train.steps, config.train.eval_every, config.train.sample_at_end = 3, 3, False
    config.sample.prompts = ("The quick",)  # one prompt: one decode compilation
    validate(config)
    assert config.model.fused_projections  # the default: the import's q/k/v, gate/up fused
    start = build_task(config).start_params()  # what training starts from
    jax.tree.map(np.testing.assert_array_equal, start, fuse_projections(params))
    workdir = tmp_path / "run"
    last = loop.train(config, str(workdir))
    assert np.isfinite(last["loss"]) and np.isfinite(last["eval_loss"])
    shutil.rmtree(moved)
    saved = saved_config(str(workdir))  # what eval/sample/export use without --config
    text = loop.sample(saved, str(workdir))
    assert text.startswith("--- prompt 'The quick'\nThe quick")
    assert (workdir / "samples.txt").read_text(encoding="utf-8").strip() == text

    out = tmp_path / "export"
    loop.export(saved, str(workdir), str(out))
    loaded = jaxmodels.load(str(workdir))
    want = loaded.module.apply({"params": loaded.params}, jnp.asarray(ids))
    exported = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    assert type(exported).__name__ == "LlamaForCausalLM"
    with torch.no_grad():
        got = exported(torch.as_tensor(ids)).logits.numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert not np.allclose(got, hf(torch.as_tensor(ids)).logits.detach().numpy(), atol=1e-4)
    hf_tok = transformers.PreTrainedTokenizerFast(tokenizer_file=str(out / "tokenizer.json"))
    assert hf_tok.encode("lazy dog.") == tok.encode("lazy dog.").tolist()
