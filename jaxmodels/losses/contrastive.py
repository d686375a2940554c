"""Contrastive image-text losses: CLIP's softmax (InfoNCE) and SigLIP's pairwise sigmoid.

Embeddings are L2-normalised rows ``zimg_BxE`` / ``ztxt_BxE`` where row i of each is a matching
(image, caption) pair. ``t_prime`` is the log-temperature (t = exp(t_prime)) and ``b`` the
SigLIP bias (the suffix letter ``b`` in ``zimg_bxE`` is another thing: a device's b = B / devices
rows of the global batch, the legend's lowercase per-device share).

Cross-device variants take *global* arrays whose batch dimension is sharded over ``axis_name``
of ``mesh`` and compute under ``jax.shard_map``:

- :func:`chunked_sigmoid_loss`: SigLIP's chunked implementation (Zhai et al., 2023, Sec. 3.3,
  Fig. 1): images stay on their device while text blocks travel round the ring with
  ``lax.ppermute``, one block per step. A ``custom_vjp`` recomputes each block's logits in the
  backward pass and sends each text block's gradient round the ring with it, so per-device
  memory is O(b^2 + b*E) for per-device batch b, independent of the device count.
- :func:`allgather_sigmoid_loss` / :func:`allgather_softmax_loss`: gather the other tower
  (memory O(b * B) for global batch B), as most open implementations do.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import PartitionSpec as P

T_MAX = 100.0  # CLIP clips the temperature exp(t_prime) at 100 (Radford et al., 2021, Sec. 2.5)


def clip_temperature(t_prime: jax.Array) -> jax.Array:
    """CLIP's temperature t = min(exp(t_prime), 100)."""
    return jnp.minimum(jnp.exp(t_prime.astype(jnp.float32)), T_MAX)


def _f32(*xs):
    return tuple(x.astype(jnp.float32) for x in xs)


def softmax_loss(zimg: jax.Array, ztxt: jax.Array, t_prime: jax.Array) -> jax.Array:
    """CLIP's symmetric InfoNCE (Radford et al., 2021, Fig. 3): mean of i->t and t->i CE."""
    zimg_BxE, ztxt_BxE = _f32(zimg, ztxt)
    logits_BxB = clip_temperature(t_prime) * zimg_BxE @ ztxt_BxE.T
    diag_B = jnp.diagonal(logits_BxB)
    ce_i2t = jax.nn.logsumexp(logits_BxB, axis=1) - diag_B
    ce_t2i = jax.nn.logsumexp(logits_BxB, axis=0) - diag_B
    return 0.5 * (ce_i2t.mean() + ce_t2i.mean())


def sigmoid_loss(zimg: jax.Array, ztxt: jax.Array, t_prime: jax.Array, b: jax.Array) -> jax.Array:
    """SigLIP (Zhai et al., 2023, Alg. 1): -sum log sigmoid(z_ij (t x_i.y_j + b)) / B, z=2I-1."""
    zimg_BxE, ztxt_BxE = _f32(zimg, ztxt)
    n = zimg_BxE.shape[0]
    logits_BxB = jnp.exp(t_prime.astype(jnp.float32)) * zimg_BxE @ ztxt_BxE.T + b
    labels_BxB = 2.0 * jnp.eye(n) - 1.0
    return -jnp.sum(jax.nn.log_sigmoid(labels_BxB * logits_BxB)) / n


def soft_target_softmax_loss(
    logits_i2t_BxM: jax.Array,
    logits_t2i_BxM: jax.Array,
    targets_i2t_BxM: jax.Array,
    targets_t2i_BxM: jax.Array,
) -> jax.Array:
    """ITC with soft targets (ALBEF eq. 2-3; BLIP Sec. 3.2): mean of ``-sum_j y_ij log p_ij``.

    Rows are the B images (i2t) / B texts (t2i) of the batch; the M columns are the batch's
    other modality plus any queued momentum features. With one-hot diagonal targets and no
    queue this is :func:`softmax_loss` at ``t = 1 / temp``.
    """
    ce_i2t = -jnp.sum(targets_i2t_BxM * jax.nn.log_softmax(logits_i2t_BxM, axis=1), axis=1)
    ce_t2i = -jnp.sum(targets_t2i_BxM * jax.nn.log_softmax(logits_t2i_BxM, axis=1), axis=1)
    return 0.5 * (ce_i2t.mean() + ce_t2i.mean())


