"""RoPE decoder-only LM on the embedded corpus: the README's main job (a few minutes on a CPU).

    python -m jaxmodels train --config experiments/lm/rope_lm.py --workdir runs/lm
    python -m jaxmodels sample --config experiments/lm/rope_lm.py --workdir runs/lm
    # your own text, longer:
    python -m jaxmodels train --config experiments/lm/rope_lm.py --workdir runs/mine \
        --config.data.path=my.txt --config.train.steps=5000
    # CI smoke run (a few steps):
    python -m jaxmodels train --config experiments/lm/rope_lm.py:smoke --workdir /tmp/lm_smoke
"""

import ml_collections

from jaxmodels.config import base_config, config_args


def get_config(arg=None):
    args = config_args(arg, ("smoke",))
    c = base_config()
    c.family = "lm"

    m = c.model
    m.vocab_size = 0  # 0: the tokenizer's size; padded up to vocab_multiple either way
    m.vocab_multiple = 64  # round the vocabulary up to this multiple
    m.d_model = 256  # residual width
    m.num_layers = 4  # transformer blocks
    m.num_heads = 4  # query heads
    m.num_kv_heads = 0  # key/value heads for GQA; 0: same as num_heads
    m.head_dim = 0  # 0: d_model // num_heads
    m.d_ff = 768  # SwiGLU hidden width (about 8/3 d_model, Shazeer 2020)
    m.activation = "swiglu"  # swiglu | geglu | gelu | gelu_tanh | relu
    m.norm = "rmsnorm"  # rmsnorm | layernorm
    m.norm_eps = 1e-6  # normalisation epsilon
    m.rope_base = 10000.0  # RoPE theta base (RoFormer eq. 15)
    m.rope_layout = "half"  # half (GPT-NeoX/Llama) | interleaved (RoFormer)
    m.tie_embeddings = True  # share the input embedding with the output projection
    m.embed_init_std = 0.02  # stddev of the embedding initialiser
    m.dropout_rate = 0.0  # residual/MLP dropout
    m.scan_layers = False  # nn.scan over layers (faster compiles for deep models)
    m.remat_policy = "none"  # none | full | dots_saveable | dots_with_no_batch_dims_saveable
    m.attention_impl = "auto"  # auto | xla | cudnn | splash (see jaxmodels/layers/attention.py)
    m.position = ml_collections.ConfigDict()  # docs/positions.md; rope_base/rope_layout above
    m.position.name = "rope"  # none | learned | sinusoidal | shaw | t5 | alibi | rope | xpos

    d = c.data
    d.path = ""  # a local UTF-8 text file; empty: the embedded corpus (Python's own docs)
    d.tokenizer = "byte"  # byte | sentencepiece
    d.spm_model = ""  # SentencePiece .model file for tokenizer=sentencepiece
    d.seq_len = 128  # tokens per packed row
    d.validation_fraction = 0.05  # held-out share (documents, or the tail of data.path)
    d.tfds_name = ""  # a prepared TFDS text dataset (ArrayRecord), instead of path/embedded
    d.tfds_split = "train"  # TFDS training split
    d.tfds_eval_split = "validation"  # TFDS validation split
    d.tfds_data_dir = ""  # TFDS data_dir; empty: the TFDS default
    d.text_key = "text"  # TFDS feature holding the text
    d.max_documents = 200_000  # TFDS documents read per split (packed in memory); 0: all

    s = c.sample
    s.prompts = ("The ", "def ")  # prompts to continue (a BOS token is prepended)
    s.num_samples = 2  # samples per prompt
    s.max_new_tokens = 200  # tokens generated per sample
    s.temperature = 0.8  # 0: greedy
    s.top_k = 0  # keep the k most likely tokens; 0: all
    s.top_p = 0.95  # nucleus sampling mass; 1.0: off

    t = c.train
    t.steps = 400  # optimizer steps (~1 step/s on 2 busy CPU cores, faster when idle)
    t.batch_size = 16  # rows of seq_len tokens per step
    t.learning_rate = 3e-3  # peak; small models take a large rate
    t.warmup_steps = 50  # linear warm-up
    t.weight_decay = 0.1  # AdamW decoupled weight decay
    t.compute_dtype = "float32"  # float32 on CPU (bf16 is emulated there); bfloat16 on GPU/TPU
    t.log_every = 25  # steps between metrics lines
    t.eval_every = 200  # steps between validation passes
    t.eval_batches = 10  # validation batches per pass
    t.checkpoint_every = 200  # steps between checkpoints

    if "smoke" in args:
        m.d_model, m.num_layers, m.num_heads, m.d_ff = 32, 2, 2, 64
        d.seq_len = 32
        s.num_samples, s.max_new_tokens = 1, 8
        t.steps, t.batch_size, t.warmup_steps = 4, 8, 1
        t.log_every, t.eval_every, t.eval_batches, t.checkpoint_every = 1, 2, 1, 2
    return c
