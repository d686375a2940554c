"""Throughput in the task's units (tokens/s, images/s) and model TFLOP/s, in metrics.jsonl and
the progress bar."""

import json

import pytest

from jaxmodels.config import load_config
from jaxmodels.layers.flops import transformer_train_flops
from jaxmodels.models.lm.task import build_task as lm_task
from jaxmodels.train import loop
from jaxmodels.train import metrics as metrics_lib
from jaxmodels.train.task import Task

_noop = dict(init=None, loss_fn=None, train_data=None)


def test_throughput_counts_units_and_model_flops():
    task = Task(**_noop, units="tokens", units_per_example=128, flops_per_example=1e9)
    m = metrics_lib.throughput(task, steps=10, batch_size=4, seconds=2.0)
    assert m == pytest.approx(
        {"steps_per_sec": 5.0, "examples_per_sec": 20.0, "tokens_per_sec": 2560.0,
         "model_tflops": 20 * 1e9 / 1e12}
    )  # fmt: skip
    bar = metrics_lib.progress_postfix(task, {"loss": 1.5, **m})
    assert bar == {"loss": "1.5000", "tok_s": "2560", "TFLOP_s": "0.02"}
    plain = metrics_lib.throughput(Task(**_noop), steps=1, batch_size=8, seconds=1.0)
    assert set(plain) == {"steps_per_sec", "examples_per_sec"}
    assert metrics_lib.progress_postfix(Task(**_noop), {"loss": 1.0, **plain})["ex_s"] == "8"


def test_transformer_flops_closed_form():
    # 6 N L + 12 layers L^2 d, the attention term halved under the causal mask
    kw = dict(num_layers=2, seq_len=4, attn_dim=3)
    assert transformer_train_flops(10, **kw) == 240 + 1152 / 2
    assert transformer_train_flops(10, **kw, causal=False) == 240 + 1152


def test_lm_task_counts_tokens_and_flops_from_its_config():
    config = load_config("experiments/lm/rope_lm.py:smoke")
    task = lm_task(config)
    m, L = config.model, config.data.seq_len
    d, f, layers = m.width, m.mlp_dim, m.depth
    vocab = 320  # 259 byte-tokenizer ids padded to a multiple of 64
    n = layers * (4 * d * d + 3 * d * f + 2 * d) + vocab * d + d  # norms' scales included
    assert task.units == "tokens" and task.units_per_example == L
    assert task.flops_per_example == 6 * n * L + 6 * layers * L * L * d


def test_metrics_jsonl_reports_the_task_units(tmp_path):
    config = load_config("experiments/mlp/digits.py:smoke")
    config.train.eval_every = config.train.checkpoint_every = 0
    loop.train(config, str(tmp_path))
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(r["images_per_sec"] == r["examples_per_sec"] > 0 for r in rows if "loss" in r)


@pytest.mark.parametrize(
    "config_path, units, per_example",
    [
        ("experiments/contrastive/siglip.py:smoke", "images", 1),
        ("experiments/blip/pretrain.py:smoke", "images", 1),
        ("experiments/online_action/trn.py:smoke", "frames", "enc_steps"),
        ("experiments/diffusion/digits.py:smoke", "images", 1),
        ("experiments/flows/glow.py:smoke", "images", 1),
    ],
)
def test_families_count_their_own_units(config_path, units, per_example):
    """No family falls back to the generic examples/s: image-text pairs count as images, an
    online-action window as its frames."""
    config = load_config(config_path)
    task = loop.build(config, None).task
    if per_example == "enc_steps":
        per_example = config.data.enc_steps
    assert (task.units, task.units_per_example) == (units, per_example)
