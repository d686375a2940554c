"""RoFormer (Su et al. 2021) pre-trained with BERT's MLM objective on the embedded corpus.

    python -m jaxmodels train --config experiments/roformer/mlm.py --workdir runs/roformer
    # another position encoding (see jaxmodels/layers/positions/):
    python -m jaxmodels train --config experiments/roformer/mlm.py --workdir runs/roformer_t5 \\
        --config.model.position.name=t5
    # linear attention with RoPE (RoFormer eq. 19):
    python -m jaxmodels train --config experiments/roformer/mlm.py --workdir runs/rf_linear \\
        --config.model.attention=linear
    # fine-tune a local HF RoFormerForMaskedLM directory (with its tokenizer.json):
    python -m jaxmodels train --config experiments/roformer/mlm.py --workdir runs/rf_ft \\
        --config.init.hf=/path/to/roformer --config.data.path=my.txt
    # MLM loss at 1x, 2x and 4x the trained length, on the run's newest checkpoint:
    python -m jaxmodels eval --workdir runs/roformer --config.evals=extrapolation
    # CI smoke run (a few steps):
    python -m jaxmodels train --config experiments/roformer/mlm.py:smoke --workdir /tmp/rf_smoke
"""

import ml_collections

from jaxmodels.config import base_config, config_args


def get_config(arg=None):
    args = config_args(arg, ("smoke",))
    c = base_config()
    c.family = "roformer"

    m = c.model
    m.variant = "small"  # tiny | small | base (jaxmodels/models/roformer/model.py VARIANTS)
    m.vocab_multiple = 64  # tokenizer size + [MASK], rounded up to this multiple
    m.dropout_rate = 0.1  # embedding/residual/MLP dropout (BERT's 0.1)
    m.attention = "softmax"  # softmax | linear (Katharopoulos et al. 2020; RoPE as RoFormer eq. 19)
    m.attention_impl = "auto"  # softmax kernel: auto | xla | cudnn | splash
    p = m.position = ml_collections.ConfigDict()
    p.name = "rope"  # none | learned | sinusoidal | shaw | t5 | alibi | rope | xpos
    p.rope_layout = "interleaved"  # RoFormer pairs (x0, x1), (x2, x3), ...
    p.rope_base = 10000.0  # RoPE theta base (RoFormer eq. 15)
    p.max_len = 512  # learned absolute table size (position=learned)

    c.init.hf = ""  # a local HF RoFormerForMaskedLM directory to fine-tune (sizes then ignored)

    d = c.data
    d.path = ""  # a local UTF-8 text file; empty: the embedded corpus
    # byte | sentencepiece (data.spm_model) | the path of a tokenizer.json, a SentencePiece
    # .model or an HF directory holding one
    d.tokenizer = "byte"
    d.spm_model = ""  # SentencePiece model for tokenizer=sentencepiece
    d.seq_len = 128  # tokens per packed row (documents kept apart by segment ids)
    d.validation_fraction = 0.05  # held-out share
    d.tfds_name = ""  # a prepared TFDS text dataset instead of path/embedded
    d.tfds_split = "train"  # TFDS training split
    d.tfds_eval_split = "validation"  # TFDS validation split
    d.tfds_data_dir = ""  # TFDS data_dir
    d.text_key = "text"  # TFDS text feature
    d.max_documents = 200_000  # TFDS documents per split; 0: all

    c.evals = ()  # offered: extrapolation (MLM at k x data.seq_len tokens)
    e = c.extrapolation = ml_collections.ConfigDict()  # the `extrapolation` evaluator
    e.factors = (1, 2, 4)  # score validation rows of k * data.seq_len tokens
    e.eval_tokens = 16384  # validation tokens scored at every length (the same ones)
    e.eval_batch_size = 8  # rows per scoring call

    t = c.train
    t.steps = 1000  # optimizer steps
    t.batch_size = 32  # rows per step
    t.learning_rate = 1e-3  # peak learning rate
    t.warmup_steps = 100  # linear warm-up
    t.weight_decay = 0.01  # BERT's decoupled weight decay
    t.b2 = 0.999  # BERT's Adam beta2
    t.log_every = 50  # steps between metric lines
    t.eval_every = 250  # steps between validation passes
    t.eval_batches = 10  # validation batches per pass
    t.checkpoint_every = 500  # steps between checkpoints

    if "smoke" in args:
        m.variant = "tiny"
        d.seq_len = 32
        e.factors, e.eval_tokens, e.eval_batch_size = (1, 2), 512, 4
        t.steps, t.batch_size, t.warmup_steps = 4, 8, 1
        t.log_every, t.eval_every, t.eval_batches, t.checkpoint_every = 1, 2, 1, 2
    return c
