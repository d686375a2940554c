"""Tokenizers read from files: an HF ``tokenizer.json`` (the ``tokenizers`` library) and a
SentencePiece ``.model``, with the conventions of the directory they come from.

Both follow the interface of :mod:`jaxmodels.data.tokenizers`. ``encode_batch`` gives the ids
``transformers`` gives for the checkpoint, ``tokenizer(texts, padding="max_length",
truncation=True, max_length=L)``: the tokenizer's own special tokens around the text (the
post-processor of ``tokenizer.json``: CLIP's ``<|startoftext|> ... <|endoftext|>``, BERT's
``[CLS] ... [SEP]``; SentencePiece: ``... </s>``), the text truncated so the special tokens stay,
then its padding id. The special tokens and ``model_max_length`` come from the directory's
``tokenizer_config.json`` and ``special_tokens_map.json`` when there are any.
"""

from __future__ import annotations

import json
import os
import re
import string

import numpy as np

HUGE = 1_000_000  # transformers writes model_max_length=1e30 for "no limit"
NAMES = {  # the usual strings of each special token, when the configs name none
    "bos": ("<s>", "<|begin_of_text|>", "<|startoftext|>", "[CLS]", "<bos>"),
    "eos": ("</s>", "<|end_of_text|>", "<|endoftext|>", "[SEP]", "<eos>"),
    "pad": ("<pad>", "[PAD]", "<|pad|>"),
    "unk": ("<unk>", "[UNK]", "<|unk|>"),
    "mask": ("[MASK]", "<mask>"),
}
ALIASES = {"bos": ("bos_token", "cls_token"), "eos": ("eos_token", "sep_token")}


def _content(token):
    return token.get("content") if isinstance(token, dict) else token


def read_config(directory: str) -> dict:
    """``tokenizer_config.json`` updated by ``special_tokens_map.json`` ({} without either)."""
    out = {}
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                try:
                    out.update(json.load(f))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path} is not valid JSON ({e})") from e
    return out


def named_tokens(config: dict) -> dict[str, str]:
    """The special-token strings a tokenizer config names: bos (or cls), eos (or sep), pad, unk,
    mask."""
    out = {}
    for kind in NAMES:
        for key in ALIASES.get(kind, (f"{kind}_token",)):
            token = _content(config.get(key))
            if isinstance(token, str):
                out[kind] = token
                break
    return out


def max_length(config: dict) -> int | None:
    """``model_max_length`` when the config sets a real one (77 for CLIP, 64 for SigLIP)."""
    n = config.get("model_max_length")
    return int(n) if isinstance(n, int | float) and 0 < n < HUGE else None


def specials(config: dict, lookup) -> dict[str, int | None]:
    """Ids of bos, eos, pad, unk, mask: the config's tokens first, then the usual strings."""
    named = named_tokens(config)
    ids = {}
    for kind, usual in NAMES.items():
        candidates = ((named[kind],) if kind in named else ()) + usual
        ids[kind] = next((i for i in map(lookup, candidates) if i is not None), None)
    return ids


