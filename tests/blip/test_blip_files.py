"""BLIP on the user's image-caption files: a caption table streams through grain; a word outside
the closed vocabulary is refused by name instead of becoming [UNK]; a real tokenizer keeps every
word, trains, and evaluates and samples on the user's held-out pairs."""

import re

import jax
import numpy as np
import pytest
from flax import linen as nn
from PIL import Image

from jaxmodels.config import load_config
from jaxmodels.data.tokenizers import load_tokenizer
from jaxmodels.models.blip import data
from jaxmodels.models.blip.sample import Captioner
from jaxmodels.models.blip.task import build_task, pair_data
from jaxmodels.models.blip.tokens import layout_of, make_layout

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
    layout = make_layout(config.data)
    train, evaluation, held, train_captions = pair_data(config, layout)
    batch = next(train(0, 1))
    size, max_len = config.data.image_size, config.data.max_len
    assert batch["image"].shape == (4, size, size, 3) and batch["image"].dtype == np.uint8
    assert batch["text"].shape == (4, max_len) and (batch["text"][:, 0] == layout.first_id).all()
    decoded = {layout.decode(row[1:]) for row in batch["text"]}
    assert decoded <= set(CAPTIONS)
    images, captions = held
    assert images.shape == (5, size, size, 3) and captions == list(CAPTIONS * 2)[:5]
    assert train_captions == list(CAPTIONS * 2)[:5]
    assert sum(len(b["text"]) for b in evaluation(0, 1)) == 8  # 9 rows, whole batches of 4


def test_unknown_words_are_refused_by_name(tmp_path):
    config = _config(_table(tmp_path, ["a red circle", "a dog on a red sofa"] * 2))
    train, *_ = pair_data(config, make_layout(config.data))
    with pytest.raises(ValueError, match="'dog' is not in the closed vocabulary .* a real tokeniz"):
        next(train(0, 1))


REAL = ("A large red circle on a white background", "the os module returns a path", "Ünïcode 🐱")


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def test_a_real_tokenizer_keeps_every_word(bert_tokenizer_dir, doc_lines):
    """BERT WordPiece (BLIP's kind): every word of a caption comes back from its rows, [DEC] and
    [ENC] are added after the vocabulary, and the prompt is not scored."""
    layout = layout_of(load_tokenizer(str(bert_tokenizer_dir)), 64)
    tok = layout.tokenizer
    assert (layout.dec_id, layout.enc_id, layout.vocab_size) == (600, 601, 602)
    assert (layout.first_id, layout.eos_id) == (tok.bos_id, tok.eos_id)  # [CLS], [SEP]
    captions = [*REAL, *doc_lines[:200]]
    rows = layout.encode(captions)
    n = len(layout.prompt_ids)
    for caption, text, caption_row in zip(captions, rows["text"], rows["caption"], strict=True):
        decoded = layout.decode(text[1:])
        assert decoded == layout.decode(caption_row[n:])
        if caption.isascii() and len(layout.ids(caption)) <= 62:  # not truncated
            # the same words (BERT spaces out punctuation: compare letters and digits)
            assert words(decoded) == words(caption), caption
    assert layout.decode(rows["text"][2][1:]) == "unicode [UNK]"  # the emoji: [UNK], not dropped
    assert (
        rows["caption"][0][0] == layout.dec_id
        and (rows["caption"][:, 1:n] == layout.prompt_ids[1:]).all()
    )


def test_blip_tokens_come_from_the_tokenizer_when_it_has_them(bert_tokenizer_dir, tmp_path):
    """BLIP's own tokenizer set-up: bert + bos [DEC] + additional special [ENC]."""
    transformers = pytest.importorskip("transformers")
    ref = transformers.AutoTokenizer.from_pretrained(bert_tokenizer_dir)
    ref.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})
    ref.save_pretrained(tmp_path)
    layout = layout_of(load_tokenizer(str(tmp_path)), 16)
    assert (layout.dec_id, layout.enc_id, layout.vocab_size) == (600, 601, 602)
    enc = ref(list(REAL), padding="max_length", truncation=True, max_length=16)["input_ids"]
    np.testing.assert_array_equal(layout.encode(REAL)["text"], enc)  # what BLIP's code feeds


def test_a_tokenizer_without_bert_framing_is_refused(siglip_tokenizer_dir):
    config = load_config("experiments/blip/pretrain.py:smoke")
    config.data.tokenizer = str(siglip_tokenizer_dir)
    with pytest.raises(ValueError, match=r"config.data.tokenizer=.* frames a text as \[1\]"):
        make_layout(config.data)


def _npz(path, captions, size, seed):
    images = np.random.default_rng(seed).integers(0, 255, (len(captions), size, size, 3), np.uint8)
    data.save_pairs(str(path), images, captions)
    return str(path)


def test_file_data_trains_evaluates_and_samples_its_held_out_pairs(
    bert_tokenizer_dir, tmp_path, monkeypatch
):
    """``data.name=file`` with a real tokenizer: the evaluators and ``samples.png`` on the
    held-out file (``data.eval_path``), not on rendered scenes. (A training step with a real
    tokenizer: ``test_blip_task.py::test_loss_is_the_sum_of_the_three_logged_objectives``.)"""
    config = load_config("experiments/blip/pretrain.py:smoke")
    train_caps = [f"{c} number {i}" for i, c in enumerate(REAL * 6)]
    eval_caps = ["the module returns a red path", "a white circle on json"] * 3
    size = config.data.image_size
    config.data.update(
        name="file",
        path=_npz(tmp_path / "train.npz", train_caps, size, 0),
        eval_path=_npz(tmp_path / "eval.npz", eval_caps, size, 1),
        tokenizer=str(bert_tokenizer_dir),
        eval_size=6,
        retrieval_size=6,
        max_len=24,
    )
    config.model.text.max_len = 32
    config.evals, config.sample.num = ("retrieval",), 2
    config.train.batch_size = 4
    task = build_task(config, None)
    params = nn.unbox(jax.jit(task.init)(jax.random.key(0)))
    assert params["text"]["word"]["embedding"].shape[0] == 602  # the tokenizer's + [DEC], [ENC]
    held_images = data.load_pairs(config.data.eval_path, size)[0]
    eval_batch = next(task.eval_data(0, 1))
    np.testing.assert_array_equal(eval_batch["image"], held_images[:4])
    assert (
        layout_of(load_tokenizer(str(bert_tokenizer_dir)), 24).decode(eval_batch["text"][0][1:])
        == eval_caps[0]
    )
    assert set(task.evaluate(params, jax.random.key(2))) >= {"itc_i2t_recall@1"}
    seen = []

    def captioner(self, params, images, rng, method="beam"):  # decoding is tested elsewhere
        seen.append(images)
        return [f"{method} {i}" for i in range(len(images))]

    monkeypatch.setattr(Captioner, "__call__", captioner)
    lines = task.sample(params, jax.random.key(3), str(tmp_path / "run")).splitlines()
    assert (tmp_path / "run" / "samples.png").is_file()
    assert [line.split(" | ")[0] for line in lines[1:]] == [f"ref: {c}" for c in eval_caps[:2]]
    np.testing.assert_array_equal(seen[0], held_images[:2])

    config.data.eval_path = ""  # a file of real captions with no held-out file: no evaluation
    task = build_task(config, None)
    assert task.evaluate is None and task.sample is None and task.eval_data is None