def itc_targets(
    positives_BxM: jax.Array, momentum_logits_BxM: jax.Array | None = None, alpha: float = 0.4
) -> jax.Array:
    """ITC targets: ground truth spread over the positives, mixed with the momentum model's
    softmax as ``alpha * softmax(s_m) + (1 - alpha) * y`` (ALBEF Sec. 3.3; BLIP alpha = 0.4).
    """
    pos = positives_BxM.astype(jnp.float32)
    y = pos / jnp.maximum(pos.sum(axis=1, keepdims=True), 1.0)
    if momentum_logits_BxM is None:
        return y
    soft = jax.nn.softmax(jax.lax.stop_gradient(momentum_logits_BxM).astype(jnp.float32), axis=1)
    return alpha * soft + (1.0 - alpha) * y


def momentum_itc_loss(zimg_BxE, ztxt_BxE, bank, temp, alpha: float = 0.4):
    """ITC against the momentum features of the batch and the queue, with momentum soft targets
    (ALBEF Sec. 3.3 and eq. 2-3; BLIP Sec. 3.2).

    ``bank`` holds the momentum model's features ``image_MxE`` / ``text_MxE`` (the batch's B
    first, then the queue), ``positives_BxM`` (which columns are a match of each row) and
    ``valid_M`` (queue slots not yet written are left out of every softmax).
    """
    far = jnp.float32(-1e9)  # finite, so that a zero target times its log-probability stays 0

    def logits(z, feats):
        out = z.astype(jnp.float32) @ feats.astype(jnp.float32).T / temp
        return jnp.where(bank["valid_M"][None], out, far)

    zimg_m, ztxt_m = bank["image_MxE"][: len(zimg_BxE)], bank["text_MxE"][: len(ztxt_BxE)]
    pos = bank["positives_BxM"] & bank["valid_M"][None]
    i2t_m, t2i_m = logits(zimg_m, bank["text_MxE"]), logits(ztxt_m, bank["image_MxE"])
    return soft_target_softmax_loss(
        logits(zimg_BxE, bank["text_MxE"]),
        logits(ztxt_BxE, bank["image_MxE"]),
        itc_targets(pos, i2t_m, alpha),
        itc_targets(pos, t2i_m, alpha),
    )


def momentum_update(params_m, params, decay: float = 0.995):
    """Momentum encoder: ``theta_m <- decay * theta_m + (1 - decay) * theta`` (BLIP: 0.995)."""
    return jax.tree.map(
        lambda m, p: decay * m + (1.0 - decay) * jax.lax.stop_gradient(p), params_m, params
    )


def enqueue(queue_AxE: jax.Array, feats_BxE: jax.Array, ptr: jax.Array):
    """Writes momentum features into the FIFO feature queue at ``ptr``; returns (queue, ptr).

    The queue's length ``A`` must be a multiple of the global batch B (as in ALBEF/BLIP), so a
    write never wraps.
    """
    n, q = feats_BxE.shape[0], queue_AxE.shape[0]
    if q % n:
        raise ValueError(f"queue length {q} must be a multiple of the global batch {n}")
    feats = jax.lax.stop_gradient(feats_BxE).astype(queue_AxE.dtype)
    queue = jax.lax.dynamic_update_slice_in_dim(queue_AxE, feats, ptr, axis=0)
    return queue, (ptr + n) % q


# ----------------------------------------------------------------------------------------------
# Helpers shared by the shard_map kernels.
# ----------------------------------------------------------------------------------------------


def _axes(axis_name) -> tuple[str, ...]:
    return (axis_name,) if isinstance(axis_name, str) else tuple(axis_name)


def _ring_size(mesh, axis_name) -> int:
    size = 1
    for a in _axes(axis_name):
        if a not in mesh.shape:
            raise ValueError(f"axis_name {a!r} is not an axis of the mesh {dict(mesh.shape)}")
        size *= mesh.shape[a]
    return size


