"""Zero-shot classification with prompt templates (CLIP Sec. 3.1.4, prompt ensembling).

Each class name is written into every template ("a picture of a {}"), the text tower embeds the
prompts, the L2-normalised embeddings are averaged over templates and renormalised, and an
image is assigned the class whose embedding has the largest cosine similarity.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def class_embeddings(
    embed_texts: Callable[[list[str]], np.ndarray],
    classnames: Sequence[str],
    templates: Sequence[str],
) -> np.ndarray:
    """(C, E) class embeddings: the renormalised mean of each class's prompt embeddings.

    ``A`` (a letter beyond the shape legend) counts the templates, one prompt per class and
    template.
    """
    prompts = [t.format(c) for c in classnames for t in templates]
    z_CAxE = np.asarray(embed_texts(prompts), np.float32)
    z_CxAxE = z_CAxE.reshape(len(classnames), len(templates), -1)
    z_CxAxE = z_CxAxE / np.linalg.norm(z_CxAxE, axis=-1, keepdims=True)
    mean_CxE = z_CxAxE.mean(axis=1)
    return mean_CxE / np.linalg.norm(mean_CxE, axis=-1, keepdims=True)


def zero_shot_accuracy(zimg_BxE, zcls_CxE, labels_B, ks=(1,)) -> dict[str, float]:
    """Top-K accuracy of nearest-class-embedding predictions: ``{top1: ..., top5: ...}``."""
    scores_BxC = np.asarray(zimg_BxE, np.float32) @ np.asarray(zcls_CxE, np.float32).T
    labels_B = np.asarray(labels_B)
    # the true class is in the top K when fewer than K classes score strictly higher
    rank_B = np.sum(scores_BxC > scores_BxC[np.arange(len(labels_B)), labels_B][:, None], axis=1)
    return {f"top{k}": float(np.mean(rank_B < k)) for k in ks}


# The 80 prompts CLIP ensembles for ImageNet (Radford et al., 2021, Sec. 3.1.4; listed in the
# CLIP repository's notebooks/Prompt_Engineering_for_ImageNet.ipynb), one per line.
CLIP_IMAGENET = """\
a bad photo of a {}.
a photo of many {}.
a sculpture of a {}.
a photo of the hard to see {}.
a low resolution photo of the {}.
a rendering of a {}.
graffiti of a {}.
a bad photo of the {}.
a cropped photo of the {}.
a tattoo of a {}.
the embroidered {}.
a photo of a hard to see {}.
a bright photo of a {}.
a photo of a clean {}.
a photo of a dirty {}.
a dark photo of the {}.
a drawing of a {}.
a photo of my {}.
the plastic {}.
a photo of the cool {}.
a close-up photo of a {}.
a black and white photo of the {}.
a painting of the {}.
a painting of a {}.
a pixelated photo of the {}.
a sculpture of the {}.
a bright photo of the {}.
a cropped photo of a {}.
a plastic {}.
a photo of the dirty {}.
a jpeg corrupted photo of a {}.
a blurry photo of the {}.
a photo of the {}.
a good photo of the {}.
a rendering of the {}.
a {} in a video game.
a photo of one {}.
a doodle of a {}.
a close-up photo of the {}.
a photo of a {}.
the origami {}.
the {} in a video game.
a sketch of a {}.
a doodle of the {}.
a origami {}.
a low resolution photo of a {}.
the toy {}.
a rendition of the {}.
a photo of the clean {}.
a photo of a large {}.
a rendition of a {}.
a photo of a nice {}.
a photo of a weird {}.
a blurry photo of a {}.
a cartoon {}.
art of a {}.
a sketch of the {}.
a embroidered {}.
a pixelated photo of a {}.
itap of the {}.
a jpeg corrupted photo of the {}.
a good photo of a {}.
a plushie {}.
a photo of the nice {}.
a photo of the small {}.
a photo of the weird {}.
the cartoon {}.
art of the {}.
a drawing of the {}.
a photo of the large {}.
a black and white photo of a {}.
the plushie {}.
a dark photo of a {}.
itap of a {}.
graffiti of the {}.
a toy {}.
itap of my {}.
a photo of a cool {}.
a photo of a small {}.
a tattoo of the {}.
""".splitlines()

# Named prompt sets (config.zero_shot.templates): CLIP's ImageNet ensemble, or its one base
# prompt (CLIP Sec. 3.1.4: "A photo of a {label}." alone).
TEMPLATES = {"clip_imagenet": tuple(CLIP_IMAGENET), "simple": ("a photo of a {}.",)}
