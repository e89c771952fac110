"""Finite-depth exponents of nearly collapsed inputs against simulated depth-16 networks.

λ_a^(L) = (1/L) log((1 − ρ_L)/(1 − ρ_0)) and λ_g^(L) = (1/L) log(‖J_L‖_F²/(n d)) from
(q0, ρ0) = (1, 0.99), L = 16, on the slice the reproduction trains (σ_b = 1): at the
finite-depth crossing that ``sigprop.critical`` reports, and at an ordered and a chaotic point.
Tolerances as in test_theory_vs_simulation for log-ratios (0.15 + 10 % + three standard errors
of the seed mean, on L·λ).
"""

import numpy as np
import pytest

import sigprop
from sigprop.measure import measure_points
from sigprop.theory.regimes import EDGE

DEPTH, WIDTH, SEEDS, RHO0 = 16, 512, list(range(4)), 0.99
SLICE = dict(sigma_b=1.0)


@pytest.fixture(scope="module")
def crossing():
    report = sigprop.critical("alpha", "sigma-w", x_range=(0.02, 0.95), y_range=(0.3, 6.0),
                              points=24, depth=DEPTH, rho0=RHO0, **SLICE).to_json()
    assert report["crossings"], "the finite-depth zero curves cross on this slice"
    return report


@pytest.fixture(scope="module")
def measured(crossing):
    point = crossing["crossings"][0]
    points = [(point["x"], point["y"]), (0.4, 1.75), (0.4, 5.5)]
    archs = [sigprop.Architecture.load("reference").with_values(alpha=a, sigma_w=w, **SLICE)
             for a, w in points]
    sim = measure_points([arch.layer(DEPTH) for arch in archs], depth=DEPTH, width=WIDTH,
                         n_tokens=16, q0=1.0, rho0=RHO0, seeds=SEEDS, n_probes=2)
    depth_a = np.log((1.0 - sim.rho[:, :, -1]) / (1.0 - RHO0))  # (points, seeds)
    depth_g = sim.log_jac[:, :, -1]
    theory = [sigprop.exponents(arch, depth=DEPTH, rho0=RHO0).to_json() for arch in archs]
    return points, depth_a, depth_g, theory


def _mean_se(values: np.ndarray) -> tuple[float, float]:
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(values.size))


@pytest.mark.parametrize("index", [0, 1, 2], ids=["crossing", "ordered", "chaotic"])
def test_finite_depth_exponents_match_simulation(measured, index):
    _, depth_a, depth_g, theory = measured
    for values, key in ((depth_a[index], "lambda_a_depth"), (depth_g[index], "lambda_g_depth")):
        mean, se = _mean_se(values)
        predicted = DEPTH * theory[index][key]
        assert abs(mean - predicted) <= 0.15 + 0.1 * abs(predicted) + 3 * se, (key, mean, predicted)


def test_simulated_networks_are_critical_at_the_reported_crossing(measured):
    """At the crossing both measured L·λ are within the near-critical band; the off-critical
    points are not (tokens collapse at the ordered point, gradients explode at the chaotic)."""
    _, depth_a, depth_g, _ = measured
    for values in (depth_a[0], depth_g[0]):
        mean, se = _mean_se(values)
        assert abs(mean) <= EDGE + 3 * se
    assert depth_a[1].mean() < -EDGE
    assert depth_g[2].mean() > EDGE


def test_near_critical_segment_is_where_both_exponents_are_small(crossing):
    """Points of the reported segment have |L·λ| < 0.5 for both exponents when recomputed;
    points of the λ_a = 0 curve just beyond it do not."""
    segment = crossing["near_critical"][0]
    edge = [row for row in crossing["lambda_a_zero"] if row["branch"] == segment["branch"]]
    inside = [r for r in edge if segment["x_low"] <= r["x"] <= segment["x_high"]]
    beyond = [r for r in edge if r["x"] > segment["x_high"]][:1]
    assert inside and beyond

    def depth_scaled(row):
        report = sigprop.exponents(alpha=row["x"], sigma_w=row["y"], depth=DEPTH, rho0=RHO0,
                                   **SLICE).to_json()
        return DEPTH * report["lambda_a_depth"], DEPTH * report["lambda_g_depth"]

    for row in (inside[0], inside[-1]):
        assert all(abs(v) < EDGE for v in depth_scaled(row))
    assert abs(depth_scaled(beyond[0])[1]) >= EDGE


def test_rho0_one_is_the_limit_of_nearly_collapsed_inputs():
    """Both exponents from ρ0 → 1 (linearized, the default) are the limit of the trajectory's
    own; from ρ0 far from 1 they differ."""
    at = dict(alpha=0.3, sigma_w=3.0, depth=DEPTH, **SLICE)
    limit = sigprop.exponents(**at).to_json()
    near = sigprop.exponents(rho0=1 - 1e-6, **at).to_json()
    far = sigprop.exponents(rho0=0.5, **at).to_json()
    for key in ("lambda_a_depth", "lambda_g_depth"):
        assert abs(near[key] - limit[key]) < 1e-4
        assert abs(far[key] - limit[key]) > 1e-3


def test_command_line_reports_both_definitions_and_the_segment():
    import json

    from typer.testing import CliRunner

    from sigprop.cli import app

    runner = CliRunner()
    out = runner.invoke(app, ["exponents", "--depth", "16", "--q0", "1", "--rho0", "0.99",
                              "--json"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert result["lambda_a"] is not None  # the asymptotic values stay
    assert result["lambda_a_depth"] == result["finite_depth"]["lambda_a"]
    assert result["lambda_g_depth"] == result["finite_depth"]["lambda_g"]
    out = runner.invoke(app, ["critical", "--x", "alpha", "--y", "sigma-w", "--depth", "16",
                              "--q0", "1", "--rho0", "0.99", "--sigma-b", "1", "--points", "12",
                              "--json"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert {"x", "y", "branch"} <= set(result["crossings"][0])
    assert result["near_critical"] and result["rho0"] == 0.99
