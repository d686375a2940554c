"""Rectified flow beyond round 1 (Liu et al. 2022, "Flow Straight and Fast"): couplings from a
trained flow's ODE, reflow and one-step distillation losses, the straightness measure.

Convention of the diffusion family's ``flow`` process: x_t = (1 - t) x_0 + t n with data x_0
at t = 0 and noise n at t = 1, and a velocity v(x, t) that regresses n - x_0. Generation
integrates dx/dt = v from t = 1 down to t = 0. Round k + 1 (reflow, Alg. 1) trains on the
pairs (n, x_0 = ODE_k(n)) that round k produces, instead of independent (noise, data) pairs.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxmodels.train import warmstart


def euler_path(velocity, noise, steps: int):
    """Integrates dx/dt = v(x, t) from t = 1 (``noise``) to t = 0 with ``steps`` Euler steps.

    Returns ``(x_0, straightness)``: the generated data and, per example, the straightness
    S = int_0^1 ||(z_1 - z_0) - v(z_t, t)||^2 dt along the path (Liu et al. 2022), with
    the integral taken by the same steps; 0 exactly when every path is a straight line
    travelled at constant speed. ``velocity(x, t)`` takes t of shape (B,).
    """
    ts = jnp.linspace(1.0, 0.0, steps + 1)
    batch = noise.shape[0]

    def step(x, t_pair):
        t, t_next = t_pair
        v = velocity(x, jnp.full((batch,), t, x.dtype))
        return x + (t_next - t) * v, v

    x0, v_TxB = lax.scan(step, noise, (ts[:-1], ts[1:]))
    displacement = noise - x0  # z_1 - z_0 (noise minus data)
    deviation = displacement[None] - v_TxB
    return x0, jnp.mean(jnp.sum(deviation.reshape(steps, batch, -1) ** 2, -1), 0)


def make_couplings(velocity, key, num: int, shape: tuple, steps: int):
    """``num`` pairs (noise, data) with data = ODE(noise): the training set of the next round.

    The noise is drawn from ``key`` alone, so the couplings are reproducible from the seed.
    """
    noise = jax.random.normal(key, (num,) + tuple(shape))
    data, _ = euler_path(velocity, noise, steps)
    return noise, data


def interpolate(noise, data, t_B):
    """x_t = (1 - t) x_0 + t n and the regression target n - x_0 (rectified flow)."""
    t = t_B.reshape((-1,) + (1,) * (data.ndim - 1))
    return (1 - t) * data + t * noise, noise - data


def one_step(velocity, noise):
    """The one-step generator x_0 = n - v(n, 1): what distillation trains (Liu et al. 2022)."""
    return noise - velocity(noise, jnp.ones(noise.shape[:1], noise.dtype))


def velocity_fn(net, process, params):
    """v(x_t, t) of the ``flow`` process: its preconditioning feeds the network c_in x_hat = x_t
    and c_noise = (M - 1) t, and the raw network F is trained to predict n - x_0."""
    return lambda x, t_B: net.apply({"params": params}, x, (process.M - 1) * t_B)


def make_reflow_loss_fn(net, process, distill: bool):
    """``loss_fn`` on couplings {"noise": n, "image": x_0}: |F(x_t, t) - (n - x_0)|^2 with
    t ~ U(0, t_max) (reflow, Liu et al. Alg. 1), or at t = 1 only (one-step distillation
    with the L2 loss): then n - F(n, 1) is the one-step generator."""

    def loss_fn(params, batch, rng):
        noise, data = batch["noise"], batch["image"]
        shape = (noise.shape[0],)
        t_B = jnp.ones(shape) if distill else jax.random.uniform(rng, shape, maxval=process.t_max)
        x_t, target = interpolate(noise, data, t_B)
        v = velocity_fn(net, process, params)(x_t, t_B)
        loss = jnp.mean((v - target) ** 2)
        return loss, {"velocity_mse": loss}

    return loss_fn


def teacher_couplings(velocity, seed: int, num: int, shape: tuple, steps: int, chunk: int = 1024):
    """``num`` couplings from the teacher's ODE, generated in jitted chunks from ``seed``."""
    make = jax.jit(lambda key: make_couplings(velocity, key, chunk, shape, steps))
    keys = jax.random.split(jax.random.key(seed), -(-num // chunk))
    pairs = [jax.device_get(make(k)) for k in keys]
    noise = np.concatenate([p[0] for p in pairs])[:num]
    data = np.concatenate([p[1] for p in pairs])[:num]
    return {"noise": noise.astype(np.float32), "image": data.astype(np.float32)}


def restore_teacher(config, net, shape: tuple, num_classes: int = 0):
    """The inference parameters of the round before, read only: ``config.reflow.teacher`` is
    its workdir (its newest checkpoint) or one checkpoint, ``DIR/checkpoints/STEP``; its EMA
    when it kept one. The teacher's network must be this config's ``net``."""
    x = jnp.zeros((1,) + tuple(shape))
    label = jnp.zeros((1,), jnp.int32) if num_classes else None

    def params():
        return nn.unbox(net.init(jax.random.key(0), x, jnp.zeros((1,)), label)["params"])

    target = jax.eval_shape(params)
    return warmstart.read_params(config.reflow.teacher, target, key="config.reflow.teacher")


def straightness_and_few_step(velocity, noise, r):
    """Straightness along ``r.straightness_steps`` Euler steps, and the samples of Euler with
    each of ``r.eval_steps`` steps (the few-step generators whose quality reflow improves)."""
    _, s = euler_path(velocity, noise, r.straightness_steps)
    few = {k: euler_path(velocity, noise, k)[0] for k in r.eval_steps}
    return jnp.mean(s), few


def reflow_config():
    """The ``config.reflow`` keys (every key commented)."""
    import ml_collections

    r = ml_collections.ConfigDict()
    r.teacher = ""  # workdir of the previous round; empty: round 1 (plain flow matching)
    r.distill = False  # train the one-step generator n - F(n, 1) on the teacher's couplings
    r.init_from_teacher = True  # start from the teacher's parameters (Liu et al. fine-tune)
    r.num_pairs = 16384  # couplings generated from the teacher's ODE
    r.teacher_steps = 100  # Euler steps of the teacher's ODE per coupling
    r.coupling_seed = 1  # seeds the couplings' noise (reproducible)
    r.straightness_steps = 100  # Euler steps along which straightness is measured
    r.eval_steps = (1, 2)  # few-step Euler generators whose sample quality is logged
    return r
