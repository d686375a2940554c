"""BLIP pre-training (ITC + ITM + LM) on the embedded rendered scenes.

jaxmodels train --config experiments/blip/pretrain.py --workdir runs/blip
jaxmodels train --config experiments/blip/pretrain.py:smoke --workdir /tmp/blip-smoke
jaxmodels eval --config experiments/blip/pretrain.py --workdir runs/blip
jaxmodels sample --config experiments/blip/pretrain.py --workdir runs/blip

Args (comma-separated): ``smoke`` (tiny, for CI); ``noisy`` (30% of the training captions
swapped to another image's, the CapFilt experiment's noisy set); ``bf16`` (bfloat16 compute with
float32 parameters, for GPU timing: the attention then reaches cuDNN). To train on a CapFilt output
add ``--config.data.name=file --config.data.path=runs/blip/capfilt.npz``.
The model is a scaled-down BLIP (ViT + BERT text side) sized for a 2-core CPU.

Real captions need a real tokenizer (BLIP's is bert-base-uncased's WordPiece) and longer rows:

jaxmodels train --config experiments/blip/pretrain.py --workdir runs/blip-coco \
    --config.data.name=csv --config.data.path=train.tsv --config.data.eval_path=val.tsv \
    --config.data.tokenizer=/models/bert-base-uncased --config.data.max_len=35 \
    --config.model.text.max_len=40
"""

import ml_collections

from jaxmodels.config import base_config, config_args
from jaxmodels.data import image_text_sources
from jaxmodels.evaluate import zero_shot_folder


def get_config(arg: str | None = None):
    args = config_args(arg, ("smoke", "noisy", "bf16"))
    c = base_config()
    c.family = "blip"

    m = c.model
    m.embed_dim = 64  # ITC feature width (BLIP: 256)
    m.t_init = 0.07  # ITC temperature init (BLIP: 0.07, learnable, clamped to [0.001, 0.5])
    m.label_smoothing = 0.1  # LM loss label smoothing (BLIP Sec. 3.2)
    # Momentum distillation (BLIP Sec. 3.2, from ALBEF): momentum encoders with this decay and
    # feature queues; 0 trains ITC on the batch alone (BLIP: 0.995, queue 57 600, alpha 0.4).
    m.momentum = 0.995
    m.queue_size = 2048  # queued pairs (a multiple of train.batch_size)
    m.alpha = 0.4  # weight of the momentum model's soft targets
    m.alpha_ramp_steps = 625  # alpha ramps up from 0 over these steps (BLIP: 2 epochs = 2x20000/64)
    m.attention_impl = "auto"  # auto | xla | cudnn | splash
    img = m.image = ml_collections.ConfigDict()
    img.width = 128  # ViT width (BLIP base: ViT-B/16, 768)
    img.depth = 2  # ViT blocks
    img.mlp_dim = 512  # ViT MLP hidden size
    img.num_heads = 4  # ViT heads
    img.patch_size = 8  # 32 px -> 4x4 patches + [CLS]
    img.posemb = "learn"  # learned positions (ViT)
    img.activation = "gelu"  # exact GELU (ViT/BERT)
    img.norm_eps = 1e-6  # ViT LayerNorm epsilon
    txt = m.text = ml_collections.ConfigDict()
    txt.width = 128  # BERT width (BLIP base: 768)
    txt.depth = 2  # BERT layers (BLIP base: 12), each with self-, cross-attention and MLP
    txt.mlp_dim = 512  # BERT intermediate size
    txt.num_heads = 4  # BERT heads
    txt.max_len = 24  # position table: >= data.max_len + the prompt's tokens ("a picture of": 3)

    d = c.data
    # scenes (rendered) | file (the .npz at data.path, as experiments/blip/capfilt.py writes;
    # held out: the .npz at data.eval_path, else the rendered held-out scenes when the captions
    # are in their words, else none) | webdataset | csv | tfds
    d.name = "scenes"
    # scenes: the rendered scenes' 19 words (any other word is refused, naming it) | the path of
    # a tokenizer.json, a SentencePiece .model or an HF directory framing text as [CLS] ... [SEP]
    # (BLIP: bert-base-uncased; [DEC] and [ENC] are added after its vocabulary when it lacks them)
    d.tokenizer = "scenes"
    # webdataset / csv / tfds sources (data.path / data.eval_path: also the .npz files of
    # data.name=file); training crops as BLIP's pre-training RandomResizedCrop (scale 0.5 to 1)
    image_text_sources.add_config(d, crop_scale=(0.5, 1.0))
    d.noise = 0.3 if "noisy" in args else 0.0  # share of training captions swapped
    d.train_size = 20000  # rendered training scenes
    d.eval_size = 1000  # held-out scenes (independent seed)
    d.image_size = 32  # pixels
    d.split_seed = 0  # seeds the scenes (train: 2 * seed, held out: 2 * seed + 1)
    d.object_scale = 1.4  # object radii x this (1.0: ~3-4 px; small shapes slow ITM down)
    d.max_len = 12  # text tokens: [CLS] + caption (scenes: <= 8 words) + [SEP], padded; longer
    # captions are truncated (BLIP: 35 for pre-training)
    d.eval_batch_size = 250  # evaluator batch
    d.retrieval_size = 1000  # held-out images for recall@K (captions deduplicated)
    d.rerank_k = 16  # ITM re-ranks each query's top k by ITC (BLIP: k = 256 on COCO)
    d.caption_eval_size = 500  # held-out images captioned (beam 3) for BLEU-4 / CIDEr

    c.sample.num = 16  # images in the `jaxmodels sample` grid
    # offered: retrieval (ITC, ITM re-ranked), captioning, zero_shot (added by zero_shot.dir)
    c.evals = ("retrieval", "captioning")
    # zero-shot on your labelled folder by ITC: --config.zero_shot.dir (the scenes' closed
    # vocabulary needs a templates file of its words, e.g. "a picture of a {}")
    zero_shot_folder.add_config(c)

    t = c.train
    t.steps = 2700  # under 20 CPU minutes on 2 cores, evaluation included
    t.batch_size = 64
    t.learning_rate = 5e-4
    t.warmup_steps = 100
    t.weight_decay = 0.05  # BLIP pre-training weight decay
    t.b2 = 0.999
    t.log_every = 50
    t.eval_every = 2700  # evaluate at the end
    t.eval_batches = 4
    t.checkpoint_every = 900
    # activations/matmuls (params stay float32): float32 on CPU; bfloat16 (:bf16) on GPU/TPU
    t.compute_dtype = "bfloat16" if "bf16" in args else "float32"

    if "smoke" in args:
        for tower in (img, txt):
            tower.width, tower.depth, tower.mlp_dim, tower.num_heads = 32, 1, 64, 2
        m.embed_dim = 16
        d.image_size = 16
        d.train_size, d.eval_size, d.retrieval_size, d.caption_eval_size = 128, 32, 32, 8
        d.eval_batch_size = 16
        d.rerank_k = 4
        c.sample.num = 4
        t.steps, t.batch_size, t.warmup_steps = 3, 16, 1
        t.log_every, t.eval_every, t.eval_batches, t.checkpoint_every = 1, 3, 1, 3
    return c
