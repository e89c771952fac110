"""Gaussian moments of activations against adaptive quadrature, closed forms and Monte Carlo."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate

from sigprop.theory.activations import get_activation
from sigprop.theory import gaussian, mehler
from sigprop.theory.gaussian import cross_moments, diagonal_moments
from sigprop.theory.gaussian_pairs import pair_moments

ALL = ["tanh", "erf", "relu", "gelu", "silu", "linear"]
RTOL = 1e-9  # the module aims at 1e-8; the references below are good to ~1e-12
Z_MAX = 12.0  # quadrature range in standard deviations


def _quad(f, a: float, b: float, breaks=()) -> float:
    """∫_a^b f by QUADPACK, split at the breaks (kinks and sharp features)."""
    edges = [a, *sorted(x for x in breaks if a < x < b), b]
    return sum(
        integrate.quad(f, lo, hi, epsabs=1e-15, epsrel=1e-12, limit=500)[0]
        for lo, hi in zip(edges[:-1], edges[1:])
    )


def _gauss_mean(f, sigma: float) -> float:
    """E[f(σz)], z ~ N(0, 1)."""
    density = lambda z: f(sigma * z) * np.exp(-z * z / 2) / np.sqrt(2 * np.pi)  # noqa: E731
    return _quad(density, -Z_MAX, Z_MAX, [0.0, -1 / sigma, 1 / sigma])


def _pair_mean(f, g, var: float, c: float) -> float:
    """E[f(h1) g(h2)] at correlation c: quad over h1 of the quad over h2 given h1, which is
    N(c h1, var (1 − c²))."""
    sigma = np.sqrt(var)
    if abs(c) == 1.0:
        return _gauss_mean(lambda x: f(x) * g(c * x), sigma)
    if c == 0.0:  # independent
        return _gauss_mean(f, sigma) * _gauss_mean(g, sigma)
    s = sigma * np.sqrt(1 - c * c)

    def conditional(x: float) -> float:
        m = c * x
        density = lambda u: g(m + s * u) * np.exp(-u * u / 2) / np.sqrt(2 * np.pi)  # noqa: E731
        return _quad(density, -Z_MAX, Z_MAX, [-m / s, (-m - 1 / sigma) / s, (-m + 1 / sigma) / s])

    return _gauss_mean(lambda x: f(x) * conditional(x), sigma)


def _reference_diagonal(activation: str, var: float) -> tuple[float, float]:
    act = get_activation(activation)
    sigma = np.sqrt(var)
    return (
        _gauss_mean(lambda x: act.numpy(x) ** 2, sigma),
        _gauss_mean(lambda x: act.derivative(x) ** 2, sigma),
    )


def _reference_cross(activation: str, var: float, c: float) -> tuple[float, float]:
    act = get_activation(activation)
    return (
        _pair_mean(act.numpy, act.numpy, var, c),
        _pair_mean(act.derivative, act.derivative, var, c),
    )


def _assert_close(got: float, want: float, scale: float) -> None:
    """Relative error ≤ RTOL, measured against 1e-3 of the Cauchy–Schwarz bound `scale` where the
    moment is much smaller (it vanishes for odd φ at c = 0)."""
    assert abs(got - want) <= RTOL * max(abs(want), 1e-3 * scale)


@pytest.mark.parametrize("activation", ALL)
@pytest.mark.parametrize("var", [0.01, 1.0, 16.0, 100.0, 1e4])
def test_diagonal_moments_match_quadrature(activation: str, var: float) -> None:
    want = _reference_diagonal(activation, var)
    got = diagonal_moments(activation, var)
    for g, w in zip(got, want):
        assert abs(g - w) <= RTOL * w


CROSS_CASES = [(0.01, 0.5), (1.0, -1.0), (1.0, 0.0), (4.0, -0.7), (16.0, 1 - 1e-6), (100.0, 0.9)]
EDGE_CASES = [(0.01, 1.0), (100.0, -1.0), (100.0, 1.0)]  # 1-D references, cheap


@pytest.mark.parametrize("activation", ["tanh", "gelu", "silu"])
@pytest.mark.parametrize("var,c", CROSS_CASES + EDGE_CASES)
def test_cross_moments_match_nested_quadrature(activation: str, var: float, c: float) -> None:
    """The public call, and each of its two paths (θ-tables of the lattice, where the
    variance is inside it, and direct quadrature) forced."""
    want = _reference_cross(activation, var, c)
    one_point = (np.array([var]), np.array([c]), True)
    for got in (cross_moments(activation, var, c * var),
                *([mehler.lattice_moments(activation, *one_point)] if mehler.LATTICE_LOW <= var
                  <= mehler.LATTICE_HIGH else []),
                pair_moments(activation, *one_point)):
        for g, w, scale in zip(got, want, diagonal_moments(activation, var)):
            _assert_close(float(np.ravel(g)[0]), w, scale)


@pytest.mark.parametrize("activation", ["erf", "relu", "linear"])
@pytest.mark.parametrize(
    "var,c", [(0.01, 0.3), (1.0, -0.8), (1.0, 1 - 1e-6), (16.0, 0.0), (100.0, -1.0)]
)
def test_closed_forms_match_nested_quadrature(activation: str, var: float, c: float) -> None:
    want = _reference_cross(activation, var, c)
    got = cross_moments(activation, var, c * var)
    for g, w, scale in zip(got, want, diagonal_moments(activation, var)):
        _assert_close(float(g), w, scale)


def test_sech4_is_resolved_at_var_16() -> None:
    """E[tanh'(h)²] = E[sech⁴(4z)], the integrand a 101-node Gauss–Hermite rule misses by ~9 %."""
    want = _gauss_mean(lambda x: np.cosh(x) ** -4, 4.0)
    assert abs(diagonal_moments("tanh", 16.0)[1] - want) <= 1e-9 * want
    assert abs(cross_moments("tanh", 16.0, 16.0)[1] - want) <= 1e-9 * want


@pytest.mark.parametrize("activation", ALL)
def test_cross_at_c_one_is_diagonal_and_at_c_zero_factorizes(activation: str) -> None:
    var = np.array([0.01, 0.5, 3.0, 30.0])
    diagonal = diagonal_moments(activation, var)
    for got, want in zip(cross_moments(activation, var, var), diagonal):
        np.testing.assert_allclose(got, want, rtol=1e-11)
    act = get_activation(activation)
    at_zero = cross_moments(activation, var, 0.0)
    for got, f, scale in zip(at_zero, (act.numpy, act.derivative), diagonal):
        means = np.array([_gauss_mean(f, s) for s in np.sqrt(var)])
        np.testing.assert_allclose(got, means**2, rtol=RTOL, atol=1e-14 * scale.max())


@pytest.mark.parametrize(
    "activation,var,c", [("tanh", 4.0, 0.6), ("gelu", 2.0, -0.3), ("silu", 9.0, 0.95)]
)
def test_cross_moments_match_monte_carlo(activation: str, var: float, c: float) -> None:
    rng = np.random.default_rng(20261124)
    z1, z2 = rng.standard_normal((2, 1_000_000))
    h1 = np.sqrt(var) * z1
    h2 = np.sqrt(var) * (c * z1 + np.sqrt(1 - c * c) * z2)
    act = get_activation(activation)
    got = cross_moments(activation, var, c * var)
    products = (act.numpy(h1) * act.numpy(h2), act.derivative(h1) * act.derivative(h2))
    for g, samples in zip(got, products):
        standard_error = samples.std() / np.sqrt(samples.size)
        assert abs(g - samples.mean()) <= 5 * standard_error


@pytest.mark.parametrize("activation", ["tanh", "gelu"])
def test_vectorized_call_matches_elementwise_calls(activation: str) -> None:
    rng = np.random.default_rng(0)
    var = np.repeat(np.linspace(0.1, 4.0, 200) ** 2, 200)  # 40,000 points, 200 unique var
    c = rng.uniform(-1, 1, var.size)
    c[:3] = [-1.0, 0.0, 1.0]
    phi, dphi = cross_moments(activation, var, c * var)
    assert phi.shape == dphi.shape == var.shape
    for i in np.concatenate([np.arange(3), rng.choice(var.size, 300, replace=False)]):
        one = cross_moments(activation, var[i], c[i] * var[i])
        np.testing.assert_allclose([phi[i], dphi[i]], one, rtol=1e-13, atol=1e-15)


def test_broadcasting_over_var_and_cov() -> None:
    var = np.array([[0.5], [2.0]])
    cov = np.array([-0.4, 0.0, 0.5])
    phi, dphi = cross_moments("silu", var, cov)
    assert phi.shape == dphi.shape == (2, 3)
    assert np.allclose(phi[1, 2], cross_moments("silu", 2.0, 0.5)[0], rtol=1e-14)
    assert diagonal_moments("silu", var)[0].shape == (2, 1)


def test_rounding_above_var_is_accepted_as_c_equal_one() -> None:
    var = 3.0
    over = cross_moments("tanh", var, var * (1 + 1e-14))
    np.testing.assert_allclose(over, cross_moments("tanh", var, var), rtol=1e-14)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: diagonal_moments("tanh", 0.0), "var must be finite and > 0"),
        (lambda: diagonal_moments("tanh", [1.0, -1.0]), "var must be finite and > 0"),
        (lambda: cross_moments("erf", np.nan, 0.0), "var must be finite and > 0"),
        (lambda: cross_moments("tanh", 1.0, 1.1), r"cov must be finite with \|cov\| <= var"),
        (lambda: cross_moments("relu", 1.0, -1.1), r"cov must be finite with \|cov\| <= var"),
        (lambda: cross_moments("softplus", 1.0, 0.5), "activation must be one of"),
        (lambda: diagonal_moments("softplus", 1.0), "activation must be one of"),
    ],
)
def test_bad_input_raises_value_error_naming_the_parameter(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


# Direct quadrature (gaussian_pairs) at the variances it exists for, and its choice against tables.

DIRECT_CASES = [
    ("tanh", 1e3, -(1 - 1e-6)),
    ("tanh", 1e3, 0.0),
    ("tanh", 1e3, 0.999),
    ("gelu", 1e3, 1 - 1e-6),
    ("gelu", 0.01, -0.6),
    ("silu", 1e3, -0.3),
    ("silu", 1e4, 0.0),
    ("tanh", 1e4, -1.0),
]


@pytest.mark.parametrize("activation,var,c", DIRECT_CASES)
def test_direct_quadrature_matches_nested_quadrature(activation: str, var: float, c: float) -> None:
    """Error ≤ 1e-10 of the Cauchy–Schwarz bound sqrt(E[f²] E[g²]) = the diagonal moment."""
    want = _reference_cross(activation, var, c)
    got = pair_moments(activation, np.array([var]), np.array([c]))
    for g, w, scale in zip(got, want, diagonal_moments(activation, var)):
        assert abs(float(g[0]) - w) <= 1e-10 * scale


@pytest.mark.parametrize("activation", ["tanh", "gelu", "silu"])
def test_windowed_diagonal_agrees_with_the_full_trapezoid(activation: str) -> None:
    """Above _WINDOWED_DIAGONAL_VAR diagonal_moments is the direct path at c = 1."""
    var = np.array([1.01e3, 3e3, 1e4])
    assert np.all(var > gaussian._WINDOWED_DIAGONAL_VAR)
    want = mehler.trapezoid_diagonal(activation, np.sqrt(var))
    for got, w in zip(diagonal_moments(activation, var), want):
        np.testing.assert_allclose(got, w, rtol=1e-13, atol=0)


@pytest.mark.parametrize("activation", ["tanh", "gelu", "silu"])
@pytest.mark.parametrize("var", [4.0, 16.0])
def test_direct_quadrature_agrees_with_tables(activation: str, var: float) -> None:
    tiny = np.array([1e-12, 1e-9, 1e-6, 1e-3])
    c = np.concatenate([np.linspace(-1, 1, 41), tiny, -tiny, 1 - tiny, tiny - 1])
    var = np.full(c.size, var)  # a lattice variance: its own θ-table, no interpolation in var
    table = mehler.lattice_moments(activation, var, c, True)
    direct = pair_moments(activation, var, c)
    for t, d, scale in zip(table, direct, diagonal_moments(activation, var[0])):
        assert np.max(np.abs(t - d)) <= 1e-10 * scale


@pytest.mark.parametrize("activation", ["tanh", "gelu", "silu"])
def test_lattice_interpolation_in_the_variance_agrees_with_direct_quadrature(activation: str
                                                                             ) -> None:
    """Between lattice variances the moments are interpolated in log var: within 3e-11 of the
    Cauchy–Schwarz bound of direct quadrature at random variances and correlations."""
    rng = np.random.default_rng(7)
    var = np.exp(rng.uniform(np.log(mehler.LATTICE_LOW), np.log(mehler.LATTICE_HIGH), 400))
    c = np.concatenate([rng.uniform(-1, 1, 396), [1 - 1e-12, -1 + 1e-9, 1e-9, 0.0]])
    lattice = cross_moments(activation, var, c * var)
    direct = pair_moments(activation, var, c)
    for got, want, scale in zip(lattice, direct, diagonal_moments(activation, var)):
        assert np.max(np.abs(got - want) / scale) <= 3e-11


def test_cross_moments_route_lattice_direct_and_diagonal_points() -> None:
    """Inside the lattice's range the tables answer, outside it the direct quadrature, at c = 1
    the diagonal moments; every value lands in its place."""
    var = np.array([[4.0, 1e3, 2.5, 4.0], [1e3, 4.0, 0.001, 1e3]])
    c = np.array([[0.3, -0.8, 0.5, -1.0], [0.999, 1.0, -0.2, 0.0]])
    phi, dphi = cross_moments("tanh", var, c * var)
    diagonal = c == 1.0
    tabled = (var >= mehler.LATTICE_LOW) & (var <= mehler.LATTICE_HIGH) & ~diagonal
    direct = ~tabled & ~diagonal
    want_table = mehler.lattice_moments("tanh", var[tabled], c[tabled], True)
    want_direct = pair_moments("tanh", var[direct], c[direct])
    for got, t, d, diag in zip((phi, dphi), want_table, want_direct, diagonal_moments("tanh", 4.0)):
        np.testing.assert_allclose(got[tabled], t, rtol=1e-14, atol=0)
        np.testing.assert_allclose(got[direct], d, rtol=1e-14, atol=0)
        assert got[diagonal] == diag


def test_only_lattice_tables_are_built() -> None:
    """A plane of variances (one per point) builds no table of its own: the tables in memory
    are lattice variances 2^(j/8), however many points."""
    var = np.linspace(0.5, 9.0, 1000)
    cross_moments("silu", var, 0.3 * var)
    built = [v for (name, v) in mehler._CACHE if name == "silu"]
    assert built and all(abs(np.log2(v) * mehler.LATTICE_PER_OCTAVE
                             - round(np.log2(v) * mehler.LATTICE_PER_OCTAVE)) < 1e-9
                         for v in built)


@pytest.mark.parametrize("c", [-0.5, 0.3, 0.9])
def test_tanh_tends_to_the_arcsine_kernel_at_large_variance(c: float) -> None:
    """tanh = sign + r with r odd, ∫|r| = 2 ln 2, ∫ r(x) x dx = −π²/12, and E[sign(h1)sign(h2)]
    = (2/π) arcsin c. The gap Δ = E[r(h1) tanh(h2)] + E[sign(h1) r(h2)] obeys, at every var,
    |Δ| <= 2 E|r(h)| <= 2 ∫|r| / sqrt(2π var) (the O(var^-1/2) correction), and expanding
    E[sign(h1) | h2] = erf(c h2 / sqrt(2 var (1 − c²))) to first order in h2 gives
    Δ = A/var + O(var^-2), A = −π c / (6 sqrt(1 − c²)) (E[r(h1) r(h2)] = O(var^-2), ∫ r = 0):
    so var Δ − A shrinks tenfold per decade of var, up to O(1/var)."""
    var = np.array([1e2, 1e3, 1e4])
    phi, _ = cross_moments("tanh", var, c * var, derivative=False)
    gap = phi - 2 / np.pi * np.arcsin(c)
    assert np.all(np.abs(gap) <= 4 * np.log(2) / np.sqrt(2 * np.pi * var))
    assert np.all(np.diff(np.abs(gap)) < 0)
    residual = np.abs(var * gap + np.pi * c / (6 * np.sqrt(1 - c * c)))
    assert 8 < residual[1] / residual[2] < 12
