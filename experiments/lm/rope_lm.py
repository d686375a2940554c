"""RoPE decoder-only LM on the embedded corpus: the README's main job (a few minutes on a CPU).

    python -m jaxmodels train --config experiments/lm/rope_lm.py --workdir runs/lm
    python -m jaxmodels sample --workdir runs/lm   # the run's own config.json
    # your own text, longer:
    python -m jaxmodels train --config experiments/lm/rope_lm.py --workdir runs/mine \
        --config.data.path=my.txt --config.train.steps=5000
    # linear attention with RoPE (RoFormer eq. 19) instead of softmax:
    python -m jaxmodels train --config experiments/lm/rope_lm.py --workdir runs/lm_linear \
        --config.model.attention=linear
    # fine-tune an HF Llama/Mistral/Qwen2/Qwen3/Gemma/Bloom directory (its tokenizer.json too),
    # sample from it, and write it back as a transformers from_pretrained directory:
    python -m jaxmodels train --config experiments/lm/rope_lm.py --workdir runs/ft \
        --config.init.hf=/path/to/llama --config.data.path=my.txt --config.train.steps=200
    python -m jaxmodels sample --workdir runs/ft
    python -m jaxmodels export --workdir runs/ft --out runs/ft_hf
    # the length-extrapolation study's size (experiments/lm/run_extrapolation.py runs them all):
    python -m jaxmodels train --config experiments/lm/rope_lm.py:extrapolation \
        --workdir runs/extrapolation/alibi --config.model.position.name=alibi
    # CI smoke run (a few steps):
    python -m jaxmodels train --config experiments/lm/rope_lm.py:smoke --workdir /tmp/lm_smoke
"""

import ml_collections

from jaxmodels.config import base_config, config_args


