"""TRN / IDN / GRU / MLP detectors: parity with PyTorch references, streaming == scan."""

import importlib.util

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxmodels.config import REPO_ROOT
from jaxmodels.models.online_action import model as oa

BENCH = REPO_ROOT / "experiments" / "benchmarks"

B, L, D, C = 2, 9, 6, 5


def _x(seed=0, length=L):
    return jax.random.normal(jax.random.key(seed), (B, length, D))


def _t(a):
    return torch.tensor(np.asarray(a, np.float32))


def _init(model, x):
    return nn.unbox(jax.jit(model.init)(jax.random.key(1), x)["params"])


def _apply(model, p, x, state=None, **kw):
    return jax.jit(lambda p, x, s: model.apply({"params": p}, x, s, **kw))(p, x, state)


class _TorchTRN(torch.nn.Module):
    """TRN forward written from the TRN.pytorch GeneralizedTRN semantics (THUMOS inputs)."""

    def __init__(self, F, H, C, dec_steps):
        super().__init__()
        lin = torch.nn.Linear
        self.input_linear, self.classifier = lin(D, F), lin(H, C)
        self.hx_trans, self.cx_trans = lin(H, H), lin(H, H)
        self.fusion_linear, self.future_linear = lin(C, H), lin(H, F)
        self.enc_cell, self.dec_cell = torch.nn.LSTMCell(2 * F, H), torch.nn.LSTMCell(H, H)
        self.F, self.H, self.dec_steps = F, H, dec_steps

    def forward(self, x):
        relu = torch.relu
        n = x.shape[0]
        h, c, future = x.new_zeros(n, self.H), x.new_zeros(n, self.H), x.new_zeros(n, self.F)
        enc_scores, dec_scores = [], []
        for t in range(x.shape[1]):
            fused = torch.cat([relu(self.input_linear(x[:, t])), future], 1)
            h, c = self.enc_cell(fused, (h, c))
            enc_scores.append(self.classifier(h))
            dh, dc = relu(self.hx_trans(h)), relu(self.cx_trans(c))
            fusion, future = x.new_zeros(n, self.H), x.new_zeros(n, self.F)
            steps = []
            for _ in range(self.dec_steps):
                dh, dc = self.dec_cell(fusion, (dh, dc))
                score = self.classifier(dh)
                steps.append(score)
                fusion = relu(self.fusion_linear(score))
                future = future + relu(self.future_linear(dh))
            future = future / self.dec_steps
            dec_scores.append(torch.stack(steps, 1))
        return torch.stack(enc_scores, 1), torch.stack(dec_scores, 1)


def _copy_linear(lin, p):
    lin.weight.data = _t(p["kernel"]).T.contiguous()
    lin.bias.data = _t(p["bias"])


def _trn_and_torch(F=7, H=12, K=3):
    """A TRN with larger-than-init weights and the PyTorch reference holding the same ones."""
    model = oa.TRN(D, C, width=H, fusion_size=F, dec_steps=K)
    x = _x()
    p = _init(model, x)
    # Larger linear weights than the N(0, 0.001) init so the comparison is not trivially ~0.
    p = jax.tree.map(lambda a: a * 100 if a.ndim == 2 and a.std() < 0.01 else a, p)
    ref = _TorchTRN(F, H, C, K)
    for name in ("input_linear", "classifier", "hx_trans", "cx_trans"):
        _copy_linear(getattr(ref, name), p[name])
    _copy_linear(ref.fusion_linear, p["fusion_linear"])
    _copy_linear(ref.future_linear, p["future_linear"])
    enc_fh = np.asarray(p["enc_fh"]["kernel"])
    ref.enc_cell.weight_ih.data = _t(np.concatenate([p["enc_x"]["kernel"], enc_fh[:F]])).T
    ref.enc_cell.weight_hh.data = _t(enc_fh[F:]).T.contiguous()
    ref.enc_cell.bias_ih.data, ref.enc_cell.bias_hh.data = (
        _t(p["enc_x"]["bias"]),
        torch.zeros(4 * H),
    )
    dec = np.asarray(p["dec"]["kernel"])
    ref.dec_cell.weight_ih.data = _t(dec[:H]).T.contiguous()
    ref.dec_cell.weight_hh.data = _t(dec[H:]).T.contiguous()
    ref.dec_cell.bias_ih.data, ref.dec_cell.bias_hh.data = _t(p["dec"]["bias"]), torch.zeros(4 * H)
    return model, p, x, ref


