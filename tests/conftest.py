"""Test set-up: 8 fake CPU devices, configured before JAX initialises; chex's jit / no-jit
variants for plain pytest functions; fixtures that tell whether a folder changed, and one that
writes a labelled image folder.

How the tests check JAX code (chex, https://github.com/google-deepmind/chex):

- Loss and model forward tests run twice, through the ``variant`` fixture below: once with the
  function under test wrapped in ``jax.jit`` and once called as is (op by op): the two
  variants that ``@chex.variants(with_jit=True, without_jit=True)`` gives a ``chex.TestCase``
  method, for plain pytest functions (chex itself needs a test class). A test takes
  ``variant`` and calls the function under test as ``variant(fn)(*args)``
  (``variant(fn, static_argnames=...)`` passes jit options, which the no-jit run ignores);
  the test ids end in ``[with_jit]`` / ``[without_jit]``. As with chex, a
  test that takes ``variant`` and never calls it fails. Training-loop tests run once (jitted,
  as the trainer runs them): a second run there buys no coverage for its time.
- Values are compared with chex's tree asserts, the tolerance always written out:
  ``chex.assert_trees_all_close(got, want, atol=..., rtol=...)`` (both given; a bare
  ``rtol=1e-6`` default would hide what the test means), ``chex.assert_trees_all_equal`` for
  exact results (integers, masks, sampled tokens), ``chex.assert_shape`` and
  ``chex.assert_tree_all_finite`` for outputs. Where a tolerance is not the float32 round-off
  of the computation (about 1e-6 relative), a comment says where the rest comes from.
  Host-side numpy code (data pipelines, packing, metrics computed on the host) keeps
  ``numpy.testing``: there is no JAX program to vary and no pytree to compare.
"""

import hashlib
import os

import pytest

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

VARIANTS = ("with_jit", "without_jit")  # chex.variants(with_jit=True, without_jit=True)


@pytest.fixture(params=VARIANTS)
def variant(request):
    """``variant(fn, **jit_options)``: ``jax.jit(fn, **jit_options)`` in the ``with_jit`` run,
    ``fn`` itself in the ``without_jit`` run (chex's variants for plain pytest functions)."""
    import jax  # after XLA_FLAGS above

    calls = []

    def apply(fn, **jit_options):
        calls.append(fn)
        return jax.jit(fn, **jit_options) if request.param == "with_jit" else fn

    yield apply
    if not calls:
        pytest.fail("the test takes the `variant` fixture but never calls variant(fn)")


@pytest.fixture
def gpu_kernel_choices(monkeypatch):
    """Attention on a pretend GPU: yields the list of the ``KernelChoice`` each attention call
    traced makes there (cuDNN's rules seen from the CPU, which then falls back to XLA)."""
    from jaxmodels.layers.attention import kernels

    choices, choose = [], kernels.choose_kernel

    def spy(*args, **kwargs):
        choices.append(choose(*args, **kwargs))
        return choices[-1]

    monkeypatch.setattr(kernels, "_platform", lambda: "gpu")
    monkeypatch.setattr(kernels, "choose_kernel", spy)
    return choices


