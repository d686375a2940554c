"""Image-caption file sources on tiny shards, tables and a TFDS dataset written here.

Every record is read once per epoch on 1, 2 and 4 processes; a resumed iterator gives the same
next batches; multi-caption records never give a non-string caption; bad members are named.
"""

import io
import json
import tarfile

import ml_collections
import numpy as np
import pytest
from PIL import Image

from jaxmodels.data import image_text_sources as S
from jaxmodels.data import webdataset as W
from jaxmodels.data.image_text import as_captions
from jaxmodels.data.transforms import BadRecord

SIZE = 8
TEXT_LEN = 40


def png(seed, shape=(12, 10, 3)):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, shape, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def shards(tmp_path, sizes=(3, 4, 5, 2, 6)):
    """Shards of ``sizes`` records captioned "s<shard> r<record>"; returns the brace pattern."""
    for s, n in enumerate(sizes):
        records = [
            (f"dir/{s}{r:03d}", {"jpg": png(10 * s + r), "txt": f"s{s} r{r}".encode()})
            for r in range(n)
        ]
        W.write_shard(str(tmp_path / f"part-{s:02d}.tar"), records)
    return f"{tmp_path}/part-{{00..{len(sizes) - 1:02d}}}.tar"


def config(**data):
    c = ml_collections.ConfigDict()
    c.seed, c.train = 0, ml_collections.ConfigDict({"batch_size": 4})
    c.data = d = ml_collections.ConfigDict()
    d.name, d.image_size = "webdataset", SIZE
    S.add_config(d, crop_scale=(0.5, 1.0))
    d.update(data)
    return c


def encode(caption):
    assert isinstance(caption, str), caption
    return {"caption": np.frombuffer(caption.encode().ljust(TEXT_LEN), np.uint8)}


def captions_of(batch):
    return [bytes(row).decode().strip() for row in batch["caption"]]


