"""Fine-tune an HF CLIP or SigLIP checkpoint (a ``CLIPModel`` / ``SiglipModel`` directory).

jaxmodels train --config experiments/contrastive/hf.py --workdir runs/clip-ft \
    --config.init.hf=/path/to/clip-vit-base-patch32 --config.data.name=csv ...
jaxmodels train --config experiments/contrastive/hf.py:smoke --workdir /tmp/hf-smoke \
    --config.init.hf=/path/to/tiny/checkpoint

The checkpoint fixes the towers, the loss (CLIP: softmax, SigLIP: sigmoid), the image size and
the text length, and its directory's tokenizer encodes the captions, so this config leaves those
keys out (``data.image_size`` 0: the checkpoint's); one given here or on the command line must
agree with the checkpoint (``model.text.max_len`` may be shorter), else the run stops naming it.
"""

import os

import ml_collections

from jaxmodels.config import base_config, config_args, load_config
from jaxmodels.evaluate import zero_shot_folder

SIGLIP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "siglip.py")


def get_config(arg: str | None = None):
    args = config_args(arg, ("smoke",))
    c = base_config()
    c.family = "contrastive"
    c.init.hf = ""  # the CLIPModel / SiglipModel directory (local or gs://) to start from

    m = c.model
    m.loss_impl = "dense"  # softmax: dense | allgather; sigmoid: dense | chunked | allgather
    m.attention_impl = "auto"  # auto (cuDNN on GPU, splash on TPU, else XLA) | xla | cudnn | splash
    m.remat_policy = "none"  # none | full | dots_saveable | ... (layers.transformer.REMAT_POLICIES)
    m.scan_layers = False  # imports are unrolled
    m.image = ml_collections.ConfigDict()  # sizes and pooling: the checkpoint's
    m.text = ml_collections.ConfigDict()
    # False: texts padded to max_len are read whole, padding attended, as SigLIP was trained and
    # HF runs it without a mask; CLIP's causal tower never sees what follows its EOS either way
    m.text.mask_padding = False

    _add_data(c)
    # offered: zeroshot (per embedded task), retrieval, zero_shot (added by zero_shot.dir)
    c.evals = ("zeroshot", "retrieval")
    zero_shot_folder.add_config(c)  # zero-shot on your labelled folder: --config.zero_shot.dir
    t = c.train
    t.steps = 1000
    t.batch_size = 256
    t.learning_rate = 1e-5  # a small step for pretrained towers
    t.warmup_steps = 100
    t.b2 = 0.98
    t.weight_decay = 0.1
    t.log_every = 50
    t.eval_every = 500
    t.eval_batches = 4  # held-out batches for eval_loss
    t.checkpoint_every = 500

    if "smoke" in args:
        c.data.train_size, c.data.eval_size, c.data.retrieval_size = 64, 32, 32
        c.data.eval_batch_size = 32
        t.steps, t.batch_size, t.warmup_steps = 3, 8, 1
        t.log_every, t.eval_every, t.eval_batches, t.checkpoint_every = 1, 3, 1, 3
    return c


def _add_data(c):
    """siglip.py's data keys, with the image size left to the checkpoint."""
    c.data = load_config(SIGLIP).data
    c.data.image_size = 0  # 0: the checkpoint's (its position table is for that size)
    # the embedded data are rendered at the checkpoint's size (224 px: ~150 kB an image)
    c.data.train_size, c.data.eval_size, c.data.retrieval_size = 2000, 500, 500
    c.data.tokenizer = "byte"  # the checkpoint directory's own is used; a path when it has none
