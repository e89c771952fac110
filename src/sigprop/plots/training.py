"""Figures of a training sweep: the loss over the hyperparameter grid with the theory's zero
curves, the loss against the exponents, and cross-validated predictions against the truth."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from sigprop.analysis.predictors import CrossValidation  # noqa: E402
from sigprop.spec import axis  # noqa: E402



def plot_loss_landscape(points: pd.DataFrame, axes: list[str], theory: dict, title: str,
                        path: Path) -> Path:
    """Mean test loss at the swept points, the theory's λ_a = 0 (solid) and λ_g = 0 (dashed)
    curves on a fine grid, and a star on the lowest loss. A full grid is drawn as cells
    labelled with the loss (✕ marks points with a diverged seed); scattered points (a
    quasi-random search) as coloured dots, a diverged seed as a red edge."""
    x_axis, y_axis = axes
    xs, ys = np.sort(points[x_axis].unique()), np.sort(points[y_axis].unique())
    fig, ax = plt.subplots(figsize=(7.5, 5.8), constrained_layout=True)
    if len(points) == len(xs) * len(ys):
        loss = points.pivot(index=y_axis, columns=x_axis, values="loss").reindex(index=ys, columns=xs)
        shown = ax.pcolormesh(xs, ys, loss.to_numpy(), shading="nearest", cmap="viridis_r")
        for _, row in points.iterrows():
            label = f"{row['loss']:.2f}" + (" ✕" if row.get("diverged", 0) else "")
            ax.text(row[x_axis], row[y_axis], label, ha="center", va="center", fontsize=7.5,
                    color="white" if row["loss"] > np.nanmedian(loss) else "black")
    else:
        diverged = points["diverged"].to_numpy() > 0
        shown = ax.scatter(points[x_axis], points[y_axis], c=points["loss"], cmap="viridis_r",
                           s=70, edgecolors=np.where(diverged, "red", "black"),
                           linewidths=np.where(diverged, 2.0, 0.5))
    fig.colorbar(shown, ax=ax, label="final test loss (nats / character)")
    for name, style in (("lambda_a", "-"), ("lambda_g", "--")):
        values = theory[name]
        if np.nanmin(values) < 0 < np.nanmax(values):
            ax.contour(theory["x"], theory["y"], values, levels=[0.0], colors="red",
                       linestyles=style, linewidths=2.0)
    best = points.loc[points["loss"].idxmin()]
    ax.plot(best[x_axis], best[y_axis], marker="*", markersize=20, color="gold",
            markeredgecolor="black", linestyle="")
    ax.set_xlim(theory["x"].min(), theory["x"].max())
    ax.set_ylim(theory["y"].min(), theory["y"].max())
    ax.set_xlabel(axis(x_axis).label)
    ax.set_ylabel(axis(y_axis).label)
    ax.legend(handles=[
        Line2D([], [], color="red", linestyle="-", label=r"theory $\lambda_a = 0$"),
        Line2D([], [], color="red", linestyle="--", label=r"theory $\lambda_g = 0$"),
        Line2D([], [], marker="*", color="gold", markeredgecolor="black", linestyle="",
               markersize=12, label="lowest test loss"),
    ], loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, fontsize=8, frameon=False)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def plot_loss_against_exponents(trials: pd.DataFrame, depth: int, path: Path) -> Path:
    """Test loss as colour over the depth-scaled exponents, theory (bidirectional) and measured
    on the causal model at initialization."""
    fig, panels = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    limits = (trials["loss"].min(), trials["loss"].max())
    for ax, source in zip(panels, ("theory", "measured")):
        a, g = depth * trials[f"lambda_a_{source}"], depth * trials[f"lambda_g_{source}"]
        dots = ax.scatter(a, g, c=trials["loss"], cmap="viridis_r", vmin=limits[0], vmax=limits[1],
                          s=40, edgecolors="black", linewidths=0.4)
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.axvline(0.0, color="grey", linewidth=0.8)
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_xlabel(rf"$L\,\lambda_a$ ({source})")
        ax.set_ylabel(rf"$L\,\lambda_g$ ({source})")
        ax.set_title("theory, bidirectional attention" if source == "theory"
                     else "measured at init on the causal LM", fontsize=10)
    fig.colorbar(dots, ax=panels, label="final test loss (nats / character)")
    return _save(fig, path)


def plot_predictions(y: np.ndarray, predictors: list[CrossValidation], path: Path) -> Path:
    """Held-out predictions (of the first fold assignment) against the measured loss, one panel
    per predictor, titled with the R² over all assignments."""
    fig, panels = plt.subplots(1, len(predictors), figsize=(3.6 * len(predictors), 3.8),
                               constrained_layout=True, squeeze=False)
    low, high = np.min(y), np.max(y)
    for ax, cv in zip(panels[0], predictors):
        ax.plot([low, high], [low, high], color="grey", linewidth=0.8)
        ax.scatter(y, cv.predictions, s=14, alpha=0.8)
        ax.set_title(f"{_wrap(cv.name)}\ncross-validated R² = {cv.r2:.3f} ± {cv.r2_sd:.3f}",
                     fontsize=8)
        ax.set_xlabel("test loss")
        ax.set_ylabel("predicted (held out)")
    return _save(fig, path)


def _wrap(text: str, width: int = 34) -> str:
    words, lines, line = text.split(), [], ""
    for word in words:
        if len(line) + len(word) + 1 > width and line:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join(lines + [line])


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return path