def test_trn_matches_pytorch_reference():
    model, p, x, ref = _trn_and_torch()
    out, _ = _apply(model, p, x)
    with torch.no_grad():
        enc_ref, dec_ref = ref(_t(x))
    np.testing.assert_allclose(out["scores"], enc_ref.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["future_scores"], dec_ref.numpy(), rtol=1e-4, atol=1e-4)


def test_trn_gradients_match_pytorch_autograd():
    """TRN's weight gradients are computed after the backward scan (``scan_weight_grads``), not
    accumulated inside it: every parameter's gradient against PyTorch autograd, float32."""
    F, H = 7, 12
    model, p, x, ref = _trn_and_torch(F, H)
    rng = np.random.default_rng(0)
    ct_enc, ct_dec = rng.normal(size=(B, L, C)), rng.normal(size=(B, L, 3, C))

    def loss(p):
        out, _ = model.apply({"params": p}, x)
        return jnp.sum(out["scores"] * ct_enc) + jnp.sum(out["future_scores"] * ct_dec)

    g = jax.jit(jax.grad(loss))(p)
    enc_ref, dec_ref = ref(_t(x))
    ((enc_ref * _t(ct_enc)).sum() + (dec_ref * _t(ct_dec)).sum()).backward()
    grad = lambda w: w.grad.numpy().T  # noqa: E731  (torch weights are out x in)
    want = {n: (grad(getattr(ref, n).weight), getattr(ref, n).bias.grad.numpy()) for n in
            ("input_linear", "classifier", "hx_trans", "cx_trans", "fusion_linear",
             "future_linear")}  # fmt: skip
    enc, dec = ref.enc_cell, ref.dec_cell
    want["enc_x"] = (grad(enc.weight_ih)[:F], enc.bias_ih.grad.numpy())
    want["enc_fh"] = (np.concatenate([grad(enc.weight_ih)[F:], grad(enc.weight_hh)]), None)
    want["dec"] = (np.concatenate([grad(dec.weight_ih), grad(dec.weight_hh)]), dec.bias_ih.grad)
    for name, (kernel, bias) in want.items():
        scale = np.abs(kernel).max()
        np.testing.assert_allclose(g[name]["kernel"], kernel, atol=2e-5 * scale, err_msg=name)
        if bias is not None:
            np.testing.assert_allclose(g[name]["bias"], np.asarray(bias), atol=2e-5 * scale)


def test_trn_backward_scan_has_no_weight_sized_matmul():
    """Plain autodiff of a scan computes each closed-over weight's gradient (a weight-sized dot,
    then an add into an accumulator) on every backward step, as the control shows; TRN's
    weight-gradient dots run once, outside the loops."""
    spec = importlib.util.spec_from_file_location("hlo_stats", BENCH / "hlo_stats.py")
    hlo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hlo)
    H = 64
    w = jnp.eye(H)
    plain = lambda w: jax.lax.scan(lambda h, _: (jnp.tanh(h @ w), None), jnp.ones((B, H)), None, 4)
    control = jax.jit(jax.grad(lambda w: plain(w)[0].sum())).lower(w).compile().as_text()
    assert hlo.loop_dots(control, H * H) >= 1
    model = oa.TRN(D, C, width=H, fusion_size=H, dec_steps=2)
    x = _x()
    p = _init(model, x)
    grad = jax.jit(jax.grad(lambda p: model.apply({"params": p}, x)[0]["scores"].sum()))
    text = grad.lower(p).compile().as_text()
    assert "body=" in text, "no while loop: the scans were not found"
    assert hlo.loop_dots(text, H * H) == 0


def test_lstm_is_trn_without_decoder_and_matches_pytorch():
    """ReLU(Linear) -> torch.nn.LSTMCell -> Linear, TRN's encoder with no future input."""
    F, H = 7, 10
    model = oa.LSTMDetector(D, C, width=H, fusion_size=F, linear_init_std=0.001)
    x = _x(4)
    p = _init(model, x)
    assert 0.0005 < float(np.std(p["input_linear"]["kernel"])) < 0.002  # TRN.pytorch's N(0, 1e-3)
    kernel = np.asarray(p["enc_h"]["kernel"])  # H x 4H, orthogonal rows
    np.testing.assert_allclose(kernel @ kernel.T, np.eye(H), atol=1e-5)
    p = jax.tree.map(lambda a: a * 300 if a.ndim == 2 and a.std() < 0.01 else a, p)
    proj, cell, head = torch.nn.Linear(D, F), torch.nn.LSTMCell(F, H), torch.nn.Linear(H, C)
    _copy_linear(proj, p["input_linear"])
    _copy_linear(head, p["classifier"])
    cell.weight_ih.data, cell.bias_ih.data = _t(p["enc_x"]["kernel"]).T, _t(p["enc_x"]["bias"])
    cell.weight_hh.data, cell.bias_hh.data = _t(p["enc_h"]["kernel"]).T, torch.zeros(4 * H)
    with torch.no_grad():
        e = torch.relu(proj(_t(x)))
        h, c, scores = torch.zeros(B, H), torch.zeros(B, H), []
        for t in range(L):
            h, c = cell(e[:, t], (h, c))
            scores.append(head(h))
    out, _ = _apply(model, p, x)
    np.testing.assert_allclose(out["scores"], torch.stack(scores, 1).numpy(), rtol=1e-4, atol=1e-4)


