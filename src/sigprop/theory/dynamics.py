"""Layer-to-layer dynamics of the geometry: trajectories, fixed points and Lyapunov exponents.

One layer maps (q, p) and the tangent (g_d, g_o) as composed in ``maps.propagate``. This module
iterates it (trajectories), finds its fixed points (the collapsed line ρ = 1 with norm q*, and
the regular simplex ρ* < 1 of the chaotic phase) and linearizes it there (docs/theory.md §4):

    λ_a = log of the growth factor per layer of 1 − ρ near the collapsed line at q*,
    λ_g = log of the top eigenvalue of the tangent map at the attracting forward state,
          so that ‖∂X_L/∂X_0‖_F² / (n d) ~ exp(λ_g L).

Near collapse, token differences are a tangent with zero token mean: 1 − ρ = (q − p)/q and
q − p = g_d − g_o, so λ_a = log(g_d' − g_o') for the tangent (g_d, g_o) = (1, 0) at (q*, q*).
The layer map commutes with permutations of the tokens, so at the collapsed state it keeps token
differences apart from the common mode and g_d − g_o evolves on its own. Both exponents are NaN
where the norm has no fixed point (``fixed_points``). Every function broadcasts over the
hyperparameter arrays held in the layer description.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sigprop.spec.components import SelfAttention, Serial, find
from sigprop.theory.fixed_points import grid_shape, settle_norm, take, take_at
from sigprop.theory.maps import Geometry, Tangent, propagate
from sigprop.theory.roots import bracketed_roots

# 1 − ρ below this counts as collapsed: the map cannot resolve smaller departures in float64.
COLLAPSE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class TrajectoryPrediction:
    """Per-layer predictions, arrays of shape (depth + 1,) + grid shape; l = 0 is the input."""

    q: np.ndarray
    p: np.ndarray
    rho: np.ndarray
    log_jac: np.ndarray  # log(‖∂X_l/∂X_0‖_F² / (n d)), 0 at l = 0


@dataclass(frozen=True)
class FixedPoint:
    """An attracting state of the forward map and the tangent map's growth there."""

    q: np.ndarray
    rho: np.ndarray
    lambda_g: np.ndarray


def trajectory(layer: Serial, n_tokens: int, q0, rho0, depth: int) -> TrajectoryPrediction:
    """Iterate the layer map ``depth`` times from (q0, ρ0) with the isotropic tangent (1, 0).

    The tangent is renormalized every layer (the map is linear in it) and its log scale
    accumulated, so log_jac stays finite at any depth.
    """
    geometry = Geometry(*_broadcast(layer, q0, np.asarray(q0, float) * np.asarray(rho0, float)))
    tangent = Tangent(np.ones_like(geometry.q), np.zeros_like(geometry.q))
    qs, ps, log_jacs = [geometry.q], [geometry.p], [np.zeros_like(geometry.q)]
    log_scale = np.zeros_like(geometry.q)
    for _ in range(depth):
        geometry, tangent = propagate(layer, geometry, tangent, n_tokens)
        log_scale = log_scale + np.log(tangent.g_d)
        tangent = Tangent(np.ones_like(tangent.g_d), tangent.g_o / tangent.g_d)
        qs.append(geometry.q)
        ps.append(geometry.p)
        log_jacs.append(log_scale)
    q, p = np.stack(qs), np.stack(ps)
    return TrajectoryPrediction(q=q, p=p, rho=p / q, log_jac=np.stack(log_jacs))


def collapsed_growth(layer: Serial, n_tokens: int, q0, depth: int) -> np.ndarray:
    """log of the growth factor of 1 − ρ for small token differences at each layer, along the
    collapsed trajectory from norm q0: entry l − 1 is log((1 − ρ_l)/(1 − ρ_{l−1})) =
    log((g_d − g_o)_l / (g_d − g_o)_{l−1}) − log(q_l / q_{l−1}), shape (depth,) + grid shape;
    −∞ where a branch erases token differences outright. (At a norm fixed point q_l = q_{l−1}
    and this is λ_a.)"""
    q = _broadcast(layer, q0)[0]
    geometry, logs = Geometry(q, q.copy()), []
    for _ in range(depth):
        after, tangent = propagate(layer, geometry, _unit_tangent(geometry.q), n_tokens)
        with np.errstate(divide="ignore"):
            logs.append(np.log(np.maximum(tangent.g_d - tangent.g_o, 0.0))
                        - np.log(after.q / geometry.q))
        geometry = Geometry(after.q, after.q)  # stays on the line (rounding aside)
    return np.stack(logs) if logs else np.zeros((0,) + q.shape)


