"""BLIP objectives: hard negatives (never a positive, drawn over the global batch), ITC, LM."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxmodels.losses import blip, contrastive

N = 16


def test_hard_negatives_never_pick_a_positive(variant):
    rng = np.random.default_rng(0)
    sim = jnp.asarray(rng.normal(size=(N, N)) * 5, jnp.float32)
    pos = np.eye(N, dtype=bool)
    pos[3, 7] = pos[7, 3] = pos[3, 3] = True  # duplicate captions also count as positives
    pos[3, 11] = True
    draw = variant(blip.hard_negatives)
    for seed in range(20):
        neg_t, neg_i = draw(jax.random.key(seed), sim, jnp.asarray(pos))
        assert not pos[np.arange(N), np.asarray(neg_t)].any()  # (image i, text neg_t[i])
        assert not pos[np.asarray(neg_i), np.arange(N)].any()  # (image neg_i[j], text j)


def test_text_negatives_follow_their_own_similarities_when_given(variant):
    # BLIP with momentum: images draw from online x momentum-text, texts from online x
    # momentum-image scores; make the two point at different partners
    sim_i2t = np.full((N, N), -30.0, np.float32)
    sim_t2i = np.full((N, N), -30.0, np.float32)
    sim_i2t[np.arange(N), (np.arange(N) + 1) % N] = 30.0
    sim_t2i[np.arange(N), (np.arange(N) + 5) % N] = 30.0
    pos = jnp.eye(N, dtype=bool)
    draw = variant(blip.hard_negatives)
    neg_t, neg_i = draw(jax.random.key(0), sim_i2t, pos, sim_t2i)
    chex.assert_trees_all_equal(np.asarray(neg_t), (np.arange(N) + 1) % N)
    chex.assert_trees_all_equal(np.asarray(neg_i), (np.arange(N) + 5) % N)
    _, neg_i = draw(jax.random.key(0), sim_i2t, pos)  # default: sim_i2t.T
    chex.assert_trees_all_equal(np.asarray(neg_i), (np.arange(N) - 1) % N)


def test_hard_negatives_are_drawn_across_devices_under_the_mesh():
    assert jax.device_count() == 8
    mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Explicit,))
    # image i's only likely negative is text (i + 8) % 16, held by another device (2 rows each)
    partner = (np.arange(N) + N // 2) % N
    sim = np.full((N, N), -30.0, np.float32)
    sim[np.arange(N), partner] = 30.0
    sim[np.arange(N), np.arange(N)] = 50.0  # positives score highest, yet are masked out
    pos = np.eye(N, dtype=bool)
    rows = NamedSharding(mesh, P("data", None))
    fn = jax.jit(blip.hard_negatives)
    with jax.set_mesh(mesh):
        sim_s, pos_s = jax.device_put(sim, rows), jax.device_put(pos, rows)
        neg_t, neg_i = fn(jax.random.key(0), sim_s, pos_s)
    assert len(sim_s.sharding.device_set) == 8
    chex.assert_trees_all_equal(np.asarray(neg_t), partner)
    chex.assert_trees_all_equal(np.asarray(neg_i), partner)  # partner is an involution
    assert (np.asarray(neg_t) // 2 != np.arange(N) // 2).all()  # always another device's
    # and the draw is the same as on one device: global semantics, not per-shard
    ref_t, ref_i = fn(jax.random.key(0), jnp.asarray(sim), jnp.asarray(pos))
    chex.assert_trees_all_equal(np.asarray(neg_t), np.asarray(ref_t))


def test_soft_target_itc_is_clip_softmax_loss_for_one_hot_targets(variant):
    rng = np.random.default_rng(1)
    z = rng.normal(size=(2, 8, 5))
    zimg, ztxt = (x / np.linalg.norm(x, axis=-1, keepdims=True) for x in z)
    temp = 0.07
    sim = jnp.asarray(zimg @ ztxt.T / temp, jnp.float32)
    eye = jnp.eye(8)
    got = variant(contrastive.soft_target_softmax_loss)(sim, sim.T, eye, eye)
    want = contrastive.softmax_loss(zimg, ztxt, jnp.log(1 / temp))
    chex.assert_trees_all_close(got, want, atol=0, rtol=1e-5)
    # targets: ground truth spread over duplicates, then mixed with the momentum softmax
    pos = jnp.asarray([[1, 1, 0], [0, 1, 0], [0, 0, 1]], bool)
    targets = variant(contrastive.itc_targets, static_argnames="alpha")
    y = targets(pos)
    chex.assert_trees_all_close(y[0], np.array([0.5, 0.5, 0]), atol=0, rtol=1e-7)
    mixed = targets(pos, jnp.zeros((3, 3)), alpha=0.4)
    chex.assert_trees_all_close(
        mixed[0], np.array([0.4 / 3 + 0.3, 0.4 / 3 + 0.3, 0.4 / 3]), atol=0, rtol=1e-6
    )


def _bank(zimg_m, ztxt_m, queue_img, queue_txt, pos, valid):
    return {
        "image_MxD": jnp.concatenate([zimg_m, queue_img]),
        "text_MxD": jnp.concatenate([ztxt_m, queue_txt]),
        "positives_NxM": pos,
        "valid_M": valid,
    }


def test_momentum_itc_reduces_to_batch_itc_and_ignores_unwritten_slots(variant):
    rng = np.random.default_rng(2)
    zimg, ztxt, junk = (jnp.asarray(rng.normal(size=(4, 3)), jnp.float32) for _ in range(3))
    temp, eye = 0.1, jnp.eye(4, dtype=bool)
    sim = zimg @ ztxt.T / temp
    plain = contrastive.soft_target_softmax_loss(sim, sim.T, eye, eye)
    itc = variant(contrastive.momentum_itc_loss, static_argnames="alpha")
    # alpha = 0, momentum features = online ones, a queue of 4 unwritten slots: the batch loss
    pos = jnp.concatenate([eye, jnp.ones((4, 4), bool)], axis=1)  # junk "positives" masked too
    valid = jnp.arange(8) < 4
    bank = _bank(zimg, ztxt, junk, junk, pos, valid)
    got = itc(zimg, ztxt, bank, temp, alpha=0.0)
    chex.assert_trees_all_close(got, plain, atol=0, rtol=1e-6)
    # written slots are negatives (the loss grows); alpha > 0 mixes in the momentum softmax
    pos = jnp.concatenate([eye, jnp.zeros((4, 4), bool)], axis=1)
    bank = _bank(zimg, ztxt, junk, junk, pos, jnp.ones(8, bool))
    assert float(itc(zimg, ztxt, bank, temp, alpha=0.0)) > float(plain)
    soft = itc(zimg, ztxt, bank, temp, alpha=0.4)
    sim_i2t = jnp.concatenate([sim, zimg @ junk.T / temp], axis=1)
    sim_t2i = jnp.concatenate([sim.T, ztxt @ junk.T / temp], axis=1)
    targets = [0.4 * jax.nn.softmax(x, axis=1) + 0.6 * pos for x in (sim_i2t, sim_t2i)]
    want = contrastive.soft_target_softmax_loss(sim_i2t, sim_t2i, *targets)
    chex.assert_trees_all_close(soft, want, atol=0, rtol=1e-5)


def test_momentum_update_and_queue(variant):
    m = {"w": jnp.zeros(3)}
    p = {"w": jnp.ones(3)}
    chex.assert_trees_all_close(
        variant(contrastive.momentum_update)(m, p)["w"], 0.005, atol=0, rtol=1e-7
    )
    queue, ptr = jnp.zeros((6, 2)), jnp.array(4)
    queue, ptr = variant(contrastive.enqueue)(queue, jnp.ones((2, 2)), ptr)
    assert int(ptr) == 0 and float(queue[4:].min()) == 1 and float(queue[:4].max()) == 0
    with pytest.raises(ValueError, match="multiple"):
        contrastive.enqueue(jnp.zeros((5, 2)), jnp.ones((2, 2)), jnp.array(0))


def test_lm_loss_matches_torch_label_smoothing_and_ignores_masked_tokens(variant):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(3, 5, 11)).astype(np.float32)
    targets = rng.integers(0, 11, size=(3, 5))
    weights = np.ones((3, 5), bool)
    weights[0, :2] = weights[2, 3:] = False  # prompt / padding
    lm_loss = variant(blip.lm_loss, static_argnums=3)
    got = lm_loss(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(weights), 0.1)
    tgt = np.where(weights, targets, -100)
    want = torch.nn.CrossEntropyLoss(label_smoothing=0.1, ignore_index=-100)(
        torch.tensor(logits.reshape(-1, 11)), torch.tensor(tgt.reshape(-1))
    )
    chex.assert_trees_all_close(got, want.item(), atol=0, rtol=1e-5)


def test_itm_loss_labels_positives_one_and_negatives_zero(variant):
    pos = jnp.asarray([[0.0, 5.0], [0.0, 5.0]])
    neg = jnp.asarray([[5.0, 0.0]] * 4)
    itm_loss = variant(blip.itm_loss)
    loss, acc = itm_loss(pos, neg)
    assert float(acc) == 1.0 and float(loss) < 0.01
    loss_bad, acc_bad = itm_loss(neg[:2], pos.repeat(2, 0))
    assert float(acc_bad) == 0.0 and float(loss_bad) > 4.9
