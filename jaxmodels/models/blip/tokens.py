"""BLIP's token layout over a tokenizer (Li et al., ICML 2022, Sec. 3.1, 4.1, and BLIP's code).

One text transformer reads three kinds of rows, all framed by the tokenizer's first and last
special tokens (BERT's ``[CLS] ... [SEP]``), right-padded with its PAD:

- ``text``: ``[CLS] caption [SEP]``, the unimodal encoder's input (ITC reads the [CLS] feature);
  ITM swaps the first token for ``[ENC]``;
- ``caption``: ``[DEC] prompt caption [SEP]``, the decoder's input: the prompt "a picture of "
  (Sec. 4.1) and the caption, ``data.max_len`` + the prompt's tokens long. The LM loss scores
  the caption and [SEP], not the prompt; captioning starts from ``[DEC] prompt``.

``[DEC]`` and ``[ENC]`` are the tokenizer's own tokens of those names when it has them, else the
first ids after its vocabulary (BLIP's code adds them to bert-base-uncased as 30522 and 30523;
HF's BLIP configs set ``bos_token_id=30522`` and 30524 rows). The embedded scenes keep their
closed word vocabulary (``data.tokenizer="scenes"``), whose BOS is [DEC].

A caption longer than the row is truncated (as BLIP's code does), and counted in the log.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from absl import logging

from jaxmodels.data.tokenizers import make_tokenizer
from jaxmodels.models.blip import data

SCENES = "scenes"  # data.tokenizer value of the rendered scenes' closed vocabulary


@dataclasses.dataclass(frozen=True)
class TokenLayout:
    """Ids and row lengths of BLIP's text rows; ``encode`` / ``decode`` captions."""

    tokenizer: Any  # jaxmodels.data.tokenizers interface
    first_id: int  # [CLS]: the tokenizer's leading special token
    eos_id: int  # [SEP]: its closing one; captioning stops there
    enc_id: int  # [ENC]: ITM's first token
    dec_id: int  # [DEC]: the decoder's first token
    pad_id: int
    vocab_size: int  # embedding rows: the tokenizer's, and [DEC]/[ENC] when added
    prompt_ids: tuple[int, ...]  # [DEC] + the prompt's tokens
    max_len: int  # length of a ``text`` row (data.max_len)

    @property
    def caption_len(self) -> int:
        """Length of a ``caption`` row: the text row's, plus the prompt's tokens."""
        return self.max_len + len(self.prompt_ids) - 1

    def ids(self, caption: str) -> np.ndarray:
        """A caption's ids without special tokens; one holding the padding token is refused
        (the padding mask is ``ids != pad_id``)."""
        ids = np.asarray(self.tokenizer.encode(caption), np.int32)
        if (ids == self.pad_id).any():
            raise ValueError(f"caption {caption!r} holds the padding token ({self.pad_id})")
        return ids

    def _rows(self, bodies, head, length: int) -> np.ndarray:
        out = np.full((len(bodies), length), self.pad_id, np.int32)
        for i, body in enumerate(bodies):
            row = [*head, *body[: length - len(head) - 1], self.eos_id]
            out[i, : len(row)] = row
        return out

    def encode(self, captions, max_len: int | None = None) -> dict[str, np.ndarray]:
        """``text`` rows (``max_len``, default ``self.max_len``) and ``caption`` rows (the
        prompt's tokens longer) of the captions."""
        max_len = max_len or self.max_len
        bodies = [self.ids(c) for c in captions]
        long = [c for c, b in zip(captions, bodies, strict=True) if len(b) > max_len - 2]
        if long:
            logging.log_first_n(
                logging.WARNING,
                "%d caption(s) over data.max_len=%d tokens are truncated, e.g. %r",
                10,
                *(len(long), max_len, long[0]),
            )
        return {
            "text": self._rows(bodies, (self.first_id,), max_len),
            "caption": self._rows(bodies, self.prompt_ids, max_len + len(self.prompt_ids) - 1),
        }

    def encode_caption(self, caption: str) -> dict[str, np.ndarray]:
        """One caption's ``text`` and ``caption`` rows (a file source's per-record encoder)."""
        return {key: rows[0] for key, rows in self.encode([caption]).items()}

    def prompt(self, batch: int) -> np.ndarray:
        """``[DEC] prompt`` rows that captioning continues."""
        return np.tile(np.asarray(self.prompt_ids, np.int32), (batch, 1))

    def decode(self, ids) -> str:
        """Generated ids -> text up to the first [SEP]."""
        row = [int(i) for i in np.asarray(ids).reshape(-1)]
        row = row[: row.index(self.eos_id)] if self.eos_id in row else row
        return self.tokenizer.decode([i for i in row if i not in (self.enc_id, self.dec_id)])

    def fit_len(self, *caption_lists) -> int:
        """A ``text`` row length that holds the longest of the captions whole."""
        return 2 + max(len(self.ids(c)) for caps in caption_lists for c in caps)


def scenes_layout(max_len: int) -> TokenLayout:
    """The rendered scenes' closed word vocabulary: [CLS] and [ENC] are its specials, BOS is
    [DEC], EOS is [SEP]."""
    tok = data.TOKENIZER
    cls_id, enc_id = tok.token_id("[CLS]"), tok.token_id("[ENC]")
    prompt = (tok.bos_id, *tok.encode(data.PROMPT))
    return TokenLayout(
        tok, cls_id, tok.eos_id, enc_id, tok.bos_id, tok.pad_id, tok.vocab_size, prompt, max_len
    )


def layout_of(tokenizer, max_len: int, name: str = "the tokenizer") -> TokenLayout:
    """BLIP's layout over a real tokenizer (a ``tokenizer.json``, SentencePiece model or HF
    directory): it must frame a text with one special token on each side, BERT's way."""
    frame = tokenizer.encode_batch([""], 4)
    frame = [int(i) for i in frame[0][0][: frame[1][0]]]
    if len(frame) != 2 or tokenizer.pad_id in frame:
        raise ValueError(
            f"{name} frames a text as {frame} (padding {tokenizer.pad_id}); BLIP's text "
            "transformer reads '[CLS] caption [SEP]' and masks its padding, so it needs a "
            "tokenizer that puts one special token before the text and one after, and pads with "
            "a third (a BERT WordPiece tokenizer.json, as BLIP's bert-base-uncased)"
        )
    if max_len < 3:
        raise ValueError(f"config.data.max_len={max_len} leaves no room for a caption")
    added, size = {}, tokenizer.vocab_size
    for token in ("[DEC]", "[ENC]"):  # its own, else the next id after everything
        added[token] = tokenizer.token_id(token)
        if added[token] is None:
            added[token], size = size, size + 1
    prompt = (added["[DEC]"], *(int(i) for i in tokenizer.encode(data.PROMPT)))
    args = (frame[0], frame[1], added["[ENC]"], added["[DEC]"], tokenizer.pad_id, size, prompt)
    return TokenLayout(tokenizer, *args, max_len)


def make_layout(d) -> TokenLayout:
    """The layout ``config.data.tokenizer`` names: ``scenes`` or a tokenizer path; rows of
    ``config.data.max_len``."""
    kind = d.get("tokenizer", SCENES)
    if kind == SCENES:
        return scenes_layout(d.max_len)
    return layout_of(make_tokenizer(d), d.max_len, f"config.data.tokenizer={kind!r}")
