"""The plain deep MLP (``--arch mlp``, Poole et al. 2016) and the residual MLP (``--arch resmlp``):
the edge of chaos against independent quadrature and closed-form kernels, the ReLU critical
point σ_w² = 2, the layer map against the arc-cosine and arcsine kernels, and the theory against
random networks."""

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import integrate, optimize

import sigprop
from sigprop.api.simulate import SimulationSettings, simulate_points
from sigprop.spec import Architecture, Dense, SelfAttention
from sigprop.spec.components import find
from sigprop.theory.maps import Geometry, Tangent, propagate


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sigprop", *args], capture_output=True,
                          text=True, timeout=600)


def gaussian_mean(f, var: float) -> float:
    """E f(h), h ~ N(0, var), by adaptive quadrature (independent of sigprop's rules)."""
    s = np.sqrt(var)
    value, _ = integrate.quad(lambda z: f(s * z) * np.exp(-z * z / 2) / np.sqrt(2 * np.pi),
                              -np.inf, np.inf, epsabs=1e-13, epsrel=1e-12)
    return value


def tanh_chi_1(sigma_w: float, sigma_b: float) -> float:
    """Poole et al.'s χ_1 = σ_w² E tanh'(h)² at the norm fixed point q* of
    q = σ_w² E tanh(h)² + σ_b²."""
    def residual(q):
        return sigma_w**2 * gaussian_mean(lambda h: np.tanh(h) ** 2, q) + sigma_b**2 - q
    q_star = optimize.brentq(residual, 1e-12, 50.0, xtol=1e-14) if sigma_b > 0 else 0.0
    if q_star == 0.0:
        return sigma_w**2
    return sigma_w**2 * gaussian_mean(lambda h: (1 - np.tanh(h) ** 2) ** 2, q_star)


def test_cli_lists_the_tanh_edge_of_chaos_of_poole_et_al():
    out = run("critical", "--arch", "mlp", "--x", "sigma-b", "--y", "sigma-w", "--points", "5",
              "--json")
    assert out.returncode == 0, out.stderr
    edge = json.loads(out.stdout)["lambda_a_zero"]
    assert [point["x"] for point in edge] == pytest.approx(np.linspace(0.0, 1.0, 5))
    assert edge[0]["y"] == pytest.approx(1.0, abs=1e-6)   # σ_b = 0: σ_w = 1
    for point in edge[1:]:
        assert tanh_chi_1(point["y"], point["x"]) == pytest.approx(1.0, abs=1e-7), point
    # The curve rises with the bias: a larger σ_b needs larger weights to reach chaos.
    assert np.all(np.diff([point["y"] for point in edge]) > 0.05)


def test_erf_edge_of_chaos_from_closed_forms():
    """E erf(h)² = (2/π) arcsin(2q/(1 + 2q)) and E erf'(h)² = (4/π)/sqrt(1 + 4q)."""
    report = sigprop.critical("sigma-b", "sigma-w", "mlp", activation="erf", points=4,
                              x_range=(0.1, 1.0))
    edge = report.to_json()["lambda_a_zero"]
    assert len(edge) == 4
    for point in edge:
        sigma_b, sigma_w = point["x"], point["y"]
        q_star = optimize.brentq(
            lambda q: sigma_w**2 * 2 / np.pi * np.arcsin(2 * q / (1 + 2 * q)) + sigma_b**2 - q,
            1e-9, 100.0, xtol=1e-15)
        assert sigma_w**2 * 4 / np.pi / np.sqrt(1 + 4 * q_star) == pytest.approx(1.0, abs=1e-8)


def test_relu_critical_point_is_sigma_w_squared_two():
    """ReLU with a bias: q* = σ_b²/(1 − σ_w²/2) exists only for σ_w² < 2, where
    λ_a = λ_g = log(σ_w²/2) < 0; without a bias the angles are marginal at any depth
    (λ_a^(L) = 0: the arc-cosine map does not depend on σ_w) and the gradients grow by
    exactly σ_w²/2 per layer, so σ_w² = 2 (He initialization) is the critical point."""
    for sigma_w in (0.8, 1.2, 1.4):
        result = sigprop.exponents("mlp", activation="relu", sigma_w=sigma_w,
                                   sigma_b=0.3).to_json()
        expected = np.log(sigma_w**2 / 2)
        assert result["lambda_a"] == pytest.approx(expected, abs=1e-9)
        assert result["lambda_g"] == pytest.approx(expected, abs=1e-9)
        assert result["q_star"] == pytest.approx(0.09 / (1 - sigma_w**2 / 2), rel=1e-9)
    with pytest.raises(sigprop.InvalidHyperparameter, match="no norm fixed point"):
        sigprop.exponents("mlp", activation="relu", sigma_w=1.5, sigma_b=0.3)
    depth = 32
    for sigma_w in (1.0, 1.6):
        finite = sigprop.exponents("mlp", activation="relu", sigma_w=sigma_w, sigma_b=0.0,
                                   depth=depth).to_json()["finite_depth"]
        assert finite["lambda_g"] == pytest.approx(np.log(sigma_w**2 / 2), abs=1e-9)
        assert finite["lambda_a"] == pytest.approx(0.0, abs=1e-9)
    out = run("critical", "--arch", "mlp", "--activation", "relu", "--sigma-b", "0",
              "--x", "none", "--y", "sigma-w", "--depth", str(depth), "--json")
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert [p["y"] for p in found["lambda_g_zero"]] == pytest.approx([np.sqrt(2)], abs=1e-8)
    assert found["lambda_a_zero"] == []   # marginal everywhere: no edge to report


