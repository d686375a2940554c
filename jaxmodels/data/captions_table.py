"""A table of image paths and captions (CSV, TSV or JSONL) as a random-access source.

The format follows the file's suffix: ``.csv`` and ``.tsv`` have a header row naming the
columns, ``.jsonl`` one JSON object a line. The ``image_key`` column holds an image file's path
(relative paths are relative to the table's folder; local or a fsspec URL such as ``gs://``),
the ``text_key`` column its caption (in JSONL also a list of captions). open_clip's CSV loader
reads the same tables (its ``--csv-img-key``/``--csv-caption-key``).

The table is read whole, once per process, into packed UTF-8 buffers (about the size of its
text), which stay small for millions of rows and are cheap to hand to grain's worker processes.
A bad row (no image path, a missing or empty caption) fails when it is read, naming the table
and row, so ``data.skip_bad`` can skip it.
"""

from __future__ import annotations

import csv
import io
import json

import numpy as np

from jaxmodels.data import files
from jaxmodels.data.image_text import as_captions
from jaxmodels.data.transforms import BadRecord

FORMATS = {".csv": ",", ".tsv": "\t", ".jsonl": None}


class Strings:
    """Many strings packed in one UTF-8 buffer with their end offsets."""

    def __init__(self, strings):
        encoded = [s.encode("utf-8") for s in strings]
        self._data = b"".join(encoded)
        self._ends = np.cumsum([len(e) for e in encoded], dtype=np.int64)

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, i: int) -> str:
        start = int(self._ends[i - 1]) if i else 0
        return self._data[start : int(self._ends[i])].decode("utf-8")


def _rows(path: str):
    """Yields ``(row number, dict)`` of a CSV/TSV (from its header) or JSONL table."""
    suffix = next((s for s in FORMATS if path.lower().endswith(s)), None)
    if suffix is None:
        raise ValueError(f"data.path={path!r}: expected a {'/'.join(FORMATS)} table")
    with files.open_file(path) as f:
        text = io.TextIOWrapper(f, encoding="utf-8", newline="")
        if FORMATS[suffix] is None:
            for n, line in enumerate(text, 1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except ValueError as e:
                        raise ValueError(f"{path} line {n}: not valid JSON ({e})") from e
                    if not isinstance(row, dict):
                        raise ValueError(f"{path} line {n}: expected a JSON object")
                    yield n, row
        else:
            yield from enumerate(csv.DictReader(text, delimiter=FORMATS[suffix]), 1)


class CaptionTable:
    """Rows of a caption table as ``{"image": bytes, "captions": [str], "where"}``."""

    def __init__(self, path: str, image_key: str = "image", text_key: str = "caption"):
        self.path, folder = path, files.parent(path)
        images, captions, counts, self._rows, self._errors = [], [], [], [], {}
        for n, row in _rows(path):
            if not set(row) & {image_key, text_key} and n == 1:
                raise ValueError(
                    f"{path}: no column {image_key!r} or {text_key!r} (data.image_key, "
                    f"data.text_key); columns: {sorted(row)}"
                )
            i, where = len(images), f"{path} row {n}"
            self._rows.append(n)
            try:
                if not row.get(image_key):
                    raise BadRecord(f"{where}: no image path in column {image_key!r}")
                row_captions = as_captions(row.get(text_key, []), f"{where}[{text_key!r}]")
            except BadRecord as e:
                self._errors[i], row_captions = str(e), []
            images.append(files.join(folder, str(row.get(image_key) or "")))
            captions += row_captions
            counts.append(len(row_captions))
        if not images:
            raise ValueError(f"{path}: the table has no rows")
        self._images, self._captions = Strings(images), Strings(captions)
        self._ends = np.cumsum(counts, dtype=np.int64)
        self._rows = np.asarray(self._rows, np.int64)

    def __len__(self) -> int:
        return len(self._images)

    def __repr__(self) -> str:
        return f"CaptionTable({self.path!r}, {len(self)} rows)"

    def captions(self, i: int) -> list[str]:
        """Row ``i``'s captions (no image read)."""
        if i in self._errors:
            raise BadRecord(self._errors[i])
        start = int(self._ends[i - 1]) if i else 0
        return [self._captions[j] for j in range(start, int(self._ends[i]))]

    def __getitem__(self, i: int) -> dict:
        captions, image = self.captions(i), self._images[i]
        where = f"{self.path} row {self._rows[i]} ({image})"
        try:
            data = files.read_file(image)
        except (FileNotFoundError, IsADirectoryError) as e:
            raise BadRecord(f"{where}: cannot read the image ({e})") from e
        return {"image": data, "captions": captions, "where": where}
