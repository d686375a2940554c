"""Online action detectors as scan-based linen modules: TRN, IDN, an LSTM, a GRU, a per-frame MLP.

Every detector maps frame features ``x_BxLxE`` to per-frame class logits without looking ahead,
and shares one interface:

* ``__call__(x_BxLxE, state=None, *, deterministic=True) -> (outputs, state)``: the whole
  sequence with ``lax.scan``; ``outputs["scores"]`` are B x L x C logits (TRN adds
  ``future_scores`` B x L x dec_steps x C; IDN adds its early-embedding ``embed_scores`` and
  ``embeddings``). Passing the returned state continues the stream (chunked inference).
* ``init_state(batch)`` and ``step(state, x_BxE) -> (logits, state)``: one frame, the same pure
  step function the scan runs, so streaming equals the scan (see :func:`streaming`).

Weights are cast to the compute dtype once per call, outside the scan; the input-to-hidden
matmuls of all frames are hoisted out of the scan into one large matmul.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxmodels.layers.recurrent import (
    DenseWeights,
    concat_dense,
    dense,
    dropout,
    dropout_mask,
    gru_update,
    idu_update,
    lstm_update,
    scan_weight_grads,
)

Dtype = Any
_orthogonal = nn.initializers.orthogonal()
_torch_lstm_bias = nn.initializers.normal(
    1.0
)  # TRN code base: LSTM weights orthogonal, biases N(0,1)


def _linear_init(std: float):
    """N(0, std) for Linear weights as TRN.pytorch's ``weights_init``; 0: LeCun normal."""
    return nn.initializers.normal(std) if std else nn.initializers.lecun_normal()


def _time_major(x):
    return jnp.swapaxes(x, 0, 1)


def _scan(step, carry, xs_BxL, key, num_keys, weights=None):
    """Runs ``step(carry, x_t, keys_t)`` over the time axis of batch-major ``xs``; with
    ``weights``, ``step(weights, carry, x_t, keys_t)`` under :func:`scan_weight_grads` (the
    weights' gradients computed once, after the backward scan)."""
    xs = jax.tree.map(_time_major, xs_BxL)
    length = jax.tree.leaves(xs)[0].shape[0]
    keys = None if key is None else jax.random.split(key, (length, num_keys))
    if weights is None:
        carry, ys = jax.lax.scan(lambda c, x: step(c, x[0], x[1]), carry, (xs, keys))
    else:
        body = lambda w, c, x: step(w, c, x[0], x[1])  # noqa: E731
        carry, ys = scan_weight_grads(body, weights, carry, (xs, keys))
    return carry, jax.tree.map(_time_major, ys)


class _Detector(nn.Module):
    """Shared fields and helpers of the detectors."""

    input_size: int
    num_classes: int
    width: int
    dropout_rate: float = 0.0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def _dense(self, n_in, n_out, names=("embed", "mlp"), **kw):
        return DenseWeights(
            n_in, n_out, names=names, dtype=self.dtype, param_dtype=self.param_dtype, **kw
        )

    def _key(self, deterministic):
        return None if deterministic or self.dropout_rate == 0 else self.make_rng("dropout")

    def _inputs(self, x_BxLxE):
        x = nn.with_logical_constraint(x_BxLxE, ("batch", "length", "embed"))
        return x.astype(self.dtype)


