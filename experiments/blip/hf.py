"""Fine-tune an HF BLIP captioner (a ``BlipForConditionalGeneration`` directory).

jaxmodels train --config experiments/blip/hf.py --workdir runs/blip-ft \
    --config.init.hf=/path/to/blip-image-captioning-base --config.data.name=csv ...
jaxmodels train --config experiments/blip/hf.py:smoke --workdir /tmp/blip-hf-smoke \
    --config.init.hf=/path/to/tiny/checkpoint
jaxmodels sample --workdir runs/blip-ft
jaxmodels export --workdir runs/blip-ft --out runs/blip-ft-hf

The checkpoint fixes the ViT and the text decoder (widths, depths, heads, patch size, the
position table) and the image size, and its directory's tokenizer lays out the captions, so this
config leaves those keys out (``data.image_size`` 0: the checkpoint's); one given here or on the
command line must agree with the checkpoint, else the run stops naming it. A captioner has no ITC
projections, ITM head or bidirectional text encoder: the run trains the captioning loss L_lm
alone (BLIP's captioning fine-tune, Sec. 5.2), with no momentum model, and offers the
``captioning`` evaluator. The rest (data sources, crops) is experiments/blip/pretrain.py's.
"""

import os

import ml_collections

from jaxmodels.config import config_args, load_config

PRETRAIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrain.py")


def get_config(arg: str | None = None):
    args = config_args(arg, ("smoke",))
    c = load_config(PRETRAIN + (":smoke" if "smoke" in args else ""))
    c.init.hf = ""  # the BlipForConditionalGeneration directory (local or gs://) to start from

    m = c.model
    for key in ("embed_dim", "t_init", "queue_size", "alpha", "alpha_ramp_steps"):
        del m[key]  # ITC's, which a captioner has not
    m.momentum = 0.0  # no momentum distillation: that is of ITC
    m.image = ml_collections.ConfigDict()  # sizes: the checkpoint's
    m.text = ml_collections.ConfigDict()

    d = c.data
    d.image_size = 0  # 0: the checkpoint's (its position table is for that size)
    # "": the checkpoint directory's own tokenizer; the path of one when the directory has none
    d.tokenizer = ""
    # offered: captioning (BLEU-4 / CIDEr-D of beam captions on held-out pairs)
    c.evals = ("captioning",)

    t = c.train
    if "smoke" not in args:
        d.max_len = 30  # [CLS] + caption + [SEP] WordPiece tokens (BLIP's captioning: 30 words)
        t.steps = 1000
        t.batch_size = 64
        t.learning_rate = 1e-5  # BLIP's captioning fine-tune (ViT-B)
        t.warmup_steps = 100
        t.weight_decay = 0.05
        t.log_every = 50
        t.eval_every = 500
        t.checkpoint_every = 500
    return c
