"""Where the finite-depth zero curves cross, as the depth L, the number of tokens n and the input
cosine ρ0 change (reference transformer, the (α, σ_w) slice at σ_b = 1 that the reproduction
trains).

For each setting: the crossing λ_a^(L) = λ_g^(L) = 0 from ``sigprop.critical(depth=L)``, the
near-critical segment of the λ_a^(L) = 0 curve (|L·λ_g^(L)| < 0.5) as a bar, and the asymptotic
closest approach as a dashed line. Writes docs/images/finite_depth_crossing.png and prints the
table.

    python benchmarks/finite_depth_crossing.py
"""

from __future__ import annotations

import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import sigprop

DEPTHS = (4, 8, 16, 32, 64, 128, 256)
TOKENS = (4, 16, 64)
RHO0S = (1.0, 0.99)
SLICE = dict(sigma_b=1.0, x_range=(0.01, 0.95), y_range=(0.3, 6.0), points=48)
OUT = Path(__file__).resolve().parent.parent / "docs" / "images" / "finite_depth_crossing.png"


def crossing(depth: int | None, n: int, rho0: float) -> dict:
    report = sigprop.critical("alpha", "sigma-w", depth=depth, n_tokens=n, rho0=rho0,
                              **SLICE).to_json()
    first = report["crossings"][0] if report["crossings"] else None
    segment = (report["near_critical"] or [None])[0]
    return {"crossing": first, "segment": segment, "closest": report["closest_on_edge_of_chaos"]}


def main() -> None:
    start = time.perf_counter()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    print(f"{'n':>3} {'rho0':>5} {'L':>4} {'alpha_x':>8} {'sigma_w_x':>9} {'segment alpha':>17}")
    for n, color in zip(TOKENS, ("tab:blue", "tab:orange", "tab:green")):
        closest = crossing(None, n, 1.0)["closest"]
        for rho0, marker in zip(RHO0S, ("o", "s")):
            rows = [(L, crossing(L, n, rho0)) for L in DEPTHS]
            found = [(L, r) for L, r in rows if r["crossing"]]
            for L, r in rows:
                c, s = r["crossing"], r["segment"]
                cx = f"{c['x']:.3f} {c['y']:9.3f}" if c else "    none          "
                seg = f"{s['x_low']:.2f}–{s['x_high']:.2f}" if s else "—"
                print(f"{n:>3} {rho0:>5} {L:>4} {cx} {seg:>17}")
            label = f"n = {n}, " + ("ρ0 → 1" if rho0 >= 1 else f"ρ0 = {rho0}")
            Ls = [L for L, _ in found]
            axes[0].plot(Ls, [r["crossing"]["x"] for _, r in found], marker=marker, color=color,
                         ls="-" if rho0 >= 1 else ":", label=label)
            axes[1].plot(Ls, [r["crossing"]["y"] for _, r in found], marker=marker, color=color,
                         ls="-" if rho0 >= 1 else ":", label=label)
            if rho0 >= 1:
                for L, r in found:
                    if r["segment"]:
                        axes[0].vlines(L, r["segment"]["x_low"], r["segment"]["x_high"],
                                       color=color, alpha=0.25, lw=6)
        if closest:
            axes[0].axhline(closest["x"], color=color, ls="--", lw=0.8)
            axes[1].axhline(closest["y"], color=color, ls="--", lw=0.8)
    for ax, name in zip(axes, ("α at the crossing", "σ_w at the crossing")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("depth L")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].set_title("bars: near-critical segment (|L·λ_g^(L)| < 0.5 on λ_a^(L) = 0)", fontsize=9)
    axes[1].set_title("dashed: asymptotic closest approach (no asymptotic crossing)", fontsize=9)
    axes[1].legend(fontsize=8)
    fig.suptitle("Finite-depth crossing λ_a^(L) = λ_g^(L) = 0, reference transformer, σ_b = 1")
    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=120)
    print(f"wrote {OUT} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
