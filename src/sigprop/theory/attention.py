"""Finite-n softmax expectations of random attention (THEORY.md §2 and §3).

For one query the logits are A_ij = softmax_j(β b_j + γ e_ij) with b_j, e_ij iid N(0, 1),
β = σ sqrt(ρ(1 − ρ)), γ = σ (1 − ρ): the shared key part b_j correlates two queries i ≠ k.
The wide-limit maps need four expectations over n tokens:

    S_2  = E Σ_j A_ij²                                      (one query)
    S_11 = E Σ_j A_ij A_kj                                  (two queries, i ≠ k)
    T_2  = E Σ_j A_ij² (1 − 2 A_ij + Σ_m A_im²)             (softmax-path gradient, one query)
    T_11 = E Σ_j A_ij A_kj (1 − A_ij − A_kj + Σ_m A_im A_km) (softmax-path gradient, i ≠ k)

They are computed exactly (to quadrature accuracy) from the Laplace representation of powers of
the softmax denominator Z = Σ_j exp(x_j):

    1 / Z^k = (1/Γ(k)) ∫_0^∞ t^(k−1) e^(−t Z) dt,

which factorizes the expectation over the n iid (or, given b, conditionally iid) columns. With
t = e^τ and the bump k_a(u) = exp(a u − e^u), every term becomes a 1-D (one query) or 2-D (two
queries) integral over τ of products of Gaussian smoothings K_a(w) = E_e[k_a(w + γ e)], e.g.

    E[e^(2 x_1) / Z²] = ∫ dτ E[k_2(τ + x_1)] · E[k_0(τ + x)]^(n−1).

All integrands are analytic and decay fast, so uniform trapezoid rules converge spectrally; the
node spacings below give about nine significant digits (checked against refinement and Monte
Carlo in the tests). ``attention_moments`` evaluates many points through cached Chebyshev
interpolants in ρ, one per (n, σ).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.polynomial import chebyshev
from numpy.typing import ArrayLike

# Trapezoid spacings: in τ = log t, and in the Gaussian variables relative to the scale on which
# the integrand varies (1/γ for e, max(1, γ)/β for b).
_TAU_STEP = 0.25
_GAUSS_STEP = 0.35
_GAUSS_RANGE = 10.0  # N(0,1) mass beyond ±10 is below 1e-23
# Chebyshev–Lobatto tables in ρ are refined by doubling until the trailing coefficients fall
# below _TABLE_TOLERANCE (the moments are at most 1).
_TABLE_MIN_DEGREE = 16
_TABLE_MAX_DEGREE = 512
_TABLE_TOLERANCE = 1e-11


@dataclass(frozen=True)
class AttentionMoments:
    """S_2, S_11, T_2, T_11 (see module docstring); arrays of a common shape (T's may be None
    when only the forward map was asked for)."""

    S2: np.ndarray
    S11: np.ndarray
    T2: np.ndarray | None
    T11: np.ndarray | None


def attention_moments(
    n_tokens: int, sigma: ArrayLike, rho: ArrayLike, gradients: bool = True
) -> AttentionMoments:
    """Vectorized finite-n softmax expectations at logit scale σ and token cosine ρ ∈ [0, 1].

    Evaluates a Chebyshev interpolant in ρ built once per unique (n, σ) from
    ``exact_attention_moments`` (adaptive degree, interpolation error about 1e-11). Without
    ``gradients`` only the forward moments S_2, S_11 are evaluated (T_2, T_11 are None).
    """
    sigma, rho = np.broadcast_arrays(np.asarray(sigma, float), np.asarray(rho, float))
    x = 2.0 * np.clip(rho, 0.0, 1.0) - 1.0
    count = 4 if gradients else 2
    if sigma.size and np.all(sigma.flat[0] == sigma):
        out = chebyshev.chebval(x, _chebyshev_table(n_tokens, float(sigma.flat[0]))[:, :count])
    else:
        out = np.empty((count,) + rho.shape)
        unique, inverse = np.unique(sigma, return_inverse=True)
        inverse = inverse.reshape(rho.shape)
        for index, s in enumerate(unique):
            where = inverse == index
            table = _chebyshev_table(n_tokens, float(s))[:, :count]
            out[:, where] = chebyshev.chebval(x[where], table)
    # Collapsed tokens attend uniformly: exact values, so that S_2 − S_11 = 0 there exactly.
    collapsed = rho >= 1.0
    out[:2, collapsed] = 1.0 / n_tokens
    out[2:, collapsed] = (n_tokens - 1.0) / n_tokens**2
    return AttentionMoments(*out) if gradients else AttentionMoments(out[0], out[1], None, None)


def exact_attention_moments(n_tokens: int, sigma: float, rho: float) -> AttentionMoments:
    """S_2, S_11, T_2, T_11 at one point by Laplace-transform quadrature (module docstring)."""
    if n_tokens < 2:
        raise ValueError(f"n_tokens must be >= 2; got {n_tokens}")
    if not 0.0 <= rho <= 1.0:
        raise ValueError(f"rho must be in [0, 1]; got {rho}")
    beta = sigma * np.sqrt(rho * (1.0 - rho))
    gamma = sigma * (1.0 - rho)
    scale = sigma * np.sqrt(1.0 - rho)  # standard deviation of one logit difference source
    tau = np.arange(-10.0 * scale - 40.0, 10.0 * scale + 4.0, _TAU_STEP)
    S2, M3, Q4 = _one_query_sums(n_tokens, tau, scale)
    S11, R21, R22, R1111 = _two_query_sums(n_tokens, tau, beta, gamma)
    return AttentionMoments(
        S2=np.float64(S2),
        S11=np.float64(S11),
        T2=np.float64(S2 - 2.0 * M3 + Q4),
        T11=np.float64(S11 - 2.0 * R21 + R22 + R1111),
    )


@lru_cache(maxsize=256)
def _chebyshev_table(n_tokens: int, sigma: float) -> np.ndarray:
    """Chebyshev coefficients (degree+1 × 4) in x = 2ρ − 1 of (S_2, S_11, T_2, T_11) at (n, σ).

    Interpolates at Chebyshev–Lobatto points x_j = cos(π j / N), doubling N (which reuses every
    previous node) until the last three coefficients are below ``_TABLE_TOLERANCE``.
    """
    values: dict[float, np.ndarray] = {}
    degree = _TABLE_MIN_DEGREE
    while True:
        x = np.cos(np.pi * np.arange(degree + 1) / degree)
        for xi in np.round(x, 15):
            if xi not in values:
                m = exact_attention_moments(n_tokens, sigma, (xi + 1.0) / 2.0)
                values[xi] = np.array([m.S2, m.S11, m.T2, m.T11])
        table = np.array([values[xi] for xi in np.round(x, 15)])
        coefficients = chebyshev.chebfit(x, table, degree)
        if np.max(np.abs(coefficients[-3:])) < _TABLE_TOLERANCE or degree >= _TABLE_MAX_DEGREE:
            return coefficients
        degree *= 2


def _one_query_sums(n: int, tau: np.ndarray, scale: float) -> tuple[float, float, float]:
    """E Σ A², E Σ A³, E (Σ A²)² for x_j iid N(0, scale²).

    With K_a(τ) = E[k_a(τ + x)]:  E Σ A² = n ∫ K_2 K_0^(n−1),  E Σ A³ = (n/2) ∫ K_3 K_0^(n−1),
    E (Σ A²)² = (n/6) ∫ K_4 K_0^(n−1) + (n(n−1)/6) ∫ K_2² K_0^(n−2)  (integrals over τ).
    """
    K = _smoothed_bumps((0, 2, 3, 4), tau, scale)
    rest = K[0] ** (n - 2)
    integral = lambda f: _TAU_STEP * float(np.sum(f))  # noqa: E731
    sum_sq = n * integral(K[2] * K[0] * rest)
    sum_cube = n / 2.0 * integral(K[3] * K[0] * rest)
    sq_sum_sq = n / 6.0 * integral(K[4] * K[0] * rest) + n * (n - 1) / 6.0 * integral(K[2] ** 2 * rest)
    return sum_sq, sum_cube, sq_sum_sq


def _two_query_sums(n: int, tau: np.ndarray, beta: float, gamma: float) -> tuple[float, ...]:
    """E Σ A_i A_k, E Σ A_i² A_k, E Σ A_i² A_k², E Σ_{j≠m} A_ij A_kj A_im A_km for queries i ≠ k.

    Given the shared key parts b, the columns are independent; with
    G_a(τ, b) = E_e[k_a(τ + β b + γ e)] and H_ac(τ, υ) = E_b[G_a(τ, b) G_c(υ, b)]:
    E Σ A_i A_k = n ∬ H_11 H_00^(n−1),  E Σ A_i² A_k = n ∬ H_21 H_00^(n−1),
    E Σ A_i² A_k² = n ∬ H_22 H_00^(n−1),  E Σ_{j≠m} … = n(n−1) ∬ H_11² H_00^(n−2).
    """
    b, wb = _gauss_grid(beta, max(1.0, gamma))
    shifted = tau[:, None] + beta * b[None, :]
    G = {a: K * np.sqrt(wb) for a, K in _smoothed_bumps((0, 1, 2), shifted, gamma).items()}
    H = lambda a, c: G[a] @ G[c].T  # noqa: E731
    H00, H11 = H(0, 0), H(1, 1)
    rest = H00 ** (n - 2)
    area = _TAU_STEP**2
    pair = n * area * float(np.sum(H11 * H00 * rest))
    pair_21 = n * area * float(np.sum(H(2, 1) * H00 * rest))
    pair_22 = n * area * float(np.sum(H(2, 2) * H00 * rest))
    pair_1111 = n * (n - 1) * area * float(np.sum(H11**2 * rest))
    return pair, pair_21, pair_22, pair_1111


def _smoothed_bumps(powers: tuple[int, ...], w: np.ndarray, gamma: float) -> dict[int, np.ndarray]:
    """K_a(w) = E_e[k_a(w + γ e)], e ~ N(0, 1), with k_a(u) = exp(a u − e^u) = (e^u)^a exp(−e^u),
    for each a in ``powers``, elementwise in w (two exponentials shared by all a)."""
    e, we = _gauss_grid(gamma, 1.0)
    # exp(−e^u) underflows to 0 long before u = 40, where (e^u)^4 is still finite.
    growth = np.exp(np.minimum(w[..., None] + gamma * e, 40.0))
    decay = np.exp(-growth)
    bumps, power = {}, 0
    weighted = decay
    for a in sorted(powers):
        while power < a:
            weighted = weighted * growth
            power += 1
        bumps[a] = weighted @ we
    return bumps


def _gauss_grid(rate: float, feature: float) -> tuple[np.ndarray, np.ndarray]:
    """Trapezoid nodes and weights for E over N(0, 1) of a function of (rate · z).

    The spacing resolves features of width ``feature / rate`` in z; ``rate = 0`` gives the
    single node z = 0 with weight 1 (the integrand does not depend on z).
    """
    if rate == 0.0:
        return np.zeros(1), np.ones(1)
    step = min(0.5, _GAUSS_STEP * feature / rate)
    half = int(np.ceil(_GAUSS_RANGE / step))
    z = np.arange(-half, half + 1) * step
    return z, step * np.exp(-(z**2) / 2.0) / np.sqrt(2.0 * np.pi)
