"""RoFormer's `extrapolation` evaluator chosen by name: MLM at k x the trained length, the chunked
per-row sums against one forward pass, and the checks that name the key."""

import flax.linen as nn
import jax
import numpy as np
import pytest

from jaxmodels.config import load_config
from jaxmodels.data.text import build_text_data
from jaxmodels.losses.mlm import mlm_loss
from jaxmodels.models.roformer import task as roformer_task

SMOKE = "experiments/roformer/mlm.py:smoke"


def test_extrapolation_equals_one_pass_over_the_masked_stream():
    config = load_config(SMOKE)
    assert roformer_task.build_task(config).evaluate is None  # default: nothing beyond eval_fn
    config.evals = ("extrapolation",)
    config.extrapolation.eval_batch_size = 3  # 512 tokens: 16 rows of 32, 8 rows of 64
    task = roformer_task.build_task(config)
    params = nn.unbox(jax.jit(task.init)(jax.random.key(0)))
    got = task.evaluate(params, jax.random.key(1))
    assert set(got) == {f"mlm_{m}_x{k}" for m in ("loss", "accuracy") for k in (1, 2)}
    assert got == task.evaluate(params, jax.random.key(2))  # fixed masks: rng unused

    text = build_text_data(config.data)
    tok, stream = text.tokenizer, np.concatenate(text.eval_docs).astype(np.int32)[:512]
    batch = {"inputs": stream[None], "segment_ids": np.ones((1, 512), np.int32)}
    inputs, targets, chosen, _ = roformer_task.mlm_batch(
        batch, jax.random.key(config.seed), mask_id=tok.vocab_size,
        random_vocab_size=256, specials=(tok.pad_id, tok.bos_id, tok.eos_id),
    )  # fmt: skip
    model, _ = roformer_task.make_model(config, tok, None)
    for k in (1, 2):
        rows = [np.asarray(x).reshape(-1, 32 * k) for x in (inputs, targets, chosen)]
        logits = model.apply({"params": params}, rows[0])
        _, want = mlm_loss(logits, rows[1], rows[2])
        assert got[f"mlm_loss_x{k}"] == pytest.approx(float(want["mlm_loss"]), rel=1e-5)
        assert got[f"mlm_accuracy_x{k}"] == pytest.approx(float(want["mlm_accuracy"]), abs=1e-6)


def test_extrapolation_refuses_rows_its_config_cannot_hold():
    config = load_config(SMOKE)
    config.evals = ("extrapolation", "bogus")
    with pytest.raises(ValueError, match=r"\['bogus'\]; offered: extrapolation"):
        roformer_task.build_task(config)
    config.evals = ("extrapolation",)
    config.model.position.name, config.model.position.max_len = "learned", 48
    with pytest.raises(ValueError, match="position.max_len=48"):
        roformer_task.build_task(config)
    config.model.position.name, config.extrapolation.eval_tokens = "rope", 63
    with pytest.raises(ValueError, match="eval_tokens=63.*no row of 64 tokens"):
        roformer_task.build_task(config)
