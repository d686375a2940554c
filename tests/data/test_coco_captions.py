"""experiments/data/coco_captions.py: COCO caption annotations -> a table the csv source reads."""

import importlib.util
import json

import pytest

from jaxmodels.config import REPO_ROOT
from jaxmodels.data.captions_table import CaptionTable

spec = importlib.util.spec_from_file_location(
    "coco_captions", REPO_ROOT / "experiments" / "data" / "coco_captions.py"
)
coco = importlib.util.module_from_spec(spec)
spec.loader.exec_module(coco)


@pytest.fixture
def fake_coco(tmp_path):
    """Three captioned images (captions listed out of id order) and one without a caption."""
    (tmp_path / "train2017").mkdir()
    images = [{"id": i, "file_name": f"{i:012d}.jpg"} for i in (9, 3, 5, 7)]
    for image in images:
        (tmp_path / "train2017" / image["file_name"]).write_bytes(b"image %d" % image["id"])
    annotations = [
        {"id": 40, "image_id": 3, "caption": "second of three "},
        {"id": 12, "image_id": 3, "caption": "first of three"},
        {"id": 7, "image_id": 9, "caption": "only of nine"},
        {"id": 30, "image_id": 5, "caption": 'a, "quoted" caption\tof five'},
    ]
    path = tmp_path / "captions_train2017.json"
    path.write_text(json.dumps({"info": {}, "images": images, "annotations": annotations}))
    return tmp_path, path


def test_jsonl_one_row_per_image_read_by_the_csv_source(fake_coco):
    root, annotations = fake_coco
    out = root / "train2017.jsonl"
    coco.main([str(annotations), "--images", str(root / "train2017"), "--out", str(out)])
    table = CaptionTable(str(out))  # data.image_key / data.text_key defaults
    assert len(table) == 3  # image 7 has no caption
    assert [table.captions(i) for i in range(3)] == [
        ["first of three", "second of three"],  # annotation-id order, stripped
        ['a, "quoted" caption\tof five'],
        ["only of nine"],
    ]
    assert table[0]["image"] == b"image 3"  # relative to the table's folder
    assert json.loads(out.read_text().splitlines()[0])["image"] == "train2017/000000000003.jpg"


def test_csv_and_tsv_one_row_per_caption(fake_coco, tmp_path_factory):
    root, annotations = fake_coco
    for suffix in (".csv", ".tsv"):
        out = root / f"train{suffix}"
        coco.main([str(annotations), "--images", str(root / "train2017"), "--out", str(out)])
        table = CaptionTable(str(out))
        assert [table.captions(i) for i in range(len(table))] == [
            ["first of three"],
            ["second of three"],
            ['a, "quoted" caption\tof five'],
            ["only of nine"],
        ]
        assert table[1]["image"] == b"image 3"
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "t.jsonl"  # images not below: absolute
    coco.main([str(annotations), "--images", str(root / "train2017"), "--out", str(elsewhere)])
    assert CaptionTable(str(elsewhere))[2]["image"] == b"image 9"
    assert json.loads(elsewhere.read_text().splitlines()[0])["image"].startswith(str(root))


def test_wrong_files_are_named(fake_coco):
    root, _ = fake_coco
    instances = root / "instances_train2017.json"
    instances.write_text(json.dumps({"images": [], "annotations": [{"id": 1, "image_id": 1}]}))
    with pytest.raises(ValueError, match="instances_train2017.json: annotations without captions"):
        coco.main([str(instances), "--images", str(root), "--out", str(root / "t.jsonl")])
    stray = {"images": [], "annotations": [{"id": 1, "image_id": 4, "caption": "x"}]}
    with pytest.raises(ValueError, match="annotation 1 names image_id 4"):
        coco.coco_rows(stray, str(root))
    with pytest.raises(ValueError, match=r"--out .*t.parquet.*\.jsonl, \.csv or \.tsv"):
        coco.write_table([], str(root / "t.parquet"))
