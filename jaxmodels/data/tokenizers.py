"""Tokenizers shared by every text-using family: UTF-8 bytes (one id scheme), SentencePiece and
HF ``tokenizer.json`` files (the ``tokenizers`` library)."""

from __future__ import annotations

import json
import os

import numpy as np


def _encode_batch(tokenizer, texts, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.full((len(texts), max_len), tokenizer.pad_id, np.int32)
    lengths = np.zeros(len(texts), np.int32)
    for i, text in enumerate(texts):
        row = tokenizer.encode(text)[:max_len]
        ids[i, : len(row)], lengths[i] = row, len(row)
    return ids, lengths


class ByteTokenizer:
    """UTF-8 bytes are ids 0..255; then PAD=256, BOS=257, EOS=258."""

    pad_id, bos_id, eos_id = 256, 257, 258
    vocab_size = 259
    is_bytes = True

    def encode(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32)

    def encode_batch(self, texts, max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """Encodes ``texts`` into ``(ids_BxL, lengths_B)``: truncated to ``max_len``, PAD after."""
        return _encode_batch(self, texts, max_len)

    def decode(self, ids) -> str:
        data = bytes(int(i) for i in np.asarray(ids).reshape(-1) if 0 <= int(i) < 256)
        return data.decode("utf-8", errors="replace")


class SentencePieceTokenizer:
    """A SentencePiece model (Kudo & Richardson 2018); missing PAD/BOS/EOS get ids after it."""

    is_bytes = False

    def __init__(self, model_path: str):
        import sentencepiece as spm

        if not os.path.isfile(model_path):
            raise FileNotFoundError(f"config.data.spm_model={model_path!r} does not exist")
        self._sp = spm.SentencePieceProcessor(model_file=model_path)
        n = self._sp.get_piece_size()
        extra = iter(range(n, n + 3))
        self.pad_id = self._sp.pad_id() if self._sp.pad_id() >= 0 else next(extra)
        self.bos_id = self._sp.bos_id() if self._sp.bos_id() >= 0 else next(extra)
        self.eos_id = self._sp.eos_id() if self._sp.eos_id() >= 0 else next(extra)
        self.vocab_size = max(n, self.pad_id + 1, self.bos_id + 1, self.eos_id + 1)
        self._n = n

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self._sp.encode(text), np.int32)

    def decode(self, ids) -> str:
        specials = {self.pad_id, self.bos_id, self.eos_id}
        keep = [int(i) for i in np.asarray(ids).reshape(-1) if i < self._n and i not in specials]
        return self._sp.decode(keep)


class HFTokenizer:
    """A HF ``tokenizer.json`` (e.g. next to an imported checkpoint), read by ``tokenizers``.

    BOS/EOS/PAD/MASK come from a sibling ``tokenizer_config.json`` when it names them, else from the
    usual token strings; PAD falls back to EOS (padding is masked out anyway).
    """

    is_bytes = False
    _NAMES = {
        "bos": ("<s>", "<|begin_of_text|>", "<|startoftext|>", "[CLS]", "<bos>"),
        "eos": ("</s>", "<|end_of_text|>", "<|endoftext|>", "[SEP]", "<eos>"),
        "pad": ("<pad>", "[PAD]", "<|pad|>"),
        "mask": ("[MASK]", "<mask>"),
    }

    def __init__(self, path: str):
        from tokenizers import Tokenizer

        if not os.path.isfile(path):
            raise FileNotFoundError(f"tokenizer file {path!r} does not exist")
        self._tok = Tokenizer.from_file(path)
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
        named = self._named_specials(os.path.join(os.path.dirname(path), "tokenizer_config.json"))
        ids = {kind: self._find(kind, named.get(kind)) for kind in self._NAMES}
        if ids["bos"] is None or ids["eos"] is None:
            raise ValueError(f"{path}: cannot tell its BOS/EOS tokens (got {ids})")
        self.bos_id, self.eos_id = ids["bos"], ids["eos"]
        self.pad_id = self.eos_id if ids["pad"] is None else ids["pad"]
        self.mask_id = ids["mask"]  # None without one (the MLM family then adds one)

    @staticmethod
    def _named_specials(config_path: str) -> dict[str, str]:
        if not os.path.isfile(config_path):
            return {}
        with open(config_path, encoding="utf-8") as f:
            cfg = json.load(f)
        out = {}
        for kind in ("bos", "eos", "pad", "mask"):
            token = cfg.get(f"{kind}_token")
            token = token.get("content") if isinstance(token, dict) else token
            if isinstance(token, str):
                out[kind] = token
        return out

    def _find(self, kind: str, named: str | None) -> int | None:
        for token in ((named,) if named else ()) + self._NAMES[kind]:
            i = self._tok.token_to_id(token)
            if i is not None:
                return i
        return None

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self._tok.encode(text, add_special_tokens=False).ids, np.int32)

    def decode(self, ids) -> str:
        specials = {self.pad_id, self.bos_id, self.eos_id}
        keep = [int(i) for i in np.asarray(ids).reshape(-1) if int(i) not in specials]
        return self._tok.decode([i for i in keep if i < self.vocab_size])


def padded_vocab(n: int, multiple: int) -> int:
    """Rounds a vocabulary size up to a multiple (faster, shardable matmuls)."""
    return -(-n // multiple) * multiple if multiple > 1 else n


def make_tokenizer(data_config):
    """Returns the tokenizer named by ``config.data.tokenizer`` (byte | sentencepiece)."""
    kind = data_config.get("tokenizer", "byte")
    if kind == "byte":
        return ByteTokenizer()
    if kind == "sentencepiece":
        return SentencePieceTokenizer(data_config.spm_model)
    raise ValueError(f"config.data.tokenizer must be 'byte' or 'sentencepiece', got {kind!r}")


class WordTokenizer:
    """Whitespace words of a fixed vocabulary: PAD=0, BOS=1, EOS=2, UNK=3, ``specials``, words.

    For closed-vocabulary caption grammars (the embedded scenes), where bytes would make every
    sequence several times longer.
    """

    pad_id, bos_id, eos_id, unk_id = 0, 1, 2, 3
    is_bytes = False

    def __init__(self, words, specials=()):
        self.itos = ["[PAD]", "[BOS]", "[EOS]", "[UNK]", *specials, *words]
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("WordTokenizer: words and specials must be distinct")
        self.vocab_size = len(self.itos)
        self._n_special = 4 + len(specials)

    def token_id(self, word: str) -> int:
        return self.stoi.get(word, self.unk_id)

    def encode(self, text: str) -> np.ndarray:
        return np.asarray([self.token_id(w) for w in text.lower().split()], np.int32)

    def encode_batch(self, texts, max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """``(ids_BxL, lengths_B)``: truncated to ``max_len``, PAD after (as ByteTokenizer)."""
        return _encode_batch(self, texts, max_len)

    def decode(self, ids) -> str:
        """Words of the ids, skipping PAD/BOS/EOS/UNK and the specials."""
        keep = [int(i) for i in np.asarray(ids).reshape(-1)]
        return " ".join(self.itos[i] for i in keep if self._n_special <= i < self.vocab_size)
