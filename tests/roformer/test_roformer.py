"""RoFormer encoder: every position encoding by name, the relative-offset property, MLM head."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmodels.layers.positions import POSITIONS, PositionOptions
from jaxmodels.models.roformer.model import RoFormer

RELATIVE = {"none", "shaw", "t5", "alibi", "rope", "xpos"}


@pytest.mark.parametrize("name", POSITIONS)
def test_every_encoding_and_shift_property(name):
    opts = PositionOptions(name=name, max_len=64, shaw_max_distance=3, xpos_scale_base=16.0)
    model = RoFormer(
        vocab_size=40, d_model=16, num_layers=1, num_heads=2, d_ff=32, dropout_rate=0.0,
        position=opts, mlm_head=False, attention_impl="xla",
    )  # fmt: skip
    ids = jax.random.randint(jax.random.key(0), (2, 6), 0, 40)
    mask = jnp.array([[1] * 6, [1] * 4 + [0] * 2])
    pos = jnp.broadcast_to(jnp.arange(6), (2, 6))
    params = model.init(jax.random.key(1), ids, mask)["params"]
    h0 = model.apply({"params": params}, ids, mask, None, pos)
    h1 = model.apply({"params": params}, ids, mask, None, pos + 9)
    assert h0.shape == (2, 6, 16) and np.isfinite(h0).all()
    keep = np.asarray(mask, bool)
    if name in RELATIVE:  # scores depend on offsets only: shifting all positions changes nothing
        np.testing.assert_allclose(h0[keep], h1[keep], atol=2e-5)
    else:
        assert not np.allclose(h0[keep], h1[keep], atol=1e-3)
    if name != "none":  # the encoding matters: permuting the tokens is not equivariant
        perm = jnp.array([1, 0, 2, 3, 4, 5])  # not an isometry of the line (ALiBi is symmetric)
        hp = model.apply({"params": params}, ids[:1, perm], None, None, pos[:1])
        h = model.apply({"params": params}, ids[:1], None, None, pos[:1])
        assert not np.allclose(hp[0], h[0, perm], atol=1e-4)


def test_mlm_head_ties_embeddings_and_segments_isolate_documents():
    model = RoFormer(vocab_size=40, d_model=16, num_layers=1, num_heads=2, d_ff=32,
                     dropout_rate=0.0, embedding_size=8, attention_impl="xla")  # fmt: skip
    ids = jax.random.randint(jax.random.key(0), (1, 8), 0, 40)
    params = nn.unbox(model.init(jax.random.key(1), ids)["params"])
    assert "mlm_decoder" not in params and params["word_embeddings"]["embedding"].shape == (40, 8)
    seg = jnp.array([[1, 1, 1, 1, 2, 2, 2, 2]])
    pos = jnp.array([[0, 1, 2, 3, 0, 1, 2, 3]])
    logits = model.apply({"params": params}, ids, None, None, pos, seg)
    assert logits.shape == (1, 8, 40)
    other = ids.at[0, 5].set((ids[0, 5] + 1) % 40)  # change a token in document 2
    logits2 = model.apply({"params": params}, other, None, None, pos, seg)
    np.testing.assert_allclose(logits[0, :4], logits2[0, :4], atol=1e-6)
    assert not np.allclose(logits[0, 4:], logits2[0, 4:])


def test_linear_attention_encoder_is_relative_and_keeps_documents_apart():
    model = RoFormer(vocab_size=40, d_model=16, num_layers=1, num_heads=2, d_ff=32,
                     dropout_rate=0.0, attention="linear", mlm_head=False)  # fmt: skip
    ids = jax.random.randint(jax.random.key(0), (1, 8), 0, 40)
    seg = jnp.array([[1, 1, 1, 1, 2, 2, 2, 2]])
    pos = jnp.array([[0, 1, 2, 3, 0, 1, 2, 3]])
    params = model.init(jax.random.key(1), ids)["params"]
    h = model.apply({"params": params}, ids, None, None, pos, seg)
    np.testing.assert_allclose(h, model.apply({"params": params}, ids, None, None, pos + 5, seg),
                               atol=2e-5)  # fmt: skip
    alone = model.apply({"params": params}, ids[:, 4:], None, None, pos[:, 4:])
    np.testing.assert_allclose(h[:, 4:], alone, atol=1e-5)  # document 2 never sees document 1


def test_smoke_config_trains_through_the_core(tmp_path):
    import json

    from jaxmodels.config import load_config, validate
    from jaxmodels.train import loop

    config = load_config("experiments/roformer/mlm.py:smoke")
    validate(config)
    loop.train(config, str(tmp_path))
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    evals = [x for x in lines if "eval_mlm_loss" in x]
    assert evals and all(np.isfinite(x["eval_mlm_loss"]) for x in evals)
    assert 0.1 < evals[-1]["eval_masked_fraction"] < 0.2  # ~15% of the real tokens


def test_init_hf_fine_tunes_an_imported_roformer(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from jaxmodels.config import load_config
    from jaxmodels.hf import from_hf
    from jaxmodels.models.roformer.task import build_task

    text = "rotary position embedding keeps relative offsets in attention scores.\n" * 30
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    trainer = trainers.WordPieceTrainer(vocab_size=80, special_tokens=specials)
    tok.train_from_iterator([text], trainer)
    tok.save(str(tmp_path / "tokenizer.json"))
    cfg = transformers.RoFormerConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=16, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=24, max_position_embeddings=64,
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.RoFormerForMaskedLM(cfg).save_pretrained(tmp_path, safe_serialization=True)
    (tmp_path / "corpus.txt").write_text(text, encoding="utf-8")

    config = load_config("experiments/roformer/mlm.py:smoke")
    config.init.hf, config.data.path = str(tmp_path), str(tmp_path / "corpus.txt")
    task = build_task(config)
    params = task.start_params()
    model, imported = from_hf(str(tmp_path))
    assert isinstance(model, RoFormer)
    jax.tree.map(np.testing.assert_array_equal, params, imported)  # starts from the import
    batch = next(task.train_data(0, 1))
    assert batch["inputs"].max() < tok.get_vocab_size()  # the imported tokenizer's ids
    loss, metrics = jax.jit(task.loss_fn)(params, batch, jax.random.key(1))
    assert np.isfinite(loss) and metrics["masked_fraction"] > 0
