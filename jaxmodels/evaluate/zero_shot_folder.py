"""Zero-shot classification of the user's labelled image folder: the evaluator ``zero_shot``.

The clip_benchmark workflow on any image–text family: point ``config.zero_shot.dir`` at a
folder with one subfolder per class (local or ``gs://``; images found recursively, as
:func:`jaxmodels.data.images.list_folder` lists them) and ``jaxmodels eval`` reports top-1 and
top-5 accuracy of the model's image embeddings against its class embeddings (CLIP Sec. 3.1.4:
every class name written into every prompt template, the text embeddings averaged;
:func:`~jaxmodels.evaluate.zero_shot.class_embeddings`). The keys (:func:`add_config`):

- ``zero_shot.dir``: the folder. Setting it adds ``zero_shot`` to the run's evaluators
  (:func:`evals`), on the training schedule too; ``--config.evals=`` then runs it alone.
- ``zero_shot.names_file``: one class name per line, the i-th naming the i-th class subfolder
  in sorted order (how CLIP's 1000 ImageNet names follow the sorted WordNet-id folders);
  trailing blank lines are ignored, a blank line before a name is an error. Without it a class
  is named by its folder, ``_`` read as a space (``golden_retriever`` -> "golden retriever").
- ``zero_shot.templates``: ``clip_imagenet`` (CLIP's 80 ImageNet prompts), ``simple``
  ("a photo of a {}."), or a text file with one template per line, ``{}`` marking the class
  name (blank lines skipped).
- ``zero_shot.name``: the ``<name>`` of the metrics ``zeroshot_<name>_top1`` and
  ``zeroshot_<name>_top5`` (``eval_...`` in metrics.jsonl); default the folder's name. Top-5
  is reported only with more than five classes: with five or fewer the true class is always
  among the top five.

Every image is the evaluation view the image–text families use
(:func:`jaxmodels.data.transforms.eval_image`: the centre square, antialiased resize to the
model's side), read and decoded on threads a chunk at a time while the model embeds the
previous chunk, so a folder of any size fits in memory. A bad file, folder, names file or
template stops the run building, before any step, naming the key and file (and line).

A family offers it with its own embedders, ``embed_images(params, images_N) -> z_NxE`` (uint8
``(N, S, S, 3)`` rows; an array-like read by slices, as
:func:`~jaxmodels.evaluate.chunked.chunked_map` does) and ``embed_texts(params, texts) ->
z_NxE``::

    offered["zero_shot"] = lambda: zero_shot_folder.evaluator(
        config.zero_shot, embed_images, embed_texts, image_size
    )
    evaluate.select(zero_shot_folder.evals(config), offered)
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import re
from collections.abc import Callable

import numpy as np

from jaxmodels import evaluate
from jaxmodels.data import files, images, transforms
from jaxmodels.evaluate.zero_shot import TEMPLATES, class_embeddings, zero_shot_accuracy

NAME = "zero_shot"  # the evaluator's name in config.evals
KS = (1, 5)  # top-K reported (K below the number of classes)


def add_config(c) -> None:
    """Adds ``config.zero_shot`` (the keys this evaluator reads) to an image–text config."""
    import ml_collections

    z = c.zero_shot = ml_collections.ConfigDict()
    # A labelled folder, one subfolder per class (local or gs://); setting it adds the
    # evaluator zero_shot to the run's evaluations (config.evals), during training too.
    z.dir = ""
    z.templates = "clip_imagenet"  # clip_imagenet (CLIP's 80) | simple | a file: a {} line each
    # One class name per line for the sorted subfolders; "": folder names, "_" read as " ".
    z.names_file = ""
    z.name = ""  # metrics eval_zeroshot_<name>_top1 / _top5; "": the folder's name


def evals(config) -> list[str]:
    """``config.evals`` (:func:`jaxmodels.evaluate.names`), with ``zero_shot`` appended when
    ``config.zero_shot.dir`` is set."""
    chosen = evaluate.names(config.evals)
    folder = (config.get("zero_shot") or {}).get("dir", "")
    if folder and NAME not in chosen:
        chosen.append(NAME)
    return chosen


@dataclasses.dataclass(frozen=True)
class LabelledFolder:
    """The images of a class-per-subfolder folder, their labels and the class names."""

    root: str
    files: tuple[str, ...]  # relative to root, sorted by class then path
    labels: np.ndarray  # int32 (N,): index into classnames
    classnames: tuple[str, ...]  # what the prompts call each class, in sorted-subfolder order


def labelled_folder(path: str, names_file: str = "") -> LabelledFolder:
    """Lists ``path`` (``config.zero_shot.dir``) and names its classes (``names_file``)."""
    key = "config.zero_shot.dir"
    try:
        found, labels, classes = images.list_folder(path)
    except (FileNotFoundError, NotADirectoryError) as e:
        raise FileNotFoundError(f"{key}={path!r} is not a directory") from e
    except ValueError as e:
        raise ValueError(f"{key}={path!r}: {e}") from e
    if not classes:
        raise ValueError(
            f"{key}={path!r} holds its images directly; zero-shot classification needs one "
            "subfolder per class (the folder's name is the class name)"
        )
    if len(classes) < 2:
        raise ValueError(
            f"{key}={path!r} has one class subfolder ({classes[0]!r}); zero-shot "
            "classification needs at least two"
        )
    if names_file:
        names = read_names(names_file, classes)
    else:
        names = tuple(c.replace("_", " ") for c in classes)
    return LabelledFolder(path, found, labels, names)


def _lines(path: str, key: str) -> list[str]:
    from etils import epath

    try:
        return epath.Path(path).read_text(encoding="utf-8").splitlines()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as e:
        raise FileNotFoundError(f"{key}={path!r} is not a readable file ({e})") from e
    except UnicodeDecodeError as e:
        raise ValueError(f"{key}={path!r} is not UTF-8 text ({e})") from e


def read_names(path: str, folders: tuple[str, ...]) -> tuple[str, ...]:
    """``config.zero_shot.names_file``: one name per line, the i-th for ``folders[i]``."""
    lines = _lines(path, "config.zero_shot.names_file")
    while lines and not lines[-1].strip():
        lines.pop()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            raise ValueError(
                f"{path} line {n} is blank: the names file has one class name on every line"
            )
    if len(lines) != len(folders):
        raise ValueError(
            f"{path} has {len(lines)} names for {len(folders)} class subfolders: one name per "
            f"line, the i-th naming the i-th subfolder in sorted order (first {folders[0]!r}, "
            f"last {folders[-1]!r})"
        )
    return tuple(line.strip() for line in lines)


def read_templates(spec: str) -> tuple[str, ...]:
    """``config.zero_shot.templates``: a named set of :data:`TEMPLATES` or a file of them."""
    if spec in TEMPLATES:
        return TEMPLATES[spec]
    from etils import epath

    key = "config.zero_shot.templates"
    if not spec or not epath.Path(spec).is_file():
        raise ValueError(
            f"{key}={spec!r} is neither a named set ({', '.join(TEMPLATES)}) nor a file of "
            "templates (one per line, {} for the class name)"
        )
    out = []
    for n, line in enumerate(_lines(spec, key), 1):
        template = line.strip()
        if not template:
            continue
        try:
            ok = "{}" in template and bool(template.format("x"))
        except (IndexError, KeyError, ValueError):  # "{0} {}", "{name}", an unmatched brace
            ok = False
        if not ok:
            raise ValueError(
                f"{spec} line {n}: {template!r} is not a template: write {{}} once where the "
                "class name goes (and any literal brace doubled, {{ or }})"
            )
        out.append(template)
    if not out:
        raise ValueError(f"{key}={spec!r} holds no template")
    return tuple(out)


def metric_name(z) -> str:
    """``config.zero_shot.name``, or the folder's name: letters, digits, ``_ . -`` only."""
    name = z.name
    if not name:
        folder = z.dir.rstrip("/")
        name = folder.rsplit("/", 1)[-1] if files.is_remote(folder) else os.path.abspath(folder)
        name = os.path.basename(name)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(
            f"config.zero_shot.name={name!r} (the metrics' eval_zeroshot_<name>_top1): use "
            "letters, digits, '_', '.' and '-' only; set config.zero_shot.name"
        )
    return name


