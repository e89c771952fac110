"""Does (λ_a, λ_g) at initialization predict the final test loss? (docs/theory.md §8)

``analyze`` turns the finished trials of a sweep into the evidence: the loss at every
hyperparameter point, cross-validated predictors of the loss from the exponents alone against a
baseline on the raw hyperparameters, where the minimum lies, and how the phase-diagram corners
compare with the points where both exponents are small.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sigprop.analysis.definitions import DefinitionScore, compare_definitions, definition_columns
from sigprop.analysis.outcomes import point_outcomes, trial_outcomes
from sigprop.analysis.predictors import REPEATS, CrossValidation, cross_validate
from sigprop.spec import Architecture

__all__ = ["Analysis", "analyze"]


@dataclass(frozen=True)
class Analysis:
    """Everything the report shows; tables are pandas DataFrames."""

    axes: list[str]
    depth: int
    trials: pd.DataFrame  # one row per finished trial, with "loss"
    points: pd.DataFrame  # one row per hyperparameter point
    predictors: list[CrossValidation]
    minimum: dict
    regions: pd.DataFrame  # mean loss by region of the phase diagram
    cv_repeats: int  # fold assignments each predictor's R² is averaged over
    theory: str = "asymptotic"  # which theory exponents: "asymptotic" or "finite depth"
    definitions: tuple[DefinitionScore, ...] = ()  # every definition of the exponents, scored

    def verdict(self) -> str:
        """The best predictor of the loss and where the lowest loss lies, in two sentences."""
        best = max(self.predictors, key=lambda cv: cv.r2, default=None)
        low = self.minimum["lowest_loss"]
        at = ", ".join(f"{a} = {low[a]:g}" for a in self.axes)
        text = (f"{len(self.trials)} finished trials at {self.minimum['points']} points; the "
                f"lowest loss {low['loss']:.3f} is at {at} (λ_a = {low['lambda_a']:+.3f}, "
                f"λ_g = {low['lambda_g']:+.3f}).")
        if best is not None:
            text += (f" Best predictor of the loss: {best.name}, cross-validated R² "
                     f"{best.r2:.3f} ± {best.r2_sd:.3f}.")
        return text

    def __repr__(self) -> str:
        return (f"Analysis(axes={self.axes}, depth={self.depth}, trials={len(self.trials)}, "
                f"points={len(self.points)}, predictors={len(self.predictors)})")

    def to_json(self) -> dict:
        """The predictors' cross-validated R², the minimum and the verdict (the tables stay
        DataFrames: ``trials``, ``points``, ``regions``)."""
        return {"axes": list(self.axes), "depth": self.depth, "theory": self.theory,
                "trials": len(self.trials), "cv_repeats": self.cv_repeats,
                "predictors": [{"name": cv.name, "r2": cv.r2, "r2_sd": cv.r2_sd}
                               for cv in self.predictors],
                "minimum": self.minimum, "verdict": self.verdict()}


def analyze(trials: pd.DataFrame, axes: list[str], depth: int, vocab_size: int,
            cv_repeats: int = REPEATS, arch: Architecture | None = None,
            n_tokens: int = 16) -> Analysis:
    """Analyse finished trials of a sweep over ``axes`` (the swept hyperparameter columns of
    ``trials``); each predictor is cross-validated over ``cv_repeats`` fold assignments.

    The theory exponents are the asymptotic ones; for blocks without a norm fixed point (NaN
    asymptotic exponents) the finite-depth ones at the trained depth take their place in the
    ``lambda_*_theory`` columns, and ``Analysis.theory`` says "finite depth". With ``arch``
    (the study's block, its fixed values), every definition of the exponents
    (``sigprop.analysis.definitions``) is computed for the trained points with ``n_tokens``
    tokens (the study's measurement setting) and scored."""
    outcomes = trial_outcomes(trials, vocab_size)
    if outcomes.empty:
        raise ValueError("no finished trials to analyse")
    if arch is not None:
        unique = outcomes[axes].drop_duplicates()
        outcomes = outcomes.merge(definition_columns(unique, arch, depth, n_tokens), on=axes,
                                  how="left")
    theory = "asymptotic"
    if outcomes[["lambda_a_theory", "lambda_g_theory"]].isna().any().any():
        theory = "finite depth"
        # Recomputed with the current definition when the block is known (stored columns may
        # predate it), else as stored.
        a, g = (("lambda_a_finite_depth", "lambda_g_finite_depth") if arch is not None
                else ("lambda_a_depth_theory", "lambda_g_depth_theory"))
        outcomes = outcomes.assign(lambda_a_theory=outcomes[a], lambda_g_theory=outcomes[g])
    outcomes = outcomes.assign(
        depth_lambda_a_theory=depth * outcomes["lambda_a_theory"],
        depth_lambda_g_theory=depth * outcomes["lambda_g_theory"],
        depth_lambda_a_measured=depth * outcomes["lambda_a_measured"],
        depth_lambda_g_measured=depth * outcomes["lambda_g_measured"],
    )
    groups = outcomes.groupby(axes, sort=True).ngroup().to_numpy()
    y = outcomes["loss"].to_numpy(float)
    candidates = [
        ("exponents, theory (L·λ_a, L·λ_g), saturating", "saturating",
         ("depth_lambda_a_theory", "depth_lambda_g_theory")),
        ("exponents, theory (L·λ_a, L·λ_g), smoothing spline", "spline",
         ("depth_lambda_a_theory", "depth_lambda_g_theory")),
        ("exponents, measured on the causal LM, saturating", "saturating",
         ("depth_lambda_a_measured", "depth_lambda_g_measured")),
        ("exponents, measured on the causal LM, smoothing spline", "spline",
         ("depth_lambda_a_measured", "depth_lambda_g_measured")),
        ("last-layer state, theory (log(1 − ρ_L), log ‖J_L‖²), saturating", "saturating",
         ("log_gap_L_theory", "log_jac_L_theory")),
        ("baseline: raw hyperparameters, smoothing spline", "spline", tuple(axes)),
    ]
    predictors = []
    for name, model, features in candidates:
        X = outcomes[list(features)].to_numpy(float)
        if np.all(np.isfinite(X)) and len(np.unique(groups)) >= 5:
            predictors.append(cross_validate(name, model, X, y, groups, features, cv_repeats))
    points = point_outcomes(outcomes, axes)
    definitions = tuple(compare_definitions(outcomes, points, axes, depth, cv_repeats)) \
        if arch is not None else ()
    return Analysis(axes, depth, outcomes, points, predictors, _minimum(points, axes),
                    _regions(points, depth), cv_repeats, theory, definitions)


def _minimum(points: pd.DataFrame, axes: list[str]) -> dict:
    """The point of lowest mean loss, and the point where the theory exponents are jointly
    smallest (min of |L λ_a| + |L λ_g| over the grid), with their losses and ranks."""
    ranked = points.assign(rank=points["loss"].rank(method="min").astype(int))
    best = ranked.loc[ranked["loss"].idxmin()]
    closeness = ranked["lambda_a_theory"].abs() + ranked["lambda_g_theory"].abs()
    nearest = ranked.loc[closeness.idxmin()]

    def describe(row: pd.Series) -> dict:
        return {**{axis: float(row[axis]) for axis in axes}, "loss": float(row["loss"]),
                "rank": int(row["rank"]), "lambda_a": float(row["lambda_a_theory"]),
                "lambda_g": float(row["lambda_g_theory"])}

    return {"lowest_loss": describe(best), "smallest_exponents": describe(nearest),
            "points": int(len(points))}


def _regions(points: pd.DataFrame, depth: int) -> pd.DataFrame:
    """Mean loss per region: near both edges (L λ within ±1 for both theory exponents) and the
    ordered/chaotic × vanishing/exploding quadrants beyond them."""
    a, g = depth * points["lambda_a_theory"], depth * points["lambda_g_theory"]
    near = (a.abs() < 1.0) & (g.abs() < 1.0)
    labels = np.where(
        near, "near λ_a = λ_g = 0 (L·λ within ±1)",
        np.where(a < 0, "ordered", "chaotic") + np.where(g < 0, " & vanishing", " & exploding"),
    )
    table = points.assign(region=labels).groupby("region")["loss"].agg(["count", "mean", "min", "max"])
    return table.reset_index().rename(columns={"count": "points", "mean": "mean loss",
                                               "min": "best", "max": "worst"})
