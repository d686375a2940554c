"""Length extrapolation of position encodings: a small decoder LM trained at length L.

One encoding per run (``model.position.name``); the study script trains them all and writes
``docs/positions_extrapolation.{md,png}``:

    python experiments/positions/run_extrapolation.py --workdir runs/extrapolation
    # one encoding through the CLI:
    python -m jaxmodels train --config experiments/positions/extrapolation.py \\
        --workdir runs/extrapolation/alibi --config.model.position.name=alibi
    # CI smoke run:
    python -m jaxmodels train --config experiments/positions/extrapolation.py:smoke \\
        --workdir /tmp/extrapolation_smoke
"""

import ml_collections

from jaxmodels.config import base_config, config_args

ENCODINGS = ("none", "learned", "sinusoidal", "shaw", "t5", "alibi", "rope", "xpos")


def get_config(arg=None):
    args = config_args(arg, ("smoke",))
    c = base_config()
    c.family = "lm_extrapolation"

    m = c.model
    m.vocab_size = 0  # 0: the tokenizer's size
    m.vocab_multiple = 64  # round the vocabulary up to this multiple
    m.d_model = 128  # residual width
    m.num_layers = 2  # transformer blocks
    m.num_heads = 4  # attention heads
    m.num_kv_heads = 0  # 0: same as num_heads
    m.head_dim = 0  # 0: d_model // num_heads
    m.d_ff = 384  # SwiGLU hidden width
    m.activation = "swiglu"  # MLP
    m.norm = "rmsnorm"  # pre-norm RMSNorm blocks
    m.norm_eps = 1e-6  # normalisation epsilon
    m.rope_base = 10000.0  # RoPE theta base (RoFormer eq. 15)
    m.rope_layout = "half"  # half | interleaved
    m.tie_embeddings = True  # share input and output embeddings
    m.embed_init_std = 0.02  # embedding initialiser stddev
    m.dropout_rate = 0.0  # no dropout
    m.scan_layers = False  # unrolled layers
    m.remat_policy = "none"  # no remat
    m.attention_impl = "xla"  # CPU study
    p = m.position = ml_collections.ConfigDict()
    p.name = "rope"  # one of ENCODINGS
    p.max_len = 64  # learned table size: the training length (longer positions are clipped)
    p.shaw_max_distance = 16  # Shaw clipping distance k
    p.t5_num_buckets = 32  # T5 buckets (causal: all on the past side)
    p.t5_max_distance = 128  # T5 max distance
    p.xpos_scale_base = 512.0  # xPos scale base

    d = c.data
    d.path = ""  # a local UTF-8 text file; empty: the embedded corpus
    d.tokenizer = "byte"  # bits per byte needs the byte tokenizer
    d.seq_len = 64  # training length L (bytes)
    d.validation_fraction = 0.05  # held-out share of documents

    e = c.extrapolation = ml_collections.ConfigDict()
    e.factors = (1, 2, 4, 8)  # evaluate at k * L
    e.eval_tokens = 16384  # validation tokens scored at every length (the same ones)
    e.eval_batch_size = 16  # rows per evaluation batch

    t = c.train
    t.steps = 600  # optimizer steps
    t.batch_size = 24  # rows of L tokens per step
    t.learning_rate = 3e-3  # peak
    t.warmup_steps = 50  # linear warm-up
    t.weight_decay = 0.1  # AdamW
    t.log_every = 50  # steps between metric lines
    t.eval_every = 600  # the sweep runs once, at the end
    t.eval_batches = 10  # length-L validation batches for eval_loss
    t.checkpoint_every = 600  # one checkpoint at the end

    if "smoke" in args:
        m.d_model, m.num_layers, m.num_heads, m.d_ff = 32, 1, 2, 64
        d.seq_len = p.max_len = 16
        e.factors, e.eval_tokens, e.eval_batch_size = (1, 4), 256, 4
        t.steps, t.batch_size, t.warmup_steps = 3, 8, 1
        t.log_every, t.eval_every, t.eval_batches, t.checkpoint_every = 1, 3, 1, 3
    return c
