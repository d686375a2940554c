"""Schedules, processes, preconditioning and the loss, checked against closed forms."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmodels.models.diffusion import processes as P
from jaxmodels.models.diffusion.loss import denoising_loss
from jaxmodels.samplers import analytic, ode, schedules


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


GM = analytic.GaussianMixture((0.3, 0.7), ((1.0, -0.5), (-1.0, 0.5)), (0.4, 0.6))
ALL = [P.VP(), P.VE(), P.IDDPM(), P.EDM(), P.Flow()]


def test_karras_matches_eq5_and_dtype():
    s = schedules.get_sigmas_karras(4, 0.002, 80.0, rho=7.0)
    assert s.dtype == jnp.float64 and s.shape == (5,) and s[-1] == 0
    i = np.arange(4)
    expect = (80 ** (1 / 7) + i / 3 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    np.testing.assert_allclose(s[:-1], expect, rtol=1e-12)
    assert schedules.get_sigmas_karras(4, jnp.float32(0.002), jnp.float32(80)).dtype == jnp.float32


def test_table1_time_steps():
    np.testing.assert_allclose(
        schedules.get_sigmas_ve(3, 0.02, 100.0)[:-1], [100, math.sqrt(2), 0.02]
    )
    vp = schedules.get_sigmas_vp(2)
    np.testing.assert_allclose(vp[0], math.sqrt(math.expm1(0.5 * 19.9 + 0.1)), rtol=1e-12)
    u = schedules.iddpm_u()
    assert u[-1] == 0 and np.all(np.diff(u) < 0) and 79 < u[8] < 81  # j_0 = 8 gives sigma_max ~ 80
    np.testing.assert_allclose(schedules.get_sigmas_iddpm(3)[:-1], u[[8, 504, 999]])
    flow = schedules.get_sigmas_flow(4, sigma_max=80.0)
    t = flow / (1 + flow)
    np.testing.assert_allclose(np.diff(t), -80 / 81 / 4, rtol=1e-12)
    with pytest.raises(ValueError, match="unknown sigma schedule"):
        schedules.get_sigmas("nope", 3)


@pytest.mark.parametrize("proc", ALL, ids=lambda p: type(p).__name__)
def test_inverse_and_derivatives(proc):
    t = jnp.linspace(0.05, 0.9, 7)
    np.testing.assert_allclose(proc.sigma_inv(proc.sigma(t)), t, rtol=1e-10)
    np.testing.assert_allclose(proc.sigma_deriv(t), jax.vmap(jax.grad(proc.sigma))(t), rtol=1e-10)
    np.testing.assert_allclose(proc.s_deriv(t), jax.vmap(jax.grad(proc.s))(t), atol=1e-12)


@pytest.mark.parametrize("proc", ALL, ids=lambda p: type(p).__name__)
def test_effective_weight_is_one(proc):
    """lambda(sigma) c_out(sigma)^2 = 1: every Table 1 loss weights F's target uniformly."""
    sigma = jnp.geomspace(0.01, 50.0, 9)
    c_out = proc.precond(sigma)[1]
    np.testing.assert_allclose(proc.loss_weight(sigma) * c_out**2, 1.0, rtol=1e-10)


def test_edm_training_sigmas():
    s = P.EDM().sample_sigma(jax.random.key(0), (20000,), jnp.float64)
    np.testing.assert_allclose([jnp.log(s).mean(), jnp.log(s).std()], [-1.2, 1.2], atol=0.03)
    u = P.IDDPM().sample_sigma(jax.random.key(1), (100,), jnp.float64)
    assert np.isin(np.asarray(u), schedules.iddpm_u()).all()


def _vp_coords_logp(x_t, t, vp):
    """log p_t in VP coordinates x_t = sqrt(ab) x_0 + sqrt(1 - ab) n (Song et al. 2021)."""
    ab = jnp.exp(-(0.5 * vp.beta_d * t**2 + vp.beta_min * t))
    w, mu, s = (jnp.asarray(v) for v in (GM.weights, GM.means, GM.stds))
    var = ab * s**2 + 1 - ab
    sq = jnp.sum((x_t - jnp.sqrt(ab) * mu) ** 2, -1)
    return jax.nn.logsumexp(jnp.log(w / w.sum()) - 0.5 * sq / var - jnp.log(2 * jnp.pi * var))


