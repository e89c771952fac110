"""The two Lyapunov exponents and the attracting state, for a layer description
(docs/theory.md §4): asymptotic, per layer, at the fixed point of the forward map."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sigprop.spec.components import Serial
from sigprop.theory.dynamics import attracting_state, collapsed_norm, lambda_a


@dataclass(frozen=True)
class Exponents:
    """λ_a, λ_g and the attracting forward state (q*, ρ*), arrays over the hyperparameter grid.

    phase: "ordered" (λ_a < 0, tokens collapse to a line) or "chaotic" (λ_a ≥ 0, tokens repel
    towards a regular simplex); gradients: "vanishing" (λ_g < 0) or "exploding" (λ_g ≥ 0);
    "undefined" where the exponent is NaN (no norm fixed point). q_collapsed is the norm fixed
    point of the collapsed line, where λ_a is evaluated.
    """

    lambda_a: np.ndarray
    lambda_g: np.ndarray
    q_star: np.ndarray
    rho_star: np.ndarray
    q_collapsed: np.ndarray

    @property
    def phase(self) -> np.ndarray:
        return sign_label(self.lambda_a, "ordered", "chaotic")

    @property
    def gradients(self) -> np.ndarray:
        return sign_label(self.lambda_g, "vanishing", "exploding")


def sign_label(values: np.ndarray, negative: str, otherwise: str) -> np.ndarray:
    """``negative`` where values < 0, ``otherwise`` where ≥ 0, "undefined" where NaN."""
    values = np.asarray(values)
    return np.where(np.isnan(values), "undefined", np.where(values < 0, negative, otherwise))


def compute_exponents(layer: Serial, n_tokens: int, rho0: float = 0.0) -> Exponents:
    """λ_a at the collapsed line; λ_g at the state the forward map reaches from cosine ρ0.
    All NaN where the norm has no fixed point (blocks with unit residuals). Causal layers get
    the causal theory's exponents (``theory.causal.causal_exponents``)."""
    from sigprop.theory.causal import causal_exponents, is_causal

    if is_causal(layer):
        return causal_exponents(layer, n_tokens)
    q_collapsed = collapsed_norm(layer, n_tokens)
    state = attracting_state(layer, n_tokens, rho0, q_collapsed)
    return Exponents(
        lambda_a=lambda_a(layer, n_tokens, q_collapsed),
        lambda_g=state.lambda_g,
        q_star=state.q,
        rho_star=state.rho,
        q_collapsed=q_collapsed,
    )