def collapsed_norm(layer: Serial, n_tokens: int) -> np.ndarray:
    """q* of the collapsed line: the fixed point of q ↦ q' at ρ = 1 (NaN where none)."""
    return norm_fixed_point(layer, n_tokens, np.ones(grid_shape(layer)))


def lambda_a(layer: Serial, n_tokens: int, q_star: np.ndarray | None = None) -> np.ndarray:
    """Angle exponent: log growth per layer of 1 − ρ near the collapsed line at q* (−∞ when a
    branch with no skip path erases token differences outright; NaN without a q*).
    ``q_star``: the collapsed norm if already known."""
    q_star = collapsed_norm(layer, n_tokens) if q_star is None else q_star
    settled = np.isfinite(q_star)
    out = np.full(q_star.shape, np.nan)
    if settled.any():
        sub = take(layer, settled)
        q = q_star[settled]
        _, tangent = propagate(sub, Geometry(q, q), _unit_tangent(q), n_tokens)
        with np.errstate(divide="ignore"):
            out[settled] = np.log(np.maximum(tangent.g_d - tangent.g_o, 0.0))
    return out


def lambda_g(layer: Serial, n_tokens: int, q_collapsed: np.ndarray | None = None) -> np.ndarray:
    """λ_g at the attracting state reached from orthogonal tokens (ρ0 = 0), as
    ``attracting_state(layer, n_tokens).lambda_g``.

    Without attention the tokens never interact: a token's tangent maps through its own
    Jacobian, which depends on its own norm q* alone. The tangent map is then triangular
    (g_o does not feed g_d), its diagonal gain g_d'/g_d is the same at every cosine, and the
    off-diagonal one, a correlation of two tokens' Jacobians, is no larger (Cauchy–Schwarz): the
    top eigenvalue is the diagonal gain, read at the collapsed line without solving for the
    attracting cosine ρ*."""
    if find(layer, SelfAttention):
        return attracting_state(layer, n_tokens, 0.0, q_collapsed).lambda_g
    q_collapsed = collapsed_norm(layer, n_tokens) if q_collapsed is None else q_collapsed
    settled = np.isfinite(q_collapsed)
    out = np.full(q_collapsed.shape, np.nan)
    if settled.any():
        q = q_collapsed[settled]
        out[settled] = tangent_growth(take(layer, settled), n_tokens, q, np.ones_like(q))
    return out


def attracting_state(layer: Serial, n_tokens: int, rho0=0.0,
                     q_collapsed: np.ndarray | None = None) -> FixedPoint:
    """The forward fixed point reached from tokens with cosine ρ0, and λ_g there (NaN where the
    norm has no fixed point on the collapsed line; ``q_collapsed``: that norm if known).

    Reduces the 2-D map to one dimension: for an input cosine ρ the norm relaxes to q*(ρ)
    (``norm_fixed_point``), and R(ρ) = ρ'(q*(ρ), ρ) − ρ. Starting from ρ0, ρ grows while R > 0,
    so the attractor is the first root of R above ρ0 (the collapsed line ρ = 1 if there is
    none).
    """
    shape = grid_shape(layer)
    rho0 = np.broadcast_to(np.asarray(rho0, float), shape)
    q_collapsed = collapsed_norm(layer, n_tokens) if q_collapsed is None else q_collapsed
    settled = np.broadcast_to(np.isfinite(q_collapsed), shape)
    q, rho, lambda_g = (np.full(settled.shape, np.nan) for _ in range(3))
    if settled.any():
        sub = take(layer, settled)
        # Tokens that never interact (no attention) share one norm fixed point for every ρ.
        q_fixed = None if find(layer, SelfAttention) else np.broadcast_to(q_collapsed, shape)[settled]
        rho[settled] = _first_attracting_root(sub, n_tokens, rho0[settled].copy(), q_fixed)
        q[settled] = norm_fixed_point(sub, n_tokens, rho[settled]) if q_fixed is None else q_fixed
        lambda_g[settled] = tangent_growth(sub, n_tokens, q[settled], rho[settled])
    lambda_g[np.isnan(q)] = np.nan  # the forward map found no fixed point at its attractor
    return FixedPoint(q=q, rho=rho, lambda_g=lambda_g)