def test_gru_matches_pytorch_reference():
    E, H = 8, 10
    model = oa.GRUDetector(D, C, width=H, embed_dim=E)
    x = _x(1)
    p = _init(model, x)
    embed, norm, cell = torch.nn.Linear(D, E), torch.nn.LayerNorm(E), torch.nn.GRUCell(E, H)
    _copy_linear(embed, p["embed"])
    norm.weight.data, norm.bias.data = _t(p["norm"]["scale"]), _t(p["norm"]["bias"])
    cell.weight_ih.data, cell.bias_ih.data = _t(p["gru_x"]["kernel"]).T, _t(p["gru_x"]["bias"])
    cell.weight_hh.data, cell.bias_hh.data = _t(p["gru_h"]["kernel"]).T, _t(p["gru_h"]["bias"])
    head = torch.nn.Linear(H, C)
    _copy_linear(head, p["classifier"])
    with torch.no_grad():
        e = torch.relu(norm(embed(_t(x))))
        h, scores = torch.zeros(B, H), []
        for t in range(L):
            h = cell(e[:, t], h)
            scores.append(head(h))
    out, _ = _apply(model, p, x)
    np.testing.assert_allclose(out["scores"], torch.stack(scores, 1).numpy(), rtol=1e-4, atol=1e-5)


def _keras_hard_sigmoid(v):
    return np.clip(0.2 * v + 0.5, 0.0, 1.0)  # Keras 2 / TF 1.x backend.hard_sigmoid


def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


def _idu_authors(x_t, x_0, h, W, b, act, reset_after=False):
    """One IDU step as Eun et al. (CVPR 2020, Eq. 1-4) and their released ``IDUCell.type1``
    (hjeun/idu, patches/tensorflow.python.keras.layers/recurrent.py) write it, row vectors:

    r = act(h W_hr + x0 W_x0r), z = act(x_t W_xtz + x0 W_x0z), h~ = tanh(x_t W_xth + (r h) W_hh),
    h' = (1 - z) h + z h~. ``b`` holds an additive bias per product (zeros in the released code);
    ``reset_after`` moves r after the W_hh product (the cuDNN GRU form, kept as an option).
    """
    r = act(h @ W["hr"] + b["hr"] + x_0 @ W["x0r"] + b["x0r"])
    z = act(x_t @ W["xtz"] + b["xtz"] + x_0 @ W["x0z"] + b["x0z"])
    recurrent = r * (h @ W["hh"] + b["hh"]) if reset_after else (r * h) @ W["hh"] + b["hh"]
    h_tilde = np.tanh(x_t @ W["xth"] + b["xth"] + recurrent)
    return (1 - z) * h + z * h_tilde


