"""experiments/contrastive/digit_shards.py: labelled digits -> webdataset shards + a labelled
held-out folder that the webdataset source and the zero_shot evaluator read."""

import gzip
import importlib.util
import io

import numpy as np
from PIL import Image

from jaxmodels.config import REPO_ROOT
from jaxmodels.data.webdataset import WebDatasetSource, expand_urls
from jaxmodels.evaluate.zero_shot_folder import labelled_folder
from jaxmodels.models.contrastive.data import DIGIT_NAMES

spec = importlib.util.spec_from_file_location(
    "digit_shards", REPO_ROOT / "experiments" / "contrastive" / "digit_shards.py"
)
digit_shards = importlib.util.module_from_spec(spec)
spec.loader.exec_module(digit_shards)


def test_every_image_once_captioned_by_its_class(tmp_path):
    x, y = digit_shards.labelled_digits(None, None)
    x, y = x[:50], y[:50]
    keys = digit_shards.write(str(tmp_path / "out"), x, y, holdout=0.2, per_shard=16, seed=0)
    train = WebDatasetSource(expand_urls(keys["data.urls"].strip("'")))
    val = WebDatasetSource([keys["data.eval_urls"]])
    assert (len(train), len(val)) == (40, 10)
    seen = []
    for source in (train, val):
        for i in range(len(source)):
            record = source[i]
            row = int(record["where"].rsplit(":", 1)[-1])  # the record's key: the image's row
            pixels = np.asarray(Image.open(io.BytesIO(record["image"])))
            np.testing.assert_array_equal(pixels, x[row])
            assert DIGIT_NAMES[y[row]] in record["captions"][0].split()
            seen.append(row)
    assert sorted(seen) == list(range(50))
    folder = labelled_folder(keys["zero_shot.dir"], "")
    assert len(folder.files) == 10
    assert all(DIGIT_NAMES[y[int(f.rsplit("/", 1)[-1][:6])]] == folder.classnames[c]
               for f, c in zip(folder.files, folder.labels, strict=True))  # fmt: skip


def test_mnist_idx_files_read_as_arrays(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 8, 3]) + np.array([2, 3, 4], ">u4").tobytes()
    (tmp_path / "x.gz").write_bytes(gzip.compress(header + images.tobytes()))
    np.testing.assert_array_equal(digit_shards.read_array(str(tmp_path / "x.gz")), images)