def get_config(arg=None):
    args = config_args(arg, ("smoke", "extrapolation"))
    c = base_config()
    c.family = "lm"

    m = c.model
    m.vocab_size = 0  # 0: the tokenizer's size; padded up to vocab_multiple either way
    m.vocab_multiple = 64  # round the vocabulary up to this multiple
    m.width = 256  # residual width (d_model)
    m.depth = 4  # transformer blocks
    m.num_heads = 4  # query heads
    m.num_kv_heads = 0  # key/value heads for GQA; 0: same as num_heads
    m.head_dim = 0  # 0: width // num_heads
    m.mlp_dim = 768  # SwiGLU hidden width (about 8/3 width, Shazeer 2020)
    m.activation = "swiglu"  # swiglu | geglu | gelu | gelu_tanh | relu
    m.norm = "rmsnorm"  # rmsnorm | layernorm
    m.norm_eps = 1e-6  # normalisation epsilon
    m.tie_embeddings = True  # share the input embedding with the output projection
    m.scale_embedding = False  # token embeddings times sqrt(d_model) (Gemma)
    m.qkv_bias = False  # biases on the q/k/v projections (Qwen2)
    m.qk_norm = False  # RMSNorm of each head's queries and keys before RoPE (Qwen3)
    m.sliding_window = 0  # 0: every earlier token; W: only the last W tokens (Mistral)
    m.embed_init_std = 0.02  # stddev of the embedding initialiser
    m.dropout_rate = 0.0  # residual/MLP dropout
    m.scan_layers = False  # nn.scan over layers (faster compiles for deep models)
    m.remat_policy = "none"  # none | full | dots_saveable | dots_with_no_batch_dims_saveable
    m.attention = "softmax"  # softmax | linear (Katharopoulos et al. 2020; RoPE as RoFormer eq. 19)
    m.attention_impl = "auto"  # softmax kernel: auto | xla | cudnn | splash (layers/attention.py)
    m.fused_projections = True  # one matmul for q/k/v, one for gate/up (docs/lm.md: timings)
    p = m.position = ml_collections.ConfigDict()  # jaxmodels.layers.positions.PositionOptions
    p.name = "rope"  # none | learned | sinusoidal | shaw | t5 | alibi | rope | xpos
    p.rope_base = 10000.0  # RoPE theta base (RoFormer eq. 15)
    p.rope_layout = "half"  # half (GPT-NeoX/Llama) | interleaved (RoFormer)
    p.rotary_fraction = 1.0  # fraction of head_dim rotated (partial rotary)
    p.rope_scaling = ml_collections.ConfigDict()  # {"type": linear|ntk|dynamic|yarn|llama3, ...}
    p.max_len = 2048  # learned table size (position=learned)
    p.xpos_scale_base = 512.0  # xPos scale base s (Sun et al. 2022, eq. 12)
    p.xpos_gamma = 0.4  # xPos gamma (eq. 11)
    p.shaw_max_distance = 16  # Shaw clipping distance k (Shaw et al. 2018)
    p.t5_num_buckets = 32  # T5 relative-position buckets (Raffel et al. 2020)
    p.t5_max_distance = 128  # T5 max distance

    c.init.hf = ""  # an HF *ForCausalLM directory to fine-tune (docs/lm.md; model sizes ignored)

    d = c.data
    d.path = ""  # a local UTF-8 text file; empty: the embedded corpus (Python's own docs)
    # byte | sentencepiece (data.spm_model) | the path of a tokenizer.json, a SentencePiece
    # .model or an HF directory holding one
    d.tokenizer = "byte"
    d.spm_model = ""  # SentencePiece .model file for tokenizer=sentencepiece
    d.seq_len = 128  # tokens per packed row
    d.holdout = 0.05  # held-out share (documents, or the tail of data.path)
    d.tfds_name = ""  # a prepared TFDS text dataset (ArrayRecord), instead of path/embedded
    d.train_split = "train"  # TFDS training split
    d.eval_split = "validation"  # TFDS validation split
    d.tfds_data_dir = ""  # TFDS data_dir; empty: the TFDS default
    d.text_key = "text"  # TFDS feature holding the text
    d.max_documents = 200_000  # TFDS documents read per split (packed in memory); 0: all
    d.stream = False  # True: one continuous stream, positions 0..L-1 per row (ALiBi paper)

    c.evals = ()  # offered: extrapolation (perplexity at k x data.seq_len, RoPE scalings)
    e = c.extrapolation = ml_collections.ConfigDict()  # jaxmodels/evaluate/extrapolation.py
    e.factors = (1, 2, 4, 8)  # score validation rows of k * data.seq_len tokens
    e.eval_tokens = 16384  # validation tokens scored at every length (the same ones)
    e.eval_batch_size = 16  # rows per scoring batch
    e.scalings = ("linear", "ntk", "yarn", "llama3")  # RoPE scalings tried at inference (k > 1)

    s = c.sample
    s.prompts = ("The ", "def ")  # prompts to continue (a BOS token is prepended)
    s.num = 2  # samples per prompt
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

    if "extrapolation" in args:  # docs/roformer.md: one small LM per encoding, L = 64 bytes
        m.width, m.depth, m.mlp_dim, m.attention_impl = 128, 2, 384, "xla"
        p.max_len = 64  # learned table: the training length (longer positions are clipped)
        d.seq_len, d.stream, c.evals = 64, True, ("extrapolation",)
        t.steps, t.batch_size, t.warmup_steps = 600, 24, 50
        t.log_every, t.eval_every, t.checkpoint_every = 50, 600, 600
        t.sample_at_end = False
    if "smoke" in args:
        m.width, m.depth, m.num_heads, m.mlp_dim = 32, 2, 2, 64
        d.seq_len = 32
        s.num, s.max_new_tokens = 1, 8
        t.steps, t.batch_size, t.warmup_steps = 4, 8, 1
        t.log_every, t.eval_every, t.eval_batches, t.checkpoint_every = 1, 2, 1, 2
    if "smoke" in args and "extrapolation" in args:
        m.depth, d.seq_len, p.max_len = 1, 16, 16
        e.factors, e.eval_tokens, e.eval_batch_size = (1, 4), 256, 4
        t.steps, t.eval_every, t.checkpoint_every = 3, 3, 3
    return c
