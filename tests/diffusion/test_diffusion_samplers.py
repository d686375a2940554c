"""Samplers on analytic data: convergence order, exact equivalences, marginal moments."""

import functools
import inspect
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmodels.samplers import analytic, guidance, ode, scan_steps, schedules, sde


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


MU, STD = jnp.array([0.5, -0.3]), 0.7
GAUSS = analytic.GaussianMixture((1.0,), ((0.5, -0.3),), (STD,))
GM = analytic.GaussianMixture((0.3, 0.7), ((1.5, -0.5), (-1.0, 0.5)), (0.3, 0.5))


def _slope(fn, ns, sigma_min=0.05, sigma_max=10.0):
    """Observed order: -d log(error) / d log(steps) against the closed-form PF-ODE map."""
    x = sigma_max * jax.random.normal(jax.random.key(0), (16, 2))
    exact = analytic.gaussian_pf_solution(x, sigma_max, sigma_min, MU, STD)
    run = jax.jit(lambda x, s: fn(GAUSS.denoise, x, s))
    errs = []
    for n in ns:
        sigmas = schedules.get_sigmas_karras(n, sigma_min, sigma_max)[:-1]  # stop at sigma_min
        errs.append(float(jnp.max(jnp.abs(run(x, sigmas) - exact))))
    return -np.polyfit(np.log(ns), np.log(errs), 1)[0], errs


@pytest.mark.parametrize(
    "fn,order",
    [(ode.sample_euler, 1), (ode.sample_heun, 2), (ode.sample_dpmpp_2m, 2)],
    ids=["euler", "heun", "dpmpp_2m"],
)
def test_convergence_order(fn, order):
    slope, errs = _slope(fn, [16, 32, 64, 128])
    assert abs(slope - order) < 0.15, (slope, errs)
    assert errs[-1] < 0.02


def test_rk45_within_tolerance_and_adapts():
    x = 10.0 * jax.random.normal(jax.random.key(1), (16, 2))
    exact = analytic.gaussian_pf_solution(x, 10.0, 0.05, MU, STD)
    sigmas = jnp.array([10.0, 0.05])
    nfes = []
    for tol in [1e-3, 1e-6]:
        run = jax.jit(
            lambda x, t=tol: ode.sample_rk45(
                GAUSS.denoise, x, sigmas, rtol=t, atol=t, return_stats=True
            )
        )
        out, stats = run(x)
        assert stats["t"] == 0.05 and stats["accepted"] <= stats["steps"]
        assert jnp.max(jnp.abs(out - exact)) < 30 * tol
        nfes.append(int(stats["nfe"]))
    assert nfes[1] > 2 * nfes[0]  # tighter tolerance takes more steps


def test_heun_last_step_is_euler_and_final_sigma_zero():
    """Ending in 0, Heun's last step is x + (0 - sigma) d = D(x; sigma) (Algorithm 1, line 7)."""
    x = jnp.ones((3, 2)) * 2.0
    sigmas = jnp.array([1.0, 0.0])
    np.testing.assert_allclose(ode.sample_heun(GM.denoise, x, sigmas), GM.denoise(x, 1.0))
    np.testing.assert_allclose(ode.sample_dpmpp_2m(GM.denoise, x, sigmas), GM.denoise(x, 1.0))


def test_ddim_equals_euler_and_ancestral():
    """DDIM(eta=0) is Euler in sigma (EDM App. C.3.1); DDIM(eta) is Euler-ancestral(eta) and
    DDIM(1) is DDPM's ancestral step, draw for draw."""
    x = 5.0 * jax.random.normal(jax.random.key(2), (8, 2))
    sigmas, key = schedules.get_sigmas_karras(12, 0.01, 5.0), jax.random.key(3)
    d = GM.denoise
    np.testing.assert_allclose(
        sde.sample_ddim(d, x, sigmas), ode.sample_euler(d, x, sigmas), rtol=1e-10
    )
    for eta in [0.5, 1.0]:
        a = sde.sample_ddim(d, x, sigmas, key=key, eta=eta)
        np.testing.assert_allclose(
            a, sde.sample_euler_ancestral(d, x, sigmas, key=key, eta=eta), rtol=1e-9
        )
    np.testing.assert_allclose(sde.sample_ddpm(d, x, sigmas, key=key), a, rtol=1e-9)


def _stochastic_samplers():
    kw = dict(S_churn=40.0, S_tmin=0.05, S_tmax=50.0, S_noise=1.0)
    return {
        "edm_stochastic": functools.partial(ode.sample_heun, **kw),
        "euler_ancestral": sde.sample_euler_ancestral,
        "ddpm": sde.sample_ddpm,
        "euler_maruyama": sde.sample_euler_maruyama,
        "ddim_eta0.5": functools.partial(sde.sample_ddim, eta=0.5),
    }


