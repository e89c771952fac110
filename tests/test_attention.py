"""Finite-n softmax expectations: quadrature against Monte Carlo, refinement and the previous
quadrature, limits, the tables (and their disk cache) and the range beyond them."""

import contextlib

import numpy as np
import pytest

import sigprop.theory.attention as attention
from sigprop.theory.attention import (
    MAX_LOGIT_SCALE,
    attention_moments,
    exact_attention_moments,
)

KEYS = ("S2", "S11", "T2", "T11")


@pytest.fixture(autouse=True)
def private_table_cache(tmp_path, monkeypatch):
    """Tables built here go to a per-test folder, never to the user's cache."""
    monkeypatch.setenv("SIGPROP_CACHE", str(tmp_path / "cache"))


def as_array(m):
    return np.array([getattr(m, key) for key in KEYS], dtype=float)


@contextlib.contextmanager
def refined_quadrature():
    """Halve every spacing (τ lattice, Gaussian steps), widen the Gaussian range and tighten the
    τ window: an independent-enough reference for the default rules."""
    names = ("_TAU_STEP", "_GAUSS_STEP", "_GAUSS_MAX_STEP", "_GAUSS_RANGE", "_TAIL_TOLERANCE")
    saved = {name: getattr(attention, name) for name in names}
    try:
        attention._TAU_STEP = saved["_TAU_STEP"] / 2
        attention._GAUSS_STEP = saved["_GAUSS_STEP"] / 2
        attention._GAUSS_MAX_STEP = saved["_GAUSS_MAX_STEP"] / 2
        attention._GAUSS_RANGE = 10.0
        attention._TAIL_TOLERANCE = saved["_TAIL_TOLERANCE"] * 1e-3
        yield
    finally:
        for name, value in saved.items():
            setattr(attention, name, value)


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
    """S_2 → e^{β²+γ²}/n and S_11 → e^{β²}/n as n → ∞ (docs/theory.md §2), with O(1/n) corrections."""
    sigma, rho, n = 0.8, 0.4, 4096
    beta2, gamma2 = sigma**2 * rho * (1 - rho), sigma**2 * (1 - rho) ** 2
    m = exact_attention_moments(n, sigma, rho)
    assert m.S2 * n == pytest.approx(np.exp(beta2 + gamma2), rel=5e-3)
    assert m.S11 * n == pytest.approx(np.exp(beta2), rel=5e-3)


GRID = [(n, sigma, rho) for n in (2, 4, 16, 64) for sigma in (0.1, 0.6, 2.0, 5.0, 8.0)
        for rho in (0.0, 0.3, 0.9, 0.999, 1.0)]


def test_quadrature_is_converged():
    """Halving every spacing changes nothing at the 1e-9 level, across n, σ ≤ 8 and ρ."""
    base = np.array([as_array(exact_attention_moments(*point)) for point in GRID])
    with refined_quadrature():
        fine = np.array([as_array(exact_attention_moments(*point)) for point in GRID])
    assert np.all(np.isfinite(base))
    worst = np.max(np.abs(base - fine), axis=1)
    assert np.all(worst < 1e-9), [(GRID[i], worst[i]) for i in np.argsort(worst)[-3:]]


