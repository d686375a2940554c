"""Tokenizers shared by every text-using family: UTF-8 bytes (the embedded default), a closed
word vocabulary, and files: an HF ``tokenizer.json`` or a SentencePiece model
(:mod:`jaxmodels.data.tokenizer_files`), alone or in an HF directory.

Every tokenizer has ``vocab_size``, ``pad_id``, ``bos_id`` / ``eos_id`` / ``unk_id`` /
``mask_id`` (None where it has none; BERT's [CLS] / [SEP] count as BOS / EOS), ``max_len`` (the
directory's ``model_max_length``, else None), ``token_id(token)`` (the id of a token string, None
when absent), ``encode(text)`` (ids without special tokens),
``decode(ids)`` (special tokens left out) and ``encode_batch(texts, max_len) -> (ids_BxL,
lengths_B)``: each text framed by the tokenizer's own special tokens (none for bytes and words),
truncated to ``max_len`` with the special tokens kept, then right-padded with ``pad_id``;
``lengths_B`` counts the tokens before the padding (``transformers``' attention mask).
"""

from __future__ import annotations

import os

import numpy as np

from jaxmodels.data.tokenizer_files import (
    HFTokenizer,
    SentencePieceTokenizer,
    pad_rows,
    read_config,
)

__all__ = [
    "ByteTokenizer",
    "HFTokenizer",
    "SentencePieceTokenizer",
    "WordTokenizer",
    "find_tokenizer",
    "load_tokenizer",
    "make_tokenizer",
    "padded_vocab",
]
SPM_NAMES = ("spiece.model", "tokenizer.model", "sentencepiece.bpe.model", "sentencepiece.model")


