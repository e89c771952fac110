"""Root finding for a critical initialization on the measured totals of the rescaled models.

Unknowns: u_k = log s_k, one per knob (u_k = t_k itself for an additive ``shift`` knob), within
bounds. Residuals: r(u) = (log_gap_L, log_jac_L),
i.e. (L·λ_a^(L), L·λ_g^(L)), plus the non-identity constraint departure(u) ≥ δ as a penalty

    r_3(u) = PENALTY · max(0, δ − departure(u)) / δ,

so that the trivial root (every block the identity: both totals vanish for free) costs as much
as missing a target by PENALTY. ``scipy.optimize.least_squares`` (trust region reflective,
which keeps u inside its bounds) minimizes |r|² from the warm start with forward-difference
Jacobian in u at the start (step ``DIFF_STEP``, k evaluations for k knobs) and Broyden updates
after (no extra evaluations; where the solver stops short of the targets it restarts from there
with a fresh Jacobian, up to ``RESTARTS`` times); the evaluations are deterministic given the seeds (common random numbers across all factors), so the
differences are smooth. The search stops at the first feasible point within ``ACCEPT`` of both
targets, or once a feasible point within the tolerance has not improved by ``STALL_GAIN`` in
``STALL`` evaluations; it returns the best point it evaluated (feasible first, then the
smallest max(|log_gap_L|, |log_jac_L|), then the smallest sum of squares: a total that no
knob moves leaves the other to decide), and, when that misses the tolerance, why.

The totals are not convex in the knobs: a Post-LN stack of 64 blocks, searched from its default
on (mlp_input, attn_values), stalls at (× 6.4, × 0.57) with L·λ_a = −2.4, although
attn_values × 0.1 alone reaches (+0.08, +0.17). So a local search that misses the tolerance is
followed by coordinate scans (each knob over its bounds, ``SCAN_POINTS`` values, the others at
the best point so far) and a second local search from the best point they found. A single knob
is scanned first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection

import numpy as np
from scipy.optimize import least_squares

from sigprop.init.ensemble import Evaluation, ScaledEnsemble

PENALTY = 10.0       # weight of a missed non-identity constraint, relative to δ
ACCEPT = 0.1         # stop at the first feasible point with both |totals| below this
DIFF_STEP = 0.05     # forward-difference step in log s (5 %)
STALL, STALL_GAIN = 6, 0.02
RESTARTS = 2         # fresh finite-difference restarts after least_squares stops short
MAX_EVALUATIONS = 60
SCAN_POINTS = 9      # one knob: values scanned over its bounds before the local search
UNDEFINED = 1e3      # residual standing in for a total that is not finite


class _Found(Exception):
    """Raised inside the residual function to stop at an accepted point."""


@dataclass(frozen=True)
class Solution:
    best: Evaluation
    reached: bool
    reason: str


def solve(ensemble: ScaledEnsemble, start: dict[str, float],
          bounds: dict[str, tuple[float, float]], *, min_departure: float,
          tolerance: float, additive: Collection[str] = ()) -> Solution:
    """The knob values (knob → s) nearest (0, 0) in (log_gap_L, log_jac_L) with departure ≥
    ``min_departure`` and s within ``bounds``, searched from ``start``; the knobs named in
    ``additive`` are searched in s itself, the others in log s. Every evaluation already in
    ``ensemble.history`` is a candidate too."""
    names = list(start)
    shifts = np.array([n in additive for n in names])

    def to_u(values) -> np.ndarray:
        values = np.asarray(values, dtype=float)
        return np.where(shifts, values, np.log(np.where(shifts, 1.0, values)))

    def from_u(u: np.ndarray) -> list[float]:
        return np.where(shifts, u, np.exp(u)).tolist()

    low = to_u([bounds[n][0] for n in names])
    high = to_u([bounds[n][1] for n in names])
    u0 = np.clip(to_u([start[n] for n in names]), low, high)
    seen = {_key(to_u([e.scales[n] for n in names])): _residual(e, min_departure)
            for e in ensemble.history if set(e.scales) == set(names)}  # no re-evaluation
    progress = {"best": np.inf, "since": 0}

    def residual(u: np.ndarray) -> np.ndarray:
        key = _key(u)
        if key in seen:
            return seen[key]
        evaluation = ensemble.evaluate(dict(zip(names, from_u(u))))
        miss = _miss(evaluation) if _feasible(evaluation, min_departure) else np.inf
        if miss <= ACCEPT:
            raise _Found
        improved = miss < progress["best"] - STALL_GAIN
        progress["since"] = 0 if improved else progress["since"] + 1
        progress["best"] = min(progress["best"], miss)
        if progress["best"] <= tolerance and progress["since"] >= STALL:
            raise _Found
        seen[key] = _residual(evaluation, min_departure)
        return seen[key]

    last: dict[str, np.ndarray] = {}

    def jacobian(u: np.ndarray) -> np.ndarray:
        """Forward differences at the start (stepping inwards at an upper bound), then Broyden's
        rank-one update J += (Δf − J Δu) Δuᵀ / |Δu|² along each accepted step."""
        f0 = residual(u)
        if "J" in last:
            step = u - last["u"]
            if step @ step > 0:
                last["J"] = last["J"] + np.outer(f0 - last["f"] - last["J"] @ step, step) / (step @ step)
        else:
            columns = []
            for k in range(len(u)):
                h = DIFF_STEP if u[k] + DIFF_STEP <= high[k] else -DIFF_STEP
                shifted = u.copy()
                shifted[k] += h
                columns.append((residual(shifted) - f0) / h)
            last["J"] = np.stack(columns, axis=1)
        last["u"], last["f"] = u.copy(), f0
        return last["J"]

    def local(u0: np.ndarray) -> None:
        """Least squares from u0, restarted with a fresh Jacobian where it stops short."""
        for _ in range(RESTARTS + 1):  # a stale Broyden Jacobian can stop short: restart
            last.clear()
            fit = least_squares(residual, u0, jac=jacobian, bounds=(low, high), x_scale=1.0,
                                max_nfev=MAX_EVALUATIONS, xtol=1e-2, ftol=1e-3)
            if len(ensemble.history) >= MAX_EVALUATIONS or np.allclose(fit.x, u0, atol=1e-2):
                return
            u0 = fit.x

    def best_u() -> np.ndarray:
        best = min((e for e in ensemble.history if set(e.scales) == set(names)),
                   key=lambda e: _rank(e, min_departure))
        return np.clip(to_u([best.scales[n] for n in names]), low, high)

    try:
        if len(names) == 1:
            _scan(residual, u0, low, high, 0)
            u0 = best_u()
        local(u0)
        if len(names) > 1 and _miss_of(best_u(), ensemble, names, to_u,
                                       min_departure) > tolerance:
            for k in range(len(names)):
                _scan(residual, best_u(), low, high, k)
            local(best_u())
    except _Found:
        pass
    # ties in the miss (a total no knob moves): the smaller |r|
    best = min(ensemble.history, key=lambda e: _rank(e, min_departure))
    reached = _feasible(best, min_departure) and _miss(best) <= tolerance
    return Solution(best, reached, "" if reached else _why(best, bounds, min_departure))


def _scan(residual, u: np.ndarray, low: np.ndarray, high: np.ndarray, k: int) -> None:
    """Evaluate ``SCAN_POINTS`` values of knob k spread evenly over its bounds (in u), the
    others at ``u``. Totals of ReLU networks at small width move in small jumps as units
    switch, which can point a local first step the wrong way, and a deep Post-LN stack has
    local minima; a scan of the whole range is misled by neither. Raises ``_Found`` at an
    accepted point."""
    for value in np.linspace(low[k], high[k], SCAN_POINTS):
        shifted = u.copy()
        shifted[k] = value
        residual(shifted)


def _rank(evaluation: Evaluation, min_departure: float) -> tuple:
    """Feasible first, then the smaller miss, the smaller |r|², the larger departure."""
    return (not _feasible(evaluation, min_departure), round(_miss(evaluation), 6),
            float(np.square(evaluation.residual).sum()), -evaluation.departure)


def _miss_of(u: np.ndarray, ensemble: ScaledEnsemble, names: list[str], to_u,
             min_departure: float) -> float:
    """The miss of the evaluation at ``u`` (inf where it is not feasible)."""
    for e in ensemble.history:
        if set(e.scales) == set(names) and np.allclose(to_u([e.scales[n] for n in names]), u):
            return _miss(e) if _feasible(e, min_departure) else float("inf")
    return float("inf")


def _key(u: np.ndarray) -> tuple[float, ...]:
    return tuple(np.round(u, 12))


def _residual(evaluation: Evaluation, min_departure: float) -> np.ndarray:
    """(log_gap_L, gradient total, PENALTY · relative departure shortfall)."""
    departure = evaluation.departure if np.isfinite(evaluation.departure) else 0.0
    shortfall = max(0.0, min_departure - departure) / min_departure
    # a total that over- or underflowed (or is undefined) counts as far off, not as an error
    totals = np.nan_to_num(evaluation.residual, nan=UNDEFINED, posinf=UNDEFINED,
                           neginf=-UNDEFINED)
    return np.append(totals, PENALTY * shortfall)


def _feasible(evaluation: Evaluation, min_departure: float) -> bool:
    return evaluation.departure >= min_departure and bool(np.all(np.isfinite(evaluation.residual)))


def _miss(evaluation: Evaluation) -> float:
    """max(|log_gap_L|, |log_jac_L|): the distance from both targets (inf when not measured)."""
    values = np.abs(evaluation.residual)
    return float(values.max()) if np.all(np.isfinite(values)) else float("inf")


def _why(best: Evaluation, bounds: dict[str, tuple[float, float]], min_departure: float) -> str:
    """Which constraint holds the best point away from (0, 0)."""
    reasons = []
    at_bound = [f"{name} at its {'lower' if np.isclose(s, bounds[name][0], rtol=1e-3) else 'upper'}"
                f" bound {s:.3g}" for name, s in best.scales.items()
                if np.isclose(s, bounds[name][0], rtol=1e-3)
                or np.isclose(s, bounds[name][1], rtol=1e-3)]
    if at_bound:
        reasons.append("knobs at their bounds: " + ", ".join(at_bound))
    if best.departure < min_departure * 1.05:
        reasons.append(f"the non-identity constraint is active (departure {best.departure:.3f}, "
                       f"minimum {min_departure:.3f}): closer to (0, 0) these knobs only get by "
                       "making the blocks closer to the identity")
    if len(best.scales) < 2:
        reasons.append("one knob cannot set two totals")
    if not reasons:
        reasons.append("the search found no better point with these knobs (a local minimum of "
                       "|r|²): try other knobs (--knob)")
    return "; ".join(reasons)