def tangent_growth(layer: Serial, n_tokens: int, q, rho) -> np.ndarray:
    """log of the top eigenvalue of the 2×2 tangent map at the state (q, ρ)."""
    geometry = Geometry(q, q * rho)
    ones, zeros = np.ones_like(q), np.zeros_like(q)
    _, col_d = propagate(layer, geometry, Tangent(ones, zeros), n_tokens)
    _, col_o = propagate(layer, geometry, Tangent(zeros, ones), n_tokens)
    a, b, c, d = col_d.g_d, col_o.g_d, col_d.g_o, col_o.g_o
    half_trace = (a + d) / 2.0
    top = half_trace + np.sqrt(np.maximum(((a - d) / 2.0) ** 2 + b * c, 0.0))
    return np.log(top)


def norm_fixed_point(layer: Serial, n_tokens: int, rho) -> np.ndarray:
    """q*(ρ): fixed point of q ↦ q'(q, ρ), the norm after one layer from the state (q, q ρ)."""
    return settle_norm(layer, n_tokens, np.asarray(rho, float))[0]


# Brackets for the attracting root of R: points uniform in log(1 − ρ), about a factor 13 apart.
# A pair of roots closer than that (a narrow second basin) can be missed.
_BRACKET_POINTS = 9


def _first_attracting_root(layer: Serial, n_tokens: int, rho0: np.ndarray,
                           q_fixed: np.ndarray | None = None) -> np.ndarray:
    """First root of R(ρ) = ρ' − ρ above ρ0 with R > 0 before it; 1 if R stays positive.

    Brackets on a grid uniform in log(1 − ρ) from 1 − ρ0 down to ``COLLAPSE_TOLERANCE``, then
    refines log(1 − ρ) only at the points where a bracket was found. ``q_fixed``: the norm
    fixed point when it does not depend on ρ (tokens that never interact).
    """
    log_gap0 = np.log(1.0 - np.minimum(rho0, 1.0 - COLLAPSE_TOLERANCE))
    fractions = np.linspace(0.0, 1.0, _BRACKET_POINTS).reshape((-1,) + (1,) * rho0.ndim)
    log_gaps = log_gap0 + fractions * (np.log(COLLAPSE_TOLERANCE) - log_gap0)
    residual = _cosine_residual(layer, n_tokens, 1.0 - np.exp(log_gaps), q_fixed)
    falls = (residual[:-1] > 0) & (residual[1:] <= 0)
    found = falls.any(axis=0)
    rho = np.where((residual[0] <= 0) & ~found, rho0, 1.0)  # ρ0 itself attracting, or collapse
    if not found.any():
        return rho
    first = np.argmax(falls, axis=0)[found]
    # Larger gap (smaller ρ) has R > 0, smaller gap has R ≤ 0.
    high = np.take_along_axis(log_gaps[:, found], first[None], axis=0)[0]
    low = np.take_along_axis(log_gaps[:, found], first[None] + 1, axis=0)[0]
    sub_layer = take(layer, found)
    sub_q = None if q_fixed is None else q_fixed[found]
    log_gap = bracketed_roots(lambda g, at: _cosine_residual(
        take_at(sub_layer, at), n_tokens, 1.0 - np.exp(g), None if sub_q is None else sub_q[at]),
        low, high, 1e-11)
    rho[found] = 1.0 - np.exp(log_gap)
    return rho


def _cosine_residual(layer: Serial, n_tokens: int, rho: np.ndarray,
                     q_fixed: np.ndarray | None = None) -> np.ndarray:
    """R(ρ) = ρ' − ρ after one layer from (q*(ρ), q*(ρ) ρ); ``q_fixed``: q* when it does not
    depend on ρ."""
    if q_fixed is None:
        return settle_norm(layer, n_tokens, rho)[1].rho - rho
    q = np.broadcast_to(q_fixed, rho.shape)
    return propagate(layer, Geometry(q, q * rho), None, n_tokens)[0].rho - rho


def _unit_tangent(q: np.ndarray) -> Tangent:
    return Tangent(np.ones_like(q), np.zeros_like(q))


def _broadcast(layer: Serial, *arrays) -> list[np.ndarray]:
    shape = np.broadcast_shapes(grid_shape(layer), *(np.shape(a) for a in arrays))
    return [np.broadcast_to(np.asarray(a, float), shape).copy() for a in arrays]