def pad_rows(rows, max_len: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Id lists (each at most ``max_len``) -> ``(ids_BxL, lengths_B)``, ``pad_id`` after each."""
    ids = np.full((len(rows), max_len), pad_id, np.int32)
    lengths = np.zeros(len(rows), np.int32)
    for i, row in enumerate(rows):
        ids[i, : len(row)], lengths[i] = row, len(row)
    return ids, lengths


class HFTokenizer:
    """An HF ``tokenizer.json`` (e.g. beside an imported checkpoint), read by ``tokenizers``.

    ``config`` is the directory's tokenizer config (:func:`read_config`; read from beside
    ``path`` when not given). PAD falls back to EOS (CLIP pads with it), BOS/EOS may be None
    (SentencePiece-style templates have no BOS).
    """

    is_bytes = False

    def __init__(self, path: str, config: dict | None = None):
        from tokenizers import Tokenizer

        if not os.path.isfile(path):
            raise FileNotFoundError(f"tokenizer file {path!r} does not exist")
        try:
            self._tok = Tokenizer.from_file(path)
        except Exception as e:  # the Rust side raises a bare Exception
            raise ValueError(
                f"{path} is not a tokenizer.json the tokenizers library reads ({e})"
            ) from e
        self._tok.no_padding()
        self._tok.no_truncation()
        config = read_config(os.path.dirname(path)) if config is None else config
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
        ids = specials(config, self._tok.token_to_id)
        self.bos_id, self.eos_id, self.unk_id, self.mask_id = (
            ids["bos"], ids["eos"], ids["unk"], ids["mask"]
        )  # fmt: skip
        self.pad_id = ids["pad"] if ids["pad"] is not None else self.eos_id
        self.max_len = max_length(config)
        post = self._tok.post_processor
        self._n_special = 0 if post is None else post.num_special_tokens_to_add(False)
        framing = {i for i in (self.bos_id, self.eos_id, self.pad_id) if i is not None}
        added = {i for i, t in self._tok.get_added_tokens_decoder().items() if t.special}
        # an unknown word stays visible when decoded (unless it is also CLIP's EOS)
        self._special_ids = framing | (added - {self.unk_id})
        self._suffix = getattr(self._tok.model, "end_of_word_suffix", None)  # CLIP's "</w>"
        if self.pad_id is None:
            raise ValueError(f"{path}: no padding token (and no EOS to pad with)")

    def token_id(self, token: str) -> int | None:
        """The id of a token string (added tokens included), None when absent."""
        return self._tok.token_to_id(token)

    def encode(self, text: str) -> np.ndarray:
        """The text's ids without special tokens."""
        return np.asarray(self._tok.encode(text, add_special_tokens=False).ids, np.int32)

    def encode_ids(self, text: str, max_len: int) -> list[int]:
        """One text as the checkpoint's tokenizer frames it, truncated to ``max_len``."""
        if max_len <= self._n_special:
            raise ValueError(f"max_len={max_len} leaves no room beside the special tokens")
        enc = self._tok.encode(text, add_special_tokens=False)
        enc.truncate(max_len - self._n_special)
        return list(self._tok.post_process(enc, add_special_tokens=True).ids)

    def encode_batch(self, texts, max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """``(ids_BxL, lengths_B)`` as ``transformers`` pads to ``max_length`` and truncates."""
        return pad_rows([self.encode_ids(t, max_len) for t in texts], max_len, self.pad_id)

    def decode(self, ids) -> str:
        """Text of the ids, special tokens left out except the unknown token, which shows (where
        ``transformers``' ``skip_special_tokens`` drops it too)."""
        keep = [int(i) for i in np.asarray(ids).reshape(-1) if int(i) not in self._special_ids]
        text = self._tok.decode([i for i in keep if 0 <= i < self.vocab_size], False)
        return text.replace(self._suffix, " ").strip() if self._suffix else text


class SentencePieceTokenizer:
    """A SentencePiece model (Kudo & Richardson 2018); ``encode_batch`` frames text as ``pieces
    </s>`` (T5, SigLIP), no BOS.

    ``config`` is the directory's tokenizer config (:func:`read_config`). With
    ``tokenizer_class: SiglipTokenizer`` the text is first canonicalised as HF's
    ``SiglipTokenizer`` does it (lower case, punctuation removed, whitespace collapsed; the
    special tokens split out first). A PAD, BOS or EOS the model lacks gets an id after its
    pieces (``vocab_size`` counts them) when ``invent`` names it.
    """

    is_bytes = False

    def __init__(self, model_path, config=None, key="config.data", invent=("pad", "bos", "eos")):
        import sentencepiece as spm

        if not os.path.isfile(model_path):
            raise FileNotFoundError(f"{key}={model_path!r} does not exist")
        try:
            self._sp = spm.SentencePieceProcessor(model_file=model_path)
        except (OSError, RuntimeError) as e:
            raise ValueError(f"{key}={model_path!r} is not a SentencePiece model ({e})") from e
        config = config or {}
        n = self._n = self._sp.get_piece_size()
        named, own = specials(config, self.token_id), self._own_specials()
        ids = {k: named[k] if named[k] is not None else own.get(k) for k in named}
        extra = iter(range(n, n + 3))
        for kind in ("pad", "bos", "eos"):
            if ids[kind] is None and kind in invent:
                ids[kind] = next(extra)
        self.pad_id, self.bos_id, self.eos_id = ids["pad"], ids["bos"], ids["eos"]
        self.unk_id, self.mask_id = ids["unk"], ids["mask"]
        self.vocab_size = max(i + 1 for i in (n - 1, *ids.values()) if i is not None)
        self.max_len = max_length(config)
        self._siglip = config.get("tokenizer_class") == "SiglipTokenizer"
        self._lower = bool(config.get("do_lower_case", True))
        self._added = self._added_tokens(config, named_tokens(config))

    def token_id(self, token: str) -> int | None:
        """The id of a piece, None when the model has no such piece."""
        i = self._sp.piece_to_id(token)
        return i if self._sp.id_to_piece(i) == token else None

    def _own_specials(self) -> dict[str, int | None]:
        sp, out = self._sp, {}
        for kind, i in (("pad", sp.pad_id()), ("bos", sp.bos_id()), ("eos", sp.eos_id())):
            out[kind] = i if i >= 0 else None
        out["unk"] = sp.unk_id() if sp.unk_id() >= 0 else None
        return out

    def _added_tokens(self, config: dict, named: dict) -> dict[str, tuple[int, bool, bool]]:
        """Special-token strings split out of the text: ``{string: (id, lstrip, rstrip)}``."""
        out = {}
        for i, token in (config.get("added_tokens_decoder") or {}).items():
            if isinstance(token, dict) and token.get("content"):
                out[token["content"]] = (int(i), token.get("lstrip"), token.get("rstrip"))
        for token in named.values():
            if token not in out and self.token_id(token) is not None:
                out[token] = (self.token_id(token), False, False)
        return out

    def encode(self, text: str) -> np.ndarray:
        """The text's ids without special tokens."""
        if not self._siglip:
            return np.asarray(self._sp.encode(text), np.int32)
        return np.asarray(self._siglip_ids(text), np.int32)

    def encode_ids(self, text: str, max_len: int) -> list[int]:
        """``pieces </s>``: pieces truncated to ``max_len - 1``, EOS unless the text ends in it."""
        ids = [int(i) for i in self.encode(text)[: max_len - 1]]
        return ids if ids and ids[-1] == self.eos_id else [*ids, self.eos_id]

    def encode_batch(self, texts, max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """``(ids_BxL, lengths_B)`` as ``transformers`` pads to ``max_length`` and truncates."""
        return pad_rows([self.encode_ids(t, max_len) for t in texts], max_len, self.pad_id)

    def decode(self, ids) -> str:
        """Text of the ids, special tokens and ids past the model's pieces left out."""
        specials = {self.pad_id, self.bos_id, self.eos_id}
        keep = [int(i) for i in np.asarray(ids).reshape(-1) if i < self._n and i not in specials]
        return self._sp.decode(keep)

    # ---- HF SiglipTokenizer's text path (transformers 5) ----

    def _canonical(self, text: str) -> str:
        """SigLIP's canonical text (big_vision's prompt engineering): lower case, no ASCII
        punctuation, whitespace runs as one space, stripped."""
        text = text.lower() if self._lower else text
        text = text.translate(str.maketrans("", "", string.punctuation))
        return re.sub(r"\s+", " ", text).strip()

    def _siglip_pieces(self, chunk: str) -> list[str]:
        """Pieces of a chunk without special tokens: encoded behind the unknown token's text,
        whose pieces are then dropped, so the model adds no word-start piece of its own."""
        unk = self._sp.id_to_piece(self.unk_id)
        pieces = self._sp.encode(unk + self._canonical(chunk), out_type=str)
        n = len(self._sp.encode(unk, out_type=str))
        return pieces[n:] if len(pieces) >= n else pieces

    def _siglip_ids(self, text: str) -> list[int]:
        chunks = self._split_specials("\u2581" + text.replace("\u2581", " "))
        pieces = []
        for chunk, special in chunks:
            pieces += [chunk] if special else self._siglip_pieces(chunk) if chunk else []
        if len(pieces) > 1 and pieces[0] == "\u2581" and pieces[1] in self._added:
            pieces = pieces[1:]
        return [self._added[p][0] if p in self._added else self._sp.piece_to_id(p) for p in pieces]

    def _split_specials(self, text: str) -> list[tuple[str, bool]]:
        """``text`` cut at each special token (longest first), honouring lstrip/rstrip."""
        if not self._added:
            return [(text, False)]
        pattern = "|".join(map(re.escape, sorted(self._added, key=len, reverse=True)))
        parts = re.split(f"({pattern})", text)
        out = [(p, i % 2 == 1) for i, p in enumerate(parts)]
        for i, (part, special) in enumerate(out):
            if special:
                _, lstrip, rstrip = self._added[part]
                if lstrip and i > 0:
                    out[i - 1] = (out[i - 1][0].rstrip(), False)
                if rstrip and i + 1 < len(out):
                    out[i + 1] = (out[i + 1][0].lstrip(), False)
        return out
