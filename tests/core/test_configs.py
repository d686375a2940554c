"""Every experiment config loads at its smoke size, really is smoke-sized, and rejects a
mistyped arg by name."""

import copy
import json
import pathlib
import re

import pytest

from jaxmodels import registry
from jaxmodels.config import (
    GLOSSARY,
    MODEL_SIZES,
    OLD_KEYS,
    OLD_VALUES,
    REPO_ROOT,
    UNUSED_OLD_KEYS,
    current_names,
    load_config,
    validate,
)
from jaxmodels.train import resume
from jaxmodels.train.resume import flatten

CONFIGS = sorted(
    str(p.relative_to(REPO_ROOT))
    for p in (REPO_ROOT / "experiments").rglob("*.py")
    if "def get_config" in p.read_text()
)


def test_every_family_has_configs():
    folders = {pathlib.Path(c).parts[1] for c in CONFIGS}
    assert set(registry.families()) <= folders


@pytest.mark.parametrize("path", CONFIGS)
def test_config_smoke_loads_and_typo_is_refused(path):
    config = load_config(f"{path}:smoke")
    validate(config)
    assert config.family in registry.families()
    with pytest.raises(ValueError, match="'smok'.*allowed: .*smoke"):
        load_config(f"{path}:smok")


SMOKE_STEPS = 20  # a smoke run trains a few steps: seconds on a laptop CPU
SMOKE_BATCH = 32
SMOKE_WIDTH = 64  # every config.model size (MODEL_SIZES) at most this


def _args(path) -> list[str]:
    """The args ``path`` allows, read from the error a mistyped one gives."""
    with pytest.raises(ValueError) as e:
        load_config(f"{path}:smok")
    return re.search(r"allowed: (.*) \(comma", str(e.value)).group(1).split(", ")


@pytest.mark.parametrize("path", CONFIGS)
def test_smoke_is_small_whatever_the_order_of_overrides(path):
    """A config that sets a full-run value after its smoke values (nice.py set train.steps=4000
    after them) fails here, without training anything; with every other arg too."""
    for arg in ["smoke"] + [f"{a},smoke" for a in _args(path) if a != "smoke"]:
        config = load_config(f"{path}:{arg}")
        t = config.train
        assert t.steps <= SMOKE_STEPS, f"{path}:{arg} trains {t.steps} steps"
        assert t.batch_size <= SMOKE_BATCH, f"{path}:{arg} has batch_size {t.batch_size}"
        sizes = flatten(config.model.to_dict())
        big = {
            k: v for k, v in sizes.items() if k.split(".")[-1] in MODEL_SIZES and v > SMOKE_WIDTH
        }
        assert not big, f"{path}:{arg} keeps full-size model keys {big}"


def _get(tree: dict, key: str):
    for part in key.split("."):
        tree = tree.get(part, {}) if isinstance(tree, dict) else {}
    return tree


def _in_old_names(tree: dict) -> dict:
    """``tree`` (a config as ``config.json`` holds it) as its family's configs wrote it before the
    renames: each new name of ``OLD_KEYS`` back under its old name, its value spelled the old way
    (``OLD_VALUES``); an old key a run held unused (``UNUSED_OLD_KEYS``) beside its new one."""
    out = copy.deepcopy(tree)
    family = out["family"]
    for old, new in OLD_KEYS.get(family, {}).items():
        *path, leaf = new.split(".")
        node = _get(out, ".".join(path)) if path else out
        if leaf not in node:
            continue
        unused = UNUSED_OLD_KEYS.get((family, old))
        if unused is not None and _get(out, unused[0]) == unused[1]:
            node[old.split(".")[-1]] = 12345  # saved beside the key the run used
            continue
        value = node.pop(leaf)
        spelled = {v: k for k, v in OLD_VALUES.get((family, new), {}).items()}
        node[old.split(".")[-1]] = spelled.get(value, value) if isinstance(value, str) else value
    return out


@pytest.mark.parametrize("path", CONFIGS)
def test_a_run_saved_under_the_old_names_compares_equal(path):
    """A run's config.json written before the vocabulary resumes, evaluates and samples with
    today's config file: it compares equal, and no change is reported (config.current_names)."""
    config = load_config(path)
    today = json.loads(config.to_json_best_effort())
    old = _in_old_names(today)
    assert old != today  # every family has old names (config.OLD_KEYS)
    assert resume.config_changes(old, config) == {}
    assert resume.check_config(old, config, allow=False, where="DIR") == []
    assert current_names(old) == today


# The words for sizes the families used before the vocabulary: nowhere under model, at any depth.
OLD_SIZE_WORDS = {"d_model", "d_ff", "num_layers", "hidden", "hidden_size", "channels"}
OLD_SIZE_WORDS |= {"num_blocks", "dropout", "embed_size"}


def test_every_config_speaks_the_vocabulary():
    """No experiment config keeps a name of OLD_KEYS (its family's, or a size word any family
    used: model.hidden, model.text.d_model, ...); each new name of OLD_KEYS is a GLOSSARY word."""
    glossary_leaves = {key.split(".")[-1] for key in GLOSSARY}
    old_words = {
        old.split(".")[-1] for renames in OLD_KEYS.values() for old in renames
    } - glossary_leaves
    for path in CONFIGS:
        config = load_config(path)
        keys = set(flatten(config.to_dict()))
        kept = keys & set(OLD_KEYS.get(config.family, {}))
        kept |= {k for k in keys if k.startswith("model.") and k.split(".")[1] in old_words}
        kept |= {k for k in keys if k.startswith("model.") and k.split(".")[-1] in OLD_SIZE_WORDS}
        assert not kept, f"{path} keeps old names {sorted(kept)}"
    for family, renames in OLD_KEYS.items():
        for new in renames.values():
            section, *_, leaf = new.split(".")
            assert f"{section}.{leaf}" in GLOSSARY, (family, new)
