"""Critical-point solvers on fields with known zeros, and on the reference model."""

import numpy as np
import pytest

from sigprop.theory.slices import Setting, critical_set, field
from sigprop.spec import Architecture
from sigprop.theory.zero_curves import intersections, zero_curve
from sigprop.theory.dynamics import collapsed_norm
from sigprop.theory.roots import bracketed_roots


def test_bracketed_roots_are_accurate():
    slopes = np.array([1.0, 2.0, 3.0])
    g = lambda x, at: np.cos(x) - x * slopes[at]  # noqa: E731
    roots = bracketed_roots(g, np.zeros(3), np.full(3, 1.5))
    assert np.allclose(g(roots, np.arange(3)), 0.0, atol=1e-12)


def test_zero_curve_follows_a_parabola():
    x = np.linspace(-1, 1, 9)
    curve = zero_curve(lambda x, y: y - x**2, x, (-0.5, 1.5))
    assert np.allclose(curve.x, x) and np.allclose(curve.y, x**2, atol=1e-10)


def test_zero_curve_finds_every_branch_and_skips_identically_zero_rows():
    f = lambda x, y: np.where(x == 0, 0.0, (y - 0.3) * (y - 0.7))  # noqa: E731
    curve = zero_curve(f, np.array([0.0, 1.0]), (0.0, 1.0))
    assert np.all(curve.x == 1.0)
    assert np.allclose(np.sort(curve.y), [0.3, 0.7]) and sorted(curve.branch) == [0, 1]


def test_intersection_of_two_lines():
    found = intersections(lambda x, y: y - x, lambda x, y: y + 2 * x - 1, (0, 1), (0, 1))
    assert found.x == pytest.approx([1 / 3], abs=1e-8)
    assert found.y == pytest.approx([1 / 3], abs=1e-8)


def test_edge_of_chaos_of_the_reference_model():
    point = Architecture.load().with_values(sigma_A=0.6)
    found = critical_set(point, Setting(), "alpha", (0.05, 0.6), "sigma-w", (1.0, 6.0),
                         x_points=6)
    assert found.lambda_a_zero.x.size == 6
    f_a = field(point, Setting(), "lambda_a", "alpha", "sigma-w")
    assert np.all(np.abs(f_a(found.lambda_a_zero.x, found.lambda_a_zero.y)) < 1e-9)


def test_no_crossing_where_theory_forbids_one():
    """On the edge of chaos the attractor is the collapsed line, where λ_g − λ_a =
    log(1 + α_A² / ((1 − α_A²) q*)) > 0 (common versus difference mode): the λ_g = 0 curve,
    which exists in the (σ_w, σ_b) plane, cannot meet λ_a = 0."""
    point = Architecture.load().with_values(alpha_A=0.5, alpha_M=0.5)
    found = critical_set(point, Setting(), "sigma-w", (0.2, 5.0), "sigma-b", (0.0, 2.0),
                         x_points=10)
    assert found.lambda_a_zero.x.size > 0 and found.lambda_g_zero.x.size > 0
    assert found.crossings.x.size == 0
    closest = found.closest
    at = point.with_values(sigma_w=closest["x"], sigma_b=closest["y"])
    q_star = collapsed_norm(at.layer(), 16)
    assert closest["lambda_g"] == pytest.approx(np.log(1 + 0.25 / (0.75 * q_star)), abs=1e-6)


def test_grid_bands_on_threads_equal_one_batch_and_do_not_depend_on_the_cores(monkeypatch):
    """on_grid cuts the mesh into bands evaluated on threads: each point is computed on its own,
    so the bands agree with one batch over the whole mesh (to rounding), and the fixed cut makes
    the result identical whatever the number of cores."""
    import sigprop.theory.slices as slices

    monkeypatch.setattr(slices, "GRID_CHUNK_POINTS", 40)  # 7 bands of 2 rows
    arch, setting = Architecture.load("reference"), Setting(16)
    x, y = np.linspace(0.1, 0.9, 20), np.linspace(0.5, 3.0, 13)
    monkeypatch.setattr(slices, "_cores", lambda: 3)
    threaded = slices.on_grid(arch, setting, "alpha", x, "sigma-w", y)
    monkeypatch.setattr(slices, "_cores", lambda: 1)
    single = slices.on_grid(arch, setting, "alpha", x, "sigma-w", y)
    X, Y = np.meshgrid(x, y)
    batch = slices.evaluate(arch.with_values(alpha=X).with_values(sigma_w=Y), setting)
    for name, values in threaded.items():
        assert values.shape == (13, 20)
        np.testing.assert_array_equal(values, single[name])
        np.testing.assert_allclose(values, batch[name], rtol=1e-12, atol=1e-14)
    assert np.isfinite(threaded["lambda_a"]).mean() > 0.5
