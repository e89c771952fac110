"""Per-layer figure of a ``Diagnosis``: forward geometry, Jacobian norm and both exponents.

Six panels over the layer index l (0 = hidden states entering block 0), each the mean over seeds
with a ± standard-error band (geometric mean and multiplicative band on the log-scale panels):
cosine ρ with the band of the smallest and largest pairwise cosine; 1 − ρ (log scale); q (log
scale); effective rank of C; log_jac with the λ_g fit over the layers after burn-in; log D near
collapse with the λ_a fit. The words follow the model's family (``Diagnosis.nouns``): tokens,
spatial positions, initial states or nodes; blocks, residual blocks, time steps or
message-passing layers. Where the number of tokens changes (a convolutional network's stages)
the effective-rank panel shows n per layer too.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

if TYPE_CHECKING:
    from sigprop.measure.diagnose import Diagnosis


def plot_diagnosis(diagnosis: Diagnosis, path: Path) -> Path:
    """Save the six-panel figure to ``path`` (parent folders are created)."""
    fig, axes = plt.subplots(2, 3, figsize=(14.0, 7.6), constrained_layout=True)
    l = np.arange(diagnosis.depth + 1)
    nouns = diagnosis.nouns
    token = "token" if diagnosis.family == "transformer" else nouns.token
    tokens = np.array(diagnosis.tokens_per_layer)

    ax = axes[0, 0]
    _band(ax, l, np.mean(diagnosis.layers["cos_min"], axis=0),
          np.mean(diagnosis.layers["cos_max"], axis=0), "pairwise cosine: min to max")
    _curve(ax, diagnosis, "rho", r"mean cosine $\rho$")
    ax.set_ylim(min(-0.05, ax.get_ylim()[0]), 1.02)
    ax.set_title(token + r" cosine $\rho = p/q$")
    ax.legend(fontsize=8, loc="lower right")

    ax = axes[0, 1]
    _curve(ax, diagnosis, "one_minus_rho", r"$1-\rho$", log=True)
    ax.axhline(1e-3, color="grey", linestyle=":", linewidth=1)
    ax.text(0.02, 1e-3, "collapsed below", fontsize=8, color="grey", va="bottom",
            transform=ax.get_yaxis_transform())
    ax.set_title(r"$1-\rho$ (log scale)")

    ax = axes[0, 2]
    _curve(ax, diagnosis, "q", r"$q$", log=True)
    ax.set_title(r"mean squared " + token + r" norm $q = \mathrm{tr}\,C/n$")

    ax = axes[1, 0]
    _curve(ax, diagnosis, "effective_rank", "effective rank")
    if len(set(tokens)) > 1:
        ax.step(l, np.minimum(tokens, diagnosis.widths_per_layer), where="mid", color="grey",
                linestyle=":", label=f"min(n, d): {token}s, channels")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    else:
        ax.set_ylim(0, diagnosis.n_tokens * 1.05)
    ax.set_title(r"effective rank of $C = XX^\top/d$ (1 to n)")

    ax = axes[1, 1]
    _curve(ax, diagnosis, "log_jac", "measured")
    _fit(ax, diagnosis, "log_jac", diagnosis.lambda_g.mean, r"$\lambda_g$")
    ax.set_title(r"$\log(\|\partial X_l/\partial X_0\|_F^2/(nd))$")

    ax = axes[1, 2]
    _curve(ax, diagnosis, "log_spread", "measured")
    _fit(ax, diagnosis, "log_spread", diagnosis.lambda_a.mean, r"$\lambda_a$")
    ax.set_title(r"near collapse: $\log D_l$ (growth of $1-\rho$)")

    for ax in axes.flat:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(("layer" if diagnosis.family == "transformer" else nouns.layer) + " l")
        ax.grid(alpha=0.3)
    a, g = diagnosis.lambda_a, diagnosis.lambda_g
    fig.suptitle(
        f"{diagnosis.description}   ({len(diagnosis.seeds)} seeds, n = {diagnosis.n_tokens} "
        f"{token}s{' at l = 0' if len(set(tokens)) > 1 else ''})\n"
        rf"$\lambda_a$ = {a.mean:+.3f} ± {a.stderr:.2g} ({diagnosis.phase}),   "
        rf"$\lambda_g$ = {g.mean:+.3f} ± {g.stderr:.2g} ({diagnosis.gradients} gradients)",
        fontsize=11,
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def _curve(ax, diagnosis: Diagnosis, name: str, label: str, log: bool = False) -> None:
    l = np.arange(diagnosis.depth + 1)
    mean, stderr = diagnosis.mean(name), np.nan_to_num(diagnosis.stderr(name))
    if log:
        # Band in log space: the seed spread of a quantity spanning decades is multiplicative.
        logs = np.log(np.clip(diagnosis.layers[name], 1e-300, None))
        mean = np.exp(logs.mean(axis=0))
        spread = np.nan_to_num(logs.std(axis=0, ddof=1) / np.sqrt(logs.shape[0])
                               if logs.shape[0] > 1 else np.zeros_like(mean))
        low, high = mean * np.exp(-spread), mean * np.exp(spread)
        ax.set_yscale("log")
    else:
        low, high = mean - stderr, mean + stderr
    ax.plot(l, mean, marker="o", markersize=3, color="C0", label=label)
    ax.fill_between(l, low, high, color="C0", alpha=0.25, linewidth=0)


def _band(ax, l: np.ndarray, low: np.ndarray, high: np.ndarray, label: str) -> None:
    ax.fill_between(l, low, high, color="C1", alpha=0.2, linewidth=0, label=label)


def _fit(ax, diagnosis: Diagnosis, name: str, slope: float, symbol: str) -> None:
    """The exponent as a line through the mean at burn-in, over the layers it was fitted on."""
    if not np.isfinite(slope):
        return
    b, depth = diagnosis.burn_in, diagnosis.depth
    l = np.arange(b, depth + 1)
    start = diagnosis.mean(name)[b]
    ax.plot(l, start + slope * (l - b), color="C3", linestyle="--",
            label=f"{symbol} = {slope:+.3f} per layer (l ≥ {b})")
    ax.axvline(b, color="grey", linestyle=":", linewidth=1)
    ax.legend(fontsize=8)