@pytest.mark.parametrize("name", list(_stochastic_samplers()))
def test_stochastic_marginals(name):
    """Mean, covariance and mode weights of samples match the mixture's."""
    fn = _stochastic_samplers()[name]
    # Ancestral steps carry a first-order bias in the variance (1.405 vs 1.515 at 64 steps).
    steps = 64 if name in ("edm_stochastic", "ddim_eta0.5") else 512
    sigmas = schedules.get_sigmas_karras(steps, 0.002, 80.0)
    k_x, k_s = jax.random.split(jax.random.key(4))
    x = 80.0 * jax.random.normal(k_x, (8192, 2))
    out = jax.jit(lambda x, k: fn(GM.denoise, x, sigmas, key=k))(x, k_s)
    np.testing.assert_allclose(out.mean(0), GM.mean(jnp.float64), atol=0.05)
    np.testing.assert_allclose(jnp.cov(out.T), GM.cov(jnp.float64), atol=0.08)
    np.testing.assert_allclose(jnp.mean(out[:, 0] > 0.25), 0.3, atol=0.02)


def test_classifier_free_guidance():
    """Components as classes: w = 1 gives D(x | c); w interpolates/extrapolates linearly."""
    comps = [analytic.GaussianMixture((1.0,), (m,), (s,)) for m, s in zip(GM.means, GM.stds)]

    def cond_denoise(x, sigma, c):  # c = 0, 1 the component; 2 the unconditional model
        outs = jnp.stack(
            [comps[0].denoise(x, sigma), comps[1].denoise(x, sigma), GM.denoise(x, sigma)]
        )
        return jnp.take_along_axis(outs, c[None, :, None], axis=0)[0]

    x = jax.random.normal(jax.random.key(5), (6, 2))
    c, u = jnp.zeros(6, int), jnp.full(6, 2)
    d1 = guidance.classifier_free_guidance(cond_denoise, c, u, 1.0)(x, 0.8)
    np.testing.assert_allclose(d1, comps[0].denoise(x, 0.8), rtol=1e-12)
    d3 = jax.jit(guidance.classifier_free_guidance(cond_denoise, c, u, 3.0))(x, 0.8)
    expect = GM.denoise(x, 0.8) + 3.0 * (comps[0].denoise(x, 0.8) - GM.denoise(x, 0.8))
    np.testing.assert_allclose(d3, expect, rtol=1e-12)


def test_float32_and_churn_needs_key():
    with jax.enable_x64(False):
        sigmas = schedules.get_sigmas_karras(4)
        assert sigmas.dtype == jnp.float32
        out = jax.jit(lambda x: ode.sample_heun(GM.denoise, x, sigmas))(
            jnp.zeros((2, 2), jnp.float32)
        )
        assert out.dtype == jnp.float32 and bool(jnp.isfinite(out).all())
    with pytest.raises(ValueError, match="PRNG key"):
        ode.sample_heun(GM.denoise, jnp.zeros((2, 2)), schedules.get_sigmas_karras(4), S_churn=1.0)


def test_every_sampler_and_schedule_in_the_namespace():
    """k-diffusion style: each ``sample_*`` and ``get_sigmas*`` of the submodules is importable
    from ``jaxmodels.samplers`` itself (and ``SAMPLERS`` names only those)."""
    import jaxmodels.samplers as S
    from jaxmodels.samplers import (  # noqa: F401  (the import is the test)
        get_sigmas,
        get_sigmas_exponential,
        get_sigmas_flow,
        get_sigmas_iddpm,
        get_sigmas_karras,
        get_sigmas_ve,
        get_sigmas_vp,
        sample_ddim,
        sample_ddpm,
        sample_dpmpp_2m,
        sample_edm_stochastic,
        sample_euler,
        sample_euler_ancestral,
        sample_euler_maruyama,
        sample_heun,
        sample_heun_process,
        sample_rk45,
    )

    for module, prefix in [(ode, "sample_"), (sde, "sample_"), (schedules, "get_sigmas")]:
        names = [
            n for n, f in inspect.getmembers(module, inspect.isfunction) if n.startswith(prefix)
        ]
        assert names and all(getattr(S, n) is getattr(module, n) for n in names), module
        assert set(names) <= set(S.__all__)
    assert all(getattr(S, fn.__name__) is fn for fn in S.SAMPLERS.values())


def test_samplers_import_is_cheap():
    """Importing the namespace pulls in no data/checkpoint stack and no family."""
    heavy = "('grain', 'orbax', 'tensorflow_datasets')"
    code = (
        "import sys, jaxmodels.samplers; "
        f"bad = [m for m in sys.modules if m.split('.')[0] in {heavy}"
        " or m.startswith('jaxmodels.models')]; print(bad); assert not bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_scan_steps_keys_and_order():
    """``scan_steps`` visits consecutive grid pairs in order, with split keys or ``None``."""
    ts = jnp.array([4.0, 3.0, 1.0, 0.5])
    seen = []
    step = lambda state, t, t_next, k: seen.append(k) or state * 10 + t - t_next
    np.testing.assert_allclose(scan_steps(step, jnp.zeros(()), ts), 1 * 100 + 2 * 10 + 0.5)
    assert seen == [None]  # traced once
    key = jax.random.key(0)
    draws = scan_steps(lambda s, t, t_next, k: s * 10 + jax.random.uniform(k), 0.0, ts, key)
    u = [float(jax.random.uniform(k)) for k in jax.random.split(key, 3)]
    np.testing.assert_allclose(draws, u[0] * 100 + u[1] * 10 + u[2], rtol=1e-12)
