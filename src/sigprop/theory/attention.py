"""Finite-n softmax expectations of random attention (docs/theory.md §1–§3).

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

Quadrature. The integrands are analytic in the strip |Im τ| < π/2 and decay fast, so uniform
trapezoid rules converge spectrally. All τ nodes lie on one lattice of step Δ = ``_TAU_STEP``,
and a Gaussian average whose rate (γ for e, β for b) is at least Δ / ``_LATTICE_MAX_STEP`` puts its
nodes on that lattice too (e step Δ/γ, b step a multiple of Δ/β). Then k_a is evaluated once per
lattice point, the e average is a discrete convolution and G_a(τ_i, b_l) a gather, instead of
exponentials on a 3-D (τ, b, e) grid; the trapezoid sum over the joint lattice keeps the spectral
accuracy of Δ. Smaller rates use their own nodes: Gauss–Hermite where that needs fewer nodes than
a trapezoid of step min(``_GAUSS_MAX_STEP``, ``_GAUSS_STEP`` / rate). The one-query integrals
(which carry k_3, k_4) use step Δ/2; the two-query integrals are summed only over the τ window
outside which a Cauchy–Schwarz envelope (built from the one-query integrands) bounds the
neglected part by ``_TAIL_TOLERANCE``. Against the previous plain-trapezoid quadrature with every
spacing halved the result agrees to 2e-13 (n ∈ {2, 4, 16, 64}, σ ∈ {0.1, 0.6, 2, 5, 8},
ρ ∈ {0, 0.3, 0.9, 0.999, 1}); the tests check refinement and Monte Carlo.

Range. ``attention_moments`` evaluates many points through Chebyshev interpolants in ρ, one per
(n, σ), cached in memory and on disk (``sigprop.theory.table_cache``; interpolation error below
about 1e-11). Tables exist for 0 ≤ σ ≤ ``MAX_LOGIT_SCALE``: points with σ above it, or with a
NaN σ or ρ, get NaN moments (no error, no extrapolation). The moments depend on σ only through
σ², so a negative σ is read as |σ|.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.polynomial import chebyshev
from numpy.polynomial.hermite_e import hermegauss
from numpy.typing import ArrayLike

from sigprop.spec.components import MAX_SIGMA_A
from sigprop.theory.table_cache import cached

# Largest logit scale σ the tables cover (σ_A q for the attention block): the declared bound.
MAX_LOGIT_SCALE = MAX_SIGMA_A

# Quadrature (module docstring). τ lattice step; Gaussian rules: a rate·step bound and a step cap
# for own nodes, the largest step in z for lattice-aligned nodes, and the truncation at ±range.
_TAU_STEP = 0.3
_GAUSS_STEP = 0.2
_GAUSS_MAX_STEP = 0.75
_LATTICE_MAX_STEP = 0.7
_GAUSS_RANGE = 8.0  # N(0,1) mass beyond ±8 is 1.2e-15
# Gauss–Hermite nodes for E f(rate·z): 4 + _HERMITE_SLOPE · rate / _GAUSS_STEP (pointwise ~1e-13).
_HERMITE_SLOPE = 22.0
# Bound on the part of the two-query integrals cut off outside the τ window.
_TAIL_TOLERANCE = 1e-13
# Chebyshev–Lobatto tables in ρ start at _TABLE_MIN_DEGREE and double (reusing every node) until
# the coefficients show an interpolation error below _TABLE_TOLERANCE (the moments are at most 1).
_TABLE_MIN_DEGREE = 8
_TABLE_MAX_DEGREE = 512
_TABLE_TOLERANCE = 1e-11
# Bump when the quadrature or the table layout changes: names the on-disk tables.
_TABLE_FORMAT = "attention-chebyshev-v3"

_NORMAL = 1.0 / np.sqrt(2.0 * np.pi)


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
    ``exact_attention_moments`` (adaptive degree, interpolation error below about 1e-11; cached
    in memory and on disk, see ``sigprop.theory.table_cache``). ρ is clipped to [0, 1] and σ
    read as |σ|. Points with σ > ``MAX_LOGIT_SCALE`` or a NaN σ or ρ get NaN moments. Without
    ``gradients`` only the forward moments S_2, S_11 are evaluated (T_2, T_11 are None).
    """
    n_tokens = _check_tokens(n_tokens)
    sigma, rho = np.broadcast_arrays(np.abs(np.asarray(sigma, float)), np.asarray(rho, float))
    x = 2.0 * np.clip(rho, 0.0, 1.0) - 1.0
    count = 4 if gradients else 2
    valid = (sigma <= MAX_LOGIT_SCALE) & ~np.isnan(x)  # False for a NaN σ
    if valid.all() and sigma.size and np.all(sigma.flat[0] == sigma):
        out = chebyshev.chebval(x, _chebyshev_table(n_tokens, float(sigma.flat[0]))[:, :count])
    else:
        out = np.full((count,) + rho.shape, np.nan)
        unique, inverse = np.unique(sigma[valid], return_inverse=True)
        inverse = inverse.reshape(-1)
        x_valid = x[valid]
        values = np.empty((count, x_valid.size))
        for index, s in enumerate(unique):
            where = inverse == index
            table = _chebyshev_table(n_tokens, float(s))[:, :count]
            values[:, where] = chebyshev.chebval(x_valid[where], table)
        out[:, valid] = values
    # Collapsed tokens attend uniformly: exact values, so that S_2 − S_11 = 0 there exactly.
    collapsed = valid & (rho >= 1.0)
    out[:2, collapsed] = 1.0 / n_tokens
    out[2:, collapsed] = (n_tokens - 1.0) / n_tokens**2
    return AttentionMoments(*out) if gradients else AttentionMoments(out[0], out[1], None, None)