@pytest.mark.parametrize(
    "options",
    [
        dict(),  # the paper's sigmoid gates, with biases
        dict(gate_activation="hard_sigmoid", cell_bias=False),  # the released code
        dict(reset_after=True),  # the earlier form, kept as an option
    ],
)
def test_idn_matches_the_authors_equations(options):
    """Output frame t: the IDU over frames max(0, t-T)..t with x0 = frame t's early embedding,
    then ReLU layer and classifier on the last h (the released model's ``logits_last[:, -1]``)."""
    H, window = 8, 4
    model = oa.IDN(D, C, width=H, window=window, **options)
    x = _x(2)
    p = jax.tree.map(np.asarray, _init(model, x))
    # Random biases, larger than the init's, so a misplaced bias or gate cannot go unnoticed.
    rng = np.random.default_rng(0)
    p = {k: {n: a + 0.5 * rng.normal(size=a.shape) for n, a in v.items()} for k, v in p.items()}
    act = _keras_hard_sigmoid if options.get("gate_activation") == "hard_sigmoid" else _sigmoid

    def lin(name, v):
        return v @ p[name]["kernel"] + p[name]["bias"]

    def halves(name):
        kernel = p[name]["kernel"]
        bias = p[name].get("bias", np.zeros(2 * H))
        return (kernel[:, :H], kernel[:, H:]), (bias[:H], bias[H:])

    (W_xtz, W_xth), (b_xtz, b_xth) = halves("xt_gates")
    (W_x0r, W_x0z), (b_x0r, b_x0z) = halves("x0_gates")
    (W_hr, W_hh), (b_hr, b_hh) = halves("h_gates")
    W = dict(xtz=W_xtz, xth=W_xth, x0r=W_x0r, x0z=W_x0z, hr=W_hr, hh=W_hh)
    b = dict(xtz=b_xtz, xth=b_xth, x0r=b_x0r, x0z=b_x0z, hr=b_hr, hh=b_hh)
    e = np.maximum(lin("early_embed", np.asarray(x, np.float64)), 0)  # x~ = ReLU(W_xe x + b_xe)
    expected = np.zeros((B, L, C))
    for t in range(L):
        h = np.zeros((B, H))
        for s in range(max(0, t - window + 1), t + 1):
            h = _idu_authors(e[:, s], e[:, t], h, W, b, act, options.get("reset_after", False))
        expected[:, t] = lin("classifier", np.maximum(lin("out_hidden", h), 0))
    out, _ = _apply(model, jax.tree.map(jnp.asarray, p), x)
    np.testing.assert_allclose(out["scores"], expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["embeddings"], e, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        out["embed_scores"], lin("early_classifier", e), rtol=1e-4, atol=1e-4
    )
    assert ("bias" in p["h_gates"]) == options.get("cell_bias", True)


MODELS = {
    "trn": lambda: oa.TRN(D, C, width=16, dec_steps=3),
    "idn": lambda: oa.IDN(D, C, width=8, window=4),
    "lstm": lambda: oa.LSTMDetector(D, C, width=8, fusion_size=5),
    "gru": lambda: oa.GRUDetector(D, C, width=8, embed_dim=8),
    "mlp": lambda: oa.MLPDetector(D, C, width=8),
}


@pytest.fixture(scope="module", params=sorted(MODELS))
def built(request):
    """(model, params, jitted apply, full-sequence outputs) for each detector, built once."""
    model = MODELS[request.param]()
    x = _x(3)
    p = _init(model, x)
    apply = jax.jit(
        lambda p, x, s, rngs=None, det=True: model.apply(
            {"params": p}, x, s, deterministic=det, rngs=rngs
        ),
        static_argnames="det",
    )
    out, _ = apply(p, x, None)
    return model, p, apply, x, out


def test_streaming_step_equals_scan_and_chunks(built):
    model, p, apply, x, out = built
    init_state, step = oa.streaming(model)
    state, probs = init_state(B), []
    for t in range(L):
        prob, state = step(p, state, x[:, t])
        probs.append(prob)
    np.testing.assert_allclose(
        jnp.stack(probs, 1), jax.nn.softmax(out["scores"], -1), rtol=1e-5, atol=1e-6
    )
    first, state = apply(p, x[:, :4], None)
    rest, _ = apply(p, x[:, 4:], state)
    chunked = jnp.concatenate([first["scores"], rest["scores"]], 1)
    np.testing.assert_allclose(chunked, out["scores"], rtol=1e-5, atol=1e-6)


def test_causal_and_dropout(built):
    model, p, apply, x, out = built
    out2, _ = apply(p, x.at[:, 5:].set(7.0), None)
    np.testing.assert_allclose(out2["scores"][:, :5], out["scores"][:, :5], rtol=1e-6, atol=1e-6)
    assert not np.allclose(out2["scores"][:, 5:], out["scores"][:, 5:])
    dropped, _ = apply(p, x, None, rngs={"dropout": jax.random.key(0)}, det=False)
    chex.assert_tree_all_finite(dropped)
    chex.assert_trees_all_equal_shapes(dropped, out)


def test_bfloat16_compute_with_params_cast_once(built):
    model, p, _, x, out = built
    bf16 = model.clone(dtype=jnp.bfloat16)
    p16 = oa.cast_params(p, jnp.bfloat16)
    assert all(a.dtype == jnp.bfloat16 for a in jax.tree.leaves(p16))
    out_bf16, _ = jax.jit(lambda p, x: bf16.apply({"params": p}, x))(p16, x)
    chex.assert_tree_all_finite(out_bf16)
    assert out_bf16["scores"].dtype == jnp.bfloat16
    np.testing.assert_allclose(
        jax.nn.softmax(out_bf16["scores"].astype(jnp.float32)),
        jax.nn.softmax(out["scores"]),
        atol=0.05,
    )
