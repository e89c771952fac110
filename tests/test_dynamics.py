"""The layer map, its fixed points and exponents, against the closed forms of docs/theory.md §1–§4."""

import numpy as np
import pytest

from sigprop.spec import reference_layer
from sigprop.theory.dynamics import (
    attracting_state,
    collapsed_norm,
    lambda_a,
    norm_fixed_point,
    tangent_growth,
    trajectory,
)
from sigprop.theory.gaussian import diagonal_moments

GRID_ALPHA = np.linspace(0.05, 0.95, 7)[:, None]
GRID_SIGMA_W = np.linspace(0.3, 6.0, 6)[None, :]


def test_attention_alone_collapses_tokens_everywhere():
    """α_M = 0: at every (α_A, σ_A) one layer raises ρ for every ρ < 1, so the only attractor is
    the collapsed line ρ = 1, and trajectories from orthogonal tokens climb towards it."""
    alpha_A = np.linspace(0.1, 1.0, 10)[:, None, None]
    sigma_A = np.linspace(0.2, 4.0, 8)[None, :, None]
    rho = np.linspace(0.0, 0.999, 60)[None, None, :]
    layer = reference_layer(alpha_A, 0.0, sigma_A, 1.0)
    one_layer = trajectory(layer, 16, 1.0, rho, 1)
    assert np.all(one_layer.rho[1] > rho)
    flat = reference_layer(alpha_A[..., 0], 0.0, sigma_A[..., 0], 1.0)
    assert np.all(attracting_state(flat, 16, rho0=0.0).rho == 1.0)
    assert np.all(lambda_a(flat, 16) < 0)
    climb = trajectory(flat, 16, 1.0, 0.0, 100).rho
    rising = np.diff(climb, axis=0)
    assert np.all((rising > 0) | (climb[1:] > 1 - 1e-12))


def test_angle_exponent_matches_theory_formula():
    """λ_a = log(1 − α_A²) + log(1 − α_M² + α_M² χ_M / q_mid*),  q_mid* = (1 − α_A²) q* + α_A²."""
    alpha_A, alpha_M, sigma_w = GRID_ALPHA, 0.4, GRID_SIGMA_W
    layer = reference_layer(alpha_A, alpha_M, 0.6, sigma_w)
    q_M, slope = diagonal_moments("tanh", sigma_w**2)
    chi_M = sigma_w**2 * slope
    q_star = ((1 - alpha_M**2) * alpha_A**2 + alpha_M**2 * q_M) / (
        1 - (1 - alpha_M**2) * (1 - alpha_A**2)
    )
    q_mid = (1 - alpha_A**2) * q_star + alpha_A**2
    expected = np.log(1 - alpha_A**2) + np.log(1 - alpha_M**2 + alpha_M**2 * chi_M / q_mid)
    assert np.allclose(collapsed_norm(layer, 16), q_star, rtol=1e-12)
    assert np.allclose(lambda_a(layer, 16), expected, rtol=1e-10, atol=1e-12)


def test_gradient_exponent_at_collapse_has_closed_form():
    """At ρ = 1 the common mode of the tangent grows by (1 − α_A² + α_A²/q*)·(MLP factor), the
    difference mode by e^{λ_a}; λ_g is the larger."""
    layer = reference_layer(0.5, 0.5, 0.6, 1.5)
    q_star = collapsed_norm(layer, 16)
    q_M, slope = diagonal_moments("tanh", 1.5**2)
    q_mid = 0.75 * q_star + 0.25
    mlp = 0.75 + 0.25 * 1.5**2 * slope / q_mid
    common = (0.75 + 0.25 / q_star) * mlp
    assert tangent_growth(layer, 16, q_star, np.ones(())) == pytest.approx(np.log(common), rel=1e-10)
    assert np.log(common) > lambda_a(layer, 16)


def test_chaotic_phase_has_an_interior_fixed_point():
    layer = reference_layer(0.4, 0.4, 0.6, 6.0)
    assert lambda_a(layer, 16) > 0
    state = attracting_state(layer, 16)
    assert 0.0 < state.rho < 1.0
    # It is a fixed point of the full map and attracts the trajectory.
    far = trajectory(layer, 16, 1.0, 0.0, 400)
    assert far.rho[-1] == pytest.approx(state.rho, abs=1e-6)
    assert far.q[-1] == pytest.approx(state.q, rel=1e-6)
    # λ_g is the asymptotic slope of the predicted log-Jacobian.
    slope = (far.log_jac[-1] - far.log_jac[-101]) / 100
    assert slope == pytest.approx(state.lambda_g, abs=1e-6)


def test_ordered_phase_gradient_exponent_is_the_trajectory_slope():
    layer = reference_layer(0.6, 0.6, 0.6, 1.0)
    state = attracting_state(layer, 16)
    assert state.rho == 1.0
    far = trajectory(layer, 16, 1.0, 0.0, 300)
    assert (far.log_jac[-1] - far.log_jac[-51]) / 50 == pytest.approx(state.lambda_g, abs=1e-6)


def test_norm_fixed_point_is_fixed():
    layer = reference_layer(GRID_ALPHA, GRID_ALPHA, 0.6, GRID_SIGMA_W, 0.3, "gelu")
    rho = np.full(np.broadcast_shapes(GRID_ALPHA.shape, GRID_SIGMA_W.shape), 0.37)
    q = norm_fixed_point(layer, 8, rho)
    one_layer = trajectory(layer, 8, q, rho, 1)
    assert np.allclose(one_layer.q[1], q, rtol=1e-11)


def test_identity_network():
    layer = reference_layer(0.0, 0.0, 0.6, 2.0)
    t = trajectory(layer, 16, 1.7, 0.3, 10)
    assert np.allclose(t.q, 1.7) and np.allclose(t.rho, 0.3) and np.allclose(t.log_jac, 0.0)
    assert lambda_a(layer, 16) == pytest.approx(0.0, abs=1e-14)


def test_full_attention_erases_differences():
    """α_A = 1 removes the skip path; uniform attention at collapse erases token differences."""
    assert lambda_a(reference_layer(1.0, 0.5, 0.6, 2.0), 16) == -np.inf


def test_vectorized_equals_pointwise():
    layer = reference_layer(GRID_ALPHA, GRID_ALPHA, 0.6, GRID_SIGMA_W)
    grid = attracting_state(layer, 16)
    i, j = 5, 4
    single = attracting_state(
        reference_layer(GRID_ALPHA[i, 0], GRID_ALPHA[i, 0], 0.6, GRID_SIGMA_W[0, j]), 16
    )
    assert grid.rho[i, j] == pytest.approx(single.rho, abs=1e-12)
    assert grid.lambda_g[i, j] == pytest.approx(single.lambda_g, abs=1e-12)