class TRN(_Detector):
    """Temporal Recurrent Network (Xu et al., ICCV 2019, Sec. 3; TRN.pytorch ``GeneralizedTRN``).

    Encoder LSTMCell on [x_t ; future_{t-1}]; decoder LSTMCell run ``dec_steps`` steps from
    ReLU-transformed encoder states, fed by the transformed previous decoder scores; the mean of
    the transformed decoder hidden states is the next step's future input; one classifier is
    shared by encoder and decoder. Defaults are THUMOS'14's (hidden 4096, dec_steps 8).
    """

    width: int = 4096
    fusion_size: int = 0  # input projection width; 0: input_size (3072 on THUMOS)
    dec_steps: int = 8
    dropout_rate: float = 0.1
    linear_init_std: float = 0.0  # 0: LeCun normal; 0.001: TRN.pytorch's N(0, 0.001) (slower start)

    def setup(self):
        F, H, C = self.fusion_size or self.input_size, self.width, self.num_classes
        linear_init = _linear_init(self.linear_init_std)
        self.input_linear = self._dense(self.input_size, F, kernel_init=linear_init)
        lstm = dict(kernel_init=_orthogonal, bias_init=_torch_lstm_bias)
        self.enc_x = self._dense(F, 4 * H, **lstm)  # input part of the encoder gates (+ biases)
        self.enc_fh = self._dense(F + H, 4 * H, use_bias=False, kernel_init=_orthogonal)
        self.dec = self._dense(2 * H, 4 * H, **lstm)  # [fusion input ; h] -> decoder gates
        self.hx_trans = self._dense(H, H, kernel_init=linear_init)
        self.cx_trans = self._dense(H, H, kernel_init=linear_init)
        self.fusion_linear = self._dense(C, H, ("classes", "mlp"), kernel_init=linear_init)
        self.future_linear = self._dense(H, F, ("mlp", "embed"), kernel_init=linear_init)
        self.classifier = self._dense(H, C, ("mlp", "classes"), kernel_init=linear_init)

    def _weights(self):
        names = ("enc_fh", "dec", "hx_trans", "cx_trans", "fusion_linear", "future_linear")
        return {n: getattr(self, n)() for n in names + ("classifier",)}

    def _encoder_inputs(self, x, key):
        """Hoisted: ReLU input projection and the input part of the encoder gates, all frames."""
        x_proj = jax.nn.relu(dense(self.input_linear(), x))
        return dense(self.enc_x(), dropout(key, x_proj, self.dropout_rate))

    def init_state(self, batch: int):
        F, H = self.fusion_size or self.input_size, self.width
        return dict(
            h=jnp.zeros((batch, H), self.dtype),
            c=jnp.zeros((batch, H), jnp.float32),
            future=jnp.zeros((batch, F), self.dtype),
        )

    def _step(self, w, state, xg_Bx4E, keys):
        """One TRN step: encoder at t, ``dec_steps`` decoder steps, future fusion (Fig. 2)."""
        rate, kk = self.dropout_rate, (lambda i: None if keys is None else keys[i])
        future_in = dropout(kk(0), state["future"], rate)
        h, c = lstm_update(xg_Bx4E + concat_dense(w["enc_fh"], [future_in, state["h"]]), state["c"])
        enc_score = dense(w["classifier"], dropout(kk(1), h, rate))

        def decoder(carry, masks):
            dh, dc, fusion, future = carry
            m_in, m_h = (1, 1) if masks is None else masks
            dh, dc = lstm_update(concat_dense(w["dec"], [fusion * m_in, dh]), dc)
            score = dense(w["classifier"], dh * m_h)
            fusion = jax.nn.relu(dense(w["fusion_linear"], score))
            future = future + jax.nn.relu(dense(w["future_linear"], dh)).astype(future.dtype)
            return (dh, dc, fusion, future), score

        dh = jax.nn.relu(dense(w["hx_trans"], h))
        dc = jax.nn.relu(dense(w["cx_trans"], c)).astype(jnp.float32)
        carry = (dh, dc, jnp.zeros_like(dh), jnp.zeros(state["future"].shape, jnp.float32))
        masks = None  # decoder dropout masks of all dec_steps drawn at once: K x 2 x B x H
        if keys is not None:
            masks = dropout_mask(keys[2], (self.dec_steps, 2) + dh.shape, rate, dh.dtype)
        dec_scores = []
        for k in range(self.dec_steps):  # unrolled in Python: scan_weight_grads taps each call
            carry, score = decoder(carry, None if masks is None else (masks[k, 0], masks[k, 1]))
            dec_scores.append(score)
        future = (carry[3] / self.dec_steps).astype(self.dtype)
        new_state = dict(h=h, c=c, future=future)
        return new_state, (enc_score, jnp.stack(dec_scores, axis=1))

    def __call__(self, x_BxLxE, state=None, *, deterministic=True):
        x = self._inputs(x_BxLxE)
        key = self._key(deterministic)
        k_in, k_scan = (None, None) if key is None else jax.random.split(key)
        state = self.init_state(x.shape[0]) if state is None else state
        w = self._weights()
        xg = self._encoder_inputs(x, k_in)
        state, (scores, future_scores) = _scan(self._step, state, xg, k_scan, 3, weights=w)
        return dict(scores=scores, future_scores=future_scores), state

    def step(self, state, x_BxE):
        xg = self._encoder_inputs(x_BxE.astype(self.dtype), None)
        state, (score, future_scores) = self._step(self._weights(), state, xg, None)
        return dict(scores=score, future_scores=future_scores), state


