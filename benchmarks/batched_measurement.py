"""Batched versus looped measurement of 64 hyperparameter points × 4 seeds.

    python benchmarks/batched_measurement.py [--width 128] [--depth 20]

Measures per-layer geometry and log-Jacobians (2 probes) and the empirical λ_a of the reference
transformer on an 8 × 8 grid of (α = α_A = α_M, σ_w), 4 seeds each, three ways, in one run:

* batched: every (point, seed) network a member of one vmapped ensemble (64 per pass);
* loop over points: a Python loop over the 64 configurations, seeds batched within each;
* loop over networks: one network at a time (a plain loop over all 256).

It prints the times and the ratios against the batched run (target: ≥ 4× over the loop over
configurations), and checks that all three give identical numbers.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from sigprop.spec import reference_layer
from sigprop.measure import empirical_lambda_a_points, measure_points

SEEDS = [0, 1, 2, 3]


def measure(layers, seeds, width, depth, batch):
    trajectory = measure_points(layers, depth=depth, width=width, n_tokens=16, q0=1.0, rho0=0.0,
                                seeds=seeds, n_probes=2, batch=batch)
    lam_a = empirical_lambda_a_points(layers, depth=depth, width=width, n_tokens=16, seeds=seeds,
                                      burn_in=depth // 4, batch=batch)
    return trajectory.log_jac, np.array([e.per_seed for e in lam_a])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--depth", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(2)
    layers = [reference_layer(a, a, 0.6, w) for a in np.linspace(0.1, 0.9, 8)
              for w in np.linspace(0.5, 5.0, 8)]

    start = time.perf_counter()
    batched = measure(layers, SEEDS, args.width, args.depth, batch=64)
    t_batched = time.perf_counter() - start

    start = time.perf_counter()
    per_point = [measure([layer], SEEDS, args.width, args.depth, batch=4) for layer in layers]
    t_points = time.perf_counter() - start

    start = time.perf_counter()
    per_network = [[measure([layer], [seed], args.width, args.depth, batch=1) for seed in SEEDS]
                   for layer in layers]
    t_networks = time.perf_counter() - start

    looped = (np.concatenate([p[0] for p in per_point]), np.concatenate([p[1] for p in per_point]))
    assert np.allclose(batched[0], looped[0], atol=1e-9) and np.allclose(batched[1], looped[1], atol=1e-9)
    single = np.array([[n[1][0, 0] for n in row] for row in per_network])
    assert np.allclose(batched[1], single, atol=1e-9)

    print(f"64 points × 4 seeds, width {args.width}, depth {args.depth}, 16 tokens "
          f"(trajectory with 2 probes + empirical λ_a)")
    print(f"  batched (vmap, 64 networks per pass): {t_batched:7.2f} s")
    print(f"  loop over points (seeds batched):     {t_points:7.2f} s   ratio {t_points / t_batched:5.2f}×")
    print(f"  loop over networks:                   {t_networks:7.2f} s   ratio {t_networks / t_batched:5.2f}×")


if __name__ == "__main__":
    main()
