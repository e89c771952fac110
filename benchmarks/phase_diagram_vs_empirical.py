"""Time a 200×200 theory phase diagram (λ_a and λ_g) against ONE empirical λ_a estimate.

    python benchmarks/phase_diagram_vs_empirical.py

Prints both times and their ratio (target: phase diagram / empirical estimate ≤ 1). The phase
diagram is timed cold, in this fresh process: the finite-n attention tables and the activation
tables are built inside the timed region. The empirical estimate is the one the tests use:
the reference model at width 512, depth 40 (10 burn-in layers), n = 16, 4 seeds; a 1-seed
estimate is timed too.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from sigprop.architecture import reference_layer
from sigprop.hyperparameters import ReferencePoint
from sigprop.measure import empirical_lambda_a
from sigprop.slices import exponents_on_grid


def main() -> None:
    torch.set_num_threads(2)
    point = ReferencePoint()
    x, y = np.linspace(0.0, 1.0, 200), np.linspace(0.1, 6.0, 200)
    start = time.perf_counter()
    grid = exponents_on_grid(point, "alpha", x, "sigma-w", y)
    diagram = time.perf_counter() - start
    assert np.isfinite(grid.lambda_g).all()

    layer = reference_layer(0.5, 0.5, 0.6, 2.0)
    timings = {}
    for seeds in ([0], [0, 1, 2, 3]):
        start = time.perf_counter()
        estimate = empirical_lambda_a(layer, depth=40, width=512, n_tokens=16, seeds=seeds, burn_in=10)
        timings[len(seeds)] = time.perf_counter() - start
        print(f"empirical λ_a, {len(seeds)} seed(s): {estimate.mean:+.4f}  in {timings[len(seeds)]:.2f} s")
    print(f"200×200 phase diagram (λ_a, λ_g, cold): {diagram:.2f} s")
    for seeds, seconds in timings.items():
        print(f"ratio phase diagram / empirical λ_a ({seeds} seed(s)): {diagram / seconds:.2f}")


if __name__ == "__main__":
    main()
