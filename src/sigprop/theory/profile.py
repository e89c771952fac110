"""The finite-depth profile of an L-layer stack: per-layer state and the exponents λ^(L)
(``sigprop.theory.depth`` computes it for bidirectional layers, ``sigprop.theory.causal`` for
causal ones)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DepthProfile:
    """Arrays of shape (L + 1,) + grid shape, l = 0 the input: the trajectory's q, p, ρ and
    log_jac from (q0, ρ0), and ``log_spread`` = log((1 − ρ_l)/(1 − ρ_0)), 0 at l = 0 (for
    ρ0 → 1: the growth of small token differences along the collapsed trajectory from q0)."""

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
        """Per-layer log growth of 1 − ρ (of token differences), shape (L,) + grid."""
        return np.diff(self.log_spread, axis=0)

    @property
    def local_lambda_g(self) -> np.ndarray:
        """Per-layer increment of log_jac, shape (L,) + grid."""
        return np.diff(self.log_jac, axis=0)
