"""BLIP on the user's image-caption files: a caption table streams through grain; a word outside
the closed vocabulary is refused by name instead of becoming [UNK]."""

import numpy as np
import pytest
from PIL import Image

from jaxmodels.config import load_config
from jaxmodels.models.blip import data
from jaxmodels.models.blip.task import pair_data

CAPTIONS = ("a red circle", "two blue squares", "a green triangle above a red square")


def _table(tmp_path, captions):
    lines = ["image\tcaption"]
    for i, caption in enumerate(captions):
        pixels = np.random.default_rng(i).integers(0, 255, (20, 26, 3), np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"{i}.png")
        lines.append(f"{i}.png\t{caption}")
    path = tmp_path / "pairs.tsv"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _config(path):
    config = load_config("experiments/blip/pretrain.py:smoke")
    config.data.update(name="csv", path=path, eval_path=path, eval_size=5)
    config.train.batch_size = 4
    return config


def test_caption_table_batches_and_held_out_pairs(tmp_path):
    config = _config(_table(tmp_path, CAPTIONS * 3))
    train, evaluation, held, train_captions = pair_data(config)
    batch = next(train(0, 1))
    size, max_len = config.data.image_size, config.data.max_len
    assert batch["image"].shape == (4, size, size, 3) and batch["image"].dtype == np.uint8
    assert batch["text"].shape == (4, max_len) and (batch["text"][:, 0] == data.CLS_ID).all()
    decoded = {data.TOKENIZER.decode(row) for row in batch["text"]}
    assert decoded <= set(CAPTIONS)
    images, captions = held
    assert images.shape == (5, size, size, 3) and captions == list(CAPTIONS * 2)[:5]
    assert train_captions == list(CAPTIONS * 2)[:5]
    assert sum(len(b["text"]) for b in evaluation(0, 1)) == 8  # 9 rows, whole batches of 4


def test_unknown_words_are_refused_by_name(tmp_path):
    config = _config(_table(tmp_path, ["a red circle", "a dog on a red sofa"] * 2))
    train, *_ = pair_data(config)
    with pytest.raises(ValueError, match="'dog' is not in BLIP's closed vocabulary"):
        next(train(0, 1))
