"""The wide-limit theory of every block component against random networks (d = 512, n = 16).

Each case simulates 4 seeds of a 20-layer network and compares the seed mean with the theory,
with the tolerances of test_theory_vs_simulation.py: q within 0.03·max(1, q), ρ within 0.03,
log_jac within 0.15 + 10 %, λ_a within 0.05 + 10 %, each plus three standard errors of the seed
mean. The exponents are compared over the layers they are measured on (λ_a on layers L..2L of a
collapsed network from q = 1, λ_g after the first half), because blocks without a norm fixed
point have no asymptotic exponents and the others have not reached them by layer L.
"""

import numpy as np
import pytest

from sigprop.api.simulate import SimulationSettings, simulate_points
from sigprop.spec import Architecture

SETTINGS = SimulationSettings(depth=20, width=512, seeds=(0, 1, 2, 3), n_probes=2, n_tokens=16)

CASES = {
    # component under test: the block
    "pre-LayerNorm, unit residuals, 4 heads + W_O, GELU, d_ff = 4d": Architecture.load("pre-ln"),
    "post-LayerNorm, unit residuals": Architecture.load("post-ln"),
    "post-RMSNorm": Architecture.load("post-ln").with_values(norm="rms", heads=1),
    "GPT-2 branch scale 1/sqrt(2L)": Architecture.load("gpt2"),
    "DeepNorm-style skip a = 2 before a post-norm": Architecture.load("post-ln").with_values(
        skip=2.0, branch=0.5),
    "DyT pre-norm, κ = 0.5": Architecture.load("pre-ln").with_values(norm="dyt", kappa=0.5),
    "no norm, α-residuals": Architecture.load().with_values(norm="none", alpha=0.5, sigma_w=1.5),
    "gated MLP (SwiGLU), pre-RMSNorm": Architecture.load("llama"),
    "σ_2, MLP bias, 8 heads + W_O, d_ff = 2d": Architecture.load().with_values(
        sigma_2=1.7, sigma_w=1.2, sigma_b=0.3, heads=8, out_proj=True, ff_ratio=2.0),
    "tied readout W_2 ~ N(0, σ_w²/d_ff)": Architecture.load().with_values(
        tied_readout=True, sigma_w=1.5, sigma_b=0.5),
    "residual MLP, pre-LayerNorm, no attention": Architecture.load("resmlp"),
}


def _within(measured: np.ndarray, theory: np.ndarray, tolerance: np.ndarray) -> bool:
    return bool(np.all(np.abs(measured - theory) <= tolerance))


@pytest.mark.parametrize("name", list(CASES))
def test_block_matches_simulation(name):
    report = simulate_points([CASES[name]], SETTINGS)
    t, m, theory = report.table, report.measured[0], report.theory[0]
    assert _within(t.q_mean, t.q_theory, 0.03 * np.maximum(1.0, t.q_theory) + 3 * t.q_se)
    assert _within(t.rho_mean, t.rho_theory, 0.03 + 3 * t.rho_se)
    assert _within(t.log_jac_mean, t.log_jac_theory,
                   0.15 + 0.1 * np.abs(t.log_jac_theory) + 3 * t.log_jac_se)
    for exponent, estimate in (("lambda_a", m.lambda_a), ("lambda_g", m.lambda_g)):
        predicted = theory[f"{exponent}_window"]
        assert abs(estimate.mean - predicted) <= 0.05 + 0.1 * abs(predicted) + 3 * estimate.stderr, (
            exponent, estimate.mean, predicted)


def test_heads_do_not_move_the_map():
    """One theory for 1 and 8 heads; both simulations follow it (the scatter between seeds is
    what the heads change: benchmarks/heads_finite_width.py)."""
    one, eight = (Architecture.load().with_values(heads=h, sigma_A=2.0) for h in (1, 8))
    report = simulate_points([one, eight], SETTINGS)
    table = report.table
    first, second = (table[table.point == p] for p in (0, 1))
    for key in ("q", "rho", "log_jac"):
        np.testing.assert_array_equal(first[f"{key}_theory"].to_numpy(),
                                      second[f"{key}_theory"].to_numpy())
    for rows in (first, second):
        assert _within(rows.log_jac_mean, rows.log_jac_theory,
                       0.15 + 0.1 * np.abs(rows.log_jac_theory) + 3 * rows.log_jac_se)
        assert _within(rows.rho_mean, rows.rho_theory, 0.03 + 3 * rows.rho_se)
