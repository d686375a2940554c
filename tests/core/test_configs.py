"""Every experiment config loads at its smoke size, really is smoke-sized, and rejects a
mistyped arg by name."""

import pathlib
import re

import pytest

from jaxmodels import registry
from jaxmodels.config import MODEL_SIZES, REPO_ROOT, load_config, validate
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
