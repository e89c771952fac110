"""Which exponents predict the trained loss? Every definition of (λ_a, λ_g), side by side.

The paper's claim, that the final loss is lowest where λ_a = λ_g = 0, can refer to different
exponents of the same initialization (docs/theory.md §6–§7):

* ``asymptotic``: per-layer rates at the forward map's fixed point, bidirectional attention;
* ``finite_depth``: λ^(L) of the trained depth L from nearly collapsed inputs (ρ0 → 1),
  bidirectional attention;
* ``causal``: the causal-attention theory's asymptotic rates (departures from the collapsed
  state; ‖J‖² growth of the first position, a lower bound on the growth at the attractor that
  is exact in the ordered phase);
* ``causal_finite_depth``: the causal theory's λ^(L) from nearly collapsed inputs;
* ``measured``: measured on the causal LM's layers at initialization (λ_a over layers L..2L of
  a 2L-layer network, λ_g over the second half of an L-layer one; mean and standard error over
  seeds).

``definition_columns`` computes the theory columns for the trained points from their
hyperparameters; ``compare_definitions`` scores each definition by the cross-validated R² of a
loss predictor on (L·λ_a, L·λ_g), and says where the lowest trained loss lies in its terms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from sigprop.analysis.predictors import REPEATS, cross_validate
from sigprop.spec import Architecture
from sigprop.spec.declarations import HYPERPARAMETERS
from sigprop.theory.causal import (
    causal_collapsed_profile,
    causal_lambda_a,
    first_position_lambda_g,
)
from sigprop.theory.depth import depth_profile
from sigprop.theory.exponents import compute_exponents

# Exponents computed from a grid architecture (hyperparameters as arrays), the depth and n.
Compute = Callable[[Architecture, int, int], tuple[np.ndarray, np.ndarray]]


def _asymptotic(arch: Architecture, depth: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    e = compute_exponents(arch.with_values(causal=False).theory_layer(depth), n)
    return e.lambda_a, e.lambda_g


def _finite_depth(arch: Architecture, depth: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    p = depth_profile(arch.with_values(causal=False).theory_layer(depth), n, depth, 1.0, 1.0)
    return p.lambda_a, p.lambda_g


def _causal(arch: Architecture, depth: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Asymptotic causal exponents: λ_a exact, λ_g the first position's growth (the exact
    lower bound ``first_position_lambda_g``; a Monte Carlo fixed point per chaotic point would
    take ~10–50 s each)."""
    layer = arch.with_values(causal=True).theory_layer(depth)
    return causal_lambda_a(layer, n), first_position_lambda_g(layer, n)


def _causal_finite_depth(arch: Architecture, depth: int, n: int
                         ) -> tuple[np.ndarray, np.ndarray]:
    layer = arch.with_values(causal=True).theory_layer(depth)
    profile = causal_collapsed_profile(layer, n, 1.0, depth)
    return profile.log_spread[-1] / depth, profile.log_jac[-1] / depth


@dataclass(frozen=True)
class Definition:
    """One definition of the exponents: its column prefix, its label, and (theory) how to
    compute it; ``compute`` None means the columns come from the trials (measured)."""

    key: str
    label: str
    compute: Compute | None


DEFINITIONS = (
    Definition("asymptotic", "theory, asymptotic, bidirectional", _asymptotic),
    Definition("finite_depth", "theory, finite depth L (ρ0 → 1), bidirectional", _finite_depth),
    Definition("causal", "theory, asymptotic, causal", _causal),
    Definition("causal_finite_depth", "theory, finite depth L (ρ0 → 1), causal",
               _causal_finite_depth),
    Definition("measured", "measured on the causal LM at initialization", None),
)


def columns(definition: Definition) -> tuple[str, str]:
    """The trial columns of a definition's (λ_a, λ_g)."""
    return f"lambda_a_{definition.key}", f"lambda_g_{definition.key}"


def definition_columns(points: pd.DataFrame, base: Architecture, depth: int,
                       n_tokens: int = 16) -> pd.DataFrame:
    """``points`` with every theory definition's λ_a, λ_g columns, computed from the points'
    hyperparameter columns over ``base`` (the study's fixed values) as one broadcast grid."""
    names = {h.name for h in HYPERPARAMETERS}
    swept = {c: points[c].to_numpy(float) for c in points.columns
             if c in names or c in ("alpha", "alpha_A", "alpha_M", "skip", "branch")}
    grid = base.with_values(**swept)
    out = points.copy()
    for definition in DEFINITIONS:
        if definition.compute is not None:
            a, g = definition.compute(grid, depth, n_tokens)
            shape = (len(points),)
            out[columns(definition)[0]] = np.broadcast_to(a, shape)
            out[columns(definition)[1]] = np.broadcast_to(g, shape)
    return out


@dataclass(frozen=True)
class DefinitionScore:
    """A definition's cross-validated R² (saturating and spline models on (L·λ_a, L·λ_g)), the
    exponents at the lowest-loss point, and the trained point nearest its criticality."""

    definition: Definition
    r2_saturating: float
    r2_spline: float
    r2_sd: float  # the larger of the two models' sd over fold assignments
    at_minimum: tuple[float, float]  # (L·λ_a, L·λ_g) at the lowest mean loss
    nearest_critical: dict  # the point minimizing |L·λ_a| + |L·λ_g|: axes, loss, loss_se, rank
    spread: tuple[float, float]  # standard deviation of (L·λ_a, L·λ_g) over the points
    stderr: tuple[float, float] | None  # measured only: median standard error over the points


def compare_definitions(outcomes: pd.DataFrame, points: pd.DataFrame, axes: list[str],
                        depth: int, cv_repeats: int = REPEATS) -> list[DefinitionScore]:
    """Score every definition whose columns are present and finite on all trials."""
    groups = outcomes.groupby(axes, sort=True).ngroup().to_numpy()
    y = outcomes["loss"].to_numpy(float)
    ranked = points.assign(rank=points["loss"].rank(method="min").astype(int))
    best = ranked.loc[ranked["loss"].idxmin()]
    scores = []
    for definition in DEFINITIONS:
        a_col, g_col = columns(definition)
        if a_col not in outcomes or g_col not in outcomes:
            continue
        X = depth * outcomes[[a_col, g_col]].to_numpy(float)
        if not np.all(np.isfinite(X)) or len(np.unique(groups)) < 5:
            continue
        features = (f"L·{a_col}", f"L·{g_col}")
        fits = [cross_validate(definition.label, model, X, y, groups, features, cv_repeats)
                for model in ("saturating", "spline")]
        distance = (ranked[a_col].abs() + ranked[g_col].abs()) * depth
        nearest = ranked.loc[distance.idxmin()]
        spread = (depth * float(ranked[a_col].std()), depth * float(ranked[g_col].std()))
        stderr = None
        if f"{a_col}_se" in ranked and f"{g_col}_se" in ranked:
            stderr = (depth * float(ranked[f"{a_col}_se"].median()),
                      depth * float(ranked[f"{g_col}_se"].median()))
        scores.append(DefinitionScore(
            definition, fits[0].r2, fits[1].r2, max(fits[0].r2_sd, fits[1].r2_sd),
            (depth * float(best[a_col]), depth * float(best[g_col])),
            {**{axis: float(nearest[axis]) for axis in axes}, "loss": float(nearest["loss"]),
             "loss_se": float(nearest.get("loss_se", np.nan)), "rank": int(nearest["rank"]),
             "L_lambda_a": depth * float(nearest[a_col]),
             "L_lambda_g": depth * float(nearest[g_col])}, spread, stderr))
    return scores