def _ring(d: int) -> list[tuple[int, int]]:
    """Permutation sending each device's block to its right neighbour."""
    return [(i, (i + 1) % d) for i in range(d)]


def _block_logits(zimg_bxE, ztxt_bxE, t_prime, b):
    return jnp.exp(t_prime) * zimg_bxE @ ztxt_bxE.T + b


def _positives(n: int, own) -> jax.Array:
    """Label z = +1 (True) on the diagonal of a device's own block, -1 (False) elsewhere."""
    rows, cols = (
        lax.broadcasted_iota(jnp.int32, (n, n), 0),
        lax.broadcasted_iota(jnp.int32, (n, n), 1),
    )
    return own & (rows == cols)


def _varying_zero(axis):
    return lax.pcast(jnp.zeros((), jnp.float32), axis, to="varying")


# ----------------------------------------------------------------------------------------------
# Chunked sigmoid loss: text blocks rotate round the ring, with a ring-rotating backward pass.
# ----------------------------------------------------------------------------------------------


def _chunked_fwd_kernel(zimg_bxE, ztxt_bxE, t_prime, b, *, axis, d, n_global):
    """Per-device forward: at step k the block from k devices to the left (k = 0: its own)."""

    def step(k, carry):
        loss, blk_bxE = carry
        logits_bxb = _block_logits(zimg_bxE, blk_bxE, t_prime, b)
        pos_bxb = _positives(logits_bxb.shape[0], k == 0)
        loss = loss - jnp.sum(jax.nn.log_sigmoid(jnp.where(pos_bxb, logits_bxb, -logits_bxb)))
        return loss, lax.ppermute(blk_bxE, axis, _ring(d))

    loss, _ = lax.fori_loop(0, d, step, (_varying_zero(axis), ztxt_bxE))
    return lax.psum(loss, axis) / n_global


def _chunked_bwd_kernel(zimg_bxE, ztxt_bxE, t_prime, b, g, *, axis, d, n_global):
    """Per-device backward: recompute each block's logits; the block's gradient travels with it."""
    t, scale = jnp.exp(t_prime), g / n_global

    def step(k, carry):
        dzimg, dt_prime, db, blk_bxE, dblk_bxE = carry
        logits_bxb = _block_logits(zimg_bxE, blk_bxE, t_prime, b)
        pos_bxb = _positives(logits_bxb.shape[0], k == 0)
        # d/dx of -log sigmoid(z x) is -z sigmoid(-z x)
        dlogits_bxb = scale * jnp.where(
            pos_bxb, -jax.nn.sigmoid(-logits_bxb), jax.nn.sigmoid(logits_bxb)
        )
        dzimg = dzimg + t * dlogits_bxb @ blk_bxE
        dblk_bxE = dblk_bxE + t * dlogits_bxb.T @ zimg_bxE
        dt_prime = dt_prime + jnp.sum(dlogits_bxb * (logits_bxb - b))
        db = db + jnp.sum(dlogits_bxb)
        blk_bxE, dblk_bxE = lax.ppermute((blk_bxE, dblk_bxE), axis, _ring(d))
        return dzimg, dt_prime, db, blk_bxE, dblk_bxE

    zero = _varying_zero(axis)
    init = (jnp.zeros_like(zimg_bxE), zero, zero, ztxt_bxE, jnp.zeros_like(ztxt_bxE))
    # d steps, d rotations: every text block and its gradient end back on their home device
    dzimg, dt_prime, db, _, dztxt = lax.fori_loop(0, d, step, init)
    return dzimg, dztxt, lax.psum(dt_prime, axis), lax.psum(db, axis)


def _sharded(kernel, mesh, axis_name, n_global, out_specs, extra_in=()):
    axis = _axes(axis_name)
    d = _ring_size(mesh, axis_name)
    spec = P(axis)
    fn = functools.partial(kernel, axis=axis, d=d, n_global=n_global)
    in_specs = (spec, spec, P(), P(), *extra_in)
    return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs)


