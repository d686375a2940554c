"""COCO caption annotations (``captions_train2017.json``) -> the table ``data.name=csv`` reads.

COCO's caption files (``annotations/captions_{train,val}2017.json`` of
``annotations_trainval2017.zip``) hold ``images`` (``id``, ``file_name``) and ``annotations``
(``image_id``, ``caption``; about five per image). This writes one table row per image with the
image's path and its captions, for the image–text families' ``csv`` source
(``jaxmodels/data/captions_table.py``):

  python experiments/data/coco_captions.py coco/annotations/captions_train2017.json \
      --images coco/train2017 --out coco/train2017.jsonl
  python experiments/data/coco_captions.py coco/annotations/captions_val2017.json \
      --images coco/val2017 --out coco/val2017.jsonl

- ``.jsonl`` (recommended): ``{"image": path, "caption": [five captions]}`` a line; train with
  ``data.captions=each`` (an example per caption) or ``random`` (one caption per visit).
- ``.csv`` / ``.tsv``: columns ``image`` and ``caption``, one row per caption (a CSV cell holds
  one caption), so an image appears about five times per epoch whatever ``data.captions`` says.

Image paths are written relative to the table's folder when the images lie below it (the
reader resolves relative paths against the table's folder), else absolute. Rows follow the
image ids, captions the annotation ids. Images without a caption are left out (and counted);
an annotation naming an unknown image is an error naming it. Image files are not opened: a
missing one stops the training run naming the table row and the path.
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import os


def coco_rows(annotations: dict, images_dir: str) -> tuple[list[tuple[str, list[str]]], int]:
    """``([(image path, [captions]), ...], images left out for having no caption)`` of a COCO
    caption annotations dict, in image-id order."""
    files = {image["id"]: image["file_name"] for image in annotations["images"]}
    captions = collections.defaultdict(list)
    for a in sorted(annotations["annotations"], key=lambda a: a["id"]):
        if a["image_id"] not in files:
            raise ValueError(f"annotation {a['id']} names image_id {a['image_id']}, not in images")
        captions[a["image_id"]].append(a["caption"].strip())
    rows = [(os.path.join(images_dir, files[i]), captions[i]) for i in sorted(captions)]
    return rows, len(files) - len(rows)


def table_path(image: str, out: str) -> str:
    """``image`` relative to ``out``'s folder when it lies below it, else absolute."""
    folder = os.path.dirname(os.path.abspath(out))
    path = os.path.abspath(image)
    return os.path.relpath(path, folder) if path.startswith(folder + os.sep) else path


def write_table(rows, out: str) -> int:
    """Writes ``rows`` to ``out`` (format from its suffix); returns the number of lines."""
    rows = [(table_path(image, out), caps) for image, caps in rows]
    if out.endswith(".jsonl"):
        with open(out, "w", encoding="utf-8") as f:
            for image, caps in rows:
                f.write(json.dumps({"image": image, "caption": caps}, ensure_ascii=False) + "\n")
        return len(rows)
    delimiter = {".csv": ",", ".tsv": "\t"}.get(os.path.splitext(out)[1])
    if delimiter is None:
        raise ValueError(f"--out {out!r}: give a .jsonl, .csv or .tsv file")
    with open(out, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(["image", "caption"])
        lines = [(image, c) for image, caps in rows for c in caps]
        writer.writerows(lines)
    return len(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("annotations", help="captions_{train,val}2017.json")
    p.add_argument("--images", required=True, help="the folder of the split's images")
    p.add_argument("--out", required=True, help="the table to write: .jsonl, .csv or .tsv")
    args = p.parse_args(argv)
    with open(args.annotations, encoding="utf-8") as f:
        annotations = json.load(f)
    if not isinstance(annotations, dict) or not {"images", "annotations"} <= set(annotations):
        raise ValueError(f"{args.annotations}: not a COCO annotations file (images, annotations)")
    if annotations["annotations"] and "caption" not in annotations["annotations"][0]:
        raise ValueError(f"{args.annotations}: annotations without captions (captions_*.json?)")
    rows, uncaptioned = coco_rows(annotations, args.images)
    n = write_table(rows, args.out)
    captions = sum(len(c) for _, c in rows)
    print(f"{args.out}: {n} rows, {len(rows)} images, {captions} captions "
          f"({uncaptioned} images without a caption left out)")  # fmt: skip


if __name__ == "__main__":
    main()
