"""The norm fixed point q*(ρ) of a layer map, or NaN where the norm has none to settle at.

At a fixed cosine ρ the layer maps the norm q ↦ F(q) (the q of one layer after the state
(q, q ρ)). Blocks with α-form residuals (a² + b² = 1) have an attracting fixed point q* = F(q*)
with F'(q*) < 1; blocks with unit residuals (a = 1) do not: before a pre-norm every branch adds
O(1) to q, so F(q) = q + B and q grows by B per layer without bound (docs/theory.md §6).
Asymptotic exponents live at q*; where there is none they are NaN, and the finite-depth
quantities of ``sigprop.theory.depth`` take over.

Method. A secant iteration on r(q) = F(q) − q from q = 1 and q = 2: exact after one step when F
is affine (every branch starts with a norm, or the layer ends with one), and free of the
cancellation that stalls plain iteration when F is close to the identity. A point counts as
settled when r vanishes there and decreases through zero (F' < 1), or when F is the identity
(every q is fixed). Where the secant fails and F is not affine (normalization-free or DyT
blocks, whose F may be steeper than 1 at small q), the map itself is iterated towards its
attractor and the secant restarted from there.
"""

from __future__ import annotations

import numpy as np

from sigprop.spec.components import (
    SelfAttention,
    Serial,
    find,
    hyperparameter_values,
    map_hyperparameters,
)
from sigprop.theory.maps import Geometry, propagate

_Q_TOLERANCE = 1e-13
_MAX_SECANT_STEPS = 200
_Q_MAX = 1e12  # a norm beyond this has run away: no fixed point
_RESIDUAL_TOLERANCE = 1e-9  # |F(q*) − q*| / max(q*, 1) of a settled point
_ITERATIONS = 300  # plain iterations of the fallback


def settle_norm(layer: Serial, n_tokens: int, rho) -> tuple[np.ndarray, Geometry]:
    """q*(ρ) and the geometry one layer after (q*, q* ρ); NaN where there is no attracting
    norm fixed point.

    Without attention the tokens never interact: each token's norm maps on its own, q*(ρ)
    is the same for every ρ and is settled once, at ρ = 1."""
    rho = np.asarray(rho, float)
    shape = np.broadcast_shapes(grid_shape(layer), rho.shape)
    rho = np.broadcast_to(rho, shape)
    if not find(layer, SelfAttention) and np.any(rho != 1.0):
        q = np.broadcast_to(settle_norm(layer, n_tokens, np.ones(grid_shape(layer)))[0], shape)
        finite = np.isfinite(q)
        after = propagate(layer, Geometry(np.where(finite, q, 1.0), np.where(finite, q, 1.0) * rho),
                          None, n_tokens)[0]
        nan = np.where(finite, 1.0, np.nan)
        return q * nan, Geometry(after.q * nan, after.p * nan)
    q, after, settled = _secant(layer, n_tokens, rho, np.ones(shape), np.full(shape, 2.0))
    # Arrays, also at a single point (shape ()), so that the fallback below writes into them.
    q, after_q, after_p = (np.array(x, dtype=float) for x in (q, after.q, after.p))
    settled = np.array(settled, dtype=bool)
    retry = ~settled
    if retry.any():
        sub_layer, sub_rho = take(layer, retry), rho[retry]
        again = ~_affine(sub_layer, n_tokens, sub_rho)
        if again.any():
            fallback = _iterate_then_secant(take(sub_layer, again), n_tokens, sub_rho[again])
            where = np.flatnonzero(retry)[again]
            for target, values in zip((q, after_q, after_p, settled), fallback):
                target.flat[where] = values
    nan = np.where(settled, 1.0, np.nan)
    return q * nan, Geometry(after_q * nan, after_p * nan)


def take(layer: Serial, mask: np.ndarray) -> Serial:
    """The description restricted to the grid points where ``mask`` is true (flattened);
    ``mask`` has the full grid shape."""
    return map_hyperparameters(
        layer, lambda v: np.broadcast_to(np.asarray(v, float), mask.shape)[mask])


def take_at(layer: Serial, at: np.ndarray) -> Serial:
    """The description restricted to the points ``at`` (indices into its flattened grid)."""
    shape = grid_shape(layer)
    return map_hyperparameters(
        layer, lambda v: np.broadcast_to(np.asarray(v, float), shape).reshape(-1)[at])


def grid_shape(layer: Serial) -> tuple[int, ...]:
    """Broadcast shape of every numeric hyperparameter in the description."""
    return np.broadcast_shapes(*(np.shape(v) for v in hyperparameter_values(layer)))


