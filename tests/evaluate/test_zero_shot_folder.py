"""The ``zero_shot`` evaluator on a generated labelled folder: top-1/top-5 against a brute-force
computation from the same embedders, the evaluation view of each image, class names from the
folders or a names file, the template sets, and errors naming the key, file and line."""

import re
import zlib

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import top_k_accuracy_score

from jaxmodels.evaluate import zero_shot_folder as zsf
from jaxmodels.evaluate.chunked import chunked_map
from jaxmodels.evaluate.zero_shot import TEMPLATES

COLOURS = {
    "red": (220, 20, 30), "green": (20, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 20),
    "cyan": (20, 210, 220), "magenta": (210, 30, 200), "dark_grey": (60, 60, 60),
    "white": (245, 245, 245),
}  # fmt: skip
SIZE = 8  # the model's image side
SHADE = 60.0  # spread of one class's colours
NOISE = 2.0  # how far each colour's text embedding is moved from its image embedding


def _config(path, **kw):
    c = ml_collections.ConfigDict()
    c.evals = ()
    zsf.add_config(c)
    c.zero_shot.update({"dir": str(path), "templates": "simple", **kw})
    return c


W = np.random.default_rng(1).normal(size=(3, 6)).astype(np.float32)  # the image projection


def _noise(text, scale):
    return scale * np.random.default_rng(zlib.crc32(text.encode())).normal(size=6)


def _text_vector(text, scale=NOISE):
    """The projection of the colour the text names, moved by a fixed offset per colour (so the
    classes are told apart only partly) and by noise fixed per string (so prompts differ)."""
    named = [c for c in COLOURS if c.replace("_", " ") in text]
    if not named:
        return _noise(text, 1.0)
    base = np.tanh(np.array(COLOURS[named[0]]) / 64.0 - 2.0) @ W
    return base + _noise(named[0], scale) + _noise(text, 0.3)


class Embedders:
    """A fake image–text model: images -> a projection of their mean colour (jitted, chunked
    by 4), texts -> a fixed random vector per string; both record what they were given."""

    def __init__(self):
        self.prompts, self.images = [], []
        self.embed_images = chunked_map(self._image_fn, 4)

    def _image_fn(self, w, images_BxSxSx3):
        return jnp.tanh(images_BxSxSx3.astype(jnp.float32).mean((1, 2)) / 64.0 - 2.0) @ w

    def image_params(self):
        return W

    def embed_texts(self, params, texts):
        self.prompts += list(texts)
        return np.stack([_text_vector(t) for t in texts])


def _view(path):
    """The evaluation view, computed here: the centred square cropped by hand, then Pillow's
    bicubic resize (antialiased when shrinking)."""
    img = Image.open(path).convert("RGB")
    w, h = img.size
    s = min(w, h)
    box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
    return np.asarray(img.crop(box).resize((SIZE, SIZE), Image.Resampling.BICUBIC))


def test_top1_top5_equal_a_brute_force_computation(tmp_path, colour_folder):
    root = colour_folder(tmp_path / "colours", COLOURS, shade=SHADE)
    config = _config(root, templates="clip_imagenet")
    fake = Embedders()
    run = zsf.evaluator(config.zero_shot, fake.embed_images, fake.embed_texts, SIZE)
    got = run(fake.image_params(), None)

    # brute force: every file by itself, every class's prompts one by one
    classes = sorted(COLOURS)
    files = [(p, y) for y, c in enumerate(classes) for p in sorted((root / c).iterdir())]
    zimg = np.stack([np.asarray(fake._image_fn(fake.image_params(), _view(p)[None]))[0]
                     for p, _ in files])  # fmt: skip
    zcls = []
    for c in classes:
        zs = [_text_vector(t.format(c.replace("_", " "))) for t in TEMPLATES["clip_imagenet"]]
        mean = np.mean([z / np.linalg.norm(z) for z in zs], axis=0)
        zcls.append(mean / np.linalg.norm(mean))
    scores = zimg @ np.stack(zcls).T
    labels = np.array([y for _, y in files])
    want = {
        f"zeroshot_colours_top{k}": top_k_accuracy_score(labels, scores, k=k, labels=range(8))
        for k in (1, 5)
    }
    assert got == pytest.approx(want, abs=1e-6)
    assert 0 < want["zeroshot_colours_top1"] < want["zeroshot_colours_top5"] < 1  # not trivial
    assert len(fake.prompts) == 8 * 80 and "a bad photo of a dark grey." in fake.prompts


def test_images_are_the_centre_square_at_the_model_side(tmp_path, colour_folder):
    """A wide image, red in the middle (the centre square and the filter's reach beyond it) and
    blue at the sides, reads as all red."""
    root = colour_folder(tmp_path / "f", {"a": (0, 0, 0), "b": (100, 130, 160)}, 1)
    x = np.zeros((10, 30, 3), np.uint8)
    x[:, :, 2] = 255
    x[:, 6:24] = (255, 0, 0)
    (root / "a" / "0.jpg").unlink()
    Image.fromarray(x).save(root / "a" / "0.png")
    folder = zsf.labelled_folder(str(root))
    assert folder.files == ("a/0.png", "b/0.jpg") and folder.labels.tolist() == [0, 1]
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        views = zsf.FolderImages(folder, SIZE, pool)[0:2]
    assert views.shape == (2, SIZE, SIZE, 3) and views.dtype == np.uint8
    np.testing.assert_array_equal(views[0], np.broadcast_to([255, 0, 0], (SIZE, SIZE, 3)))
    want = _view(root / "b" / "0.jpg").mean((0, 1))  # a noisy JPEG: same colour on average
    np.testing.assert_allclose(views[1].mean((0, 1)), want, atol=2)