class IDN(_Detector):
    """Information Discrimination Network (Eun et al., CVPR 2020, Sec. 3).

    Each output frame t runs an IDU (:func:`~jaxmodels.layers.recurrent.idu_update`: reset gate
    on h before W_hh, h' = (1 - z) h + z h~, as the authors' released ``IDUCell``) over the
    ``window`` = T+1 frames ending at t, with the reset and update gates conditioned on the early
    embedding x0~ of frame t itself; h_0 goes through a ReLU layer and the classifier. The gates
    are sigmoids with biases as the paper writes them; ``gate_activation="hard_sigmoid"`` with
    ``cell_bias=False`` is the released code (hjeun/idu). The early embedding x~ = ReLU(W_xe x)
    has its own classifier (``embed_scores``) and feeds the contrastive loss. All output frames
    are computed at once: the frame-wise parts (embedding, W_xt x~, W_x0 x~) once per frame, then
    one scan over the window axis with the B x L windows as the batch. Frames before the stream
    start are skipped (h kept).
    """

    width: int = 512
    window: int = 16  # T + 1 = 16 chunks (4 s at 4 chunks/s), as in the paper
    dropout_rate: float = 0.1
    gate_activation: str = "sigmoid"  # IDU gates: sigmoid (paper) | hard_sigmoid (released code)
    cell_bias: bool = True  # biases in the IDU's gates (the released code has none)
    reset_after: bool = False  # False: r * h before W_hh (paper, code); True: r * (W_hh h)

    def setup(self):
        H, C = self.width, self.num_classes
        self.early_embed = self._dense(self.input_size, H)  # W_xe
        self.early_classifier = self._dense(H, C, ("mlp", "classes"))  # W_ep
        cell = dict(use_bias=self.cell_bias)
        self.xt_gates = self._dense(H, 2 * H, **cell)  # [W_xtz ; W_xth]
        self.x0_gates = self._dense(H, 2 * H, **cell)  # [W_x0r ; W_x0z]
        self.h_gates = self._dense(H, 2 * H, **cell)  # [W_hr ; W_hh]
        self.out_hidden = self._dense(H, H)
        self.classifier = self._dense(H, C, ("mlp", "classes"))

    def init_state(self, batch: int):
        T = self.window - 1
        return dict(
            xt_gates=jnp.zeros((batch, T, 2 * self.width), self.dtype),
            valid=jnp.zeros((batch, T), bool),
        )

    def _frames(self, x, key):
        """Per-frame parts: early embedding, its scores, and both gate contributions."""
        e = jax.nn.relu(dense(self.early_embed(), x))
        e_drop = dropout(key, e, self.dropout_rate)
        return (
            e,
            dense(self.early_classifier(), e),
            dense(self.xt_gates(), e_drop),
            dense(self.x0_gates(), e_drop),
        )

    def _window(self, xt_gates_BxLxSx2E, valid_BxLxS, x0_gates_BxLx2E, key):
        """IDU over the window axis S (batch dims B, L), then the output layers on h_0."""
        H = self.width
        kernel, bias = self.h_gates()
        w_hr = (kernel[:, :H], None if bias is None else bias[:H])
        w_hh = (kernel[:, H:], None if bias is None else bias[H:])
        cell = dict(gate=self.gate_activation, reset_after=self.reset_after)

        def body(h, inputs):
            xt_k, valid_k = inputs
            h_new = idu_update(xt_k, x0_gates_BxLx2E, h, w_hr, w_hh, **cell)
            return jnp.where(valid_k[..., None], h_new, h), None

        h0 = jnp.zeros(x0_gates_BxLx2E.shape[:-1] + (self.width,), self.dtype)
        xs = (jnp.moveaxis(xt_gates_BxLxSx2E, -2, 0), jnp.moveaxis(valid_BxLxS, -1, 0))
        h, _ = jax.lax.scan(body, h0, xs)
        out = jax.nn.relu(dense(self.out_hidden(), h))
        return dense(self.classifier(), dropout(key, out, self.dropout_rate))

    def __call__(self, x_BxLxE, state=None, *, deterministic=True):
        x = self._inputs(x_BxLxE)
        B, L = x.shape[:2]
        key = self._key(deterministic)
        k_in, k_out = (None, None) if key is None else jax.random.split(key)
        state = self.init_state(B) if state is None else state
        e, embed_scores, xt_gates, x0_gates = self._frames(x, k_in)
        hist = jnp.concatenate([state["xt_gates"], xt_gates], axis=1)  # B x (T+L) x 2E
        hist_valid = jnp.concatenate([state["valid"], jnp.ones((B, L), bool)], axis=1)
        idx_LxS = jnp.arange(L)[:, None] + jnp.arange(self.window)[None, :]
        scores = self._window(hist[:, idx_LxS], hist_valid[:, idx_LxS], x0_gates, k_out)
        T = self.window - 1
        new_state = dict(xt_gates=hist[:, hist.shape[1] - T :], valid=hist_valid[:, L:])
        return dict(scores=scores, embed_scores=embed_scores, embeddings=e), new_state

    def step(self, state, x_BxE):
        _, embed_scores, xt_gates, x0_gates = self._frames(x_BxE.astype(self.dtype), None)
        hist = jnp.concatenate([state["xt_gates"], xt_gates[:, None]], axis=1)
        valid = jnp.concatenate([state["valid"], jnp.ones_like(state["valid"][:, :1])], axis=1)
        scores = self._window(hist, valid, x0_gates, None)
        return dict(scores=scores, embed_scores=embed_scores), dict(
            xt_gates=hist[:, 1:], valid=valid[:, 1:]
        )


