"""Tokenizers from files give the ids ``transformers`` gives for the same files.

Each tokenizer is trained here on text that ships with Python (no downloads), saved as HF saves
a checkpoint's tokenizer, and read both by ``transformers`` (the reference) and by
:func:`jaxmodels.data.tokenizers.load_tokenizer`; a few hundred strings (unicode, emoji, control
characters, special-token text, the empty string, text far over the length) must encode to the
same ids and attention mask at ``padding="max_length", truncation=True``.
"""

import numpy as np
import pytest

from jaxmodels.data import tokenizers as T

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")
pytest.importorskip("sentencepiece")

MAX_LEN = 24


def strings(lines) -> list[str]:
    """A few hundred test strings: every fifth docstring line (up to 300) and hard cases."""
    lines = lines[::5][:300]
    hard = [
        "",
        " ",
        "\t\n",
        "a",
        "A photo of a CAT.",
        "naïve café résumé Ångström",
        "Straße, Œuvre, ǅemal, ﬁne ligature",
        "東京タワーの写真",
        "한국어 문장입니다",
        "مرحبا بالعالم",
        "emoji 🐱🐶🚀 and 👍🏽 and 👨‍👩‍👧",
        "zero\u200bwidth\u200djoiner",
        "combining e\u0301 vs é",
        "tabs\tand\nnewlines\r\nmixed   spaces",
        "don't can't it's we're they've I'm you'll he'd",
        "numbers 12345 and 3.14159 and 1,000,000",
        "punctuation!?;:--...(())[]{}<>'\"",
        "<|startoftext|> a <|endoftext|> b",
        "[CLS] [SEP] [PAD] [MASK] [UNK] inside",
        "</s> and <unk> inside",
        "\u2581leading sentencepiece marker",
        "x" * 400,
        "word " * 300,
        " ".join(lines[:60]),  # far over every length
        "ｆｕｌｌｗｉｄｔｈ　ｔｅｘｔ",
        "\u00a0non-breaking\u00a0spaces\u00a0",
        "MiXeD CaSe WoRdS",
    ]
    return lines + hard


def both(directory):
    """Our tokenizer of an HF directory and ``transformers``' (the reference)."""
    return T.load_tokenizer(str(directory)), transformers.AutoTokenizer.from_pretrained(directory)


def assert_same_ids(ours, reference, texts, max_len=MAX_LEN):
    ref = reference(list(texts), padding="max_length", truncation=True, max_length=max_len)
    ids, lengths = ours.encode_batch(texts, max_len)
    for i, text in enumerate(texts):
        assert ids[i].tolist() == ref["input_ids"][i], text
        assert lengths[i] == sum(ref["attention_mask"][i]), text
    assert ids.dtype == np.int32 and ids.shape == (len(texts), max_len)


def test_clip_bpe_matches_transformers(clip_tokenizer_dir, doc_lines):
    ours, ref = both(clip_tokenizer_dir)
    assert type(ref).__name__ == "CLIPTokenizer"
    assert (ours.bos_id, ours.eos_id, ours.pad_id) == (ref.bos_token_id, ref.eos_token_id, 1)
    assert ours.max_len == 77 and ours.vocab_size == len(ref)
    assert_same_ids(ours, ref, strings(doc_lines))
    assert_same_ids(ours, ref, strings(doc_lines)[:40], max_len=77)
    ids = ours.encode_ids("A photo of a CAT.", 77)
    assert ours.decode(ids) == ref.decode(ids, skip_special_tokens=True) == "a photo of a cat ."


def test_bert_wordpiece_matches_transformers(bert_tokenizer_dir, doc_lines):
    ours, ref = both(bert_tokenizer_dir)
    assert type(ref).__name__ == "BertTokenizer"
    specials = (ref.cls_token_id, ref.sep_token_id, ref.pad_token_id, ref.unk_token_id)
    assert (ours.bos_id, ours.eos_id, ours.pad_id, ours.unk_id) == specials
    assert ours.mask_id == ref.mask_token_id and ours.max_len is None
    assert_same_ids(ours, ref, strings(doc_lines))
    ids = ours.encode_ids("A photo of a cat with naïve résumé", 40)
    assert ours.decode(ids) == ref.decode(ids, skip_special_tokens=True)


