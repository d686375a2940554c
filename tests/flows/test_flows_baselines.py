"""experiments/flows/baselines.py: the reference points docs/flows.md puts beside the flows."""

import importlib.util
import math

import numpy as np

from jaxmodels.config import REPO_ROOT

spec = importlib.util.spec_from_file_location(
    "flow_baselines", REPO_ROOT / "experiments" / "flows" / "baselines.py"
)
baselines = importlib.util.module_from_spec(spec)
spec.loader.exec_module(baselines)


def test_histogram_bits_closed_forms():
    rng = np.random.default_rng(0)
    uniform = rng.integers(0, 16, (20000, 3))
    bits = baselines.histogram_bits(uniform[:10000], uniform[10000:], 16, alpha=0.5)
    assert abs(bits - 4.0) < 0.01  # log2 16 for uniform pixels
    black = np.zeros((100, 3), np.int64)  # always 0: P = (100 + a) / (100 + 16 a)
    bits = baselines.histogram_bits(black, black, 16, alpha=0.5)
    assert math.isclose(bits, -math.log2(100.5 / 108), rel_tol=1e-9)


def test_gaussian_bits_of_gaussian_data():
    """Integers drawn from a wide Gaussian: the fit's bits/dim is the Gaussian's entropy in
    units of one level (log2(sigma sqrt(2 pi e))), within the dequantisation's small excess."""
    rng = np.random.default_rng(1)
    x = np.clip(np.round(rng.normal(128, 20, (40000, 2))), 0, 255).astype(np.int64)
    full, diag = baselines.gaussian_bits(x[:20000], x[20000:], 256)
    want = math.log2(20 * math.sqrt(2 * math.pi * math.e))
    assert abs(full - want) < 0.02 and abs(diag - want) < 0.02
