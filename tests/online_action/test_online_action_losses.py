"""Online-action losses against direct (looped) references."""

import numpy as np
import pytest
import torch

from jaxmodels.models.online_action import loss as losses


def _targets(seed, n, c, ambiguous=None):
    rng = np.random.default_rng(seed)
    y = np.eye(c)[rng.integers(0, c, n)]
    if ambiguous is not None:
        y[: n // 4, :] = 0
        y[: n // 4, ambiguous] = 1
    return y.astype(np.float32)


def test_multi_cross_entropy_matches_trn_definition():
    """Ambiguous frames dropped, ambiguous column removed from the softmax, mean over frames."""
    rng = np.random.default_rng(0)
    n, c, amb = 40, 7, 6
    logits = rng.normal(size=(n, c)).astype(np.float32)
    targets = _targets(1, n, c, amb)
    targets[5:9] = 0.5 * targets[5:9] + 0.5 * targets[10:14]  # soft targets
    got, count = losses.multi_cross_entropy(logits, targets, ignore_index=amb)
    keep = targets[:, amb] != 1
    cols = [k for k in range(c) if k != amb]
    log_p = torch.log_softmax(torch.tensor(logits[:, cols]), dim=1).numpy()
    expected = np.mean(-np.sum(targets[:, cols] * log_p, axis=1)[keep])
    assert float(got) == pytest.approx(expected, rel=1e-5)
    assert int(count) == keep.sum()
    plain, _ = losses.multi_cross_entropy(logits, targets[:, :])
    full = -np.sum(targets * torch.log_softmax(torch.tensor(logits), 1).numpy(), 1).mean()
    assert float(plain) == pytest.approx(full, rel=1e-5)


@pytest.mark.parametrize("offset", [0, 1])
def test_future_targets_match_loop(offset):
    L, K, C = 5, 3, 4
    y = _targets(2, L + offset + K - 1, C)[None]
    got = np.asarray(losses.future_targets(y, L, K, offset))
    for t in range(L):
        for j in range(K):
            np.testing.assert_array_equal(got[0, t, j], y[0, t + offset + j])
    with pytest.raises(ValueError, match="decoder needs"):
        losses.future_targets(y[:, :-1], L, K, offset)


def test_contrastive_loss_matches_loop():
    rng = np.random.default_rng(3)
    B, L, E, window, m = 2, 9, 4, 4, 1.5
    e = rng.normal(size=(B, L, E)).astype(np.float32)
    labels = rng.integers(0, 3, (B, L))
    valid = rng.random((B, L)) > 0.2
    got = float(losses.contrastive_loss(e, labels, valid, window=window, margin=m))
    total = 0.0
    for b in range(B):
        for t in range(L):
            if not valid[b, t]:
                continue
            for s in range(max(0, t - window + 1), t):
                if not valid[b, s]:
                    continue
                d = np.linalg.norm(e[b, s] - e[b, t])
                total += d**2 if labels[b, s] == labels[b, t] else max(0.0, m - d) ** 2
    assert got == pytest.approx(total / valid.sum(), rel=1e-5)


def test_trn_and_idn_losses_combine_terms():
    rng = np.random.default_rng(4)
    B, L, K, C, E = 2, 6, 3, 5, 4
    y = _targets(5, B * (L + K), C).reshape(B, L + K, C)
    out = dict(scores=rng.normal(size=(B, L, C)), future_scores=rng.normal(size=(B, L, K, C)))
    loss, metrics = losses.trn_loss(out, y, future_offset=1)
    dec = losses.future_targets(y, L, K, 1)
    dec_ce, _ = losses.multi_cross_entropy(out["future_scores"], dec)
    assert float(metrics["dec_loss"]) == pytest.approx(float(dec_ce), rel=1e-6)
    assert float(loss) == pytest.approx(float(metrics["enc_loss"] + metrics["dec_loss"]))
    out = dict(
        scores=rng.normal(size=(B, L, C)),
        embed_scores=rng.normal(size=(B, L, C)),
        embeddings=rng.normal(size=(B, L, E)),
    )
    loss, m = losses.idn_loss(out, y, window=3, margin=1.0, weight=0.5)
    expected = m["frame_loss"] + m["embed_loss"] + 0.5 * m["contrastive_loss"]
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
