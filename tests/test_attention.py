"""Finite-n softmax expectations: quadrature against Monte Carlo, limits and the tables."""

import numpy as np
import pytest

from sigprop.theory.attention import attention_moments, exact_attention_moments


def monte_carlo_moments(n: int, sigma: float, rho: float, samples: int, seed: int):
    """Sample the definitions of S_2, S_11, T_2, T_11 directly; returns (means, standard errors)."""
    rng = np.random.default_rng(seed)
    beta, gamma = sigma * np.sqrt(rho * (1 - rho)), sigma * (1 - rho)
    b = rng.standard_normal((samples, n))
    a_i = _softmax(beta * b + gamma * rng.standard_normal((samples, n)))
    a_k = _softmax(beta * b + gamma * rng.standard_normal((samples, n)))
    s2 = (a_i**2).sum(1)
    s11 = (a_i * a_k).sum(1)
    t2 = s2 - 2 * (a_i**3).sum(1) + s2**2
    t11 = s11 - (a_i**2 * a_k).sum(1) - (a_i * a_k**2).sum(1) + s11**2
    values = np.stack([s2, s11, t2, t11])
    return values.mean(1), values.std(1) / np.sqrt(samples)


def _softmax(x):
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@pytest.mark.parametrize(
    "n, sigma, rho",
    [(2, 2.0, 0.5), (4, 3.0, 0.2), (4, 0.6, 0.7), (16, 1.0, 0.5), (16, 0.6, 0.0), (64, 5.0, 0.1)],
)
def test_quadrature_matches_monte_carlo(n, sigma, rho):
    exact = exact_attention_moments(n, sigma, rho)
    mean, stderr = monte_carlo_moments(n, sigma, rho, samples=400_000, seed=n)
    got = np.array([exact.S2, exact.S11, exact.T2, exact.T11])
    assert np.all(np.abs(got - mean) < 5 * stderr + 1e-12), (got, mean, stderr)


@pytest.mark.parametrize("n", [2, 4, 16, 256])
def test_collapsed_tokens_attend_uniformly(n):
    """At ρ = 1 every logit difference vanishes: A = 1/n, S = 1/n, T = (n − 1)/n²."""
    m = exact_attention_moments(n, 1.3, 1.0)
    assert np.allclose([m.S2, m.S11], 1 / n, rtol=1e-12)
    assert np.allclose([m.T2, m.T11], (n - 1) / n**2, rtol=1e-12)


def test_large_n_limit():
    """S_2 → e^{β²+γ²}/n and S_11 → e^{β²}/n as n → ∞ (THEORY §2), with O(1/n) corrections."""
    sigma, rho, n = 0.8, 0.4, 4096
    beta2, gamma2 = sigma**2 * rho * (1 - rho), sigma**2 * (1 - rho) ** 2
    m = exact_attention_moments(n, sigma, rho)
    assert m.S2 * n == pytest.approx(np.exp(beta2 + gamma2), rel=5e-3)
    assert m.S11 * n == pytest.approx(np.exp(beta2), rel=5e-3)


def test_quadrature_is_converged():
    """Halving every spacing changes nothing at the 1e-9 level."""
    import sigprop.theory.attention as attention

    base = exact_attention_moments(4, 3.0, 0.2)
    saved = attention._TAU_STEP, attention._GAUSS_STEP
    try:
        attention._TAU_STEP, attention._GAUSS_STEP = saved[0] / 2, saved[1] / 2
        fine = exact_attention_moments(4, 3.0, 0.2)
    finally:
        attention._TAU_STEP, attention._GAUSS_STEP = saved
    for key in ("S2", "S11", "T2", "T11"):
        assert getattr(base, key) == pytest.approx(getattr(fine, key), abs=1e-9)


@pytest.mark.parametrize("n, sigma", [(4, 0.6), (16, 2.0)])
def test_tables_interpolate_the_quadrature(n, sigma):
    rho = np.array([0.0, 0.013, 0.31, 0.5, 0.77, 0.999, 1.0])
    table = attention_moments(n, np.full(rho.shape, sigma), rho)
    for i, r in enumerate(rho):
        exact = exact_attention_moments(n, sigma, float(r))
        for key in ("S2", "S11", "T2", "T11"):
            assert getattr(table, key)[i] == pytest.approx(getattr(exact, key), abs=1e-10)


def test_tables_handle_several_sigmas_at_once():
    sigma = np.array([[0.6, 1.5], [1.5, 0.6]])
    rho = np.array([[0.2, 0.2], [0.9, 0.9]])
    m = attention_moments(8, sigma, rho)
    assert m.S2.shape == (2, 2)
    assert m.S2[0, 1] == pytest.approx(exact_attention_moments(8, 1.5, 0.2).S2, abs=1e-10)
    assert m.S11[1, 1] == pytest.approx(exact_attention_moments(8, 0.6, 0.9).S11, abs=1e-10)


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="n_tokens"):
        exact_attention_moments(1, 1.0, 0.5)
    with pytest.raises(ValueError, match="rho"):
        exact_attention_moments(4, 1.0, 1.5)