class FolderImages:
    """A folder's images as a uint8 ``(N, S, S, 3)`` array-like: a slice reads its files (on
    ``pool``'s threads) and returns each one's evaluation view at side ``size``."""

    def __init__(self, folder: LabelledFolder, size: int, pool):
        self.paths = [files.join(folder.root, f) for f in folder.files]
        self.size, self.pool = size, pool
        self.shape, self.dtype = (len(self.paths), size, size, 3), np.dtype(np.uint8)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, rows: slice) -> np.ndarray:
        return np.stack(list(self.pool.map(self.read, self.paths[rows])))

    def read(self, path: str) -> np.ndarray:
        return transforms.eval_image(files.read_file(path), self.size, path)


def evaluator(
    z,
    embed_images: Callable,
    embed_texts: Callable,
    image_size: int,
    check_texts: Callable[[list[str]], None] | None = None,
) -> evaluate.Evaluate:
    """``(params, rng) -> {zeroshot_<name>_top1[, _top5]}`` on the folder ``z.dir`` (``z`` is
    ``config.zero_shot``). The folder, names and templates are read and checked here, once, and
    ``check_texts`` (a family's tokenizer limits, e.g. a closed vocabulary) sees every prompt."""
    if not z or not z.get("dir"):
        raise ValueError(
            f"config.evals names {NAME!r}: set config.zero_shot.dir to a labelled folder (one "
            "subfolder per class)"
        )
    folder = labelled_folder(z.dir, z.names_file)
    templates = read_templates(z.templates)
    name = metric_name(z)
    ks = tuple(k for k in KS if k < len(folder.classnames))
    if check_texts is not None:
        check_texts([t.format(c) for c in folder.classnames for t in templates])

    def run(params, rng) -> dict[str, float]:
        del rng  # deterministic
        zcls_CxE = class_embeddings(
            lambda prompts: embed_texts(params, prompts), folder.classnames, templates
        )
        with concurrent.futures.ThreadPoolExecutor() as pool:  # Pillow decodes off the GIL
            zimg_NxE = embed_images(params, FolderImages(folder, image_size, pool))
        acc = zero_shot_accuracy(zimg_NxE, zcls_CxE, folder.labels, ks)
        return {f"zeroshot_{name}_top{k}": acc[f"top{k}"] for k in ks}

    return run
