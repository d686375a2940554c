"""Test set-up: 8 fake CPU devices, configured before JAX initialises; chex's jit / no-jit
variants for plain pytest functions; fixtures that tell whether a folder changed.

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
