"""Finite-depth quantities: what an L-layer stack does, with or without a fixed point.

Blocks with unit residuals (GPT-2, Llama, BERT) have no norm fixed point: q grows with depth and
the per-layer rates change from layer to layer, so the asymptotic exponents do not exist and a
network is described at its depth L (docs/theory.md §6):

    q_L, ρ_L, log_jac_L       the trajectory from the input geometry (q0, ρ0);
    λ_a^(L) = (1/L) log((1 − ρ_L)/(1 − ρ_0));
    λ_g^(L) = (1/L) log_jac_L, the growth of ‖∂X_L/∂X_0‖_F² / (n d) from (q0, ρ0);
    local rates: the per-layer increments of both. Where there is a fixed point the local λ_a
              of the limit ρ0 → 1 tends to the asymptotic λ_a, and the local λ_g to the
              asymptotic λ_g where the collapsed state attracts (ordered phase); in the chaotic
              phase the ρ0 → 1 trajectory stays on the unstable collapsed line, and only a
              trajectory from ρ0 < 1 reaches the attractor.

ρ0 = 1 means the limit ρ0 → 1 (nearly collapsed inputs, linearized): λ_a^(L) is then the growth
of small token differences along the collapsed trajectory from q0 (per layer, the growth of
q − p = g_d − g_o divided by the growth of q), and λ_g^(L) the growth of an isotropic tangent
along the same trajectory. This is the default of the finite-depth exponents because only
departures from collapse make λ_a^(L) = 0 the edge of chaos: from ρ0 far from 1, λ_a^(L) measures
the relaxation of the cosine towards its attractor instead (in the chaotic phase ρ_L → ρ* from
either side), and its zero moves with ρ0 (docs/theory.md §6).
"""

from __future__ import annotations

import numpy as np

from sigprop.spec.components import Serial
from sigprop.spec.errors import InvalidHyperparameter, NotCovered
from sigprop.theory.results import DepthProfile
from sigprop.theory.causal import causal_collapsed_profile, causal_trajectory, is_causal
from sigprop.theory.dynamics import collapsed_growth, trajectory
from sigprop.theory.fixed_points import grid_shape

# Grid points whose causal profile from ρ0 < 1 may be computed in one call (~5 s each at L = 24).
MAX_CAUSAL_TRAJECTORIES = 16


def depth_profile(layer: Serial, n_tokens: int, depth: int, q0=1.0, rho0=1.0) -> DepthProfile:
    """The trajectory from (q0, ρ0) through ``depth`` layers, and log((1 − ρ_l)/(1 − ρ_0)):
    the collapsed growth from q0 when ρ0 = 1 (the limit), else the trajectory's own.

    1 − ρ_l = (q_l − p_l)/q_l is computed from q and p; it is rounding below ~1e-13 and 0 (log
    −∞) once the tokens are collapsed to float64 precision. Causal layers use the causal theory:
    exact at ρ0 = 1, the Monte Carlo trajectory of the full Gram matrices otherwise (position
    averages q, p, ρ)."""
    if is_causal(layer):
        return _causal_profile(layer, n_tokens, depth, q0, rho0)
    path = trajectory(layer, n_tokens, q0, rho0, depth)
    if _limit(rho0):
        growth = collapsed_growth(layer, n_tokens, q0, depth)
        log_spread = np.concatenate([np.zeros((1,) + growth.shape[1:]),
                                     np.cumsum(growth, axis=0)])
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            gap = np.maximum(path.q - path.p, 0.0) / path.q
            log_spread = np.log(gap) - np.log(gap[0])
    log_spread = np.broadcast_to(log_spread, path.q.shape)
    return DepthProfile(path.q, path.p, path.rho, path.log_jac, log_spread)


def _causal_profile(layer: Serial, n_tokens: int, depth: int, q0, rho0) -> DepthProfile:
    """``depth_profile`` of a causal layer (position-averaged q, p, ρ and log_jac)."""
    if _limit(rho0):
        return causal_collapsed_profile(layer, n_tokens, q0, depth)
    points = int(np.prod(np.broadcast_shapes(grid_shape(layer), np.shape(q0), np.shape(rho0))))
    if points > MAX_CAUSAL_TRAJECTORIES:
        raise NotCovered(f"causal finite-depth exponents from ρ0 < 1 follow a Monte Carlo "
                         f"trajectory per point ({points} asked, at most "
                         f"{MAX_CAUSAL_TRAJECTORIES}); on a grid use ρ0 = 1, the limit of nearly "
                         "collapsed inputs, which is exact")
    path = causal_trajectory(layer, n_tokens, q0, rho0, depth)
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = np.maximum(path.q - path.p, 0.0) / path.q
        log_spread = np.log(gap) - np.log(gap[0])
    return DepthProfile(path.q, path.p, path.rho, path.log_jac, log_spread)


def _limit(rho0) -> bool:
    """Whether ρ0 asks for the limit ρ0 → 1 (all entries 1) or for trajectories (all < 1)."""
    limit = np.asarray(rho0, float) >= 1.0
    if limit.any() and not limit.all():
        raise InvalidHyperparameter("rho0: give either 1 (the limit of nearly collapsed inputs) "
                                    "or values below 1 in one call, not both")
    return bool(limit.all())
