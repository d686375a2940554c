"""BERT masking statistics (15% chosen; 80/10/10) and the masked loss."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxmodels.losses.mlm import bert_mask, mlm_loss


def test_bert_mask_proportions():
    tokens = jax.random.randint(jax.random.key(0), (64, 512), 0, 256)
    maskable = jnp.ones_like(tokens, bool).at[:, :8].set(False)
    inputs, chosen = bert_mask(
        jax.random.key(1), tokens, mask_id=300, random_vocab_size=256, maskable_BxL=maskable
    )
    chosen, inputs, tokens = map(np.asarray, (chosen, inputs, tokens))
    assert not chosen[:, :8].any()
    assert abs(chosen[:, 8:].mean() - 0.15) < 0.01
    c = chosen
    frac_mask = (inputs[c] == 300).mean()
    frac_same = (inputs[c] == tokens[c]).mean()  # kept, plus random draws that hit the token
    assert abs(frac_mask - 0.8) < 0.02
    assert abs(frac_same - (0.1 + 0.1 / 256)) < 0.02
    assert abs(1 - frac_mask - frac_same - 0.1 * 255 / 256) < 0.02
    np.testing.assert_array_equal(inputs[~c], tokens[~c])  # unchosen positions are untouched


def test_mlm_loss_counts_only_chosen_positions():
    logits = jnp.zeros((1, 3, 4)).at[0, 0, 1].set(10.0).at[0, 1, 2].set(-10.0)
    targets = jnp.array([[1, 2, 3]])
    chosen = jnp.array([[True, False, True]])
    loss, m = mlm_loss(logits, targets, chosen)
    expected = (-jax.nn.log_softmax(logits[0, 0])[1] - jax.nn.log_softmax(logits[0, 2])[3]) / 2
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    np.testing.assert_allclose(m["mlm_accuracy"], 0.5)