@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_dense_layer_map_equals_the_closed_form_kernels(activation):
    sigma_w, sigma_b = 1.3, 0.4
    q = np.array([0.5, 1.0, 2.5, 2.5])
    rho = np.array([0.0, 0.3, -0.4, 0.95])
    p = q * rho
    layer = Dense(sigma_w, sigma_b, activation)
    geometry, tangent = propagate(layer, Geometry(q, p), Tangent(np.ones(4), np.ones(4)), 16)
    if activation == "relu":
        theta = np.arccos(rho)
        phi2, cross = q / 2, q * (np.sin(theta) + (np.pi - theta) * np.cos(theta)) / (2 * np.pi)
        slope2, slope_cross = 0.5, (np.pi - theta) / (2 * np.pi)
    else:
        phi2 = 2 / np.pi * np.arcsin(2 * q / (1 + 2 * q))
        cross = 2 / np.pi * np.arcsin(2 * p / (1 + 2 * q))
        slope2 = 4 / np.pi / np.sqrt((1 + 2 * q) ** 2 - 4 * q**2)
        slope_cross = 4 / np.pi / np.sqrt((1 + 2 * q) ** 2 - 4 * p**2)
    np.testing.assert_allclose(geometry.q, sigma_w**2 * phi2 + sigma_b**2, rtol=1e-12)
    np.testing.assert_allclose(geometry.p, sigma_w**2 * cross + sigma_b**2, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(tangent.g_d, sigma_w**2 * slope2, rtol=1e-12)
    np.testing.assert_allclose(tangent.g_o, sigma_w**2 * slope_cross, rtol=1e-12)


def test_presets_are_the_networks_they_name():
    mlp, resmlp = Architecture.load("mlp"), Architecture.load("resmlp")
    assert mlp.layer().components == (Dense(1.5, 0.3, "tanh"),)
    assert set(mlp.scalars()) == {"network", "sigma_w", "sigma_b", "activation"}
    assert find(resmlp.layer(), SelfAttention) == [] and "sigma_A" not in resmlp.scalars()
    assert "no attention" in resmlp.describe()
    assert sigprop.exponents("mlp", sigma_w=0.9, sigma_b=0.1).verdict().startswith(
        "Ordered: differences between inputs shrink")


# Width 1024: the plain MLP's finite-width bias of ρ is O(1/d) (≈ 0.02 at d = 512, ≈ 0.005 at
# d = 2048 after 20 tanh layers, 8 seeds), larger than in the normalized blocks; at d = 512 the
# tanh case exceeds the shared tolerance (0.044 against 0.03 + 3 SE at layer 20, 4 seeds).
SETTINGS = SimulationSettings(depth=20, width=1024, seeds=(0, 1, 2, 3), n_probes=2,
                              n_tokens=16)


@pytest.mark.parametrize("values", [
    {},                                                         # tanh, chaotic side
    {"activation": "relu", "sigma_w": 1.3, "sigma_b": 0.2},     # ordered
    {"activation": "erf", "sigma_w": 2.0, "sigma_b": 0.1},      # chaotic
], ids=["tanh", "relu", "erf"])
def test_plain_mlp_matches_simulation(values):
    """Seed means against the theory with test_architectures_vs_simulation.py's tolerances."""
    report = simulate_points([Architecture.load("mlp").with_values(**values)], SETTINGS)
    t, m, theory = report.table, report.measured[0], report.theory[0]
    assert np.all(np.abs(t.q_mean - t.q_theory)
                  <= 0.03 * np.maximum(1.0, t.q_theory) + 3 * t.q_se)
    assert np.all(np.abs(t.rho_mean - t.rho_theory) <= 0.03 + 3 * t.rho_se)
    assert np.all(np.abs(t.log_jac_mean - t.log_jac_theory)
                  <= 0.15 + 0.1 * np.abs(t.log_jac_theory) + 3 * t.log_jac_se)
    for exponent, estimate in (("lambda_a", m.lambda_a), ("lambda_g", m.lambda_g)):
        predicted = theory[f"{exponent}_window"]
        assert abs(estimate.mean - predicted) <= 0.05 + 0.1 * abs(predicted) + 3 * estimate.stderr


def test_phase_diagram_draws_the_mlp_plane(tmp_path):
    out = run("phase-diagram", "--arch", "mlp", "--x", "sigma-b", "--y", "sigma-w",
              "--resolution", "8", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    import pandas as pd

    grid = pd.read_parquet(tmp_path / "phase_diagram.parquet")
    assert (tmp_path / "phase_diagram.png").stat().st_size > 10_000
    assert grid["sigma-w"].min() == pytest.approx(0.5) and grid["sigma-b"].max() == pytest.approx(1)
    # Below the edge ordered, above chaotic, and λ_g = λ_a (inputs never interact).
    assert set(grid.loc[grid["sigma-w"] < 0.9, "phase"]) == {"ordered"}
    assert set(grid.loc[grid["sigma-w"] > 2.1, "phase"]) == {"chaotic"}
    np.testing.assert_allclose(grid["lambda_g"], grid["lambda_a"], atol=1e-9)
