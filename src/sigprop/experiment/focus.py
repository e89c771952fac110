"""Is the trained loss lowest at the crossing? A focused study around the candidate optima.

The default reproduction trains a coarse (α, σ_w) grid with one seed: every point with α ≤ 0.4
scores within seed noise of the others, so it cannot say where the optimum lies. This study
trains a small grid around the candidates with several seeds at two depths:

* the finite-depth crossing λ_a^(L) = λ_g^(L) = 0 at each trained depth L (``sigprop.critical``
  with ``depth=L``), from nearly collapsed inputs (ρ0 → 1) and from ρ0 = 0.99;
* the asymptotic closest approach (the point of the λ_a = 0 curve with the smallest |λ_g|; the
  asymptotic curves do not cross in the reference model);
* the minimum of a coarse sweep, when one is given (``main``).

Each depth is one Optuna study (``focus-L16``, ``focus-L32``), so rerunning resumes. The loss at
each grid point is the mean over seeds with its standard error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from sigprop.analysis.outcomes import point_outcomes, trial_outcomes
from sigprop.runtime.devices import resolve_device
from sigprop.experiment.trial import sweep_spec
from sigprop.api.critical import critical
from sigprop.spec import Architecture
from sigprop.sweep import SweepSpec, normalize_storage, run_study, trials_frame

ALTERNATIVE_RHO0 = 0.99  # the second finite-depth crossing: both exponents from this input cosine


@dataclass(frozen=True)
class FocusScale:
    """The focused grid and the training budget (the default reproduction's, so that losses
    compare with its sweep)."""

    depths: tuple[int, ...] = (16, 32)
    alphas: tuple[float, ...] = (0.05, 0.15, 0.25, 0.4)
    sigma_ws: tuple[float, ...] = (1.75, 2.75, 3.6)
    seeds: tuple[int, ...] = (0, 1, 2)
    sigma_b: float = 1.0
    width: int = 64
    context: int = 64
    batch: int = 32
    steps: int = 400
    workers: int = 2
    batch_size: int = 18


def focus_spec(scale: FocusScale, depth: int, arch: Architecture | str | None = None) -> SweepSpec:
    """The sweep of one depth: the (α, σ_w, seed) grid at σ_b, as ``sigprop reproduce`` trains."""
    base = Architecture.load(arch).with_values(sigma_b=scale.sigma_b)
    grid = [f"alpha={','.join(map(str, scale.alphas))}",
            f"sigma_w={','.join(map(str, scale.sigma_ws))}",
            f"seed={','.join(map(str, scale.seeds))}"]
    return sweep_spec(base, {}, grid, [], 0, 0, depth=depth, width=scale.width,
                      context=scale.context, batch=scale.batch, steps=scale.steps,
                      data="shakespeare", compile=True)


def candidates(scale: FocusScale, depth: int, arch: Architecture | str | None = None) -> dict:
    """Theory candidates for the optimum on the training slice, each {"alpha", "sigma_w"} or
    None: the finite-depth crossing at L of nearly collapsed inputs (ρ0 → 1, the analysis'
    definition), the same from ρ0 = 0.99 (as public reimplementations measure), and the
    asymptotic closest approach on λ_a = 0."""
    base = Architecture.load(arch).with_values(sigma_b=scale.sigma_b)
    kwargs = dict(x_range=(0.02, 0.95), y_range=(0.3, 6.0), points=37)

    def crossing(**setting) -> dict | None:
        found = critical("alpha", "sigma-w", base, depth=depth, **setting, **kwargs).found
        if not found.crossings.x.size:
            return None
        return {"alpha": float(found.crossings.x[0]), "sigma_w": float(found.crossings.y[0])}

    closest = critical("alpha", "sigma-w", base, **kwargs).found.closest
    return {"crossing (ρ0 → 1)": crossing(),
            f"crossing (ρ0 = {ALTERNATIVE_RHO0:g})": crossing(rho0=ALTERNATIVE_RHO0),
            "asymptotic closest approach": None if closest is None else {
                "alpha": closest["x"], "sigma_w": closest["y"]}}


def run_focus(out: Path, scale: FocusScale = FocusScale(), storage: str | None = None,
              log: Callable[[str], None] = print, device: str = "auto") -> str:
    """Train every depth's grid on ``device`` (``sigprop.runtime.devices``; resuming what is stored);
    returns the storage URL."""
    resolve_device(device)
    url = normalize_storage(storage, out / "focus.sqlite")
    for depth in scale.depths:
        log(f"focused study at depth {depth}")
        run_study(url, study_name(depth), focus_spec(scale, depth), "sigprop.experiment.trial:make_evaluate",
                  workers=scale.workers, batch_size=scale.batch_size,
                  factory_kwargs={"device": device})
    return url


def study_name(depth: int) -> str:
    return f"focus-L{depth}"


def focus_table(url: str, depth: int) -> pd.DataFrame:
    """Mean loss ± standard error over seeds at each (α, σ_w) of one depth's finished trials."""
    trials = trials_frame(url, study_name(depth))
    vocab = int(trials["vocab_size"].dropna().iloc[0])
    return point_outcomes(trial_outcomes(trials, vocab), ["alpha", "sigma_w"])


def nearest(table: pd.DataFrame, point: dict) -> pd.Series:
    """The grid row nearest ``point`` in (α, σ_w), each axis scaled by its grid span."""
    span_a = np.ptp(table["alpha"]) or 1.0
    span_w = np.ptp(table["sigma_w"]) or 1.0
    distance = np.hypot((table["alpha"] - point["alpha"]) / span_a,
                        (table["sigma_w"] - point["sigma_w"]) / span_w)
    return table.loc[distance.idxmin()]