def _snapshot(root) -> dict[str, str]:
    """Every path under ``root``, with the SHA-256 of each file ("dir" for a folder)."""
    out = {}
    for d, dirs, files in os.walk(root):
        for name in dirs:
            out[os.path.relpath(os.path.join(d, name), root)] = "dir"
        for name in files:
            with open(os.path.join(d, name), "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            out[os.path.relpath(os.path.join(d, name), root)] = digest
    return out


def _garble_state(step_dir) -> None:
    for root, _, files in os.walk(os.path.join(step_dir, "state")):
        for name in files:
            with open(os.path.join(root, name), "wb") as f:
                f.write(b"garbage")


@pytest.fixture
def snapshot():
    """``snapshot(root)``: equal snapshots mean no byte and no path under ``root`` changed."""
    return _snapshot


@pytest.fixture
def garble_state():
    """``garble_state(step_dir)``: overwrites a checkpoint's state files with unreadable bytes."""
    return _garble_state


# ----------------------------------------------------------------------------------------------
# Tokenizer directories as HF saves them, trained here on Python's own docstrings (no downloads)
# ----------------------------------------------------------------------------------------------

CLIP_SPLIT = (
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|"""
    r"""[^\s\p{L}\p{N}]+"""
)


def python_doc_lines() -> list[str]:
    """Distinct non-empty lines of the docstrings of ``json``, ``os``, ``inspect``, ``string``
    and their public members (text that ships with Python)."""
    import inspect
    import json
    import string

    docs = []
    for module in (json, os, inspect, string):
        docs.append(inspect.getdoc(module) or "")
        docs += [
            inspect.getdoc(getattr(module, n)) or "" for n in sorted(dir(module)) if n[0] != "_"
        ]
    return list(dict.fromkeys(line for doc in docs for line in doc.splitlines() if line.strip()))


@pytest.fixture(scope="session")
def doc_lines():
    return python_doc_lines()


@pytest.fixture(scope="session")
def clip_tokenizer_dir(tmp_path_factory, doc_lines):
    """CLIP's BPE (NFC, lower case, its split pattern, byte level, ``</w>``; 500 tokens) saved by
    ``transformers.CLIPTokenizer``: ``tokenizer.json`` + ``tokenizer_config.json``."""
    import json

    transformers = pytest.importorskip("transformers")
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

    bpe = models.BPE(
        unk_token="<|endoftext|>", continuing_subword_prefix="", end_of_word_suffix="</w>"
    )
    tok = Tokenizer(bpe)
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    split = pre_tokenizers.Split(Regex(CLIP_SPLIT), behavior="removed", invert=True)
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [split, pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=500,
        special_tokens=["<|startoftext|>", "<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        end_of_word_suffix="</w>",
    )
    tok.train_from_iterator(doc_lines, trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split()) for m in model["merges"]]
    path = tmp_path_factory.mktemp("clip_tokenizer")
    clip = transformers.CLIPTokenizer(vocab=model["vocab"], merges=merges, model_max_length=77)
    clip.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def bert_tokenizer_dir(tmp_path_factory, doc_lines):
    """A WordPiece vocabulary (600) trained with BERT's normaliser, saved by
    ``transformers.BertTokenizer`` (BLIP's text tokenizer is bert-base-uncased's)."""
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    trainer = trainers.WordPieceTrainer(vocab_size=600, special_tokens=specials)
    tok.train_from_iterator(doc_lines, trainer)
    path = tmp_path_factory.mktemp("bert_tokenizer")
    transformers.BertTokenizer(vocab=tok.get_vocab()).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def siglip_tokenizer_dir(tmp_path_factory, doc_lines):
    """A unigram SentencePiece model (400) with SigLIP's ids (PAD 0, EOS 1, UNK 2, no BOS),
    saved by ``transformers.SiglipTokenizer``: ``spiece.model`` + ``tokenizer_config.json``."""
    transformers = pytest.importorskip("transformers")
    spm = pytest.importorskip("sentencepiece")

    path = tmp_path_factory.mktemp("siglip_tokenizer")
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(doc_lines),
        model_prefix=str(path / "trained"),
        vocab_size=400,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        minloglevel=2,
    )
    transformers.SiglipTokenizer(vocab_file=str(path / "trained.model")).save_pretrained(path)
    return path


def _colour_folder(root, colours, per_class=3, shade=0.0, seed=0):
    """Writes a labelled folder under ``root``: a subfolder per name of ``colours`` (name ->
    RGB) holding ``per_class`` noisy images of that colour, each shifted by its own shade
    (standard deviation ``shade``), of random sizes, PNG and JPEG in turn. Returns ``root``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name, rgb in colours.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            h, w = rng.integers(6, 30, size=2)
            own = np.array(rgb) + rng.normal(0, shade, 3)
            x = np.clip(own + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(x).save(root / name / f"{i}.{'png' if i % 2 else 'jpg'}", quality=95)
    return root


@pytest.fixture
def colour_folder():
    """``colour_folder(root, {name: rgb}, per_class=3, shade=0.0)``: a labelled image folder."""
    return _colour_folder
