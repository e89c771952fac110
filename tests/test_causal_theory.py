"""The wide-limit theory of causal attention (sigprop.theory.causal, causal_attention).

Checks, in order: the full-Gram attention map without mask against the bidirectional maps of
maps.py; its quasi-Monte Carlo accuracy against more samples; n = 2 against exact quadrature;
the exact collapsed profile and exponents against the Monte Carlo maps, the bidirectional theory
and a brute-force spectral radius; the pair moments with unequal variances; and the causal
trajectory against simulated causal networks (d = 512, n = 16, 4 seeds, 24 layers) with the
tolerances of test_theory_vs_simulation.py.
"""

from functools import lru_cache

import numpy as np
import pytest
from numpy.polynomial.hermite_e import hermegauss

from sigprop.measure import measure_points
from sigprop.api.simulate import SimulationSettings
from sigprop.spec import Architecture, reference_layer
from sigprop.spec.components import Residual, SelfAttention, Serial
from sigprop.spec.errors import InvalidHyperparameter, NotCovered
from sigprop.theory.causal import (
    _bidirectional,
    _collapsed,
    _matrix_attention,
    _pair_quadrature,
    causal_collapsed_profile,
    causal_lambda_a,
    causal_lambda_g,
    causal_trajectory,
    first_position_lambda_g,
    pair_moments,
)
from sigprop.theory.causal_attention import attention_maps
from sigprop.theory.dynamics import attracting_state, collapsed_norm, lambda_a
from sigprop.theory.gaussian import cross_moments
from sigprop.theory.maps import Geometry, Tangent, propagate

N = 16


def _two_valued(n, diagonal, off_diagonal):
    return off_diagonal * np.ones((n, n)) + (diagonal - off_diagonal) * np.eye(n)


def _symmetric_state(n, q, rho, g_d, g_o):
    return _two_valued(n, q, q * rho), _two_valued(n, g_d, g_o)


def _normalized(C):
    d = np.sqrt(np.diagonal(C))
    return C / np.outer(d, d)


@pytest.mark.parametrize("q, rho, sigma_A, g_d, g_o", [
    (1.0, 0.0, 1.0, 1.0, 0.0),
    (1.0, 0.5, 1.0, 1.0, 0.3),
    (2.0, 0.9, 0.6, 1.5, 0.5),
    (1.0, 0.999, 1.0, 1.0, 0.2),
])
def test_unmasked_map_is_the_bidirectional_map(q, rho, sigma_A, g_d, g_o):
    """Every entry of the full-Gram map without mask, value and softmax paths, is maps.py's."""
    C, G = _symmetric_state(N, q, rho, g_d, g_o)
    C_out, G_out = attention_maps(C, G, sigma_A, causal=False)
    geometry, tangent = propagate(SelfAttention(sigma_A), Geometry(np.array(q), np.array(q * rho)),
                                  Tangent(np.array(g_d), np.array(g_o)), N)
    C_ref = _two_valued(N, geometry.q, geometry.p)
    G_ref = _two_valued(N, tangent.g_d, tangent.g_o)
    assert np.abs(C_out - C_ref).max() <= 1e-3 * q
    assert np.abs(G_out - G_ref).max() <= 1e-3 * tangent.g_d


def test_unmasked_map_with_strong_softmax_path():
    """At logit scale 3 the softmax path carries most of g_d (the value path alone gives
    g_d = S_2 < 1 from (1, 0)); the position averages, which the bidirectional map predicts,
    agree."""
    C, G = _symmetric_state(N, 1.0, 0.3, 1.0, 0.0)
    C_out, G_out = attention_maps(C, G, 3.0, causal=False)
    geometry, tangent = propagate(SelfAttention(3.0), Geometry(np.array(1.0), np.array(0.3)),
                                  Tangent(np.array(1.0), np.array(0.0)), N)
    off = ~np.eye(N, dtype=bool)
    assert tangent.g_d > 1.5
    for matrix, diagonal, off_diagonal in ((C_out, geometry.q, geometry.p),
                                           (G_out, tangent.g_d, tangent.g_o)):
        assert abs(np.diagonal(matrix).mean() - diagonal) <= 1e-3 * tangent.g_d
        assert abs(matrix[off].mean() - off_diagonal) <= 1e-3 * tangent.g_d


