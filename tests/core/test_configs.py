"""Every experiment config loads at its smoke size and rejects a mistyped arg by name."""

import pathlib

import pytest

from jaxmodels import registry
from jaxmodels.config import REPO_ROOT, load_config, validate

CONFIGS = sorted(
    str(p.relative_to(REPO_ROOT))
    for p in (REPO_ROOT / "experiments").glob("*/*.py")
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
