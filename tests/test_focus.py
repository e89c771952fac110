"""The focused study's candidates and its summary table (the training itself is the sweep's,
tested in test_sweep)."""

import pandas as pd
import pytest

from sigprop.experiment.focus import FocusScale, candidates, focus_markdown, nearest


def test_candidates_are_the_theory_crossings_and_closest_approach():
    """At L = 16 on the trained slice: the crossing from ρ0 → 1 (α ≈ 0.23, σ_w ≈ 3.64), the one
    from ρ0 = 0.99 at smaller α (≈ 0.13, σ_w ≈ 3.73), the asymptotic closest approach at the
    low end of α."""
    found = candidates(FocusScale(), 16)
    limit, near = found["crossing (ρ0 → 1)"], found["crossing (ρ0 = 0.99)"]
    assert limit["alpha"] == pytest.approx(0.23, abs=0.02)
    assert limit["sigma_w"] == pytest.approx(3.64, abs=0.03)
    assert near["alpha"] == pytest.approx(0.135, abs=0.02)
    assert near["sigma_w"] == pytest.approx(3.73, abs=0.03)
    assert found["asymptotic closest approach"]["sigma_w"] == pytest.approx(3.54, abs=0.03)


def test_nearest_grid_point_and_markdown():
    grid = pd.DataFrame({"alpha": [0.1, 0.1, 0.3, 0.3], "sigma_w": [2.0, 4.0, 2.0, 4.0],
                         "loss": [2.7, 2.68, 2.64, 2.66], "loss_se": [0.01] * 4,
                         "seeds": [3] * 4})
    assert nearest(grid, {"alpha": 0.28, "sigma_w": 3.5})[["alpha", "sigma_w"]].tolist() == \
        pytest.approx([0.3, 4.0])
    summary = {"scale": {"alphas": (0.1, 0.3), "sigma_ws": (2.0, 4.0), "seeds": (0, 1, 2),
                         "sigma_b": 1.0, "steps": 400, "width": 64},
               "depths": {"16": {"points": grid.to_dict("records"), "median_se": 0.01,
                                 "lowest": {"alpha": 0.3, "sigma_w": 2.0, "loss": 2.64,
                                            "loss_se": 0.01},
                                 "candidates": {"crossing": None}}}}
    text = focus_markdown(summary)
    assert "2.640 ± 0.010" in text and "none in the slice" in text
