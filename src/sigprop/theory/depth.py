"""Finite-depth quantities: what an L-layer stack does, with or without a fixed point.

Blocks with unit residuals (GPT-2, Llama, BERT) have no norm fixed point: q grows with depth and
the per-layer rates change from layer to layer, so the asymptotic exponents do not exist and a
network is described at its depth L (docs/theory.md §6):

    q_L, ρ_L, log_jac_L       the trajectory from the input geometry (q0, ρ0);
    λ_a^(L) = (1/L) log((1 − ρ_L)/(1 − ρ_0)) for small token differences on the collapsed
              trajectory from norm q0 (the ρ0 → 1 limit): per layer, the growth of
              q − p = g_d − g_o divided by the growth of q;
    λ_g^(L) = (1/L) log_jac_L, the growth of ‖∂X_L/∂X_0‖_F² / (n d) from (q0, ρ0);
    local rates: the per-layer increments of both, whose limit (when there is a fixed point) is
              the asymptotic λ_a and λ_g.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sigprop.spec.components import Serial
from sigprop.theory.dynamics import collapsed_growth, trajectory


@dataclass(frozen=True)
class DepthProfile:
    """Arrays of shape (L + 1,) + grid shape, l = 0 the input: the trajectory's q, p, ρ and
    log_jac from (q0, ρ0), and ``log_spread``, the accumulated log growth of 1 − ρ for small
    token differences on the collapsed trajectory from q0 (0 at l = 0)."""

    q: np.ndarray
    p: np.ndarray
    rho: np.ndarray
    log_jac: np.ndarray
    log_spread: np.ndarray

    @property
    def depth(self) -> int:
        return self.q.shape[0] - 1

    @property
    def lambda_a(self) -> np.ndarray:
        """λ_a^(L) = log_spread_L / L."""
        return self.log_spread[-1] / self.depth

    @property
    def lambda_g(self) -> np.ndarray:
        """λ_g^(L) = log_jac_L / L."""
        return self.log_jac[-1] / self.depth

    @property
    def local_lambda_a(self) -> np.ndarray:
        """Per-layer log growth of token differences at collapse, shape (L,) + grid."""
        return np.diff(self.log_spread, axis=0)

    @property
    def local_lambda_g(self) -> np.ndarray:
        """Per-layer increment of log_jac, shape (L,) + grid."""
        return np.diff(self.log_jac, axis=0)


def depth_profile(layer: Serial, n_tokens: int, depth: int, q0=1.0, rho0=0.0) -> DepthProfile:
    """The trajectory from (q0, ρ0) and the collapsed growth from q0, through ``depth`` layers."""
    path = trajectory(layer, n_tokens, q0, rho0, depth)
    growth = collapsed_growth(layer, n_tokens, q0, depth)
    log_spread = np.concatenate([np.zeros((1,) + growth.shape[1:]), np.cumsum(growth, axis=0)])
    log_spread = np.broadcast_to(log_spread, path.q.shape)
    return DepthProfile(path.q, path.p, path.rho, path.log_jac, log_spread)
