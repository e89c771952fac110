"""Depth without a fixed point: Pre-LN grows polynomially, DyT faster (docs/theory.md §6).

DeepScaleLM (Kedia et al. 2024) finds that in Pre-LN transformers the forward variance grows
linearly with depth and the gradients polynomially; Alekseev (2026) predicts a stretched
exponential for DyT. The theory is checked against simulation to 100 layers (width 512, the
tolerances of test_theory_vs_simulation.py) and then read at 1000 layers.
"""

import numpy as np
import pytest

import sigprop
from sigprop.measure import measure_points
from sigprop.spec import Architecture

PRE_LN = Architecture.load("pre-ln")
DYT = PRE_LN.with_values(norm="dyt", kappa=0.5)


@pytest.mark.parametrize("arch", [PRE_LN, DYT], ids=["pre-ln", "dyt"])
def test_hundred_layers_match_simulation(arch):
    depth = 100
    theory = sigprop.trajectory(arch, depth=depth)
    measured = measure_points([arch.layer(depth)], depth=depth, width=512, n_tokens=16, q0=1.0,
                              rho0=0.0, seeds=[0, 1, 2, 3], n_probes=2)
    for key, tolerance in (("q", lambda t: 0.03 * np.maximum(1.0, t)),
                           ("rho", lambda t: 0.03),
                           ("log_jac", lambda t: 0.15 + 0.1 * np.abs(t))):
        values = getattr(measured, key)[0]
        mean, se = values.mean(0), values.std(0, ddof=1) / 2
        predicted = getattr(theory, key)
        assert np.all(np.abs(mean - predicted) <= tolerance(predicted) + 3 * se), key


@pytest.fixture(scope="module")
def thousand_layers():
    return {name: sigprop.trajectory(arch, depth=1000) for name, arch in
            (("pre-ln", PRE_LN), ("dyt", DYT))}


def _power(log_jac: np.ndarray, depth: int) -> float:
    """Local power-law exponent d log‖J‖² / d log L between L/2 and L."""
    return float((log_jac[depth] - log_jac[depth // 2]) / np.log(2))


def test_pre_ln_norm_grows_linearly_and_jacobian_polynomially(thousand_layers):
    """q_L/L settles, and ‖J_L‖² ∝ L^p: p is the same at L = 250, 500, 1000 (an exponential
    would make p grow like L), so the per-layer rate falls like 1/L."""
    path = thousand_layers["pre-ln"]
    slopes = [path.q[L] / L for L in (250, 500, 1000)]
    assert max(slopes) / min(slopes) < 1.05
    powers = [_power(path.log_jac, L) for L in (250, 500, 1000)]
    assert 0.5 < powers[0] and max(powers) / min(powers) < 1.02


def test_dyt_jacobian_grows_faster_than_any_power(thousand_layers):
    """Under DyT the local power-law exponent keeps growing (by 45 % from L = 250 to 1000; a
    power law keeps it fixed, exp(c sqrt(L)) doubles it), while the per-layer rate still falls
    (an exponential keeps it fixed): growth between a power law and an exponential."""
    path = thousand_layers["dyt"]
    powers = [_power(path.log_jac, L) for L in (250, 1000)]
    assert powers[1] > 1.3 * powers[0]
    rates = [(path.log_jac[L] - path.log_jac[L // 2]) / (L / 2) for L in (250, 1000)]
    assert rates[1] < 0.5 * rates[0]
    pre_ln = thousand_layers["pre-ln"]
    assert path.log_jac[1000] > 1.5 * pre_ln.log_jac[1000]