def chunked_sigmoid_loss(zimg, ztxt, t_prime, b, *, mesh, axis_name="data"):
    """SigLIP's chunked sigmoid loss (Zhai et al., 2023, Sec. 3.3) on batch-sharded global arrays.

    Equals :func:`sigmoid_loss` on the global batch in value and gradients.
    """
    zimg, ztxt = _f32(zimg, ztxt)
    t_prime, b = _f32(jnp.asarray(t_prime), jnp.asarray(b))
    n_global = zimg.shape[0]

    @jax.custom_vjp
    def loss(zimg, ztxt, t_prime, b):
        return _sharded(_chunked_fwd_kernel, mesh, axis_name, n_global, P())(zimg, ztxt, t_prime, b)

    def fwd(zimg, ztxt, t_prime, b):
        return loss(zimg, ztxt, t_prime, b), (zimg, ztxt, t_prime, b)

    def bwd(res, g):
        spec = P(_axes(axis_name))
        out_specs = (spec, spec, P(), P())
        kernel = _sharded(_chunked_bwd_kernel, mesh, axis_name, n_global, out_specs, (P(),))
        return kernel(*res, g)

    loss.defvjp(fwd, bwd)
    return loss(zimg, ztxt, t_prime, b)


# ----------------------------------------------------------------------------------------------
# All-gather variants (memory grows with the global batch), for comparison.
# ----------------------------------------------------------------------------------------------


def _allgather_sigmoid_kernel(zimg_bxE, ztxt_bxE, t_prime, b, *, axis, d, n_global):
    n = zimg_bxE.shape[0]
    ztxt_BxE = lax.all_gather(ztxt_bxE, axis, tiled=True)
    logits_bxB = _block_logits(zimg_bxE, ztxt_BxE, t_prime, b)
    own = lax.axis_index(axis) * n
    labels_bxB = 2.0 * (jnp.arange(n_global)[None, :] == own + jnp.arange(n)[:, None]) - 1.0
    return lax.psum(-jnp.sum(jax.nn.log_sigmoid(labels_bxB * logits_bxB)), axis) / n_global


def allgather_sigmoid_loss(zimg, ztxt, t_prime, b, *, mesh, axis_name="data"):
    """Sigmoid loss with the text tower all-gathered: local images against all B texts."""
    zimg, ztxt, t_prime, b = _f32(zimg, ztxt, jnp.asarray(t_prime), jnp.asarray(b))
    kernel = _sharded(_allgather_sigmoid_kernel, mesh, axis_name, zimg.shape[0], P())
    return kernel(zimg, ztxt, t_prime, b)


def _allgather_softmax_kernel(zimg_bxE, ztxt_bxE, t_prime, *, axis, d, n_global):
    n = zimg_bxE.shape[0]
    t = clip_temperature(t_prime)
    zimg_BxE = lax.all_gather(zimg_bxE, axis, tiled=True)
    ztxt_BxE = lax.all_gather(ztxt_bxE, axis, tiled=True)
    own_b = lax.axis_index(axis) * n + jnp.arange(n)
    i2t_bxB = t * zimg_bxE @ ztxt_BxE.T  # local images against all texts
    t2i_bxB = t * ztxt_bxE @ zimg_BxE.T  # local texts against all images
    pos_b = t * jnp.sum(zimg_bxE * ztxt_BxE[own_b], axis=-1)  # the b matching pairs
    ce = jax.nn.logsumexp(i2t_bxB, axis=1) + jax.nn.logsumexp(t2i_bxB, axis=1) - 2 * pos_b
    return lax.psum(jnp.sum(ce), axis) / (2 * n_global)


def allgather_softmax_loss(zimg, ztxt, t_prime, *, mesh, axis_name="data"):
    """CLIP's softmax loss with both towers all-gathered; each device owns its rows' CE terms."""
    zimg, ztxt, t_prime = _f32(zimg, ztxt, jnp.asarray(t_prime))
    axis = _axes(axis_name)
    d = _ring_size(mesh, axis_name)
    fn = functools.partial(_allgather_softmax_kernel, axis=axis, d=d, n_global=zimg.shape[0])
    spec = P(axis)
    kernel = jax.shard_map(fn, mesh=mesh, in_specs=(spec, spec, P()), out_specs=P())
    return kernel(zimg, ztxt, t_prime)
