"""Text data for language models: sources, and packing into fixed-length rows.

Sources (``config.data``): an embedded corpus built from text that ships with Python itself (no
network), a local UTF-8 file (``data.path``), or a prepared TFDS dataset (``data.tfds_name``,
read through ``tfds.data_source``). Documents are tokenised as ``BOS text EOS``, concatenated
and cut into rows of ``seq_len`` tokens with ``segment_ids`` (1, 2, ... per document within a
row; 0 for padding) and ``positions`` that restart at every document and row start, so the
model never attends across documents (see ``jaxmodels.layers.attention.make_mask``).
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import os
import pathlib
import sys
import sysconfig

import numpy as np

from jaxmodels.data.tokenizers import make_tokenizer

# ---------------------------------------------------------------- sources


def _stdlib_documents() -> list[str]:
    """Python's help topics (``pydoc_data``) and long docstrings of top-level stdlib modules."""
    import pydoc_data.topics

    docs = [pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics)]
    stdlib = pathlib.Path(sysconfig.get_paths()["stdlib"])
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    for path in sorted(stdlib.glob("*.py")):
        try:
            tree = ast.parse(path.read_bytes())
        except (SyntaxError, ValueError, OSError):
            continue
        for node in ast.walk(tree):
            doc = ast.get_docstring(node) if isinstance(node, kinds) else None
            if doc and len(doc) >= 200:
                docs.append(doc)
    return docs


def embedded_documents(cache_dir: str | None = None) -> list[str]:
    """Returns the embedded corpus (~1 MB of English about Python), cached on disk once built.

    Deterministic for a given Python version; needs no network and no file from this repo.
    """
    sep = "\x1e"  # ASCII record separator: never in the documents
    version = ".".join(map(str, sys.version_info[:3]))
    root = cache_dir or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "jaxmodels"
    )
    path = os.path.join(root, f"stdlib_corpus_py{version}.txt")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return f.read().split(sep)
    docs = [d.replace(sep, " ") for d in _stdlib_documents()]
    try:
        os.makedirs(root, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(sep.join(docs))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home just means rebuilding next time
    return docs


def read_text_file(path: str, key: str = "config.data.path") -> str:
    """Reads a UTF-8 text file, naming the config key and the file in every error."""
    from etils import epath  # local paths and gs:// alike

    file = epath.Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{key}={path!r} does not exist or is not a file")
    data = file.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{key}={path!r} is not UTF-8 text (bad byte at offset {e.start}: {e.reason})"
        ) from None
    if not text.strip():
        raise ValueError(f"{key}={path!r} is empty")
    return text


def split_documents(docs: list[str], fraction: float) -> tuple[list[str], list[str]]:
    """Holds out every ``round(1/fraction)``-th document (at least one) for validation."""
    if not 0 < fraction < 1:
        raise ValueError(f"config.data.holdout must be in (0, 1), got {fraction}")
    if len(docs) < 2:
        raise ValueError("need at least two documents to hold out a validation split")
    k = max(2, round(1 / fraction))
    return [d for i, d in enumerate(docs) if i % k], [d for i, d in enumerate(docs) if not i % k]


def split_text(text: str, fraction: float) -> tuple[str, str]:
    """Holds out the last ``fraction`` of a text (cut at a line break when there is one)."""
    if not 0 < fraction < 1:
        raise ValueError(f"config.data.holdout must be in (0, 1), got {fraction}")
    cut = int(len(text) * (1 - fraction))
    line = text.rfind("\n", 0, cut)
    cut = line + 1 if line > cut // 2 else cut
    return text[:cut], text[cut:]


def _tfds_documents(d, split: str) -> list[str]:
    from jaxmodels.data.pipeline import tfds_source

    source = tfds_source(d.tfds_name, split, d.get("tfds_data_dir") or None)
    n = min(len(source), d.max_documents) if d.max_documents else len(source)
    out = []
    for i in range(n):
        value = source[i][d.text_key]
        out.append(value.decode("utf-8") if isinstance(value, bytes) else str(value))
    return out


def load_documents(d) -> tuple[list[str], list[str]]:
    """Returns (train, validation) documents from ``config.data`` (see module docstring)."""
    if d.get("path"):
        train, val = split_text(read_text_file(d.path), d.holdout)
        if not train.strip() or not val.strip():
            raise ValueError(
                f"config.data.path={d.path!r} is too short to split into training and validation "
                f"text (config.data.holdout={d.holdout})"
            )
        return [train], [val]
    if d.get("tfds_name"):
        return _tfds_documents(d, d.train_split), _tfds_documents(d, d.eval_split)
    return split_documents(embedded_documents(), d.holdout)


