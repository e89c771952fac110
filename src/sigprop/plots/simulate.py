"""Theory against simulation, layer by layer: q_l, ρ_l and log ‖∂X_l/∂X_0‖²."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

_PANELS = (
    ("q", r"mean squared norm $q_l$"),
    ("rho", r"mean cosine $\rho_l$"),
    ("log_jac", r"$\log(\|\partial X_l/\partial X_0\|_F^2 / nd)$"),
)


def plot_simulation(table: pd.DataFrame, labels: list[str], title: str, path: Path) -> Path:
    """One colour per hyperparameter point: theory as lines, the seed mean as points with a
    band of ± 2 standard errors."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), constrained_layout=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (point, rows) in enumerate(table.groupby("point", sort=True)):
        colour = colours[index % len(colours)]
        for ax, (key, label) in zip(axes, _PANELS):
            mean, se = rows[f"{key}_mean"], rows[f"{key}_se"].fillna(0.0)
            ax.plot(rows["l"], rows[f"{key}_theory"], color=colour, linewidth=1.8,
                    label=labels[point] if key == "q" else None)
            ax.fill_between(rows["l"], mean - 2 * se, mean + 2 * se, color=colour, alpha=0.2,
                            linewidth=0)
            ax.plot(rows["l"], mean, "o", color=colour, markersize=3.5)
            ax.set_xlabel("layer $l$")
            ax.set_title(label)
    axes[0].legend(fontsize=8, title="lines: theory,  dots: simulation ± 2 s.e.", title_fontsize=8)
    fig.suptitle(title, fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return path
