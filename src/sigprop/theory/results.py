"""What the theory computes, as data: the asymptotic exponents and attracting state of a layer
(``Exponents``; ``sigprop.theory.exponents``) and the finite-depth profile of an L-layer stack
(``DepthProfile``; ``sigprop.theory.depth`` for bidirectional layers, ``sigprop.theory.causal``
for causal ones)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sigprop.theory.regimes import WORDS_DEPTH, angle_regime, gradient_regime


@dataclass(frozen=True)
class Exponents:
    """λ_a, λ_g and the attracting forward state (q*, ρ*), arrays over the hyperparameter grid.

    ``phase`` and ``gradients`` are the words of ``sigprop.theory.regimes`` for the totals over
    ``WORDS_DEPTH`` layers (ordered / chaotic / near the edge; vanishing / exploding / near the
    edge), "undefined" where the exponent is NaN (no norm fixed point). ``q_collapsed`` is the
    norm fixed point of the collapsed line, where λ_a is evaluated.
    """

    lambda_a: np.ndarray
    lambda_g: np.ndarray
    q_star: np.ndarray
    rho_star: np.ndarray
    q_collapsed: np.ndarray

    @property
    def phase(self) -> np.ndarray:
        return angle_regime(WORDS_DEPTH * np.asarray(self.lambda_a, dtype=float))

    @property
    def gradients(self) -> np.ndarray:
        return gradient_regime(WORDS_DEPTH * np.asarray(self.lambda_g, dtype=float))


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
