"""Wide-limit maps of each architecture component on the token and tangent geometry.

State (THEORY.md §2): the permutation-symmetric Gram matrix C = X Xᵀ / d with C_ii = q,
C_ij = p (i ≠ j), cosine ρ = p / q. Tangent (THEORY.md §3): a perturbation T = J v of an
isotropic input probe v, with geometry G = T Tᵀ / d, G_ii = g_d, G_ij = g_o; then
log(‖∂X_l/∂X_0‖_F² / (n d)) = log g_d at layer l. In the wide limit T stays orthogonal to X, so
every cross term between state and tangent, and between a skip path and its zero-mean branch,
averages to zero.

``propagate(component, geometry, tangent, n_tokens)`` returns the geometry and tangent after the
component. The tangent map is linear in the tangent; a tangent of None propagates the geometry
alone (cheaper: no gradient moments). All arrays broadcast together, so one call evaluates a
whole grid of hyperparameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import singledispatch

import numpy as np

from sigprop.architecture import MLP, LayerNorm, Residual, SelfAttention, Serial
from sigprop.theory.attention import attention_moments
from sigprop.theory.gaussian import cross_moments, diagonal_moments


@dataclass(frozen=True)
class Geometry:
    """Mean squared norm q and mean pairwise dot product p of the n tokens (per unit width)."""

    q: np.ndarray
    p: np.ndarray

    @property
    def rho(self) -> np.ndarray:
        return self.p / self.q


@dataclass(frozen=True)
class Tangent:
    """Diagonal g_d and off-diagonal g_o of the tangent Gram matrix G = T Tᵀ / d."""

    g_d: np.ndarray
    g_o: np.ndarray


def mix(weight_skip: np.ndarray, a, weight_branch: np.ndarray, b):
    """(1 − α²) a + α² b for Geometry or Tangent pairs: a residual sum with zero cross terms."""
    cls = type(a)
    return cls(*(weight_skip * x + weight_branch * y for x, y in zip(_fields(a), _fields(b))))


@singledispatch
def propagate(component, geometry: Geometry, tangent: Tangent, n_tokens: int):
    """Geometry and tangent after ``component`` (see the rules registered below)."""
    raise TypeError(f"no mean-field map for component {component!r}")


@propagate.register
def _(component: Serial, geometry: Geometry, tangent: Tangent, n_tokens: int):
    for child in component.components:
        geometry, tangent = propagate(child, geometry, tangent, n_tokens)
    return geometry, tangent


@propagate.register
def _(component: Residual, geometry: Geometry, tangent: Tangent, n_tokens: int):
    """(q, p) ← (1 − α²)(q, p) + α² (q_f, p_f); the tangent mixes the same way."""
    branch_geometry, branch_tangent = propagate(component.branch, geometry, tangent, n_tokens)
    a2 = np.asarray(component.alpha, float) ** 2
    mixed = mix(1.0 - a2, geometry, a2, branch_geometry)
    return mixed, None if tangent is None else mix(1.0 - a2, tangent, a2, branch_tangent)


@propagate.register
def _(component: LayerNorm, geometry: Geometry, tangent: Tangent, n_tokens: int):
    """LN maps (q, p) to (1, ρ); a tangent orthogonal to the tokens is only rescaled by 1/q."""
    q = geometry.q
    normalized = Geometry(np.ones_like(q), geometry.rho)
    return normalized, None if tangent is None else Tangent(tangent.g_d / q, tangent.g_o / q)


@propagate.register
def _(component: SelfAttention, geometry: Geometry, tangent: Tangent, n_tokens: int):
    """Random softmax attention with logit scale σ = σ_A q (THEORY.md §2, §3).

    Forward: C_out = E[A C Aᵀ] gives q_A = q (ρ + (1 − ρ) S_2), p_A = q (ρ + (1 − ρ) S_11).
    Value path: A G Aᵀ gives g_d ← g_o + (g_d − g_o) S_2, g_o ← g_o + (g_d − g_o) S_11.
    Softmax path: logit perturbations with Cov(δs_ij, δs_kl) = σ_A² q (G_ik R_jl + R_ik G_jl),
    R = C / q, enter through δA_ij = A_ij (δs_ij − Σ_m A_im δs_im); only their token-diagonal
    parts survive the centring, with variances κ_1 = σ_A² q (g_d (1 − ρ) + g_d − g_o) (same
    query) and κ_2 = σ_A² q (g_o (1 − ρ) + ρ (g_d − g_o)) (two queries), and δA C δAᵀ =
    q (1 − ρ) δA δAᵀ adds q (1 − ρ) κ_1 T_2 to g_d and q (1 − ρ) κ_2 T_11 to g_o.
    """
    if component.causal:
        raise NotImplementedError(
            "the wide-limit maps assume bidirectional attention (permutation-symmetric tokens); "
            "measure causal models with sigprop.measure"
        )
    q, rho = geometry.q, np.clip(geometry.rho, 0.0, 1.0)
    sigma_A = np.asarray(component.sigma_A, float)
    m = attention_moments(n_tokens, sigma_A * q, rho, gradients=tangent is not None)
    spread = 1.0 - rho
    output = Geometry(q * (rho + spread * m.S2), q * (rho + spread * m.S11))
    if tangent is None:
        return output, None
    g_d, g_o = tangent.g_d, tangent.g_o
    kappa_same = sigma_A**2 * q * (g_d * spread + g_d - g_o)
    kappa_cross = sigma_A**2 * q * (g_o * spread + rho * (g_d - g_o))
    return output, Tangent(
        g_o + (g_d - g_o) * m.S2 + q * spread * kappa_same * m.T2,
        g_o + (g_d - g_o) * m.S11 + q * spread * kappa_cross * m.T11,
    )


@propagate.register
def _(component: MLP, geometry: Geometry, tangent: Tangent, n_tokens: int):
    """MLP(y) = W_2 φ(W_1 y + b_1) on pre-activations h with Var h = σ_w² q + σ_b²,
    Cov(h_1, h_2) = σ_w² p + σ_b² (THEORY.md §2):  q_M = E φ(h)², p_M = E φ(h_1) φ(h_2);
    tangent g_d ← σ_w² E[φ'(h)²] g_d, g_o ← σ_w² E[φ'(h_1) φ'(h_2)] g_o  (χ_M(1), χ_M(ρ)).
    """
    sigma_w2 = np.asarray(component.sigma_w, float) ** 2
    sigma_b2 = np.asarray(component.sigma_b, float) ** 2
    var = sigma_w2 * geometry.q + sigma_b2
    cov = sigma_w2 * geometry.p + sigma_b2
    q_M, slope_diag = diagonal_moments(component.activation, var)
    p_M, slope_cross = cross_moments(component.activation, var, np.minimum(cov, var),
                                     derivative=tangent is not None)
    output = Geometry(*np.broadcast_arrays(q_M, p_M))
    if tangent is None:
        return output, None
    return output, Tangent(sigma_w2 * slope_diag * tangent.g_d, sigma_w2 * slope_cross * tangent.g_o)


def _fields(x) -> tuple[np.ndarray, np.ndarray]:
    return (x.q, x.p) if isinstance(x, Geometry) else (x.g_d, x.g_o)
