"""Test set-up: 8 fake CPU devices, configured before JAX initialises; fixtures that tell
whether a folder changed, and one that writes a labelled image folder."""

import hashlib
import os

import pytest

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")


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