# The previous implementation (plain trapezoid rules: τ step 0.125, Gaussian steps 0.175 / rate,
# i.e. its own spacings halved), an independent reference for the lattice quadrature.
PREVIOUS_QUADRATURE = [
    ((2, 0.1, 0.3),
     (0.501737869952279, 0.5005213571908067, 0.24827110779113182, 0.24826568638841814)),
    ((2, 2.0, 0.3),
     (0.7278625450899068, 0.5626367982642291, 0.10156782565310407, 0.07560570450529402)),
    ((4, 0.6, 0.3),
     (0.2940695008033153, 0.2627501908304696, 0.18413687671882747, 0.17122667167218278)),
    ((4, 8.0, 0.9),
     (0.6413420853702325, 0.5813433517239182, 0.10393094825839555, 0.08548265883750852)),
    ((16, 0.6, 0.9),
     (0.06463285929256243, 0.0644165726401316, 0.0601730794955819, 0.05998625621707748)),
    ((16, 5.0, 0.3),
     (0.6021470815447123, 0.13580273587688882, 0.09479960092746409, 0.017808980474970613)),
    ((64, 0.1, 0.999),
     (0.015625153809290738, 0.015625153655480634, 0.015381003571094787, 0.015381003422091387)),
    ((64, 8.0, 0.3),
     (0.6582528034235692, 0.05966193811306986, 0.08177445106245734, 0.005067875101626466)),
    ((16, 1.6, 0.05),
     (0.23178851705069276, 0.0674226394886005, 0.11246875664914553, 0.04163489051888034)),
    ((64, 0.5, 0.4),
     (0.018093543735092667, 0.016570141682838758, 0.01766408644940437, 0.016209220636704484)),
]


@pytest.mark.parametrize("point, expected", PREVIOUS_QUADRATURE)
def test_quadrature_matches_previous_implementation(point, expected):
    assert np.max(np.abs(as_array(exact_attention_moments(*point)) - expected)) < 1e-11


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


def test_beyond_the_tables_and_nan_give_nan():
    """σ above MAX_LOGIT_SCALE (8) and NaN σ or ρ give NaN moments, without raising; the other
    points are unaffected."""
    assert MAX_LOGIT_SCALE == 8.0
    sigma = np.array([0.6, 8.0, np.nextafter(8.0, 9.0), 20.0, np.inf, np.nan, 0.6, 0.6])
    rho = np.array([0.3, 0.3, 0.3, 0.3, 0.3, 0.3, np.nan, 1.0])
    m = attention_moments(4, sigma, rho)
    bad = np.array([False, False, True, True, True, True, True, False])
    for key in KEYS:
        values = getattr(m, key)
        assert values.shape == rho.shape
        assert np.all(np.isnan(values[bad])) and np.all(np.isfinite(values[~bad])), key
    assert m.S2[0] == pytest.approx(exact_attention_moments(4, 0.6, 0.3).S2, abs=1e-10)
    assert m.S2[7] == 0.25  # collapsed tokens, exact
    forward = attention_moments(4, 9.0, np.linspace(0.0, 1.0, 5), gradients=False)
    assert np.all(np.isnan(forward.S2)) and np.all(np.isnan(forward.S11)) and forward.T2 is None
    assert np.isnan(attention_moments(4, np.nan, 0.5).S11)
    assert np.all(np.isnan(as_array(exact_attention_moments(4, np.nan, 0.5))))
    assert np.all(np.isnan(as_array(exact_attention_moments(4, 1.0, np.nan))))


def test_negative_sigma_reads_as_its_magnitude():
    rho = np.array([0.1, 0.6])
    assert np.array_equal(attention_moments(4, -1.5, rho).T11, attention_moments(4, 1.5, rho).T11)


def test_tables_are_stored_on_disk(tmp_path, monkeypatch):
    """A table built once is read back from the disk cache, e.g. by a fresh process."""
    sigma, rho = 0.4321, np.linspace(0.0, 1.0, 9)
    attention._chebyshev_table.cache_clear()
    first = attention_moments(8, sigma, rho)
    assert len(list((tmp_path / "cache" / "attention").glob("*.npy"))) == 1

    def fail(*args):
        raise AssertionError("table rebuilt although it is on disk")

    attention._chebyshev_table.cache_clear()  # as in a fresh process
    monkeypatch.setattr(attention, "_build_table", fail)
    second = attention_moments(8, sigma, rho)
    for key in KEYS:
        assert np.array_equal(getattr(first, key), getattr(second, key))
    attention._chebyshev_table.cache_clear()