class _CellDetector(_Detector):
    """A detector with one recurrent cell: hoisted ``_gates(x, key)`` of all frames, then
    ``_step(weights, state, gates_t, keys_t) -> (state, logits)`` scanned over time."""

    def __call__(self, x_BxLxE, state=None, *, deterministic=True):
        x = self._inputs(x_BxLxE)
        key = self._key(deterministic)
        k_in, k_scan = (None, None) if key is None else jax.random.split(key)
        state = self.init_state(x.shape[0]) if state is None else state
        step = functools.partial(self._step, self._weights())
        state, scores = _scan(step, state, self._gates(x, k_in), k_scan, 1)
        return dict(scores=scores), state

    def step(self, state, x_BxE):
        xg = self._gates(x_BxE.astype(self.dtype), None)
        state, score = self._step(self._weights(), state, xg, None)
        return dict(scores=score), state


class LSTMDetector(_CellDetector):
    """TRN without its decoder: the same ReLU input projection and encoder LSTMCell on x_t alone
    (no future input), then the classifier (the ablation of Xu et al. 2019, Table 5, "LSTM")."""

    width: int = 4096
    fusion_size: int = 0  # input projection width; 0: input_size
    dropout_rate: float = 0.1
    linear_init_std: float = 0.0  # 0: LeCun normal; 0.001: TRN.pytorch's N(0, 0.001)

    def setup(self):
        F, H = self.fusion_size or self.input_size, self.width
        linear_init = _linear_init(self.linear_init_std)
        self.input_linear = self._dense(self.input_size, F, kernel_init=linear_init)
        self.enc_x = self._dense(F, 4 * H, kernel_init=_orthogonal, bias_init=_torch_lstm_bias)
        self.enc_h = self._dense(H, 4 * H, use_bias=False, kernel_init=_orthogonal)
        self.classifier = self._dense(
            H, self.num_classes, ("mlp", "classes"), kernel_init=linear_init
        )

    def _gates(self, x, key):
        x_proj = jax.nn.relu(dense(self.input_linear(), x))
        return dense(self.enc_x(), dropout(key, x_proj, self.dropout_rate))

    def init_state(self, batch: int):
        H = self.width
        return dict(h=jnp.zeros((batch, H), self.dtype), c=jnp.zeros((batch, H), jnp.float32))

    def _step(self, w, state, xg_Bx4E, keys):
        h, c = lstm_update(xg_Bx4E + dense(w["enc_h"], state["h"]), state["c"])
        k = None if keys is None else keys[0]
        return dict(h=h, c=c), dense(w["classifier"], dropout(k, h, self.dropout_rate))

    def _weights(self):
        return dict(enc_h=self.enc_h(), classifier=self.classifier())


