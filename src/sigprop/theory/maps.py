"""Wide-limit maps of each architecture component on the token and tangent geometry.

State (docs/theory.md §1): the permutation-symmetric Gram matrix C = X Xᵀ / d with C_ii = q,
C_ij = p (i ≠ j), cosine ρ = p / q. Tangent (docs/theory.md §3): a perturbation T = J v of an
isotropic input probe v, with geometry G = T Tᵀ / d, G_ii = g_d, G_ij = g_o; then
log(‖∂X_l/∂X_0‖_F² / (n d)) = log g_d at layer l. In the wide limit T stays orthogonal to X (T
is odd in v, X even), so every cross term between state and tangent, and between a skip path
and its zero-mean branch, averages to zero. The entries of the stream are Gaussian across
features with covariance C, which is what elementwise maps (MLP, DyT) need.

``propagate(component, geometry, tangent, n_tokens)`` returns the geometry and tangent after the
component. The tangent map is linear in the tangent; a tangent of None propagates the geometry
alone (cheaper: no gradient moments). All arrays broadcast together, so one call evaluates a
whole grid of hyperparameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import singledispatch

import numpy as np

from sigprop.spec.components import (
    MLP,
    Dense,
    DyT,
    LayerNorm,
    Residual,
    RMSNorm,
    SelfAttention,
    Serial,
)
from sigprop.spec.errors import NotCovered
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
    """weight_skip · a + weight_branch · b for Geometry or Tangent pairs: a residual sum with
    zero cross terms (the weights are the squares of the skip and branch multipliers)."""
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
    """(q, p) ← a² (q, p) + b² (q_f, p_f); the tangent mixes the same way."""
    branch_geometry, branch_tangent = propagate(component.branch, geometry, tangent, n_tokens)
    a2 = np.asarray(component.skip, float) ** 2
    b2 = np.asarray(component.scale, float) ** 2
    mixed = mix(a2, geometry, b2, branch_geometry)
    return mixed, None if tangent is None else mix(a2, tangent, b2, branch_tangent)


@propagate.register(RMSNorm)
@propagate.register(LayerNorm)
def _(component, geometry: Geometry, tangent: Tangent, n_tokens: int):
    """N maps (q, p) to (1, ρ); a tangent orthogonal to the tokens is only rescaled by 1/q.

    The mean-centred LayerNorm removes each token's component along (1, …, 1)/sqrt(d), which
    holds a share O(1/d) of the token: in the wide limit both norms have the same map."""
    q = geometry.q
    normalized = Geometry(np.ones_like(q), geometry.rho)
    return normalized, None if tangent is None else Tangent(tangent.g_d / q, tangent.g_o / q)


@propagate.register
def _(component: DyT, geometry: Geometry, tangent: Tangent, n_tokens: int):
    """DyT(x) = tanh(κ x) on entries u = κ x, Gaussian with Var u = κ² q, Cov = κ² p:
    q' = E tanh(u)², p' = E tanh(u_1) tanh(u_2); the tangent T' = κ tanh'(u) ⊙ T has
    g_d ← κ² E[tanh'(u)²] g_d and g_o ← κ² E[tanh'(u_1) tanh'(u_2)] g_o (T independent of u)."""
    kappa2 = np.asarray(component.kappa, float) ** 2
    return _elementwise("tanh", kappa2 * geometry.q, kappa2 * geometry.p, kappa2, tangent)


@propagate.register
def _(component: SelfAttention, geometry: Geometry, tangent: Tangent, n_tokens: int):
    """Random softmax attention with logit scale σ = σ_A q (docs/theory.md §1, §3).

    Heads and the output map do not change the map: each of the H heads has logits with the
    same law, and its value block of width d/H has Gram C; the output Gram is the mean of the
    heads' A_h C A_hᵀ, and W_O (entries N(0, 1/d)) keeps Gram matrices as they are.

    Forward: C_out = E[A C Aᵀ] gives q_A = q (ρ + (1 − ρ) S_2), p_A = q (ρ + (1 − ρ) S_11).
    Value path: A G Aᵀ gives g_d ← g_o + (g_d − g_o) S_2, g_o ← g_o + (g_d − g_o) S_11.
    Softmax path: logit perturbations with Cov(δs_ij, δs_kl) = σ_A² q (G_ik R_jl + R_ik G_jl),
    R = C / q, enter through δA_ij = A_ij (δs_ij − Σ_m A_im δs_im); only their token-diagonal
    parts survive the centring, with variances κ_1 = σ_A² q (g_d (1 − ρ) + g_d − g_o) (same
    query) and κ_2 = σ_A² q (g_o (1 − ρ) + ρ (g_d − g_o)) (two queries), and δA C δAᵀ =
    q (1 − ρ) δA δAᵀ adds q (1 − ρ) κ_1 T_2 to g_d and q (1 − ρ) κ_2 T_11 to g_o.
    """
    if component.causal:
        raise NotCovered("these maps assume bidirectional attention (exchangeable tokens); "
                         "causal layers go through sigprop.theory.causal")
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
    """MLP(y) = W_2 φ(h), h = W_1 y + b_1, with Var h = σ_w² q + σ_b², Cov(h_1, h_2) = σ_w² p + σ_b²:
    q_M = σ_2² E φ(h)², p_M = σ_2² E φ(h_1) φ(h_2); tangent g_d ← σ_2² σ_w² E[φ'(h)²] g_d,
    g_o ← σ_2² σ_w² E[φ'(h_1) φ'(h_2)] g_o, because W_1 t is independent of W_1 y when t ⊥ y.

    Gated, W_2 (φ(h) ⊙ g) with g = W_3 y independent of h (Var g = q, Cov = p): the second
    moments factorize, q_M = σ_2² q E φ(h)², p_M = σ_2² p E φ(h_1)φ(h_2), and the tangent
    δ(φ(h) ⊙ g) = φ'(h) δh ⊙ g + φ(h) ⊙ δg (independent terms) gives
    g_d ← σ_2² (σ_w² E[φ'²] q + E φ²) g_d, g_o ← σ_2² (σ_w² E[φ'φ'] p + E φφ) g_o.
    """
    sigma_w2 = np.asarray(component.sigma_w, float) ** 2
    sigma_22 = np.asarray(component.sigma_2, float) ** 2
    sigma_b2 = np.asarray(component.sigma_b, float) ** 2
    var = sigma_w2 * geometry.q + sigma_b2
    cov = sigma_w2 * geometry.p + sigma_b2
    if not component.gated:
        return _elementwise(component.activation, var, cov, sigma_w2, tangent, sigma_22)
    hidden, slopes = _elementwise(component.activation, var, cov, sigma_w2, tangent)
    output = Geometry(sigma_22 * geometry.q * hidden.q, sigma_22 * geometry.p * hidden.p)
    if tangent is None:
        return output, None
    return output, Tangent(sigma_22 * (slopes.g_d * geometry.q + hidden.q * tangent.g_d),
                           sigma_22 * (slopes.g_o * geometry.p + hidden.p * tangent.g_o))


@propagate.register
def _(component: Dense, geometry: Geometry, tangent: Tangent, n_tokens: int):
    """h ← W φ(h) + b (Poole et al. 2016), entries of h Gaussian with variance q, covariance p:
    q' = σ_w² E φ(h)² + σ_b²,  p' = σ_w² E φ(h_1)φ(h_2) + σ_b²;
    tangent t ← W (φ'(h) ⊙ t): g_d ← σ_w² E[φ'(h)²] g_d, g_o ← σ_w² E[φ'(h_1)φ'(h_2)] g_o.
    At the collapsed line ρ = 1 both the growth of 1 − ρ and the gradient's are
    χ_1 = σ_w² E φ'(h)² at q*: χ_1 = 1 is the edge of chaos of Poole et al."""
    sigma_w2 = np.asarray(component.sigma_w, float) ** 2
    sigma_b2 = np.asarray(component.sigma_b, float) ** 2
    hidden, slopes = _elementwise(component.activation, geometry.q, geometry.p, 1.0, tangent,
                                  sigma_w2)
    return Geometry(hidden.q + sigma_b2, hidden.p + sigma_b2), slopes


def _elementwise(activation: str, var, cov, gain2, tangent: Tangent | None, scale2=1.0):
    """scale² · (E φ(u)², E φ(u_1)φ(u_2)) for Gaussian entries u (variance ``var``, covariance
    ``cov``), and the tangent multiplied by scale² · gain² · (E φ'(u)², E φ'(u_1)φ'(u_2)).
    Undefined (NaN) states stay NaN: a map beyond the theory's range says so downstream."""
    var, cov = np.broadcast_arrays(np.asarray(var, float), np.minimum(cov, var))
    phi2, slope_diag, phi_cross, slope_cross = (np.full(var.shape, np.nan) for _ in range(4))
    ok = np.isfinite(var) & np.isfinite(cov)
    phi2[ok], slope_diag[ok] = diagonal_moments(activation, var[ok])
    phi_cross[ok], cross_slope = cross_moments(activation, var[ok], cov[ok],
                                               derivative=tangent is not None)
    output = Geometry(scale2 * phi2, scale2 * phi_cross)
    if tangent is None:
        return output, None
    slope_cross[ok] = cross_slope
    return output, Tangent(scale2 * gain2 * slope_diag * tangent.g_d,
                           scale2 * gain2 * slope_cross * tangent.g_o)


def _fields(x) -> tuple[np.ndarray, np.ndarray]:
    return (x.q, x.p) if isinstance(x, Geometry) else (x.g_d, x.g_o)