def test_top5_only_with_more_than_five_classes_and_the_metric_name(tmp_path, colour_folder):
    five = dict(list(COLOURS.items())[:5])
    config = _config(colour_folder(tmp_path / "five", five, per_class=1))
    fake = Embedders()
    got = zsf.evaluator(config.zero_shot, fake.embed_images, fake.embed_texts, SIZE)(
        fake.image_params(), None
    )
    assert set(got) == {"zeroshot_five_top1"}  # with 5 classes top-5 is 1 by construction
    config.zero_shot.name = "my-set.v2"
    run = zsf.evaluator(config.zero_shot, fake.embed_images, fake.embed_texts, SIZE)
    assert set(run(fake.image_params(), None)) == {"zeroshot_my-set.v2_top1"}
    config.zero_shot.name = "my set"
    with pytest.raises(ValueError, match="config.zero_shot.name='my set'"):
        zsf.evaluator(config.zero_shot, fake.embed_images, fake.embed_texts, SIZE)


def test_names_file_names_the_sorted_subfolders(tmp_path, colour_folder):
    root = colour_folder(tmp_path / "f", {"n02": (0, 0, 0), "n01": (9, 9, 9), "n10": (1, 1, 1)}, 1)
    names = tmp_path / "names.txt"
    names.write_text("tench\ngoldfish\ngreat white shark\n\n\n")  # trailing blank lines: fine
    assert zsf.labelled_folder(str(root), str(names)).classnames == (
        "tench", "goldfish", "great white shark",
    )  # fmt: skip
    fake = Embedders()
    config = _config(root, names_file=str(names))
    zsf.evaluator(config.zero_shot, fake.embed_images, fake.embed_texts, SIZE)(
        fake.image_params(), None
    )
    assert fake.prompts == ["a photo of a tench.", "a photo of a goldfish.",
                            "a photo of a great white shark."]  # fmt: skip

    names.write_text("tench\ngoldfish\n")
    with pytest.raises(ValueError, match=r"2 names for 3 class subfolders.*first 'n01', last 'n10"):
        zsf.labelled_folder(str(root), str(names))
    names.write_text("tench\n\ngoldfish\nshark\n")
    with pytest.raises(ValueError, match=r"names.txt line 2 is blank"):
        zsf.labelled_folder(str(root), str(names))
    with pytest.raises(FileNotFoundError, match="config.zero_shot.names_file=.*missing.txt"):
        zsf.labelled_folder(str(root), str(tmp_path / "missing.txt"))


def test_template_sets_and_files(tmp_path):
    assert len(zsf.read_templates("clip_imagenet")) == 80
    assert zsf.read_templates("simple") == ("a photo of a {}.",)
    f = tmp_path / "t.txt"
    f.write_text("a {} on a table\n\n  itap of my {}  \n{{literal}} {}\n")
    assert zsf.read_templates(str(f)) == ("a {} on a table", "itap of my {}", "{{literal}} {}")
    for line in ("a photo", "a {0} and {}", "{name}", "a { photo {}"):
        f.write_text(f"a {{}}\n{line}\n")
        with pytest.raises(ValueError, match=re.escape(f"t.txt line 2: {line!r} is not")):
            zsf.read_templates(str(f))
    f.write_text("\n\n")
    with pytest.raises(ValueError, match="holds no template"):
        zsf.read_templates(str(f))
    with pytest.raises(ValueError, match="'clip' is neither a named set .clip_imagenet, simple."):
        zsf.read_templates("clip")


def test_folder_errors_name_the_key(tmp_path, colour_folder):
    fake = Embedders()

    def build(path):
        config = _config(path)
        return zsf.evaluator(config.zero_shot, fake.embed_images, fake.embed_texts, SIZE)

    with pytest.raises(FileNotFoundError, match="config.zero_shot.dir=.*nowhere' is not a dir"):
        build(tmp_path / "nowhere")
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(flat / "x.png")
    with pytest.raises(ValueError, match="holds its images directly; .* one subfolder per class"):
        build(flat)
    one = colour_folder(tmp_path / "one", {"red": (255, 0, 0)}, 1)
    with pytest.raises(ValueError, match="one class subfolder \\('red'\\); .* at least two"):
        build(one)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="config.zero_shot.dir=.*empty'.*no .png"):
        build(tmp_path / "empty")
    with pytest.raises(ValueError, match="names 'zero_shot': set config.zero_shot.dir"):
        build("")
    bad = colour_folder(tmp_path / "bad", {"a": (0, 0, 0), "b": (1, 1, 1)}, 1)
    (bad / "b" / "0.jpg").write_bytes(b"not a jpeg")
    run = build(bad)  # files are opened when evaluated, and a bad one is named
    with pytest.raises(ValueError, match="b/0.jpg: cannot decode"):
        run(fake.image_params(), None)


def test_setting_the_folder_adds_the_evaluator(tmp_path):
    config = _config("")
    config.evals = ("retrieval",)
    assert zsf.evals(config) == ["retrieval"]
    config.zero_shot.dir = str(tmp_path)
    assert zsf.evals(config) == ["retrieval", "zero_shot"]
    config.evals = ("zero_shot,retrieval",)  # named already: kept where it is
    assert zsf.evals(config) == ["zero_shot", "retrieval"]
    config.evals = ("",)  # --config.evals= : the folder alone
    assert zsf.evals(config) == ["zero_shot"]
    del config["zero_shot"]  # a config without the keys
    assert zsf.evals(config) == []
