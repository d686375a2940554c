"""experiments/blip/word_tokenizer.py: a word-level tokenizer.json built from a user's shards and
caption files, which BLIP's token layout accepts and which keeps every word of a caption."""

import importlib.util
import json

import pytest

from jaxmodels.config import REPO_ROOT, load_config
from jaxmodels.data.webdataset import write_shard
from jaxmodels.models.blip.tokens import make_layout

spec = importlib.util.spec_from_file_location(
    "word_tokenizer", REPO_ROOT / "experiments" / "blip" / "word_tokenizer.py"
)
word_tokenizer = importlib.util.module_from_spec(spec)
spec.loader.exec_module(word_tokenizer)

SHARDS = (("the number seven", "a drawing of the digit two"), ("a handwritten digit nine",))


def _inputs(tmp_path):
    """Two shards (.txt captions, then .json ones) and a caption file: the captions, the args."""
    for s, captions in enumerate(SHARDS):
        records = []
        for i, caption in enumerate(captions):
            text = json.dumps({"caption": caption}) if s else caption
            member = {"json" if s else "txt": text.encode()}
            records.append((f"{s}{i:03d}", {"png": b"not read", **member}))
        write_shard(str(tmp_path / f"{s:05d}.tar"), records)
    (tmp_path / "more.txt").write_text("Three Sevens, one zero\n\nthe number seven\n")
    args = [str(tmp_path / "00000.tar"), str(tmp_path / "more.txt")]
    return [*SHARDS[0], "Three Sevens, one zero", "the number seven"], args


def test_blip_layout_accepts_it_and_every_word_round_trips(tmp_path, capsys):
    captions, args = _inputs(tmp_path)
    out = tmp_path / "tok" / "tokenizer.json"
    word_tokenizer.main([*args, "--out", str(out)])
    assert "wrote" in capsys.readouterr().out
    config = load_config("experiments/blip/pretrain.py:smoke")
    config.data.tokenizer = str(out)
    layout = make_layout(config.data)
    tok = layout.tokenizer
    assert (tok.pad_id, tok.unk_id, layout.first_id, layout.eos_id) == (0, 1, 2, 3)
    words = {"the", "number", "seven", "a", "drawing", "of", "digit", "two", "three", "sevens"}
    words |= {"one", "zero", ",", "picture"}  # "picture": BLIP's prompt, always added
    assert tok.vocab_size == len(word_tokenizer.SPECIALS) + len(words)
    assert (layout.dec_id, layout.enc_id, layout.vocab_size) == (
        *(tok.vocab_size, tok.vocab_size + 1),
        tok.vocab_size + 2,
    )  # [DEC], [ENC] after the vocabulary, as BLIP adds them to bert-base-uncased
    assert tok.unk_id not in layout.prompt_ids
    rows = layout.encode(captions)
    n = len(layout.prompt_ids)
    for caption, text, caption_row in zip(captions, rows["text"], rows["caption"], strict=True):
        assert tok.unk_id not in text
        assert layout.decode(text[1:]) == layout.decode(caption_row[n:]) == caption.lower()
    assert layout.decode(layout.encode(["the digit eight"])["text"][0][1:]) == "the digit [UNK]"


def test_json_captions_min_count_and_an_existing_file_is_kept(tmp_path):
    _, args = _inputs(tmp_path)
    captions = list(word_tokenizer.read_captions([str(tmp_path / "00001.tar")], "caption"))
    assert captions == list(SHARDS[1])
    tok = word_tokenizer.word_tokenizer(["the number seven", "the number two"], min_count=2)
    assert tok.encode("the number seven").tokens == ["[CLS]", "the", "number", "[UNK]", "[SEP]"]
    assert tok.token_to_id("picture") is not None  # the prompt is kept whatever the counts
    out = tmp_path / "tokenizer.json"
    out.write_text("mine")
    with pytest.raises(SystemExit, match="exists; not overwriting"):
        word_tokenizer.main([*args, "--out", str(out)])
    assert out.read_text() == "mine"
