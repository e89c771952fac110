"""The wide-limit theory against the reference transformer simulated at width d = 512, float64.

Each check compares the mean over seeds with the theory. The allowed gap is a fixed tolerance
("a few hundredths", or the issue's 0.15 + 10 % for log-Jacobians and 0.05 + 10 % for λ_a) plus
three standard errors of the seed mean: with n = 4–16 tokens the attention pattern of a layer
stays random even at infinite width, so single networks scatter around the theory and the seed
average converges at the usual 1/sqrt(seeds) rate.
"""

import numpy as np
import pytest
import torch
from scipy.optimize import brentq

from sigprop.spec import reference_layer
from sigprop.measure import empirical_lambda_a, empirical_lambda_g, measure_trajectory
from sigprop.models import build_network
from sigprop.theory.dynamics import attracting_state, collapsed_norm, lambda_a, trajectory
from sigprop.theory.exponents import compute_exponents

WIDTH = 512
DEPTH = 20
SEEDS = list(range(8))

# (activation, α_A = α_M, σ_A, σ_w, n): both phases, four activations, n = 4 and 16.
POINTS = [
    ("tanh", 0.6, 0.6, 1.0, 16),  # ordered: collapses, λ_a ≈ −0.60
    ("tanh", 0.3, 0.6, 5.0, 16),  # chaotic: λ_a ≈ +0.06, simplex at ρ* ≈ 0.93
    ("tanh", 0.5, 0.6, 2.0, 4),  # ordered, few tokens
    ("tanh", 0.5, 2.0, 4.0, 4),  # chaotic, strong attention: the softmax path adds ~2 to log_jac
    ("erf", 0.3, 0.6, 5.0, 4),  # chaotic, few tokens
    ("relu", 0.5, 0.6, 1.5, 16),  # ordered, λ_g = 0 on the collapsed line (χ_M = q_M)
    ("gelu", 0.5, 0.6, 3.0, 16),  # ordered, large norms
]


