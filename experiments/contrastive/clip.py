"""CLIP (symmetric softmax/InfoNCE loss) on the embedded shapes + digits captions.

jaxmodels train --config experiments/contrastive/clip.py --workdir runs/clip
jaxmodels train --config experiments/contrastive/clip.py:smoke --workdir /tmp/clip-smoke
jaxmodels eval --config experiments/contrastive/clip.py --workdir runs/clip

Towers, data and schedule are SigLIP's config (siglip.py) so the two losses compare directly;
only the loss, its temperature initialisation and the pooling follow CLIP.
"""

import math
import os

from jaxmodels.config import load_config


def get_config(arg: str | None = None):
    siglip = os.path.join(os.path.dirname(os.path.abspath(__file__)), "siglip.py")
    c = load_config(f"{siglip}:{arg}" if arg else siglip)  # checks arg
    c.model.variant = "clip"  # CLIP's symmetric cross-entropy (Radford et al., 2021, Fig. 3)
    c.model.loss_impl = "dense"  # dense (GSPMD over the global batch) | allgather (shard_map)
    c.model.t_prime_init = math.log(1 / 0.07)  # CLIP Sec. 2.5: t = 1/0.07, clipped at 100
    c.model.b_init = 0.0  # unused by CLIP's softmax loss
    c.model.image.pool = "cls"  # CLIP's ViT pools the class token
    c.model.text.causal = True  # CLIP's text tower uses causal self-attention ...
    c.model.text.pool = "last"  # ... and takes the [EOS] (last) token
    return c