def coarse_minimum(storage: str, study: str = "reference-lm-alpha-sigma_w") -> dict | None:
    """The lowest mean loss of a coarse (α, σ_w) sweep, {"alpha", "sigma_w", "loss"}."""
    try:
        trials = trials_frame(storage, study)
    except Exception:  # no such study: nothing to compare with
        return None
    done = trials[trials["status"].isin(["complete", "diverged"])]
    if done.empty:
        return None
    points = point_outcomes(trial_outcomes(done, int(done["vocab_size"].dropna().iloc[0])),
                            ["alpha", "sigma_w"])
    best = points.loc[points["loss"].idxmin()]
    return {"alpha": float(best["alpha"]), "sigma_w": float(best["sigma_w"]),
            "loss": float(best["loss"])}


def summarize(url: str, scale: FocusScale, main: str | None = None) -> dict:
    """Per depth: the grid's mean losses ± SE, each candidate's nearest grid point, and whether
    the loss there is the lowest, within two standard errors of it, or above it."""
    coarse = coarse_minimum(main) if main else None
    result = {"scale": {"alphas": scale.alphas, "sigma_ws": scale.sigma_ws,
                        "seeds": scale.seeds, "sigma_b": scale.sigma_b, "steps": scale.steps,
                        "width": scale.width}, "depths": {}}
    for depth in scale.depths:
        table = focus_table(url, depth)
        best = table.loc[table["loss"].idxmin()]
        named = candidates(scale, depth)
        if coarse:
            named["coarse sweep's minimum"] = {"alpha": coarse["alpha"],
                                               "sigma_w": coarse["sigma_w"]}
        rows = {}
        for name, point in named.items():
            if point is None:
                rows[name] = None
                continue
            row = nearest(table, point)
            gap = float(row["loss"] - best["loss"])
            se = float(np.hypot(row["loss_se"], best["loss_se"]))
            rows[name] = {**point, "grid_alpha": float(row["alpha"]),
                          "grid_sigma_w": float(row["sigma_w"]), "loss": float(row["loss"]),
                          "loss_se": float(row["loss_se"]), "above_minimum": gap,
                          "above_minimum_se": se,
                          "verdict": ("lowest" if gap == 0 else "within 2 SE of the lowest"
                                      if gap <= 2 * se else "above the lowest")}
        result["depths"][str(depth)] = {
            "points": table[["alpha", "sigma_w", "loss", "loss_se", "seeds"]].to_dict("records"),
            "lowest": {"alpha": float(best["alpha"]), "sigma_w": float(best["sigma_w"]),
                       "loss": float(best["loss"]), "loss_se": float(best["loss_se"])},
            "candidates": rows,
            "median_se": float(table["loss_se"].median()),
        }
    return result


def write_focus_report(out: Path, url: str, scale: FocusScale, main: str | None = None) -> Path:
    """focus.json and focus.md in ``out``; returns the Markdown path."""
    import json

    summary = summarize(url, scale, main)
    out.mkdir(parents=True, exist_ok=True)
    (out / "focus.json").write_text(json.dumps(summary, indent=1))
    path = out / "focus.md"
    path.write_text(focus_markdown(summary))
    return path


def focus_markdown(summary: dict) -> str:
    """The focused study as Markdown: per depth, the loss grid and the candidates."""
    scale = summary["scale"]
    lines = [f"Focused study: (α, σ_w) ∈ {list(scale['alphas'])} × {list(scale['sigma_ws'])} at "
             f"σ_b = {scale['sigma_b']:g}, seeds {list(scale['seeds'])}, d = {scale['width']}, "
             f"{scale['steps']} steps; loss = mean test loss (nats/char) ± standard error over "
             "seeds.", ""]
    for depth, part in summary["depths"].items():
        grid = pd.DataFrame(part["points"])
        pivot = grid.assign(cell=[f"{l:.3f} ± {s:.3f}" for l, s in zip(grid["loss"], grid["loss_se"])]
                            ).pivot(index="sigma_w", columns="alpha", values="cell").fillna("—")
        lines += [f"**Depth {depth}** (median SE {part['median_se']:.3f}):", "",
                  "| σ_w \\ α | " + " | ".join(f"{a:g}" for a in pivot.columns) + " |",
                  "|---|" + "---|" * len(pivot.columns),
                  *(f"| {w:g} | " + " | ".join(pivot.loc[w]) + " |" for w in pivot.index), "",
                  "| candidate | (α, σ_w) | nearest grid point | loss | above the lowest | verdict |",
                  "|---|---|---|---|---|---|"]
        for name, row in part["candidates"].items():
            if row is None:
                lines.append(f"| {name} | none in the slice | — | — | — | — |")
                continue
            lines.append(f"| {name} | ({row['alpha']:.3f}, {row['sigma_w']:.3f}) | "
                         f"({row['grid_alpha']:g}, {row['grid_sigma_w']:g}) | "
                         f"{row['loss']:.3f} ± {row['loss_se']:.3f} | "
                         f"{row['above_minimum']:+.3f} ± {row['above_minimum_se']:.3f} | "
                         f"{row['verdict']} |")
        low = part["lowest"]
        lines += ["", f"Lowest: α = {low['alpha']:g}, σ_w = {low['sigma_w']:g}, "
                  f"{low['loss']:.3f} ± {low['loss_se']:.3f}.", ""]
    return "\n".join(lines)
