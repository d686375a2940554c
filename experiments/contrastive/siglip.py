"""SigLIP (sigmoid loss, chunked across devices) on the embedded shapes + digits captions.

jaxmodels train --config experiments/contrastive/siglip.py --workdir runs/siglip
jaxmodels train --config experiments/contrastive/siglip.py:smoke --workdir /tmp/siglip-smoke
jaxmodels eval --config experiments/contrastive/siglip.py --workdir runs/siglip

The same file trains CLIP's loss with --config.model.variant=clip (see clip.py for CLIP's defaults).
"""

import math

import ml_collections

from jaxmodels.config import base_config, config_args
from jaxmodels.data import image_text_sources
from jaxmodels.evaluate import zero_shot_folder


def get_config(arg: str | None = None):
    args = config_args(arg, ("smoke",))
    c = base_config()
    c.family = "contrastive"

    m = c.model
    m.variant = "siglip"  # siglip (sigmoid loss) | clip (softmax loss)
    m.loss_impl = "chunked"  # siglip: chunked | allgather | dense; clip: dense | allgather
    m.t_prime_init = math.log(10.0)  # log-temperature init; SigLIP Sec. 3.2: t' = log 10
    # logit bias init: a number (SigLIP Sec. 3.2: b = -10) or "auto" = -log(batch - 1)
    m.b_init = ml_collections.FieldReference(-10.0, field_type=object)
    m.embed_dim = 96  # shared embedding width after the projection heads
    m.attention_impl = "auto"  # auto (cuDNN on GPU, splash on TPU, else XLA) | xla | cudnn | splash
    m.remat_policy = "none"  # none | full | dots_saveable | ... (layers.transformer.REMAT_POLICIES)
    m.scan_layers = False  # scan over encoder blocks (faster compiles for deep towers)

    # an HF CLIPModel / SiglipModel directory to start from fixes the towers and the loss: use
    # experiments/contrastive/hf.py, which leaves those keys to it (here they must agree)
    c.init.hf = ""
    m.image = img = base_image()
    img.pool = "map"  # SigLIP pools with a MAP head
    m.text = base_text()
    m.text.pool = "last"  # SigLIP's text tower takes the last token

    add_data(c)
    # offered: zeroshot (per embedded task), retrieval, zero_shot (added by zero_shot.dir)
    c.evals = ("zeroshot", "retrieval")
    zero_shot_folder.add_config(c)  # zero-shot on your labelled folder: --config.zero_shot.dir
    c.train.steps = 300
    c.train.batch_size = 128  # small-batch regime; SigLIP Fig. 2 compares from 512 upwards
    c.train.learning_rate = 1e-3
    c.train.warmup_steps = 50
    c.train.b2 = 0.95
    c.train.weight_decay = 1e-4  # SigLIP uses a small decoupled weight decay
    c.train.log_every = 50
    c.train.eval_every = 150
    c.train.eval_batches = 4  # held-out batches for eval_loss
    c.train.checkpoint_every = 150

    if "smoke" in args:
        shrink_for_smoke(c)
    return c


def base_image():
    """A small ViT for 32 px images (for paper sizes set preset, e.g. "B/16", "So400m/14")."""
    img = ml_collections.ConfigDict()
    img.preset = ""  # "" uses the explicit sizes below; else "Ti/16", "B/16", "So400m/14", ...
    img.width = 96  # model width
    img.depth = 4  # encoder blocks
    img.mlp_dim = 384  # MLP hidden size
    img.num_heads = 3  # attention heads
    img.patch_size = 8  # square patch side in pixels (32 px -> 4x4 patches)
    img.posemb = "learn"  # learn | sincos2d
    img.pool = "map"  # map | gap | cls
    return img


def base_text():
    """A small text transformer (byte-level with the default tokenizer)."""
    txt = ml_collections.ConfigDict()
    txt.vocab_size = 0  # embedding rows; 0: the tokenizer's size (bytes: 259 = 256 + PAD/BOS/EOS)
    txt.width = 96  # model width
    txt.depth = 2  # encoder blocks
    txt.mlp_dim = 384  # MLP hidden size
    txt.num_heads = 3  # attention heads
    txt.max_len = 48  # tokens per caption, special tokens included (longest embedded: 44 bytes)
    txt.pool = "last"  # last (the token before the padding: CLIP's EOS) | mean
    txt.causal = False  # causal self-attention (CLIP's text tower is causal)
    # False: padding is attended and pooled like any token, "last" then meaning the final
    # position (SigLIP reads texts padded to a fixed 64 tokens; big_vision, HF)
    txt.mask_padding = True
    return txt


def add_data(c):
    d = c.data
    d.name = "embedded"  # embedded (shapes + digits) | shapes | digits | webdataset | csv | tfds
    # byte (UTF-8 bytes) | a tokenizer.json, a SentencePiece .model or an HF directory with one;
    # its special tokens frame each caption and its PAD follows it, as transformers pads
    d.tokenizer = "byte"
    d.image_size = 32  # square image side in pixels
    d.split_seed = 0  # seeds the procedurally rendered shapes and the digits split
    d.train_size = 10000  # rendered training shapes (half one object, half two)
    d.eval_size = 1000  # rendered held-out shapes (the one-object half is the zero-shot set)
    d.retrieval_size = 1000  # held-out pairs for recall@K
    d.eval_batch_size = 256  # batch for the zero-shot/retrieval embedders
    # webdataset / csv / tfds sources; training crops as open_clip's RandomResizedCrop default
    image_text_sources.add_config(d, crop_scale=(0.9, 1.0))


def shrink_for_smoke(c):
    """A few tiny steps for CI."""
    for tower in (c.model.image, c.model.text):
        tower.width, tower.depth, tower.mlp_dim, tower.num_heads = 32, 1, 64, 2
    c.model.image.patch_size = 8
    c.model.embed_dim = 16
    c.data.image_size = 16
    c.data.train_size, c.data.eval_size, c.data.retrieval_size = 256, 64, 64
    c.data.eval_batch_size = 64
    c.train.steps = 4
    c.train.batch_size = 16
    c.train.warmup_steps = 1
    c.train.log_every = 2
    c.train.eval_every = 4
    c.train.eval_batches = 1
    c.train.checkpoint_every = 4