def _norm_step(layer: Serial, n_tokens: int, rho: np.ndarray):
    def step(q: np.ndarray) -> Geometry:
        return propagate(layer, Geometry(q, q * rho), None, n_tokens)[0]

    return step


def _secant(layer: Serial, n_tokens: int, rho: np.ndarray, q_prev: np.ndarray, q: np.ndarray):
    """Secant iteration on r = F(q) − q from (q_prev, q); returns q, the geometry after it, and
    where it settled at an attracting fixed point. Points that fail are frozen (never stepped
    with a non-finite or negative q); once a step moves only some points, only those are
    stepped (the map of a converged point is kept)."""
    step = _norm_step(layer, n_tokens, rho)
    r_prev = step(q_prev).q - q_prev
    after = step(q)
    r = after.q - q
    failed = ~(np.isfinite(r_prev) & np.isfinite(r))
    # The first secant slope decides whether the fixed point attracts (F' < 1): it is exact for
    # affine maps, and later slopes between nearly equal q are mostly rounding.
    first_slope = (r - r_prev) / (q - q_prev)
    identity = (r == 0) & (r_prev == 0)
    done = np.zeros_like(failed)
    slope = np.zeros_like(q)
    after_q, after_p = np.array(after.q, dtype=float), np.array(after.p, dtype=float)
    for _ in range(_MAX_SECANT_STEPS):
        dq = q - q_prev
        moving = (dq != 0) & ~failed & ~done
        slope = np.where(moving, (r - r_prev) / np.where(moving, dq, 1.0), slope)
        # Hold q where r is flat (the identity map: every q is fixed; or F(q) = q + B, B ≠ 0,
        # which the residual test below rejects).
        hold = ~moving | (np.abs(slope) < 1e-300)
        q_next = np.where(hold, q, q - r / np.where(hold, 1.0, slope))
        q_next = np.where(q_next > 0, q_next, 0.5 * q)
        failed |= ~np.isfinite(q_next) | (q_next > _Q_MAX)
        q_next = np.where(failed | done, q, q_next)
        moved = ~failed & ~done & (
            np.abs(q_next - q) > _Q_TOLERANCE * np.maximum(np.abs(q_next), 1.0))
        done |= ~failed & ~moved  # converged points stay put (their slope stays meaningful)
        q_prev, r_prev = q, r.copy()
        q = q_next
        stepped = _step_where(layer, n_tokens, rho, q, moved)
        after_q[moved], after_p[moved] = stepped.q, stepped.p
        r = np.where(moved, after_q - q, r)
        failed |= ~np.isfinite(r)
        if not moved.any():
            break
    else:
        failed |= moved
    attracting = (np.abs(r) <= _RESIDUAL_TOLERANCE * np.maximum(q, 1.0)) & (
        (first_slope < 0) | identity)
    return q, Geometry(after_q, after_p), ~failed & attracting


def _step_where(layer: Serial, n_tokens: int, rho: np.ndarray, q: np.ndarray,
                mask: np.ndarray) -> Geometry:
    """The geometry one layer after (q, q ρ) at the points of ``mask`` only (flattened)."""
    if not mask.any():
        return Geometry(np.empty(0), np.empty(0))
    sub = take(layer, mask)
    q_sub, rho_sub = q[mask], np.broadcast_to(rho, mask.shape)[mask]
    return propagate(sub, Geometry(q_sub, q_sub * rho_sub), None, n_tokens)[0]


def _affine(layer: Serial, n_tokens: int, rho: np.ndarray) -> np.ndarray:
    """Whether F is affine in q (second difference of F at q = 1, 2, 3 vanishes to rounding)."""
    step = _norm_step(layer, n_tokens, rho)
    f1, f2, f3 = (step(np.full(rho.shape, float(q))).q for q in (1, 2, 3))
    curvature = np.abs(f3 - 2.0 * f2 + f1)
    with np.errstate(invalid="ignore"):
        return curvature <= 1e-12 * (np.abs(f1) + np.abs(f2) + np.abs(f3))


def _iterate_then_secant(layer: Serial, n_tokens: int, rho: np.ndarray):
    """Iterate q ← F(q) from q = 1 towards the attractor, then polish it with the secant."""
    step = _norm_step(layer, n_tokens, rho)
    q = np.ones(rho.shape)
    for _ in range(_ITERATIONS):
        q_next = step(q).q
        runaway = ~np.isfinite(q_next) | (q_next > _Q_MAX) | (q_next <= 0)
        q_next = np.where(runaway, q, q_next)
        if np.all(runaway | (np.abs(q_next - q) <= 1e-6 * q)):
            q = q_next
            break
        q = q_next
    q, after, settled = _secant(layer, n_tokens, rho, q, 1.01 * q)
    return q, after.q, after.p, settled