# ---------------------------------------------------------------- packing


def pack(docs: list[np.ndarray], seq_len: int, pad_id: int) -> dict[str, np.ndarray]:
    """Concatenates token documents and cuts them into rows for next-token prediction.

    Returns ``inputs``, ``targets`` (inputs shifted by one), ``segment_ids``, ``positions`` and
    ``weights`` (1 where the target continues the input's document), each ``[rows, seq_len]``.
    The stream is padded with ``pad_id`` (segment 0, weight 0) to fill the last row.
    """
    lengths = np.array([len(t) for t in docs], np.int64)
    stream = np.concatenate([np.asarray(t, np.int32) for t in docs])
    doc = np.repeat(np.arange(len(docs)), lengths)
    rows = max(1, -(-(len(stream) - 1) // seq_len))
    pad = rows * seq_len + 1 - len(stream)
    stream = np.concatenate([stream, np.full(pad, pad_id, np.int32)])
    doc = np.concatenate([doc, np.full(pad, -1)])
    idx = np.arange(rows)[:, None] * seq_len + np.arange(seq_len)[None, :]
    d_in, d_out = doc[idx], doc[idx + 1]
    segment_ids = np.where(d_in < 0, 0, d_in - d_in[:, :1] + 1)
    starts = np.ones_like(d_in, bool)
    starts[:, 1:] = d_in[:, 1:] != d_in[:, :-1]
    col = np.broadcast_to(np.arange(seq_len), d_in.shape)
    positions = col - np.maximum.accumulate(np.where(starts, col, 0), axis=1)
    return {
        "inputs": stream[idx],
        "targets": stream[idx + 1],
        "segment_ids": segment_ids.astype(np.int32),
        "positions": positions.astype(np.int32),
        "weights": ((d_in == d_out) & (d_in >= 0)).astype(np.float32),
    }


def pack_stream(docs: list[np.ndarray], seq_len: int, pad_id: int, max_tokens: int = 0):
    """One continuous stream cut into rows (ALiBi paper, Press et al. 2022): positions 0..L-1.

    Documents are concatenated and treated as one (segment 1, every target weighted), so rows
    of any length hold that many tokens of real context; ``max_tokens`` (> 0) keeps the first.
    """
    stream = np.concatenate([np.asarray(t, np.int32) for t in docs])
    if max_tokens:
        stream = stream[: max_tokens + 1]
    return pack([stream], seq_len, pad_id)


def tile_rows(arrays: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
    """Repeats a small split up to ``rows`` rows (whole batches keep shapes static)."""
    n = len(arrays["inputs"])
    reps = -(-rows // n)
    return arrays if reps == 1 else {k: np.concatenate([v] * reps) for k, v in arrays.items()}


@dataclasses.dataclass
class TextData:
    """Packed train/validation rows and the tokenizer that made them."""

    tokenizer: object
    train: dict[str, np.ndarray]
    eval: dict[str, np.ndarray]
    fingerprint: str  # hash of the train rows, to tell data sources apart in logs
    eval_docs: list[np.ndarray]  # the tokenised validation documents (for length sweeps)


def build_text_data(d, tokenizer=None) -> TextData:
    """Tokenises and packs ``config.data`` into ``[rows, seq_len]`` arrays.

    ``tokenizer`` (optional) replaces ``config.data.tokenizer`` (e.g. an imported checkpoint's);
    ``config.data.stream`` (optional, default False) packs one continuous stream instead of
    documents kept apart (see :func:`pack_stream`).
    """
    tok = tokenizer or make_tokenizer(d)
    if tok.bos_id is None or tok.eos_id is None:
        raise ValueError(
            f"the tokenizer ({d.get('tokenizer', 'byte')!r} or the imported directory's) names no "
            f"BOS/EOS token (bos_id={tok.bos_id}, eos_id={tok.eos_id}); every document is framed "
            "by both: name them in its tokenizer_config.json (bos_token, eos_token)"
        )
    train_docs, val_docs = load_documents(d)

    def encode(docs):
        return [np.concatenate([[tok.bos_id], tok.encode(t), [tok.eos_id]]) for t in docs if t]

    train_docs, val_docs = encode(train_docs), encode(val_docs)
    packer = pack_stream if d.get("stream", False) else pack
    train = packer(train_docs, d.seq_len, tok.pad_id)
    val = packer(val_docs, d.seq_len, tok.pad_id)
    digest = hashlib.sha256(train["inputs"].tobytes()).hexdigest()[:12]
    return TextData(tok, train, val, digest, val_docs)