@lru_cache(maxsize=1)
def _anisotropic_state():
    """C after 4 causal reference layers (unequal norms and angles), normalized as attention
    sees it behind the pre-norm."""
    path = causal_trajectory(reference_layer(0.5, 0.5, 1.0, 2.0, causal=True), N, 1.0, 0.0, 4,
                             samples=2**12)
    return _normalized(path.C[-1])


@pytest.mark.parametrize("state", ["near collapse", "generic", "anisotropic causal"])
def test_monte_carlo_accuracy(state):
    """Default samples against the mean of two independent scramblings with twice as many each
    (4x): every entry within 1e-3 of the scale, and near collapse within 1e-6 of the size of
    the departures C − mean(C)."""
    if state == "near collapse":
        C, G = _symmetric_state(N, 1.0, 0.999, 1.0, 0.0)
        sigma_A = 1.0
    elif state == "generic":
        C, G = _symmetric_state(N, 1.0, 0.3, 1.0, 0.0)
        sigma_A = 0.6
    else:
        C = _anisotropic_state()
        G, sigma_A = C + 0.5 * np.eye(N), 1.0
    C_out, G_out = attention_maps(C, G, sigma_A)
    references = [attention_maps(C, G, sigma_A, samples=2**15, seed=s) for s in (1, 2)]
    C_ref, G_ref = (np.mean([r[k] for r in references], axis=0) for k in (0, 1))
    assert np.abs(C_out - C_ref).max() <= 1e-3 * np.diagonal(C_ref).mean()
    assert np.abs(G_out - G_ref).max() <= 1e-3 * np.diagonal(G_ref).mean()
    if state == "near collapse":
        departures = np.abs(C_ref - C_ref.mean()).max()
        assert np.abs(C_out - C_ref).max() <= 1e-6 * departures


def test_two_tokens_against_quadrature():
    """n = 2: row 0 attends to itself, row 1 with weights (1 − a, a), a = sigmoid(x), x the
    logit difference, x ~ N(0, σ_A² C_11 K) with K = C_00 + C_11 − 2 C_01; D_1 = a(1 − a) u uᵀ,
    u = e_0 − e_1, so T1_11 = (a(1 − a))² K² and T2_11 = (a(1 − a))² K_G K."""
    C = np.array([[1.0, 0.3], [0.3, 1.5]])
    G = np.array([[1.0, 0.2], [0.2, 0.7]])
    sigma_A = 1.2
    K, K_G = C[0, 0] + C[1, 1] - 2 * C[0, 1], G[0, 0] + G[1, 1] - 2 * G[0, 1]
    z, w = hermegauss(120)
    w = w / w.sum()
    a = 1 / (1 + np.exp(-sigma_A * np.sqrt(C[1, 1] * K) * z))
    b = 1 - a

    def mean(x):
        return float(np.dot(w, x))

    def value_path(M):
        return np.array([[M[0, 0], mean(b * M[0, 0] + a * M[0, 1])],
                         [mean(b * M[0, 0] + a * M[0, 1]),
                          mean(b**2 * M[0, 0] + 2 * a * b * M[0, 1] + a**2 * M[1, 1])]])

    C_exact, G_exact = value_path(C), value_path(G)
    G_exact[1, 1] += sigma_A**2 * mean((a * b) ** 2) * (G[1, 1] * K**2 + C[1, 1] * K_G * K)
    C_out, G_out = attention_maps(C, G, sigma_A)
    assert np.abs(C_out - C_exact).max() <= 1e-4
    assert np.abs(G_out - G_exact).max() <= 1e-4


