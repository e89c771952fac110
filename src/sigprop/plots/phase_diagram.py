"""Phase-diagram figure: heatmaps of λ_a and λ_g with both zero curves and their crossings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure  # not pyplot: no global figure state, a faster import
from matplotlib.lines import Line2D

from sigprop.theory.zero_curves import ZERO_TOLERANCE

_TITLES = {
    "lambda_a": r"angle exponent $\lambda_a$   (< 0 ordered, > 0 chaotic)",
    "lambda_g": r"gradient exponent $\lambda_g$   (< 0 vanishing, > 0 exploding)",
}
_LABELS = {"lambda_a": r"angle exponent $\lambda_a$ per layer",
           "lambda_g": r"gradient exponent $\lambda_g$ per layer"}
_DEPTH_LABELS = {"lambda_a": r"angle exponent $\lambda_a^{(L)}$ per layer",
                 "lambda_g": r"gradient exponent $\lambda_g^{(L)}$ per layer"}
_DEPTH_TITLES = {
    "lambda_a": r"angle exponent $\lambda_a^{(L)}$, L = %d   (< 0 ordered, > 0 chaotic)",
    "lambda_g": r"gradient exponent $\lambda_g^{(L)}$, L = %d   (< 0 vanishing, > 0 exploding)",
}


def plot_phase_diagram(
    x: np.ndarray,
    y: np.ndarray,
    lambda_a: np.ndarray,
    lambda_g: np.ndarray,
    labels: tuple[str, str],
    crossings: list[tuple[float, float]],
    subtitle: str,
    path: Path,
    depth: int | None = None,
    asymptotic: dict[str, np.ndarray] | None = None,
    overlay: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None,
) -> Path:
    """Save a two-panel figure; each panel shows both zero curves (λ_a solid, λ_g dashed).

    ``labels``: the x and y axis labels. With ``depth`` the exponents are the finite-depth ones
    λ^(L), and ``asymptotic`` (when given) adds the asymptotic zero curves, dotted. ``overlay``
    optionally maps "lambda_a"/"lambda_g" to measured (x, y, value) points drawn as circles in
    the same colour scale. Grid points where an exponent is undefined (NaN: no norm fixed point)
    are left white.
    """
    fig = Figure(figsize=(12.5, 5.0))
    axes = fig.subplots(1, 2)
    # A fixed layout (every text has a fixed size): a layout engine would double the drawing time.
    fig.subplots_adjust(left=0.06, right=0.95, bottom=0.19, top=0.83, wspace=0.3)
    fields = {"lambda_a": lambda_a, "lambda_g": lambda_g}
    titles = _TITLES if depth is None else {k: v % depth for k, v in _DEPTH_TITLES.items()}
    bar_labels = _LABELS if depth is None else _DEPTH_LABELS
    for ax, (name, values) in zip(axes, fields.items()):
        low, high = _colour_limits(values)
        norm = TwoSlopeNorm(vmin=low, vcenter=0.0, vmax=high)
        mesh = ax.pcolormesh(x, y, np.clip(values, low, high), cmap="RdBu_r", norm=norm,
                             shading="auto", rasterized=True)
        bar = fig.colorbar(mesh, ax=ax, extend="both", pad=0.02, fraction=0.05)
        bar.set_label(bar_labels[name])
        for field, style in (("lambda_a", "-"), ("lambda_g", "--")):
            _zero_contour(ax, x, y, fields[field], style, "black")
            if asymptotic is not None:
                _zero_contour(ax, x, y, asymptotic[field], ":", "dimgrey")
        _note_missing_curve(ax, name, values)
        for cx, cy in crossings:
            ax.plot(cx, cy, marker="*", markersize=16, color="gold", markeredgecolor="black")
        if overlay and name in overlay:
            ox, oy, ov = overlay[name]
            ax.scatter(ox, oy, c=np.clip(ov, low, high), cmap="RdBu_r", norm=norm, s=60,
                       edgecolors="black", linewidths=0.8, zorder=5)
        ax.set_title(titles[name], fontsize=11)
        ax.set_xlabel(labels[0])
        ax.set_ylabel(labels[1])
    handles = [
        Line2D([], [], color="black", linestyle="-", label=r"$\lambda_a = 0$ (edge of chaos)"),
        Line2D([], [], color="black", linestyle="--", label=r"$\lambda_g = 0$ (gradient edge)"),
    ]
    if asymptotic is not None:
        handles.append(Line2D([], [], color="dimgrey", linestyle=":",
                              label=r"asymptotic ($L \to \infty$) zero curves"))
    if crossings:
        handles.append(Line2D([], [], marker="*", color="gold", markeredgecolor="black",
                              linestyle="", markersize=14, label="both vanish"))
    if overlay:
        handles.append(Line2D([], [], marker="o", color="grey", markeredgecolor="black",
                              linestyle="", label="measured (simulation)"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False)
    fig.suptitle(subtitle, fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    return path


def _colour_limits(values: np.ndarray) -> tuple[float, float]:
    """Colour range with 0 at the centre of the colour map: each sign gets its own limit (the
    98th percentile of its magnitudes), so small positive λ near the edge of chaos stay visible
    next to large negative ones (λ_a is −∞ at α_A = 1)."""
    finite = values[np.isfinite(values)]
    positive, negative = finite[finite > 0], -finite[finite < 0]
    high = np.percentile(positive, 98) if positive.size else 0.0
    low = np.percentile(negative, 98) if negative.size else 0.0
    scale = max(high, low, 1e-3)
    return -max(low, 1e-3 * scale), max(high, 1e-3 * scale)


def _zero_contour(ax, x: np.ndarray, y: np.ndarray, values: np.ndarray, style: str,
                  colour: str) -> None:
    """The λ = 0 curve; cells where λ vanishes identically (α = 0, the identity) or is undefined
    are left out (−∞ counts as negative)."""
    finite = np.where(np.isneginf(values), -1e3, values)
    masked = np.where(np.abs(finite) < ZERO_TOLERANCE, np.nan, finite)
    if np.isfinite(masked).any() and np.nanmin(masked) < 0 < np.nanmax(masked):
        ax.contour(x, y, masked, levels=[0.0], colors=colour, linestyles=style, linewidths=1.8)


def _note_missing_curve(ax, name: str, values: np.ndarray) -> None:
    """Say so when the exponent has one sign over the whole slice (no zero curve to draw)."""
    finite = values[np.isfinite(values) & (np.abs(values) >= ZERO_TOLERANCE)]
    if finite.size and (finite.min() > 0 or finite.max() < 0):
        symbol = r"$\lambda_a$" if name == "lambda_a" else r"$\lambda_g$"
        sign = "> 0" if finite.min() > 0 else "< 0"
        ax.text(0.03, 0.04, f"{symbol} {sign} everywhere in this slice: no zero curve",
                transform=ax.transAxes, fontsize=9.5,
                bbox=dict(boxstyle="round", facecolor="white", alpha=0.85))
