"""A word-level ``tokenizer.json`` over a user's captions, framed as BLIP's text side needs.

BLIP reads ``[CLS] caption [SEP]`` rows padded with ``[PAD]`` (``jaxmodels.models.blip.tokens``);
its own tokenizer is bert-base-uncased's WordPiece. Without one at hand (no internet), a closed
caption set such as captioned digits is served by a word vocabulary built from the captions:
BERT's normaliser (lower case, accents stripped) and pre-tokeniser (whitespace and punctuation),
one id per word seen at least ``--min-count`` times, BERT's five special tokens ([PAD] = 0,
[UNK], [CLS], [SEP], [MASK]) and BERT's post-processor. [DEC] and [ENC] are left to BLIP's layout,
which adds them after the vocabulary as BLIP's code does for bert-base-uncased.

Inputs are webdataset shards (``.tar``, brace patterns allowed; the ``.txt`` member, or the
``--caption-key`` field of the ``.json`` one) or text files of one caption per line. The words
of ``--extra`` are always added: by default BLIP's captioning prompt ("a picture of"), which the
decoder reads before every caption. Words outside the vocabulary become [UNK].

    python experiments/blip/word_tokenizer.py '/tmp/digit_shards/train/{00000..00007}.tar' \\
      --out /tmp/digit_words/tokenizer.json
    jaxmodels train --config experiments/blip/pretrain.py --workdir runs/blip_mnist \\
      --config.data.tokenizer=/tmp/digit_words/tokenizer.json ...
"""

from __future__ import annotations

import argparse
import os

from jaxmodels.data import webdataset
from jaxmodels.models.blip.data import PROMPT

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # BERT's, [PAD] first (id 0)


def read_captions(inputs, caption_key: str = ""):
    """Yields every caption of the shards (``.tar``) and text files (one per line) given."""
    for item in inputs:
        if item.endswith(".tar"):
            source = webdataset.WebDatasetSource(webdataset.expand_urls(item), caption_key)
            for i in range(len(source)):
                yield from source[i]["captions"]
        else:
            with open(item, encoding="utf-8") as f:
                yield from (line.strip() for line in f if line.strip())


def word_tokenizer(captions, min_count: int = 1, extra: str = PROMPT):
    """A ``tokenizers.Tokenizer``: BERT-normalised words of ``captions`` (and of ``extra``) seen
    at least ``min_count`` times, after ``SPECIALS``; texts framed as ``[CLS] ... [SEP]``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers.trainers import WordLevelTrainer

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()  # joins words with spaces, no space before punctuation
    trainer = WordLevelTrainer(special_tokens=list(SPECIALS), min_frequency=min_count)
    tok.train_from_iterator(_with_extra(captions, extra, min_count), trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.BertProcessing(("[SEP]", sep_id), ("[CLS]", cls_id))
    return tok


def _with_extra(captions, extra: str, min_count: int):
    yield from captions
    for _ in range(min_count if extra.strip() else 0):
        yield extra


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("inputs", nargs="+", help="webdataset shards (.tar, brace patterns) or text")
    p.add_argument("--out", required=True, help="the tokenizer.json to write")
    p.add_argument("--caption-key", default="", help="the shards' .json caption field ('': .txt)")
    p.add_argument("--min-count", type=int, default=1, help="rarer words become [UNK]")
    p.add_argument("--extra", default=PROMPT, help="text whose words are always in the vocabulary")
    args = p.parse_args(argv)
    if os.path.exists(args.out):
        raise SystemExit(f"{args.out} exists; not overwriting it (choose another --out)")
    tok = word_tokenizer(read_captions(args.inputs, args.caption_key), args.min_count, args.extra)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tok.save(args.out)
    words = sorted(set(tok.get_vocab()) - set(SPECIALS))
    print(f"wrote {args.out}: {tok.get_vocab_size()} tokens ({len(SPECIALS)} special): {words}")


if __name__ == "__main__":
    main()