def _mean_and_stderr(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return values.mean(0), values.std(0, ddof=1) / np.sqrt(values.shape[0])


@pytest.mark.parametrize("activation, alpha, sigma_A, sigma_w, n", POINTS)
def test_trajectory_matches_simulation(activation, alpha, sigma_A, sigma_w, n):
    layer = reference_layer(alpha, alpha, sigma_A, sigma_w, 0.0, activation)
    theory = trajectory(layer, n, 1.0, 0.0, DEPTH)
    measured = measure_trajectory(
        layer, depth=DEPTH, width=WIDTH, n_tokens=n, q0=1.0, rho0=0.0, seeds=SEEDS, n_probes=2
    )
    q, q_se = _mean_and_stderr(measured.q)
    rho, rho_se = _mean_and_stderr(measured.rho)
    log_jac, log_jac_se = _mean_and_stderr(measured.log_jac)
    assert np.all(np.abs(q - theory.q) <= 0.03 * np.maximum(1.0, theory.q) + 3 * q_se)
    assert np.all(np.abs(rho - theory.rho) <= 0.03 + 3 * rho_se)
    assert np.all(
        np.abs(log_jac - theory.log_jac) <= 0.15 + 0.1 * np.abs(theory.log_jac) + 3 * log_jac_se
    )


@pytest.mark.parametrize("activation, alpha, sigma_A, sigma_w, n", POINTS)
def test_angle_exponent_matches_simulation(activation, alpha, sigma_A, sigma_w, n):
    layer = reference_layer(alpha, alpha, sigma_A, sigma_w, 0.0, activation)
    measured = empirical_lambda_a(
        layer, depth=40, width=WIDTH, n_tokens=n, seeds=SEEDS[:4], burn_in=10
    )
    predicted = float(lambda_a(layer, n))
    assert abs(measured.mean - predicted) <= 0.05 + 0.1 * abs(predicted) + 3 * measured.stderr


def _irregular_tokens(n: int, width: int, seed: int) -> torch.Tensor:
    """Tokens far from a regular simplex: half of them nearly parallel, the rest orthogonal."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, width, generator=g, dtype=torch.float64)
    x[: n // 2] = x[0] + 0.3 * x[: n // 2]
    return x * (width / x.square().sum(1, keepdim=True)).sqrt()


def _cosines(x: torch.Tensor) -> np.ndarray:
    unit = x / x.norm(dim=1, keepdim=True)
    cos = (unit @ unit.T).numpy()
    return cos[~np.eye(len(cos), dtype=bool)]


def test_chaotic_attractor_is_a_regular_simplex():
    """From an irregular start the tokens reach equal pairwise angles at the predicted ρ*."""
    layer = reference_layer(0.4, 0.4, 0.6, 6.0)
    predicted = attracting_state(layer, 16)
    assert 0.5 < predicted.rho < 0.99
    start = _irregular_tokens(16, WIDTH, seed=7)
    assert np.std(_cosines(start)) > 0.3
    finals = []
    for seed in range(4):
        x = start.clone()
        with torch.no_grad():
            for block in build_network(layer, 80, WIDTH, seed=seed).blocks:
                x = block(x)
        finals.append(_cosines(x))
    finals = np.array(finals)
    assert abs(finals.mean() - predicted.rho) < 0.03
    # The spread of pairwise angles is small against the angle itself: 1 − cos is the same
    # for every pair up to finite-size fluctuations.
    assert np.all(finals.std(axis=1) < 0.25 * (1 - finals.mean(axis=1)))


def test_ordered_attractor_is_the_collapsed_line():
    layer = reference_layer(0.6, 0.6, 0.6, 1.0)
    assert attracting_state(layer, 16).rho == 1.0
    x = _irregular_tokens(16, WIDTH, seed=3)
    with torch.no_grad():
        for block in build_network(layer, 60, WIDTH, seed=0).blocks:
            x = block(x)
    assert np.all(_cosines(x) > 1 - 1e-4)


def test_gradients_explode_at_the_edge_of_chaos():
    """The paper expects λ_a = 0 and λ_g = 0 to cross; the derivation says they
    cannot (docs/theory.md): at the edge of chaos the attractor is the collapsed line, where a
    tangent shared by all tokens passes uniform attention's value path while token differences
    are averaged away, so λ_g − λ_a = log(1 + α_A² / ((1 − α_A²) q*)) > 0. The simulation, at
    the σ_w where the theory's λ_a vanishes, must show λ_a ≈ 0 and λ_g at that positive value.

    The common mode carries only 1/n of the initial tangent, so it dominates log_jac only after
    some layers: λ_g is measured from layer 30 on (at layers 5–30 the slope is still ~0.26)."""
    alpha, sigma_A, n = 0.5, 0.6, 16
    edge = brentq(lambda w: float(lambda_a(reference_layer(alpha, alpha, sigma_A, w), n)), 1.0, 8.0,
                  xtol=1e-12)
    layer = reference_layer(alpha, alpha, sigma_A, edge)
    q_star = float(collapsed_norm(layer, n))
    predicted = compute_exponents(layer, n)
    gap = np.log(1 + alpha**2 / ((1 - alpha**2) * q_star))
    assert predicted.lambda_g == pytest.approx(gap, rel=1e-6) and gap > 0.3
    seeds = SEEDS[:4]
    measured_a = empirical_lambda_a(layer, depth=40, width=WIDTH, n_tokens=n, seeds=seeds, burn_in=10)
    measured_g = empirical_lambda_g(layer, depth=60, width=WIDTH, n_tokens=n, seeds=seeds,
                                    burn_in=30, q0=q_star, rho0=0.999)
    assert abs(measured_a.mean) <= 0.05 + 3 * measured_a.stderr
    assert abs(measured_g.mean - gap) <= 0.05 + 0.1 * gap + 3 * measured_g.stderr
    assert measured_g.mean - measured_a.mean > 0.2
