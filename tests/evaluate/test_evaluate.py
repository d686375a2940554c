"""The shared evaluator machinery: choice by name, the chunked map, caption retrieval, ECE and
the LM's perplexity sums, each against a direct or brute-force computation."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P
from sklearn.metrics import top_k_accuracy_score

from jaxmodels import evaluate
from jaxmodels.data.text import pack_stream
from jaxmodels.evaluate.calibration import calibration, expected_calibration_error
from jaxmodels.evaluate.chunked import chunked_map
from jaxmodels.evaluate.extrapolation import score
from jaxmodels.evaluate.retrieval import CaptionIndex


def _offered(built):
    def builder(name, keys):
        def build():
            built.append(name)
            return lambda params, rng: dict.fromkeys(keys, 1.0)

        return build

    return {"a": builder("a", ["a_x"]), "b": builder("b", ["b_x"]), "c": builder("c", ["a_x"])}


def test_select_parses_what_the_cli_gives_and_builds_only_the_chosen():
    assert evaluate.names(("a,b",)) == ["a", "b"]  # --config.evals=a,b on a tuple key
    assert evaluate.names("b, a,b") == ["b", "a"]
    assert evaluate.names(("",)) == [] and evaluate.names(()) == []  # --config.evals=
    built = []
    run = evaluate.select(("b,a",), _offered(built))
    assert built == ["b", "a"] and run(None, None) == {"a_x": 1.0, "b_x": 1.0}
    assert evaluate.select(("",), _offered(built)) is None


def test_select_refuses_unknown_names_and_metric_clashes():
    with pytest.raises(ValueError, match=r"unknown evaluator\(s\) \['z'\]; offered: a, b, c"):
        evaluate.select("a,z", _offered([]))
    with pytest.raises(ValueError, match="offered: none"):
        evaluate.select("a", {})
    with pytest.raises(ValueError, match="'a' and 'c' both report \\['a_x'\\]"):
        evaluate.select("a,c", _offered([]))(None, None)


@pytest.mark.parametrize("n", [1, 7, 12, 13])  # below, at and between multiples of the chunk
def test_chunked_map_equals_the_unchunked_computation(n):
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    ids = rng.integers(0, 5, size=(n, 2)).astype(np.int32)
    w = rng.normal(size=(3, 4)).astype(np.float32)
    traces = []

    def fn(w, x_BxE, ids_BxL):
        traces.append(x_BxE.shape)
        return {"h": jnp.tanh(x_BxE @ w), "s": (x_BxE.sum(1), ids_BxL.sum(1))}

    out = chunked_map(fn, 6)(w, x, ids)
    np.testing.assert_allclose(out["h"], np.tanh(x @ w), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["s"][0], x.sum(1), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out["s"][1], ids.sum(1))
    assert traces == [(6, 3)]  # one shape, one compile


def test_chunked_map_with_sharded_params_replicates_its_outputs():
    mesh = jax.make_mesh((4, 2), ("data", "tensor"), (AxisType.Explicit,) * 2)
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 8)).astype(np.float32)
    x = rng.normal(size=(11, 4)).astype(np.float32)
    w_sharded = jax.device_put(w, NamedSharding(mesh, P(None, "tensor")))
    with jax.set_mesh(mesh):
        out = chunked_map(lambda w, x: x @ w, 4, mesh=mesh)(w_sharded, x)
    np.testing.assert_allclose(out, x @ w, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="one non-zero length"):
        chunked_map(lambda w, x, y: x, 4)(w, x, x[:3])


def _brute_force_t2i(sims_QxM, image_ids_Q, k):
    """Caption m is found at k when an image of its own ranks in its top k (ties: pessimistic)."""
    hits = []
    for m in range(sims_QxM.shape[1]):
        own = image_ids_Q == m
        order = sorted(range(len(own)), key=lambda q: (-sims_QxM[q, m], bool(own[q])))
        hits.append(any(own[q] for q in order[:k]))
    return float(np.mean(hits))


def test_caption_index_recall_against_brute_force_and_sklearn():
    rng = np.random.default_rng(0)
    captions = [f"caption {i}" for i in rng.integers(0, 9, size=30)]  # shared captions
    index = CaptionIndex.of(captions)
    assert index.captions == sorted(set(captions))
    assert [index.captions[i] for i in index.image_ids] == captions
    sims = rng.normal(size=(30, len(index.captions))).astype(np.float32)
    got = index.recall(sims, ks=(1, 2, 5))
    labels = np.arange(len(index.captions))
    for k in (1, 2, 5):
        want_i2t = top_k_accuracy_score(index.image_ids, sims, k=k, labels=labels)
        assert got[f"i2t_recall@{k}"] == pytest.approx(want_i2t)
        assert got[f"t2i_recall@{k}"] == pytest.approx(_brute_force_t2i(sims, index.image_ids, k))


def test_expected_calibration_error_against_a_loop_over_bins():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(200, 4)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    labels = rng.integers(0, 4, size=200)
    conf, correct = probs.max(-1), probs.argmax(-1) == labels
    want = 0.0
    for m in range(10):  # bins ((m)/10, (m+1)/10]
        inside = (conf > m / 10) & (conf <= (m + 1) / 10)
        if inside.any():
            want += inside.mean() * abs(correct[inside].mean() - conf[inside].mean())
    assert expected_calibration_error(probs, labels, bins=10) == pytest.approx(want)
    out = calibration(np.eye(4)[labels], labels)  # confident and right: calibrated
    assert out == {"ece": 0.0, "accuracy": 1.0, "confidence": 1.0}


def test_perplexity_sums_equal_a_direct_computation():
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 300, size=n) for n in (40, 25, 61)]
    rows = pack_stream(docs, 16, pad_id=0)  # 126 tokens: the last row is part padding
    table = rng.normal(size=(300, 300)).astype(np.float32)  # logits depend on the token only
    out = score(lambda t, inputs, positions: t[inputs], table, rows, 3, is_bytes=True)
    logp = table - np.log(np.exp(table).sum(-1, keepdims=True))
    nll = -logp[rows["inputs"], rows["targets"]]
    w = rows["weights"]
    assert out["ppl"] == pytest.approx(math.exp((nll * w).sum() / w.sum()), rel=1e-5)
    bw = w * (rows["targets"] < 256)
    assert out["bpb"] == pytest.approx((nll * bw).sum() / bw.sum() / math.log(2), rel=1e-5)