def exact_attention_moments(n_tokens: int, sigma: float, rho: float) -> AttentionMoments:
    """S_2, S_11, T_2, T_11 at one point by Laplace-transform quadrature (module docstring).

    About 13 significant digits (absolute) for 0 ≤ σ ≤ ``MAX_LOGIT_SCALE``; larger σ are
    computed the same way but not checked. A NaN σ or ρ gives NaN moments; σ is read as |σ|.
    """
    n_tokens = _check_tokens(n_tokens)
    sigma, rho = abs(float(sigma)), float(rho)
    if np.isnan(sigma) or np.isnan(rho):
        nan = np.float64(np.nan)
        return AttentionMoments(nan, nan, nan, nan)
    if not 0.0 <= rho <= 1.0:
        raise ValueError(f"rho must be in [0, 1]; got {rho}")
    if rho == 1.0 or sigma == 0.0:  # all logits equal: uniform attention, A = 1/n
        uniform, spread = np.float64(1.0 / n_tokens), np.float64((n_tokens - 1.0) / n_tokens**2)
        return AttentionMoments(uniform, uniform, spread, spread)
    beta = sigma * np.sqrt(rho * (1.0 - rho))
    gamma = sigma * (1.0 - rho)
    scale = sigma * np.sqrt(1.0 - rho)  # standard deviation of one logit difference source
    S2, M3, Q4, (start, count) = _one_query_sums(n_tokens, scale)
    S11, R21, R22, R1111 = _two_query_sums(n_tokens, start, count, beta, gamma)
    return AttentionMoments(
        S2=np.float64(S2),
        S11=np.float64(S11),
        T2=np.float64(S2 - 2.0 * M3 + Q4),
        T11=np.float64(S11 - 2.0 * R21 + R22 + R1111),
    )


def _check_tokens(n_tokens: int) -> int:
    """n as a Python int (an integral float is accepted); at least 2."""
    n = int(n_tokens)
    if n != n_tokens or n < 2:
        raise ValueError(f"n_tokens must be an integer >= 2; got {n_tokens}")
    return n


@lru_cache(maxsize=1024)
def _chebyshev_table(n_tokens: int, sigma: float) -> np.ndarray:
    """Chebyshev coefficients (degree+1 × 4) in x = 2ρ − 1 of (S_2, S_11, T_2, T_11) at (n, σ),
    from the on-disk cache when it has them (read-only array)."""
    key = (
        _TABLE_FORMAT, n_tokens, sigma, _TAU_STEP, _GAUSS_STEP, _GAUSS_MAX_STEP,
        _LATTICE_MAX_STEP, _GAUSS_RANGE, _HERMITE_SLOPE, _TAIL_TOLERANCE, _TABLE_MIN_DEGREE,
        _TABLE_MAX_DEGREE, _TABLE_TOLERANCE,
    )
    table = cached("attention", key, lambda: _build_table(n_tokens, sigma))
    table.flags.writeable = False
    return table


