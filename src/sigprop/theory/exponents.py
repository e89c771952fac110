"""The two Lyapunov exponents and the attracting state, for a layer description
(docs/theory.md §4): asymptotic, per layer, at the fixed point of the forward map."""

from __future__ import annotations

from sigprop.spec.components import Serial
from sigprop.theory.causal import causal_exponents, is_causal
from sigprop.theory.dynamics import attracting_state, collapsed_norm, lambda_a
from sigprop.theory.results import Exponents

__all__ = ["Exponents", "compute_exponents"]


def compute_exponents(layer: Serial, n_tokens: int, rho0: float = 0.0) -> Exponents:
    """λ_a at the collapsed line; λ_g at the state the forward map reaches from cosine ρ0.
    All NaN where the norm has no fixed point (blocks with unit residuals). Causal layers get
    the causal theory's exponents (``theory.causal.causal_exponents``)."""
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
