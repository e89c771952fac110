"""Depth without a fixed point: the DeepScaleLM figure, and the 1000-layer trajectory's speed.

    python benchmarks/depth_scaling.py [--out docs/images/depth_scaling.png] [--width 512]

Pre-LN (the ``pre-ln`` preset: LayerNorm, unit residuals, 4 heads + W_O, GELU, d_ff = 4d) and
the same block with DyT(x) = tanh(0.5 x) in place of its norms: q_l and log‖J_l‖² against l, the
theory to 1000 layers, the simulation (4 seeds, mean ± 2 s.e.) to 100. Prints the local
power-law exponents d log‖J‖²/d log L and the time of one 1000-layer trajectory of the Pre-LN
block (target ≤ 1 s), with a cold and a warm table cache.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import sigprop  # noqa: E402
from sigprop.measure import measure_points  # noqa: E402
from sigprop.spec import Architecture  # noqa: E402

BLOCKS = {"Pre-LN": Architecture.load("pre-ln"),
          "DyT, κ = 0.5": Architecture.load("pre-ln").with_values(norm="dyt", kappa=0.5)}
TIMED = "import time, sigprop; t = time.perf_counter(); sigprop.trajectory('pre-ln', depth=1000); " \
        "print(time.perf_counter() - t)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images/depth_scaling.png"))
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--seeds", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(2)
    _time_trajectory()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), constrained_layout=True)
    for (name, arch), colour in zip(BLOCKS.items(), ("tab:blue", "tab:red")):
        theory = sigprop.trajectory(arch, depth=1000)
        measured = measure_points([arch.layer(100)], depth=100, width=args.width, n_tokens=16,
                                  q0=1.0, rho0=0.0, seeds=list(range(args.seeds)), n_probes=2)
        layers, sim = np.arange(1, 1001), np.arange(1, 101)
        for ax, key in zip(axes, ("q", "log_jac")):
            values = getattr(measured, key)[0][:, 1:]
            mean, se = values.mean(0), values.std(0, ddof=1) / np.sqrt(values.shape[0])
            ax.plot(layers, getattr(theory, key)[1:], color=colour, label=f"{name}: theory")
            shown = np.unique(np.geomspace(1, 100, 24).astype(int)) - 1  # even on a log axis
            ax.errorbar(sim[shown], mean[shown], yerr=2 * se[shown], fmt="o", markersize=3.5,
                        color=colour, label=f"{name}: simulation (d = {args.width})")
        powers = [(theory.log_jac[L] - theory.log_jac[L // 2]) / np.log(2) for L in (100, 250, 500, 1000)]
        print(f"{name}: q_1000 = {theory.q[-1]:.0f}, log‖J_1000‖² = {theory.log_jac[-1]:.2f}; "
              f"d log‖J‖²/d log L at L = 100, 250, 500, 1000: "
              + ", ".join(f"{p:.2f}" for p in powers))
    axes[0].set(xscale="log", yscale="log", xlabel="layer $l$", ylabel="$q_l$",
                title="forward: mean squared norm (linear in $l$ for both)")
    axes[1].set(xscale="log", xlabel="layer $l$", ylabel=r"$\log(\|\partial X_l/\partial X_0\|_F^2/nd)$",
                title="backward: Pre-LN a power law (straight), DyT faster")
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle("Unit residuals without a norm fixed point: theory to 1000 layers, simulation "
                 f"to 100 ({args.seeds} seeds, n = 16)", fontsize=11)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=150)
    print(f"wrote {args.out}")


def _time_trajectory() -> None:
    """One 1000-layer Pre-LN trajectory in a fresh process: cold, then warm table cache."""
    with tempfile.TemporaryDirectory() as cache:
        environment = {**os.environ, "SIGPROP_CACHE": cache}
        for kind in ("cold", "warm"):
            start = time.perf_counter()
            inside = subprocess.run([sys.executable, "-c", TIMED], env=environment, check=True,
                                    capture_output=True, text=True).stdout
            whole = time.perf_counter() - start
            print(f"1000-layer Pre-LN trajectory ({kind} cache): {float(inside):.2f} s "
                  f"(ratio {float(inside):.2f} to the 1 s target; {whole:.2f} s with start-up)")


if __name__ == "__main__":
    main()