def _encode_batch(tokenizer, texts, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    return pad_rows([tokenizer.encode(t)[:max_len] for t in texts], max_len, tokenizer.pad_id)


class ByteTokenizer:
    """UTF-8 bytes are ids 0..255; then PAD=256, BOS=257, EOS=258."""

    pad_id, bos_id, eos_id = 256, 257, 258
    unk_id = mask_id = max_len = None
    vocab_size = 259
    is_bytes = True

    def token_id(self, token: str) -> None:
        """Bytes have no token strings."""
        return None

    def encode(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32)

    def encode_batch(self, texts, max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """Encodes ``texts`` into ``(ids_BxL, lengths_B)``: truncated to ``max_len``, PAD after."""
        return _encode_batch(self, texts, max_len)

    def decode(self, ids) -> str:
        data = bytes(int(i) for i in np.asarray(ids).reshape(-1) if 0 <= int(i) < 256)
        return data.decode("utf-8", errors="replace")


def padded_vocab(n: int, multiple: int) -> int:
    """Rounds a vocabulary size up to a multiple (faster, shardable matmuls)."""
    return -(-n // multiple) * multiple if multiple > 1 else n


def make_tokenizer(data_config):
    """The tokenizer ``config.data.tokenizer`` names: ``byte``; ``sentencepiece`` (the model at
    ``config.data.spm_model``; missing PAD/BOS/EOS get ids after its pieces); or a path:
    :func:`load_tokenizer`."""
    kind = data_config.get("tokenizer", "byte")
    if kind == "byte":
        return ByteTokenizer()
    if kind == "sentencepiece":
        return SentencePieceTokenizer(data_config.spm_model, key="config.data.spm_model")
    if not isinstance(kind, str) or not kind:
        raise ValueError(
            f"config.data.tokenizer={kind!r}: 'byte', 'sentencepiece' or the path of a "
            "tokenizer.json, a SentencePiece .model or an HF directory holding one"
        )
    return load_tokenizer(kind, key="config.data.tokenizer")


def load_tokenizer(path: str, key: str = "tokenizer"):
    """The tokenizer at ``path``: a ``tokenizer.json``, a SentencePiece ``.model``, or a directory
    holding one (its ``tokenizer_config.json`` / ``special_tokens_map.json`` give the special
    tokens, ``model_max_length`` and, for ``SiglipTokenizer``, SigLIP's text canonicalisation).
    Errors name ``key``."""
    path = os.fspath(path)
    if os.path.isdir(path):
        found = find_tokenizer(path)
        if found is None:
            raise FileNotFoundError(
                f"{key}={path!r} holds no tokenizer.json and no SentencePiece model "
                f"({', '.join(SPM_NAMES)})"
            )
        return found
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{key}={path!r} does not exist")
    if path.endswith(".json"):
        return HFTokenizer(path, read_config(os.path.dirname(path)))
    if path.endswith(".model"):
        return SentencePieceTokenizer(path, read_config(os.path.dirname(path)), key, ("pad", "eos"))
    raise ValueError(
        f"{key}={path!r}: give a tokenizer.json, a SentencePiece .model or a directory"
    )


def find_tokenizer(directory: str):
    """The tokenizer of an HF directory (``tokenizer.json`` first, else a SentencePiece model),
    or None when it has neither."""
    config = read_config(directory)
    if os.path.isfile(json_path := os.path.join(directory, "tokenizer.json")):
        return HFTokenizer(json_path, config)
    named = config.get("vocab_file")
    for name in ((os.path.basename(named),) if isinstance(named, str) else ()) + SPM_NAMES:
        if os.path.isfile(model := os.path.join(directory, name)) and name.endswith(".model"):
            return SentencePieceTokenizer(model, config, f"{directory}/{name}", ("pad", "eos"))
    return None


class WordTokenizer:
    """Whitespace words of a fixed vocabulary: PAD=0, BOS=1, EOS=2, UNK=3, ``specials``, words.

    For closed-vocabulary caption grammars (the embedded scenes), where bytes would make every
    sequence several times longer. A word outside the vocabulary is refused, naming it and the
    caption (``hint`` says what to do instead), never dropped or turned into [UNK] unseen.
    """

    pad_id, bos_id, eos_id, unk_id = 0, 1, 2, 3
    mask_id = max_len = None
    is_bytes = False

    def __init__(self, words, specials=(), hint: str = ""):
        self.itos = ["[PAD]", "[BOS]", "[EOS]", "[UNK]", *specials, *words]
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("WordTokenizer: words and specials must be distinct")
        self.vocab_size = len(self.itos)
        self.words, self.hint = tuple(words), hint
        self._n_special = 4 + len(specials)

    def token_id(self, token: str) -> int | None:
        """The id of a word or special token of the vocabulary, None when it has none."""
        return self.stoi.get(token)

    def encode(self, text: str) -> np.ndarray:
        """Ids of the lower-cased whitespace words (``[UNK]``, as :meth:`decode` writes it, is the
        unknown token); any other word outside the vocabulary is a ValueError naming it."""
        words = ["[UNK]" if w == "[unk]" else w for w in text.lower().split()]
        unknown = [w for w in words if w != "[UNK]" and self.stoi.get(w, -1) < self._n_special]
        if unknown:
            raise ValueError(
                f"caption {text!r}: {unknown[0]!r} is not in the closed vocabulary "
                f"({len(self.words)} words: {', '.join(self.words)}){self.hint}"
            )
        return np.asarray([self.stoi[w] for w in words], np.int32)

    def encode_batch(self, texts, max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """``(ids_BxL, lengths_B)``: truncated to ``max_len``, PAD after (as ByteTokenizer)."""
        return _encode_batch(self, texts, max_len)

    def decode(self, ids) -> str:
        """Words of the ids, skipping PAD/BOS/EOS and the specials; a generated [UNK] shows."""
        keep = [int(i) for i in np.asarray(ids).reshape(-1)]
        return " ".join(
            self.itos[i]
            for i in keep
            if (self._n_special <= i or i == self.unk_id) and i < self.vocab_size
        )