def test_collapsed_profile_is_the_limit_of_the_monte_carlo_trajectory():
    """From ρ0 = 1 − 1e-6 the Monte Carlo maps follow the exact collapsed profile: q, the growth
    of 1 − ρ and log_jac, through ordered and chaotic α-residual blocks and unit residuals."""
    n, depth, gap = 8, 6, 1e-6
    layers = [reference_layer(np.array([0.6, 0.3]), np.array([0.6, 0.3]), 0.6,
                              np.array([1.0, 5.5]), causal=True),
              Architecture.load("pre-ln").with_values(causal=True).layer(24)]
    for layer in layers:
        profile = causal_collapsed_profile(layer, n, 1.0, depth)
        path = causal_trajectory(layer, n, 1.0, 1.0 - gap, depth, samples=2**12)
        np.testing.assert_allclose(path.q, profile.q, rtol=1e-6)
        np.testing.assert_allclose(np.log((1 - path.rho) / gap), profile.log_spread, atol=1e-4)
        np.testing.assert_allclose(path.log_jac, profile.log_jac, atol=1e-4)


def test_collapsed_exponents_of_bidirectional_layers_are_the_scalar_ones():
    alpha = np.array([0.3, 0.5, 0.6, 0.9])
    sigma_w = np.array([5.5, 2.0, 1.0, 1.5])
    layer = reference_layer(alpha, alpha, 0.6, sigma_w)
    np.testing.assert_allclose(causal_lambda_a(layer, N), lambda_a(layer, N), rtol=1e-12)
    causal = reference_layer(alpha[1:], alpha[1:], 0.6, sigma_w[1:], causal=True)
    state = attracting_state(reference_layer(alpha[1:], alpha[1:], 0.6, sigma_w[1:]), N)
    assert np.all(state.rho == 1.0) and np.all(causal_lambda_a(causal, N) < 0)
    # At collapse the common mode dominates, and P and 11ᵀ/n both keep it: the same λ_g.
    np.testing.assert_allclose(causal_lambda_g(causal, N), state.lambda_g, rtol=1e-12)
    # P contracts departures by 1/4 at most where 11ᵀ/n erases them.
    assert np.all(causal_lambda_a(causal, N) > lambda_a(layer, N)[1:])