def epoch(c, process_count, batch_size=None):
    """Captions each process yields in one pass over its share of the training stream."""
    c.train.batch_size = batch_size or process_count
    seen = []
    for p in range(process_count):
        it = S.iterator_fn(c, "train", encode)(p, process_count)
        source, split_records = S.open_source(c.data, "train", p, process_count)
        share = process_count if split_records else 1
        n = len(S.Records(source, c.data.captions, S.Skips(False))) // share
        per_process = c.train.batch_size // process_count
        seen.append([cap for _ in range(n // per_process) for cap in captions_of(next(it))])
    return seen


# ----------------------------------------------------------------------------------------------
# Shard names and tar headers
# ----------------------------------------------------------------------------------------------


def test_brace_patterns():
    assert W.expand_urls("a/{000..002}.tar") == ["a/000.tar", "a/001.tar", "a/002.tar"]
    assert W.expand_urls("gs://b/{x,y}-{8..10}.tar :: c.tar") == [
        "gs://b/x-8.tar", "gs://b/x-9.tar", "gs://b/x-10.tar",
        "gs://b/y-8.tar", "gs://b/y-9.tar", "gs://b/y-10.tar", "c.tar",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="runs backwards"):
        W.expand_urls("{5..1}.tar")
    with pytest.raises(ValueError, match="neither a range"):
        W.expand_urls("{abc}.tar")


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
def test_records_group_members_by_key(tmp_path, fmt):
    long_dir = "d" * 90  # ustar prefix field; GNU/PAX long-name headers beyond 100 characters
    keys = [f"{long_dir}/{'k' * 40}", "flat.name", "x/y"]
    records = [(k, {"jpg": f"{k} image".encode(), "TXT": f"{k} text".encode()}) for k in keys]
    path = tmp_path / "s.tar"
    W.write_shard(str(path), records, fmt)
    with tarfile.open(path, "a", format=fmt) as tar:  # a member without an extension is no record
        info = tarfile.TarInfo("README")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    source = W.WebDatasetSource([str(path)])
    assert len(source) == 3
    for i, key in enumerate(["d" * 90 + "/" + "k" * 40, "flat", "x/y"]):
        where, members = source.members(i)
        assert where == f"{path}:{key}"
    _, members = source.members(1)  # key "flat", extension "name.jpg"
    assert set(members) == {"name.jpg", "name.txt"}
    assert source.members(2)[1] == {
        "jpg": b"x/y image",
        "txt": b"x/y text",
    }  # extension lower-cased


def test_not_a_tar_and_missing_shard(tmp_path):
    (tmp_path / "x.tar").write_bytes(b"not a tar" * 100)
    with pytest.raises(ValueError, match="x.tar: not a tar file"):
        len(W.WebDatasetSource([str(tmp_path / "x.tar")]))
    with pytest.raises(FileNotFoundError, match="nope.tar"):
        len(W.WebDatasetSource([str(tmp_path / "nope.tar")]))


# ----------------------------------------------------------------------------------------------
# Splitting, epochs and resume
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("process_count", [1, 2, 4])
def test_every_record_once_per_epoch(tmp_path, process_count):
    c = config(urls=shards(tmp_path))
    seen = epoch(c, process_count)
    everything = sorted(f"s{s} r{r}" for s, n in enumerate((3, 4, 5, 2, 6)) for r in range(n))
    assert sorted(sum(seen, [])) == everything
    if process_count > 1:  # split by shard: no shard is read by two processes
        owners = [{cap.split()[0] for cap in part} for part in seen]
        assert all(not a & b for i, a in enumerate(owners) for b in owners[i + 1 :])


def test_fewer_shards_than_processes_split_records(tmp_path):
    c = config(urls=shards(tmp_path, (5, 3)))
    seen = epoch(c, 4)
    assert sorted(sum(seen, [])) == sorted(
        [f"s0 r{r}" for r in range(5)] + ["s1 r0", "s1 r1", "s1 r2"]
    )
    assert all(len(part) == 2 for part in seen)


def test_resume_mid_shard_gives_the_same_batches(tmp_path):
    c = config(urls=shards(tmp_path), captions="random")
    it = S.iterator_fn(c, "train", encode)(0, 1)
    for _ in range(3):  # 12 of 20 records: inside a shard in the shuffled order
        next(it)
    state = json.loads(json.dumps(it.get_state()))  # as a checkpoint stores it
    expected = [next(it) for _ in range(6)]  # across the epoch boundary: reshuffled, new crops
    fresh = S.iterator_fn(c, "train", encode)(0, 1)
    fresh.set_state(state)
    for want in expected:
        got = next(fresh)
        np.testing.assert_array_equal(got["image"], want["image"])
        assert captions_of(got) == captions_of(want)
    assert want["image"].shape == (4, SIZE, SIZE, 3) and want["image"].dtype == np.uint8


def test_training_crops_are_random_eval_crops_fixed(tmp_path):
    c = config(
        urls=shards(tmp_path, (4,)), eval_urls=f"{tmp_path}/part-00.tar", crop_scale=(0.2, 0.4)
    )
    c.train.batch_size = 4
    it = S.iterator_fn(c, "train", encode)(0, 1)
    first, second = next(it), next(it)  # the same four records, two epochs
    order = np.argsort(captions_of(first)), np.argsort(captions_of(second))
    assert not np.array_equal(first["image"][order[0]], second["image"][order[1]])
    evals = [next(iter(S.iterator_fn(c, "eval", encode)(0, 1))) for _ in range(2)]
    np.testing.assert_array_equal(evals[0]["image"], evals[1]["image"])


# ----------------------------------------------------------------------------------------------
# Captions and bad records
# ----------------------------------------------------------------------------------------------


def json_shard(tmp_path, captions):
    records = [
        (f"{i:04d}", {"png": png(i), "json": json.dumps({"caps": c}).encode()})
        for i, c in enumerate(captions)
    ]
    W.write_shard(str(tmp_path / "j.tar"), records)
    return str(tmp_path / "j.tar")


def test_multi_caption_json_each_and_random(tmp_path):
    url = json_shard(tmp_path, [["a0", "a1", "a2"], "b0", ["c0", "c1"]])
    c = config(urls=url, caption_key="caps", captions="each")
    assert sorted(epoch(c, 1)[0]) == ["a0", "a1", "a2", "b0", "c0", "c1"]
    c.data.captions = "random"
    drawn = sum(epoch(c, 1, batch_size=1) * 1, [])
    assert len(drawn) == 3 and all(isinstance(x, str) for x in drawn)
    assert {x[0] for x in drawn} == {"a", "b", "c"}


def test_non_string_and_missing_captions_are_named(tmp_path):
    url = json_shard(tmp_path, ["fine", 7, ""])
    source = W.WebDatasetSource([url], "caps")
    assert source[0]["captions"] == ["fine"]
    with pytest.raises(BadRecord, match=r"j.tar:0001.json\['caps'\] holds int 7, not a caption"):
        source[1]
    with pytest.raises(BadRecord, match=r"j.tar:0002.*empty caption"):
        source[2]
    with pytest.raises(BadRecord, match=r"j.tar:0000: no .txt caption member"):
        W.WebDatasetSource([url])[0]
    with pytest.raises(ValueError, match=r"\['id', 'text'\], not captions.*captions/text"):
        as_captions({"id": [1], "text": [b"a cat"]}, "coco[0]['captions']")


def bad_shard(tmp_path):
    records = [
        ("good0", {"jpg": png(0), "txt": b"good 0"}),
        ("broken", {"jpg": b"\xff\xd8 not a jpeg", "txt": b"broken"}),
        ("nocap", {"jpg": png(1)}),
        ("good1", {"webp": png(2), "txt": b"good 1"}),  # the suffix need not match the format
    ]
    W.write_shard(str(tmp_path / "bad.tar"), records)
    return str(tmp_path / "bad.tar")


def test_bad_members_stop_the_run_with_their_names(tmp_path):
    c = config(urls=bad_shard(tmp_path))
    c.train.batch_size = 4
    with pytest.raises(BadRecord, match=r"bad.tar:(broken: cannot decode|nocap: no .txt)"):
        next(S.iterator_fn(c, "train", encode)(0, 1))


def test_skip_bad_skips_and_counts(tmp_path):
    c = config(urls=bad_shard(tmp_path), skip_bad=True)
    c.train.batch_size = 2
    it = S.iterator_fn(c, "train", encode)(0, 1)
    assert sorted(captions_of(next(it))) == ["good 0", "good 1"]


# ----------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------


def table(tmp_path, suffix):
    (tmp_path / "img").mkdir()
    rows = []
    for i in range(7):
        (tmp_path / "img" / f"{i}.png").write_bytes(png(i))
        rows.append({"file": f"img/{i}.png", "text": f"row {i}"})
    path = tmp_path / f"t{suffix}"
    if suffix == ".jsonl":
        rows[2]["text"] = ["row 2", "row 2 again"]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        sep = "\t" if suffix == ".tsv" else ","
        path.write_text(
            "".join(
                f"{r['file']}{sep}{r['text']}\n" for r in [{"file": "file", "text": "text"}, *rows]
            )
        )
    return str(path)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_tables_every_row_once_on_one_and_two_processes(tmp_path, suffix):
    c = config(
        name="csv", path=table(tmp_path, suffix), image_key="file", text_key="text", captions="each"
    )
    rows = [f"row {i}" for i in range(7)] + (["row 2 again"] if suffix == ".jsonl" else [])
    assert sorted(epoch(c, 1)[0]) == sorted(rows)
    two = epoch(c, 2)
    assert len(two[0]) == len(two[1]) == len(rows) // 2 and not set(two[0]) & set(two[1])


def test_table_errors_name_column_and_row(tmp_path):
    path = table(tmp_path, ".csv")
    with pytest.raises(ValueError, match=r"no column 'image' or 'caption'.*\['file', 'text'\]"):
        S.open_source(config(name="csv", path=path).data, "train")
    (tmp_path / "img" / "3.png").unlink()
    source = S.open_source(
        config(name="csv", path=path, image_key="file", text_key="text").data, "train"
    )[0]
    with pytest.raises(BadRecord, match=r"t.csv row 4 \(.*img/3.png\): cannot read"):
        source[3]


# ----------------------------------------------------------------------------------------------
# TFDS with several captions per image (COCO's layout), written without TensorFlow
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    tfds = pytest.importorskip("tensorflow_datasets")

    class TinyCaptions(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            text = tfds.features.Sequence({"id": np.int64, "text": tfds.features.Text()})
            features = {"image": tfds.features.Image(shape=(None, None, 3)), "captions": text}
            return tfds.core.DatasetInfo(
                builder=self, features=tfds.features.FeaturesDict(features)
            )

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(6), "validation": self._generate_examples(3)}

        def _generate_examples(self, n):
            for i in range(n):
                caps = [{"id": j, "text": f"img {i} cap {j}"} for j in range(1 + i % 3)]
                yield i, {"image": io.BytesIO(png(i)), "captions": caps}

    path = tmp_path_factory.mktemp("tfds")
    TinyCaptions(data_dir=str(path), file_format="array_record").download_and_prepare()
    return str(path)


def test_tfds_nested_captions_each_and_random(tfds_dir):
    c = config(
        name="tfds", tfds_name="tiny_captions", tfds_data_dir=tfds_dir, text_key="captions/text"
    )
    c.data.captions = "each"
    expected = sorted(f"img {i} cap {j}" for i in range(6) for j in range(1 + i % 3))
    assert sorted(epoch(c, 1, batch_size=2)[0]) == expected
    c.data.captions = "random"
    drawn = epoch(c, 1, batch_size=2)[0]
    assert len(drawn) == 6 and {x.split(" cap")[0] for x in drawn} == {f"img {i}" for i in range(6)}
    held = S.streamed(c, encode, 2).held_out
    assert held.images.shape == (2, SIZE, SIZE, 3) and all(" cap 0" in x for x in held.captions)


def test_tfds_caption_dict_is_refused(tfds_dir):
    c = config(name="tfds", tfds_name="tiny_captions", tfds_data_dir=tfds_dir, text_key="captions")
    with pytest.raises(ValueError, match=r"\['captions'\] holds the features \['id', 'text'\]"):
        next(S.iterator_fn(c, "train", encode)(0, 1))