def _build_table(n_tokens: int, sigma: float) -> np.ndarray:
    """Interpolate at Chebyshev–Lobatto points x_j = cos(π j / N), doubling N (which reuses every
    previous node) until ``_table_converged``."""
    values: dict[float, np.ndarray] = {}
    degree = _TABLE_MIN_DEGREE
    while True:
        x = np.cos(np.pi * np.arange(degree + 1) / degree)
        for xi in np.round(x, 15):
            if xi not in values:
                m = exact_attention_moments(n_tokens, sigma, min(1.0, max(0.0, (xi + 1.0) / 2.0)))
                values[xi] = np.array([m.S2, m.S11, m.T2, m.T11])
        table = np.array([values[xi] for xi in np.round(x, 15)])
        coefficients = chebyshev.chebfit(x, table, degree)
        if _table_converged(coefficients) or degree >= _TABLE_MAX_DEGREE:
            return coefficients
        degree *= 2


def _table_converged(coefficients: np.ndarray) -> bool:
    """Whether a degree-N interpolant is within ``_TABLE_TOLERANCE``: its last three coefficients
    are below it, or (Clenshaw–Curtis style) the envelope of the upper half of the coefficients
    decays geometrically, with ratio r < 0.8, and the extrapolated 2 |c_N| r / (1 − r) bounding
    the neglected and aliased terms is below it."""
    size = np.max(np.abs(coefficients), axis=1)
    if np.max(size[-3:]) < _TABLE_TOLERANCE:
        return True
    envelope = np.maximum.accumulate(size[::-1])[::-1]
    degree = len(size) - 1
    k = np.arange(degree // 2, degree + 1)
    slope = np.polyfit(k, np.log(np.maximum(envelope[k], 1e-300)), 1)[0]
    ratio = np.exp(slope)
    last = envelope[-1]
    return bool(ratio < 0.8 and last < _TABLE_TOLERANCE
                and 2.0 * last * ratio / (1.0 - ratio) < _TABLE_TOLERANCE)


def _one_query_sums(n: int, scale: float) -> tuple[float, float, float, tuple[float, int]]:
    """E Σ A², E Σ A³, E (Σ A²)² for x_j iid N(0, scale²), and the two-query τ window.

    With K_a(τ) = E[k_a(τ + x)]:  E Σ A² = n ∫ K_2 K_0^(n−1),  E Σ A³ = (n/2) ∫ K_3 K_0^(n−1),
    E (Σ A²)² = (n/6) ∫ K_4 K_0^(n−1) + (n(n−1)/6) ∫ K_2² K_0^(n−2)  (integrals over τ, on the
    lattice at half step). The window is (first τ, number of τ lattice nodes).
    """
    lattice = _TAU_STEP
    first = int(np.floor((-10.0 * scale - 40.0) / lattice))
    last = int(np.ceil((10.0 * scale + 4.0) / lattice))
    step = lattice / 2.0
    K0, K2, K3, K4 = _smoothed_bumps((0, 2, 3, 4), first * lattice, 2 * (last - first) + 1,
                                     scale, step)
    rest = _power(K0, n - 2)
    full = rest * K0
    sum_sq = n * step * _dot(K2, full)
    sum_cube = n / 2.0 * step * _dot(K3, full)
    sq_sum_sq = n / 6.0 * step * _dot(K4, full) + n * (n - 1) / 6.0 * step * _dot(K2 * K2, rest)
    # Envelopes g with |two-query integrand| ≤ prefactor · g(τ) g(υ), from H_00 ≤ K_0 (G_0 ≤ 1)
    # and Cauchy–Schwarz: E_b G_a(τ, b) G_c(υ, b) ≤ (K_2a(τ) K_2c(υ))^½ (see _two_query_sums).
    single = np.sqrt(np.maximum(K2, K4) * full)[::2]
    double = (K2 * np.sqrt(rest))[::2]
    lo, hi = _window(((n, single), (n * (n - 1.0), double)))
    return sum_sq, sum_cube, sq_sum_sq, ((first + lo) * lattice, hi - lo)


def _window(envelopes) -> tuple[int, int]:
    """Smallest index range [lo, hi) such that, for every (prefactor, g), the part of
    prefactor · Δ² Σ g(τ) g(υ) with τ or υ outside it is below ``_TAIL_TOLERANCE``."""
    size = len(envelopes[0][1])
    lo, hi = size, 0
    for prefactor, g in envelopes:
        total = float(np.sum(g))
        if not total > 0.0:
            continue
        allowed = _TAIL_TOLERANCE / (4.0 * prefactor * total * _TAU_STEP**2)
        lo = min(lo, int(np.searchsorted(np.cumsum(g), allowed, side="right")))
        hi = max(hi, size - int(np.searchsorted(np.cumsum(g[::-1]), allowed, side="right")))
    return (lo, hi) if lo < hi else (0, size)


def _two_query_sums(n: int, start: float, count: int, beta: float, gamma: float):
    """E Σ A_i A_k, E Σ A_i² A_k, E Σ A_i² A_k², E Σ_{j≠m} A_ij A_kj A_im A_km for queries i ≠ k.

    Given the shared key parts b, the columns are independent; with
    G_a(τ, b) = E_e[k_a(τ + β b + γ e)] and H_ac(τ, υ) = E_b[G_a(τ, b) G_c(υ, b)]:
    E Σ A_i A_k = n ∬ H_11 H_00^(n−1),  E Σ A_i² A_k = n ∬ H_21 H_00^(n−1),
    E Σ A_i² A_k² = n ∬ H_22 H_00^(n−1),  E Σ_{j≠m} … = n(n−1) ∬ H_11² H_00^(n−2),
    over the τ, υ lattice nodes start + iΔ, i < count.
    """
    step = _TAU_STEP
    powers = (0, 1, 2)
    area = step * step
    if beta == 0.0:  # independent queries: every double integral factorizes
        K0, K1, K2 = _smoothed_bumps(powers, start, count, gamma, step)
        rest = _power(K0, n - 2)
        full = rest * K0
        one, two, square = _dot(K1, full), _dot(K2, full), _dot(K1 * K1, rest)
        return (n * area * one * one, n * area * two * one, n * area * two * two,
                n * (n - 1) * area * square * square)
    if (refine := _refinement(beta, step)) is not None:
        # b nodes on the lattice refined `refine` times: β b_l = l · stride · Δ / refine, so
        # G_a(τ_i, b_l) = K_a^γ at fine node refine·i + stride·l. K^γ varies on the scale
        # max(1, γ), so for large γ one b step may span several lattice nodes.
        fine = step / refine
        stride = 1
        if refine == 1:
            stride = max(1, int(min(beta * _LATTICE_MAX_STEP, 0.5 * gamma) // step))
        h = stride * fine / beta
        half = int(np.ceil(_GAUSS_RANGE / h))
        K = _smoothed_bumps(powers, start - half * stride * fine,
                            refine * (count - 1) + 1 + 2 * half * stride, gamma, fine)
        G = K[:, refine * np.arange(count)[:, None] + stride * np.arange(2 * half + 1)[None, :]]
        z = h * np.arange(-half, half + 1)
        weights = h * _NORMAL * np.exp(-z * z / 2.0)
    else:
        z, weights = _gauss_nodes(beta)
        G = _smoothed_bumps(powers, start, count, gamma, step, shifts=beta * z)
    G0, G1, G2 = G * np.sqrt(weights)
    H00 = _product(G0, G0.T)
    H11 = _product(G1, G1.T)
    rest = _power(H00, n - 2)
    full = rest * H00
    # Σ_τυ H_ac(τ, υ) F(τ, υ) = Σ_b G_a(·, b) · (F G_c)(·, b): no H_21, H_22 needed.
    full_G1 = _product(full, G1)
    pair = n * area * _dot(G1, full_G1)
    pair_21 = n * area * _dot(G2, full_G1)
    pair_22 = n * area * _dot(G2, _product(full, G2))
    pair_1111 = n * (n - 1) * area * _dot(H11 * H11, rest)
    return pair, pair_21, pair_22, pair_1111


def _smoothed_bumps(
    powers: tuple[int, ...],
    start: float,
    count: int,
    rate: float,
    step: float,
    shifts: np.ndarray | None = None,
) -> np.ndarray:
    """K_a(w) = E_e[k_a(w + rate · e)], e ~ N(0, 1), k_a(u) = exp(a u − e^u), for a in ``powers``,
    at w = start + i·step (+ shift), i < count: array (powers, count) (or (powers, count, shifts)).

    For rate ≥ step / ``_LATTICE_MAX_STEP`` the e nodes are rate · e_j = j · step, so k_a is
    needed on the lattice only and the average is a convolution; otherwise own nodes
    (``_gauss_nodes``) on the full (w, e) grid.
    """
    refine = _refinement(rate, step) if rate > 0.0 else None
    if refine is not None:
        fine = step / refine
        h = fine / rate
        half = int(np.ceil(_GAUSS_RANGE / h))
        z = h * np.arange(-half, half + 1)
        kernel = h * _NORMAL * np.exp(-z * z / 2.0)  # symmetric: convolution = correlation
        lattice = fine * np.arange(-half, refine * (count - 1) + 1 + half)
        if shifts is None:
            return np.array([np.convolve(k, kernel, mode="valid")[::refine]
                             for k in _bumps(powers, start + lattice)])
        out = np.empty((len(powers), count, len(shifts)))
        for j, shift in enumerate(shifts):
            for i, k in enumerate(_bumps(powers, start + shift + lattice)):
                out[i, :, j] = np.convolve(k, kernel, mode="valid")[::refine]
        return out
    z, weights = _gauss_nodes(rate)
    w = start + step * np.arange(count)
    if shifts is None:
        u = w[:, None] + rate * z[None, :]
    else:
        u = w[:, None, None] + shifts[None, :, None] + rate * z[None, None, :]
    return np.array([np.einsum("...j,j->...", k, weights) for k in _bumps(powers, u)])


def _refinement(rate: float, step: float) -> int | None:
    """How many times to refine a lattice of ``step`` so that Gaussian nodes rate·z on it have
    z steps ≤ ``_LATTICE_MAX_STEP``; None when the rule's own nodes (``_gauss_nodes``) are
    cheaper (small rates: few nodes, but a much finer lattice)."""
    refine = max(1, int(np.ceil(step / (rate * _LATTICE_MAX_STEP) - 1e-12)))
    if refine > 1 and 2 * refine > len(_gauss_nodes(rate)[0]):
        return None
    return refine


def _bumps(powers: tuple[int, ...], u: np.ndarray) -> list[np.ndarray]:
    """k_a(u) = (e^u)^a exp(−e^u) for each a in (increasing) ``powers``; two exponentials."""
    # exp(−e^u) underflows to 0 long before u = 40, where (e^u)^4 is still finite.
    growth = np.exp(np.minimum(u, 40.0))
    weighted = np.exp(-growth)
    out, power = [], 0
    for a in powers:
        while power < a:
            weighted = weighted * growth
            power += 1
        out.append(weighted)
    return out


def _gauss_nodes(rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights for E over N(0, 1) of a function of (rate · z), k_a-like in rate · z.

    Gauss–Hermite with 4 + ``_HERMITE_SLOPE`` · rate / ``_GAUSS_STEP`` nodes when that is fewer
    than the trapezoid rule of step min(``_GAUSS_MAX_STEP``, ``_GAUSS_STEP`` / rate) on
    ±``_GAUSS_RANGE``, else the trapezoid rule; ``rate = 0`` gives the single node z = 0.
    """
    if rate == 0.0:
        return np.zeros(1), np.ones(1)
    h = min(_GAUSS_MAX_STEP, _GAUSS_STEP / rate)
    half = int(np.ceil(_GAUSS_RANGE / h))
    hermite = int(np.ceil(4.0 + _HERMITE_SLOPE * rate / _GAUSS_STEP))
    if hermite < 2 * half + 1:
        return _hermite(hermite)
    z = h * np.arange(-half, half + 1)
    return z, h * _NORMAL * np.exp(-z * z / 2.0)


@lru_cache(maxsize=None)
def _hermite(count: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilists' Gauss–Hermite nodes and weights for E over N(0, 1)."""
    z, w = hermegauss(count)
    return z, w * _NORMAL


# BLAS threads cost milliseconds per call when the other cores are busy (parallel workers, other
# jobs), far more than these small products take. OpenBLAS runs a GEMM on one thread when
# m·n·k ≤ 2^18 but threads DOTs of more than 10^4 elements and GEMVs of more than ~10^4: products
# go through _product, sums of products through einsum (its own loops, no BLAS).
_SINGLE_THREAD_GEMM = 1 << 18


def _product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b, computed in row blocks of at most ``_SINGLE_THREAD_GEMM`` multiply-adds each."""
    rows = max(1, _SINGLE_THREAD_GEMM // max(1, a.shape[1] * b.shape[1]))
    if rows >= a.shape[0]:
        return a @ b
    out = np.empty((a.shape[0], b.shape[1]))
    for i in range(0, a.shape[0], rows):
        np.matmul(a[i:i + rows], b, out=out[i:i + rows])
    return out


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """Σ a·b over all elements, without BLAS (einsum's own loop; see _SINGLE_THREAD_GEMM)."""
    return float(np.einsum("i,i->", a.ravel(), b.ravel()))


def _power(x: np.ndarray, k: int) -> np.ndarray:
    """x**k for an integer k ≥ 0 by repeated squaring (faster than np.power for small k)."""
    result = None
    while k:
        if k & 1:
            result = x if result is None else result * x
        k >>= 1
        if k:
            x = x * x
    return np.ones_like(x) if result is None else result