@pytest.mark.parametrize("layer", [
    reference_layer(0.3, 0.3, 0.6, 5.5, causal=True),
    Architecture.load("post-ln").with_values(causal=True).layer(24),
], ids=["reference chaotic", "post-ln"])
def test_angle_exponent_is_the_spectral_radius_on_departures(layer):
    """The mode formula against the eigenvalues of the linear map on departures, built column
    by column from the exact collapsed map on Π E Π for the symmetric unit matrices E."""
    n = 5
    q = collapsed_norm(_bidirectional(layer), n)
    centre = np.eye(n) - 1 / n
    upper = np.triu_indices(n)
    basis = []
    for i, j in zip(*upper):
        E = np.zeros((n, n))
        E[i, j] = E[j, i] = 1.0
        basis.append(centre @ E @ centre)
    _, images = _collapsed(layer, q, np.array(basis), _matrix_attention(n), n)
    inputs = np.array([b[upper] for b in basis]).T
    outputs = np.array([(centre @ image @ centre)[upper] for image in images]).T
    frame = np.linalg.svd(inputs)[0][:, :n * (n - 1) // 2]  # the departures' subspace
    matrix = frame.T @ outputs @ np.linalg.pinv(frame.T @ inputs)
    radius = np.abs(np.linalg.eigvals(matrix)).max()
    assert causal_lambda_a(layer, n) == pytest.approx(np.log(radius), abs=1e-10)


def test_fixed_point_growth_of_a_bidirectional_layer_is_the_scalar_one():
    """The Monte Carlo fixed point and power iteration, run on a chaotic bidirectional layer,
    find the simplex's λ_g of the scalar theory."""
    layer = reference_layer(0.3, 0.3, 0.6, 5.5)
    predicted = attracting_state(layer, 4)
    assert predicted.rho < 1.0
    assert causal_lambda_g(layer, 4, samples=2**12) == pytest.approx(predicted.lambda_g, abs=1e-4)


def test_causal_gradient_exponent_at_a_chaotic_point_is_the_first_position_growth():
    """The causal Jacobian is block lower triangular in the positions, so the first position's
    growth (a one-token network) bounds λ_g from below; at a chaotic causal point the Monte
    Carlo fixed point and power iteration find that value."""
    chaotic = reference_layer(0.4, 0.4, 0.6, 5.5, 1.0, causal=True)
    assert causal_lambda_a(chaotic, 4) > 0
    assert causal_lambda_g(chaotic, 4, samples=2**12) == pytest.approx(
        first_position_lambda_g(chaotic, 4), abs=2e-3)


def test_pair_moments_with_unequal_variances():
    """The 2-D rule against gaussian.cross_moments at equal variances, and against erf's closed
    form at unequal ones; pair_moments takes the unequal path when one variance differs."""
    var, cov = np.array([0.5, 2.0, 9.0]), np.array([0.2, -1.5, 8.9])
    for activation in ("tanh", "gelu", "silu"):
        phi, slope = _pair_quadrature(activation, var, var, cov, True)
        expected = cross_moments(activation, var, cov)
        assert np.all(np.abs(phi - expected[0]) <= 1e-11 * var)
        assert np.all(np.abs(slope - expected[1]) <= 1e-11)
    v_1, v_2, c = np.array([0.5, 3.0]), np.array([2.0, 0.7]), np.array([0.6, -1.1])
    phi, slope = _pair_quadrature("erf", v_1, v_2, c, True)
    np.testing.assert_allclose(phi, 2 / np.pi * np.arcsin(2 * c / np.sqrt((1 + 2 * v_1)
                                                                          * (1 + 2 * v_2))),
                               atol=1e-12)
    np.testing.assert_allclose(slope, 4 / np.pi / np.sqrt((1 + 2 * v_1) * (1 + 2 * v_2) - 4 * c**2),
                               atol=1e-12)
    cov_matrix = np.array([[1.0, 0.5, 0.2], [0.5, 2.0, 0.4], [0.2, 0.4, 0.8]])
    phi, slope = pair_moments("tanh", cov_matrix)
    reference = _pair_quadrature("tanh", np.array([1.0]), np.array([2.0]), np.array([0.5]), True)
    assert phi[0, 1] == pytest.approx(reference[0][0], abs=1e-14)
    assert slope[1, 0] == pytest.approx(reference[1][0], abs=1e-14)


def test_trajectory_broadcasts_and_is_deterministic():
    alpha = np.array([0.6, 0.3])
    grid = causal_trajectory(reference_layer(alpha, alpha, 0.6, np.array([1.0, 5.5]),
                                             causal=True), 6, 1.0, 0.0, 3, samples=2**10)
    single = causal_trajectory(reference_layer(0.3, 0.3, 0.6, 5.5, causal=True), 6, 1.0, 0.0, 3,
                               samples=2**10)
    assert grid.C.shape == (4, 2, 6, 6) and grid.log_jac_i.shape == (4, 2, 6)
    np.testing.assert_allclose(grid.C[:, 1], single.C, rtol=1e-12)
    np.testing.assert_allclose(grid.log_jac[:, 1], single.log_jac, rtol=1e-12)
    np.testing.assert_allclose(np.log(np.mean(np.exp(single.log_jac_i), axis=-1)),
                               single.log_jac, atol=1e-12)
    other = causal_trajectory(reference_layer(0.3, 0.3, 0.6, 5.5, causal=True), 6, 1.0, 0.0, 3,
                              samples=2**10, seed=1)
    assert 0 < np.abs(other.rho - single.rho).max() < 1e-2


def test_bad_input():
    layer = reference_layer(0.5, 0.5, 0.6, 2.0, causal=True)
    with pytest.raises(InvalidHyperparameter, match="power of 2"):
        causal_trajectory(layer, 4, 1.0, 0.0, 2, samples=1000)
    with pytest.raises(InvalidHyperparameter, match="n_tokens"):
        causal_trajectory(layer, 1, 1.0, 0.0, 2)
    with pytest.raises(InvalidHyperparameter, match="rho0"):
        causal_trajectory(layer, 4, 1.0, 1.5, 2)
    with pytest.raises(InvalidHyperparameter, match="q0"):
        causal_collapsed_profile(layer, 4, 0.0, 2)
    mixed = Serial((Residual(0.8, 0.6, Serial((SelfAttention(0.6, causal=True),))),
                    Residual(0.8, 0.6, Serial((SelfAttention(0.6),)))))
    with pytest.raises(NotCovered, match="mixing causal and bidirectional"):
        causal_lambda_a(mixed, 4)
    grid = reference_layer(0.3, 0.3, 0.6, np.linspace(5.0, 6.0, 9), causal=True)
    with pytest.raises(NotCovered, match="at most 8"):
        causal_lambda_g(grid, 4)


# --- against simulation -----------------------------------------------------------------------

SETTINGS = SimulationSettings(depth=24, width=512, seeds=(0, 1, 2, 3), n_probes=2, n_tokens=N)
_REFERENCE = Architecture.load("reference")
SIMULATED = {
    # ordered: collapses (causal λ_a = −0.40)
    "reference α=0.6 σ_w=1": _REFERENCE.with_values(causal=True, alpha=0.6, sigma_w=1.0),
    # chaotic: causal λ_a = +0.11, ρ reaches 0.52 at layer 24
    "reference α=0.3 σ_w=5.5": _REFERENCE.with_values(causal=True, alpha=0.3, sigma_w=5.5),
    # chaotic, strong attention: the softmax path adds ~7 to log_jac
    "reference α=0.5 σ_A=2 σ_w=4": _REFERENCE.with_values(causal=True, alpha=0.5, sigma_A=2.0,
                                                          sigma_w=4.0),
    # unit residuals, 4 heads + W_O, GELU, d_ff = 4d: q grows linearly, no fixed point
    "pre-ln": Architecture.load("pre-ln").with_values(causal=True),
}


@lru_cache(maxsize=1)
def _measured() -> dict:
    """Seed means and standard errors of q, ρ, log_jac per layer, each structure's points in
    one batched ensemble (the trajectories ``simulate_points`` reports)."""
    names = list(SIMULATED)
    groups = [names[:3], names[3:]]
    s = SETTINGS
    out = {}
    for group in groups:
        measured = measure_points([SIMULATED[name].layer(s.depth) for name in group],
                                  depth=s.depth, width=s.width, n_tokens=s.n_tokens, q0=s.q0,
                                  rho0=s.rho0, seeds=list(s.seeds), n_probes=s.n_probes)
        for k, name in enumerate(group):
            out[name] = {key: (values[k].mean(0), values[k].std(0, ddof=1) / np.sqrt(len(s.seeds)))
                         for key, values in (("q", measured.q), ("rho", measured.rho),
                                             ("log_jac", measured.log_jac))}
    return out


@pytest.mark.parametrize("name", list(SIMULATED))
def test_causal_trajectory_matches_simulation(name):
    s = SETTINGS
    theory = causal_trajectory(SIMULATED[name].layer(s.depth), s.n_tokens, s.q0, s.rho0, s.depth,
                               samples=2**12)
    measured = _measured()[name]
    (q, q_se), (rho, rho_se), (log_jac, log_jac_se) = (measured[k] for k in ("q", "rho",
                                                                             "log_jac"))
    assert np.all(np.abs(q - theory.q) <= 0.03 * np.maximum(1.0, theory.q) + 3 * q_se)
    assert np.all(np.abs(rho - theory.rho) <= 0.03 + 3 * rho_se)
    assert np.all(np.abs(log_jac - theory.log_jac)
                  <= 0.15 + 0.1 * np.abs(theory.log_jac) + 3 * log_jac_se)