def _flow_velocity(x_t, t):
    """E[n - x_0 | x_t] for x_t = (1 - t) x_0 + t n, derived per mixture component."""
    w, mu, s = (jnp.asarray(v) for v in (GM.weights, GM.means, GM.stds))
    var = (1 - t) ** 2 * s**2 + t**2
    resid = x_t - (1 - t) * mu
    logr = jnp.log(w) - 0.5 * jnp.sum(resid**2, -1) / var - jnp.log(var)
    r = jax.nn.softmax(logr)
    x0 = mu + ((1 - t) * s**2 / var)[:, None] * resid
    n = (t / var)[:, None] * resid
    return r @ (n - x0)


def test_ode_derivative_matches_score_sde_vp_and_flow():
    """Algorithm 1's general d(x, t) equals the VP PF ODE of Song et al. (f - g^2/2 score) and the
    rectified-flow velocity, each derived independently in its own coordinates."""
    vp, flow = P.VP(), P.Flow()
    xs = jax.random.normal(jax.random.key(0), (5, 2))
    for t in [0.05, 0.3, 0.8]:
        beta = vp.beta_min + vp.beta_d * t
        score = jax.jit(jax.vmap(jax.grad(lambda x: _vp_coords_logp(x, t, vp))))(xs)
        expect = -0.5 * beta * xs - 0.5 * beta * score
        got = ode.ode_derivative(vp, GM.denoise, xs, jnp.asarray(t))
        np.testing.assert_allclose(got, expect, rtol=1e-9)
        got = ode.ode_derivative(flow, GM.denoise, xs, jnp.asarray(t))
        v = jax.jit(jax.vmap(lambda x: _flow_velocity(x, t)))(xs)
        np.testing.assert_allclose(got, v, rtol=1e-9)


def test_preconditioning_maps_to_native_network_inputs():
    """A net fed c_in x, c_noise that returns the true eps (VP) or velocity (Flow), computed in
    that process's own coordinates, makes the preconditioned D the ideal denoiser."""
    vp, flow = P.VP(), P.Flow()
    x_hat = 3 * jax.random.normal(jax.random.key(1), (4, 2))
    sigma = jnp.array([0.1, 0.7, 2.0, 9.0])

    def vp_eps(x_t, c_noise):
        t = c_noise / (vp.M - 1)
        ab = jnp.exp(-(0.5 * vp.beta_d * t**2 + vp.beta_min * t))
        score = jax.vmap(jax.grad(lambda x, t: _vp_coords_logp(x, t, vp)))(x_t, t)
        return -jnp.sqrt(1 - ab)[:, None] * score

    def flow_v(x_t, c_noise):
        return jax.vmap(_flow_velocity)(x_t, c_noise / (flow.M - 1))

    expect = GM.denoise(x_hat, sigma)
    for proc, net in [(vp, vp_eps), (flow, flow_v)]:
        got = jax.jit(P.precondition(proc, net))(x_hat, sigma)
        np.testing.assert_allclose(got, expect, rtol=1e-8, err_msg=type(proc).__name__)


def test_processes_agree_on_pf_ode_solution():
    """Heun in each process's own (x, t) coordinates reaches the same x_0 as a tight RK45 solve in
    EDM coordinates (VE's sigma = sqrt(t) curves the trajectories most, hence its looser bound;
    EDM Sec. 3)."""
    sigmas = schedules.get_sigmas_karras(128, 0.002, 20.0)
    x = 20.0 * jax.random.normal(jax.random.key(2), (8, 2))
    ref = jax.jit(lambda x: ode.sample_rk45(GM.denoise, x, sigmas, rtol=1e-9, atol=1e-9))(x)
    for proc in [P.VP(), P.VE(), P.EDM(), P.Flow()]:
        run = jax.jit(
            lambda x, p=proc: ode.sample_heun_process(p, GM.denoise, x, p.sigma_inv(sigmas))
        )
        tol = 1e-2 if isinstance(proc, P.VE) else 2e-3
        np.testing.assert_allclose(run(x), ref, atol=tol, err_msg=type(proc).__name__)


def test_ideal_denoiser_edm_loss_is_one():
    """With data std = sigma_data, lambda(sigma) E|D* - y|^2 = 1 for every sigma (EDM eq. 8)."""
    edm = P.EDM()
    g = analytic.GaussianMixture((1.0,), ((0.0,) * 4,), (edm.sigma_data,))
    x0 = jax.jit(lambda k: g.sample(k, 4096, jnp.float64))(jax.random.key(3))
    loss, metrics = jax.jit(lambda x, k: denoising_loss(g.denoise, edm, x, k))(
        x0, jax.random.key(4)
    )
    np.testing.assert_allclose(loss, 1.0, atol=0.03)
    assert set(metrics) >= {"loss", "denoise_mse"}
    with pytest.raises(ValueError, match="unknown diffusion process"):
        P.get_process("ddx")
