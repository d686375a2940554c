"""Test set-up: 8 fake CPU devices, configured before JAX initialises; fixtures that tell
whether a folder changed."""

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
