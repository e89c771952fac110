"""Layer-to-layer dynamics of the geometry: trajectories, fixed points and Lyapunov exponents.

One layer L maps (q, p) and the tangent (g_d, g_o) as composed in ``maps.propagate``. This module
iterates it (trajectories), finds its fixed points (the collapsed line ρ = 1 with norm q*, and the
regular simplex ρ* < 1 of the chaotic phase) and linearizes it there (THEORY.md §3):

    λ_a = log of the growth factor per layer of 1 − ρ near the collapsed line at q*,
    λ_g = log of the top eigenvalue of the tangent map at the attracting forward state,
          so that ‖∂X_L/∂X_0‖_F² / (n d) ~ exp(λ_g L).

Near collapse, token differences are a tangent with zero token mean: 1 − ρ = (q − p)/q and
q − p = g_d − g_o, so λ_a = log(g_d' − g_o') for the tangent (g_d, g_o) = (1, 0) at (q*, q*).
Every function broadcasts over the hyperparameter arrays held in the layer description.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sigprop.architecture import Serial, hyperparameter_values, map_hyperparameters
from sigprop.theory.maps import Geometry, Tangent, propagate
from sigprop.theory.roots import bracketed_roots

_Q_TOLERANCE = 1e-13
_MAX_NORM_ITERATIONS = 200
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


def collapsed_norm(layer: Serial, n_tokens: int) -> np.ndarray:
    """q* of the collapsed line: the fixed point of q ↦ q' at ρ = 1."""
    return norm_fixed_point(layer, n_tokens, np.ones(_grid_shape(layer)))


def lambda_a(layer: Serial, n_tokens: int) -> np.ndarray:
    """Angle exponent: log growth per layer of 1 − ρ near the collapsed line at q* (−∞ when a
    branch with α = 1 erases token differences outright)."""
    q_star = collapsed_norm(layer, n_tokens)
    _, tangent = propagate(layer, Geometry(q_star, q_star), _unit_tangent(q_star), n_tokens)
    with np.errstate(divide="ignore"):
        return np.log(np.maximum(tangent.g_d - tangent.g_o, 0.0))


def attracting_state(layer: Serial, n_tokens: int, rho0=0.0) -> FixedPoint:
    """The forward fixed point reached from tokens with cosine ρ0, and λ_g there.

    Reduces the 2-D map to one dimension: for an input cosine ρ the norm relaxes to q*(ρ)
    (``norm_fixed_point``), and R(ρ) = ρ'(q*(ρ), ρ) − ρ. Starting from ρ0, ρ grows while R > 0,
    so the attractor is the first root of R above ρ0 (the collapsed line ρ = 1 if there is
    none).
    """
    shape = _grid_shape(layer)
    rho0 = np.broadcast_to(np.asarray(rho0, float), shape).copy()
    rho = _first_attracting_root(layer, n_tokens, rho0)
    q = norm_fixed_point(layer, n_tokens, rho)
    return FixedPoint(q=q, rho=rho, lambda_g=tangent_growth(layer, n_tokens, q, rho))


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
    return _settle_norm(layer, n_tokens, np.asarray(rho, float))[0]


def _settle_norm(layer: Serial, n_tokens: int, rho: np.ndarray) -> tuple[np.ndarray, Geometry]:
    """q*(ρ) and the geometry one layer after (q*, q* ρ).

    Secant iteration on q' − q from q = 1 and q = 2: exact after one step when the norm map is
    affine (every architecture whose branches start with LayerNorm), and free of the
    cancellation that stalls fixed-point iteration when the map is close to the identity.
    """

    def step(q: np.ndarray) -> Geometry:
        return propagate(layer, Geometry(q, q * rho), None, n_tokens)[0]

    q_prev, q = np.ones_like(rho), np.full_like(rho, 2.0)
    r_prev, after = step(q_prev).q - q_prev, step(q)
    r = after.q - q
    for _ in range(_MAX_NORM_ITERATIONS):
        dq = q - q_prev
        slope = (r - r_prev) / np.where(dq == 0, 1.0, dq)
        # Keep q where it no longer moves or where q' − q is flat (the identity map: every q is
        # a fixed point).
        hold = (dq == 0) | (np.abs(slope) < 1e-300)
        q_next = np.where(hold, q, q - r / np.where(hold, 1.0, slope))
        q_next = np.where(q_next > 0, q_next, 0.5 * q)
        moved = np.abs(q_next - q) > _Q_TOLERANCE * np.maximum(np.abs(q_next), 1.0)
        q_prev, r_prev = q, r
        q, after = q_next, step(q_next)
        r = after.q - q
        if not np.any(moved):
            return q, after
    raise RuntimeError("the norm map did not converge to a fixed point")


# Brackets for the attracting root of R: points uniform in log(1 − ρ), about a factor 13 apart.
# A pair of roots closer than that (a narrow second basin) can be missed.
_BRACKET_POINTS = 9


def _first_attracting_root(layer: Serial, n_tokens: int, rho0: np.ndarray) -> np.ndarray:
    """First root of R(ρ) = ρ' − ρ above ρ0 with R > 0 before it; 1 if R stays positive.

    Brackets on a grid uniform in log(1 − ρ) from 1 − ρ0 down to ``COLLAPSE_TOLERANCE``, then
    refines log(1 − ρ) only at the points where a bracket was found.
    """
    log_gap0 = np.log(1.0 - np.minimum(rho0, 1.0 - COLLAPSE_TOLERANCE))
    fractions = np.linspace(0.0, 1.0, _BRACKET_POINTS).reshape((-1,) + (1,) * rho0.ndim)
    log_gaps = log_gap0 + fractions * (np.log(COLLAPSE_TOLERANCE) - log_gap0)
    residual = _cosine_residual(layer, n_tokens, 1.0 - np.exp(log_gaps))
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
    log_gap = bracketed_roots(
        lambda g: _cosine_residual(sub_layer, n_tokens, 1.0 - np.exp(g)), low, high, 1e-11
    )
    rho[found] = 1.0 - np.exp(log_gap)
    return rho


def _cosine_residual(layer: Serial, n_tokens: int, rho: np.ndarray) -> np.ndarray:
    """R(ρ) = ρ' − ρ after one layer from (q*(ρ), q*(ρ) ρ)."""
    return _settle_norm(layer, n_tokens, rho)[1].rho - rho


def take(layer: Serial, mask: np.ndarray) -> Serial:
    """The description restricted to the grid points where ``mask`` is true (flattened)."""
    shape = _grid_shape(layer)
    return map_hyperparameters(layer, lambda v: np.broadcast_to(np.asarray(v, float), shape)[mask])


def _unit_tangent(q: np.ndarray) -> Tangent:
    return Tangent(np.ones_like(q), np.zeros_like(q))


def _grid_shape(layer: Serial) -> tuple[int, ...]:
    """Broadcast shape of every numeric hyperparameter in the description."""
    return np.broadcast_shapes(*(np.shape(v) for v in hyperparameter_values(layer)))


def _broadcast(layer: Serial, *arrays) -> list[np.ndarray]:
    shape = np.broadcast_shapes(_grid_shape(layer), *(np.shape(a) for a in arrays))
    return [np.broadcast_to(np.asarray(a, float), shape).copy() for a in arrays]