class GRUDetector(_CellDetector):
    """Plain GRU baseline (after MiniROAD, An et al., ICCV 2023): embed-LN-ReLU, GRU, Linear."""

    width: int = 1024
    embed_dim: int = 1024
    dropout_rate: float = 0.2

    def setup(self):
        E, H = self.embed_dim, self.width
        self.embed = self._dense(self.input_size, E)
        self.norm = nn.LayerNorm(1e-5, dtype=self.dtype, param_dtype=self.param_dtype)  # torch eps
        self.gru_x = self._dense(E, 3 * H)  # W_ir, W_iz, W_in with b_i*
        self.gru_h = self._dense(H, 3 * H)  # W_hr, W_hz, W_hn with b_h*
        self.classifier = self._dense(H, self.num_classes, ("mlp", "classes"))

    def _gates(self, x, key):
        e = jax.nn.relu(self.norm(dense(self.embed(), x)))
        return dense(self.gru_x(), dropout(key, e, self.dropout_rate))

    def init_state(self, batch: int):
        return dict(h=jnp.zeros((batch, self.width), self.dtype))

    def _step(self, w, state, xg_Bx3E, keys):
        h = gru_update(xg_Bx3E, dense(w["gru_h"], state["h"]), state["h"])
        k = None if keys is None else keys[0]
        return dict(h=h), dense(w["classifier"], dropout(k, h, self.dropout_rate))

    def _weights(self):
        return dict(gru_h=self.gru_h(), classifier=self.classifier())


class MLPDetector(_Detector):
    """Per-frame classifier without recurrence: ReLU input projection, ReLU hidden layer, Linear."""

    width: int = 1024
    dropout_rate: float = 0.1

    def setup(self):
        self.input_linear = self._dense(self.input_size, self.width)
        self.hidden = self._dense(self.width, self.width)
        self.classifier = self._dense(self.width, self.num_classes, ("mlp", "classes"))

    def init_state(self, batch: int):
        return {}

    def _frame(self, x, key):
        h = jax.nn.relu(dense(self.input_linear(), x))
        h = jax.nn.relu(dense(self.hidden(), dropout(key, h, self.dropout_rate)))
        k2 = None if key is None else jax.random.fold_in(key, 1)
        return dense(self.classifier(), dropout(k2, h, self.dropout_rate))

    def __call__(self, x_BxLxE, state=None, *, deterministic=True):
        scores = self._frame(self._inputs(x_BxLxE), self._key(deterministic))
        return dict(scores=scores), {} if state is None else state

    def step(self, state, x_BxE):
        return dict(scores=self._frame(x_BxE.astype(self.dtype), None)), state


def streaming(model: nn.Module):
    """Streaming API: ``init_state(batch)``, jitted ``step(params, state, x_t) -> (probs, state)``.

    ``probs`` are the current frame's softmax scores (B x C). For the lowest latency pass params
    already cast to the compute dtype (:func:`cast_params`): the per-frame cast is then a no-op.
    """

    @jax.jit
    def step(params, state, x_BxE):
        out, state = model.apply({"params": params}, state, x_BxE, method=model.step)
        return jax.nn.softmax(out["scores"].astype(jnp.float32), axis=-1), state

    return model.init_state, step


def cast_params(params, dtype):
    """Casts every floating parameter to ``dtype`` once (for streaming inference)."""
    return jax.tree.map(
        lambda p: p.astype(dtype) if jnp.issubdtype(p.dtype, jnp.floating) else p, params
    )