def test_siglip_sentencepiece_matches_transformers(siglip_tokenizer_dir, doc_lines):
    ours, ref = both(siglip_tokenizer_dir)
    assert type(ref).__name__ == "SiglipTokenizer"
    assert (ours.bos_id, ours.eos_id, ours.pad_id) == (None, ref.eos_token_id, ref.pad_token_id)
    assert ours.unk_id == ref.unk_token_id and ours.max_len == 64
    assert ours.vocab_size == ref.vocab_size  # no id invented for a BOS it does not have
    assert_same_ids(ours, ref, strings(doc_lines))
    assert_same_ids(ours, ref, strings(doc_lines)[:40], max_len=64)


def test_generic_tokenizer_json_matches_fast_tokenizer(tmp_path, doc_lines):
    """A user's ``tokenizer.json`` without a post-processor: ids only, no special tokens, and
    ``PreTrainedTokenizerFast`` agrees."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(doc_lines, trainer)
    tok.save(str(tmp_path / "tokenizer.json"))
    ours = T.load_tokenizer(str(tmp_path / "tokenizer.json"))
    ref = transformers.PreTrainedTokenizerFast(
        tokenizer_file=str(tmp_path / "tokenizer.json"), pad_token="<pad>"
    )
    assert ours.pad_id == 0 and ours.bos_id is None and ours.eos_id is None
    assert_same_ids(ours, ref, strings(doc_lines))
    text = "emoji 🐱 and naïve"
    assert ours.decode(ours.encode(text)) == text  # byte level: every string round-trips


def test_make_tokenizer_keys_and_errors(tmp_path, clip_tokenizer_dir, siglip_tokenizer_dir):
    import ml_collections

    d = ml_collections.ConfigDict({"tokenizer": "byte"})
    assert isinstance(T.make_tokenizer(d), T.ByteTokenizer)
    d.tokenizer = str(
        clip_tokenizer_dir / "tokenizer.json"
    )  # a file: its directory's config still read
    assert T.make_tokenizer(d).max_len == 77
    d.tokenizer = str(siglip_tokenizer_dir / "spiece.model")
    assert T.make_tokenizer(d).encode_batch(["A, B!"], 8)[0].tolist() == (
        T.load_tokenizer(str(siglip_tokenizer_dir)).encode_batch(["a b"], 8)[0].tolist()
    )  # SigLIP's canonicalisation, read from the directory's tokenizer_config.json
    d.tokenizer = str(tmp_path)
    with pytest.raises(FileNotFoundError, match="config.data.tokenizer=.*no tokenizer.json"):
        T.make_tokenizer(d)
    d.tokenizer = str(tmp_path / "missing.json")
    with pytest.raises(FileNotFoundError, match="config.data.tokenizer=.*does not exist"):
        T.make_tokenizer(d)
    (tmp_path / "vocab.txt").write_text("a\n")
    d.tokenizer = str(tmp_path / "vocab.txt")
    with pytest.raises(ValueError, match="config.data.tokenizer=.*tokenizer.json, a SentencePiece"):
        T.make_tokenizer(d)
    (tmp_path / "bad.json").write_text("{}")
    d.tokenizer = str(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="bad.json is not a tokenizer.json"):
        T.make_tokenizer(d)


def test_word_tokenizer_refuses_unknown_words():
    tok = T.WordTokenizer(("a", "red", "circle"), hint="; set data.tokenizer")
    assert tok.decode(tok.encode("A red circle")) == "a red circle"
    with pytest.raises(ValueError, match="'large' is not in the closed vocabulary.*set data.tok"):
        tok.encode("a large red circle")
    with pytest.raises(ValueError, match="'\\[eos\\]' is not"):
        tok.encode("a [EOS]")  # special tokens are not words
    assert tok.decode([tok.unk_id, 4]) == "[UNK] a"  # a generated [UNK] is shown, not dropped
    assert tok.encode("[UNK] a").tolist() == [tok.unk_id, 4]  # and reads back
