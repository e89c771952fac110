"""Gaussian expectations of an activation φ, the integrals of the MLP map (THEORY.md §2).

For h ~ N(0, var) and (h_1, h_2) ~ N(0, [[var, cov], [cov, var]]), correlation c = cov/var:

    diagonal_moments  ->  (E[φ(h)²],       E[φ'(h)²])
    cross_moments     ->  (E[φ(h_1)φ(h_2)], E[φ'(h_1)φ'(h_2)])

erf, relu and linear have closed forms (arcsine and arc-cosine kernels). tanh, gelu and silu use

* diagonal: the trapezoid rule in z = h/sqrt(var) on a uniform grid. The integrand is analytic in a
  strip (tanh poles at σz = ±iπ/2, silu at ±iπ; gelu is entire), so the rule converges
  geometrically once the spacing is small against the strip width / σ, σ = sqrt(var).
* cross: the Mehler (dual activation) series with normalized Hermite coefficients
  a_k = E[φ(σz) He_k(z)]/sqrt(k!),  z ~ N(0, 1):

      E[φ(h_1)φ(h_2)]   = Σ_k a_k² c^k,
      E[φ'(h_1)φ'(h_2)] = (1/var) Σ_k k a_k² c^(k-1)          (Price's theorem).

  The series is cut at the first K where Parseval's identities Σ a_k² = E[φ²] and
  Σ k a_k² = var E[φ'²] hold to _PARSEVAL_TOL, which bounds the truncation error for all |c| <= 1
  (tanh needs K ≈ 115 var). Summing thousands of terms per point would be slow, so for each var the
  series is tabulated on a uniform grid in θ = arccos c, where both moments are smooth, even and
  2π-periodic, and read off by local Lagrange interpolation; the grid is refined until the
  interpolation error at the cell midpoints is below _TABLE_TOL. Tables are cached per
  (activation, var), so a call costs O(points) once its variances have been seen; unseen
  variances are built together, an octave of σ at a time (tanh: ~0.05 s at var 16, ~0.3 s at
  var 100, growing like var^1.5).

Against adaptive quadrature (var in [0.01, 100], |c| <= 1) the error is below 1e-11 of the
Cauchy–Schwarz bound sqrt(E[f²] E[g²]), and below 1e-10 relative wherever the moment is not ~0.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import lru_cache
from math import factorial
from typing import Iterator, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from sigprop.activations import get_activation

_CLOSED_FORMS = ("erf", "relu", "linear")
# Largest σ·h at which the trapezoid rule for E[f(σz)] is exact to ~1e-16 (measured against
# adaptive quadrature); set by the distance of the nearest complex singularity of φ.
_SIGMA_SPACING = {"tanh": 0.2, "silu": 0.4, "gelu": 0.4}
_MAX_SPACING = 0.5  # resolves the Gaussian weight itself when σ is small
_Z_MAX = 10.0  # e^{-z²/2} < 2e-22 beyond
_Z_MAX_HERMITE = 13.0  # the coefficient integrand carries e^{-z²/4} < 6e-19 beyond
_PARSEVAL_TOL = 1e-12
_TABLE_TOL = 1e-11
_STENCIL = 8  # points of the local Lagrange interpolant in θ
_COV_SLACK = 1e-12  # |cov| may exceed var by this relative rounding
_GROUP_SIZE = 256  # variances whose Hermite coefficients are computed together
_BLOCK = 256  # Hermite orders per matrix product
_MAX_CELLS = 2**16
_CACHE_SIZE = 1024  # (activation, var) θ-tables kept


def diagonal_moments(activation: str, var: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """(E[φ(h)²], E[φ'(h)²]) for h ~ N(0, var), var > 0; broadcasts over var."""
    get_activation(activation)
    var = _check_var(np.asarray(var, dtype=float))
    if activation == "linear":
        return var.copy(), np.ones_like(var)
    if activation == "relu":
        return var / 2, np.full_like(var, 0.5)
    if activation == "erf":
        return 2 / np.pi * np.arcsin(2 * var / (1 + 2 * var)), 4 / np.pi / np.sqrt(1 + 4 * var)
    unique, inverse = np.unique(var, return_inverse=True)
    phi2, dphi2 = np.empty_like(unique), np.empty_like(unique)
    for group in _groups(np.sqrt(unique)):
        phi2[group], dphi2[group] = _trapezoid_diagonal(activation, np.sqrt(unique[group]))
    return phi2[inverse].reshape(var.shape), dphi2[inverse].reshape(var.shape)


def cross_moments(
    activation: str, var: ArrayLike, cov: ArrayLike, derivative: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """(E[φ(h1)φ(h2)], E[φ'(h1)φ'(h2)]) for (h1, h2) ~ N(0, [[var, cov], [cov, var]]).
    var > 0, |cov| <= var; var and cov broadcast together. With ``derivative`` False the second
    is not computed (None)."""
    get_activation(activation)
    var, cov = np.broadcast_arrays(np.asarray(var, dtype=float), np.asarray(cov, dtype=float))
    var = _check_var(var)
    if not np.all(np.abs(cov) <= var * (1 + _COV_SLACK)):
        raise ValueError("cov must be finite with |cov| <= var (a valid covariance matrix)")
    c = np.clip(cov / var, -1.0, 1.0)
    if activation in _CLOSED_FORMS:
        phi, dphi = _closed_form_cross(activation, var, c)
        return phi, (dphi if derivative else None)
    # At c = 1 the cross moments are the diagonal ones: exact, and no table is needed.
    phi, dphi = (np.empty(var.shape) for _ in range(2))
    equal = c == 1.0
    phi[equal], dphi[equal] = diagonal_moments(activation, var[equal])
    if not np.all(equal):
        unique, inverse = np.unique(var[~equal], return_inverse=True)
        bank = _bank(activation, unique.tobytes())
        inverse = inverse.ravel()
        values = _interpolate([bank.phi, bank.dphi] if derivative else [bank.phi],
                              bank.base[inverse], bank.n[inverse], np.arccos(c[~equal]))
        phi[~equal] = values[0]
        if derivative:
            dphi[~equal] = values[1]
    return phi, (dphi if derivative else None)


class _Bank(NamedTuple):
    """The θ-tables of a set of variances laid end to end: table i starts at base[i], n[i] cells."""

    phi: np.ndarray
    dphi: np.ndarray
    base: np.ndarray
    n: np.ndarray


@lru_cache(maxsize=8)
def _bank(activation: str, variances: bytes) -> _Bank:
    """Concatenated tables for the sorted unique variances (raw float64 bytes, hashable).

    A fixed-point solve calls ``cross_moments`` hundreds of times with the same set of
    variances (one per grid point when σ_b or σ_w sweep a plane): concatenating once per set,
    not per call, keeps those calls O(points)."""
    tables = _tables(activation, np.frombuffer(variances, dtype=float))
    sizes = np.array([t.phi.size for t in tables])
    return _Bank(
        phi=np.concatenate([t.phi for t in tables]),
        dphi=np.concatenate([t.dphi for t in tables]),
        base=np.cumsum(sizes) - sizes,
        n=np.array([t.n for t in tables]),
    )


def _check_var(var: np.ndarray) -> np.ndarray:
    """var itself, after checking that every entry is finite and > 0."""
    if not np.all(np.isfinite(var) & (var > 0)):
        raise ValueError("var must be finite and > 0")
    return var


def _closed_form_cross(
    activation: str, var: np.ndarray, c: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Dual kernels in closed form, cov = c var, θ = arccos c:

    linear: (cov, 1)
    relu:   (var (sin θ + (π − θ) cos θ)/(2π), (π − θ)/(2π))        arc-cosine kernels, degree 1, 0
    erf:    ((2/π) arcsin(2cov/(1 + 2var)), (4/π)/sqrt((1 + 2var)² − 4cov²))    arcsine kernel
    """
    cov = c * var
    if activation == "linear":
        return cov, np.ones_like(var)
    if activation == "relu":
        theta = np.arccos(c)
        phi = var * (np.sin(theta) + (np.pi - theta) * c) / (2 * np.pi)
        return phi, (np.pi - theta) / (2 * np.pi)
    phi = 2 / np.pi * np.arcsin(2 * cov / (1 + 2 * var))
    dphi = 4 / np.pi / np.sqrt((1 + 2 * var - 2 * cov) * (1 + 2 * var + 2 * cov))
    return phi, dphi


def _groups(sigma: np.ndarray) -> Iterator[np.ndarray]:
    """Indices of σ grouped by octave (so one grid fits all), at most _GROUP_SIZE at a time."""
    octave = np.ceil(np.log2(sigma))
    for value in np.unique(octave):
        members = np.flatnonzero(octave == value)
        yield from np.array_split(members, -(-members.size // _GROUP_SIZE))


def _spacing(activation: str, sigma_max: float) -> float:
    """Trapezoid spacing in z resolving φ(σz) for every σ <= sigma_max."""
    return min(_MAX_SPACING, _SIGMA_SPACING[activation] / sigma_max)


def _trapezoid_diagonal(activation: str, sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """E[f(σz)] ≈ h Σ_j f(σ z_j) e^{-z_j²/2}/sqrt(2π), z_j = j h, for f = φ², φ'²."""
    act = get_activation(activation)
    h = _spacing(activation, sigma.max())
    z = h * np.arange(-np.ceil(_Z_MAX / h), np.ceil(_Z_MAX / h) + 1)
    weight = h * np.exp(-(z**2) / 2) / np.sqrt(2 * np.pi)
    x = np.outer(sigma, z)
    return act.numpy(x) ** 2 @ weight, act.derivative(x) ** 2 @ weight


def _hermite_squares(
    activation: str, sigma: np.ndarray, phi2: np.ndarray, dphi2: np.ndarray
) -> np.ndarray:
    """a_k² for k < K (shape K × len(σ)), K the first order where both Parseval residuals
    E[φ²] − Σ a_k² and var E[φ'²] − Σ k a_k² are below _PARSEVAL_TOL of their totals.

    a_k = ∫ [φ(σz) w(z)^½] e_k(z) dz by the trapezoid rule, with w the N(0, 1) density and e_k
    the Hermite functions of _hermite_functions. The spacing resolves φ(σz) plus the highest
    frequency, ≈ sqrt(2k), of e_k up to the cap k_max = 200 var + 200 (tanh needs ≈ 115 var).
    """
    k_max = int(200 * sigma.max() ** 2 + 200)
    h = 2 * np.pi / (2 * np.pi / _spacing(activation, sigma.max()) + np.sqrt(2 * k_max))
    z = h * np.arange(-np.ceil(_Z_MAX_HERMITE / h), np.ceil(_Z_MAX_HERMITE / h) + 1)
    root_w = np.exp(-(z**2) / 4) / (2 * np.pi) ** 0.25
    weighted_phi = h * get_activation(activation).numpy(np.outer(z, sigma)) * root_w[:, None]
    targets = np.stack([phi2, sigma**2 * dphi2])[:, None, :]
    blocks: list[np.ndarray] = []
    for rows in _hermite_functions(z):
        blocks.append((rows @ weighted_phi) ** 2)
        squares = np.concatenate(blocks)
        k = np.arange(squares.shape[0])[:, None]
        sums = np.stack([np.cumsum(squares, axis=0), np.cumsum(k * squares, axis=0)])
        done = np.all(np.abs(targets - sums) <= _PARSEVAL_TOL * targets, axis=(0, 2))
        if done.any():
            return squares[: np.argmax(done) + 1]
        if squares.shape[0] >= k_max:
            raise RuntimeError(f"Hermite series of {activation} did not converge at var {sigma**2}")


def _hermite_functions(z: np.ndarray) -> Iterator[np.ndarray]:
    """Blocks of _BLOCK rows of e_k(z) = He_k(z) w(z)^½ / sqrt(k!), k = 0, 1, 2, …, from the
    stable recurrence e_{k+1} = (z e_k − sqrt(k) e_{k−1})/sqrt(k+1), e_0 = w^½."""
    e_prev, e_k, k = np.zeros_like(z), np.exp(-(z**2) / 4) / (2 * np.pi) ** 0.25, 0
    while True:
        rows = np.empty((_BLOCK, z.size))
        for row in rows:
            row[:] = e_k
            e_prev, e_k = e_k, (z * e_k - np.sqrt(k) * e_prev) / np.sqrt(k + 1)
            k += 1
        yield rows


class _Table(NamedTuple):
    """Both cross moments at θ_j = jπ/n, j = −P … n + P (P = _STENCIL/2 ghost nodes, which the
    evenness and 2π-periodicity of cos θ_j fill in by themselves)."""

    phi: np.ndarray
    dphi: np.ndarray
    n: int


_CACHE: OrderedDict[tuple[str, float], _Table] = OrderedDict()


def _tables(activation: str, variances: np.ndarray) -> list[_Table]:
    """The cached θ-tables for each variance, building the missing ones together."""
    keys = [(activation, float(v)) for v in variances]
    missing = [key for key in keys if key not in _CACHE]
    new = dict(zip(missing, _build_tables(activation, np.array([v for _, v in missing]))))
    tables = [new[key] if key in new else _CACHE[key] for key in keys]
    for key, table in zip(keys, tables):
        _CACHE[key] = table
        _CACHE.move_to_end(key)
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return tables


def _build_tables(activation: str, variances: np.ndarray) -> list[_Table]:
    """θ-tables of the Mehler series, one per variance, computed group by group."""
    tables: dict[int, _Table] = {}
    sigma = np.sqrt(variances)
    for group in _groups(sigma):
        phi2, dphi2 = _trapezoid_diagonal(activation, sigma[group])
        squares = _hermite_squares(activation, sigma[group], phi2, dphi2)
        tables.update(zip(group, _theta_tables(squares, variances[group], phi2, dphi2)))
    return [tables[i] for i in range(variances.size)]


def _theta_tables(
    squares: np.ndarray, var: np.ndarray, phi2: np.ndarray, dphi2: np.ndarray
) -> list[_Table]:
    """Tabulate Σ a_k² c^k and (1/var) Σ k a_k² c^(k−1) at c = cos θ_j, doubling the number n of
    cells (from ≈ 16σ) until interpolation at every cell midpoint is within _TABLE_TOL of the
    series, relative to the diagonal moments (the Cauchy–Schwarz bound)."""
    m, k = var.size, np.arange(squares.shape[0])[:, None]
    dphi_coef = np.vstack([(k * squares)[1:] / var, np.zeros((1, m))])
    coef = np.hstack([squares, dphi_coef])  # column i < m: φφ of var[i]; m + i: φ'φ'
    scale = np.concatenate([phi2, dphi2])[:, None]
    pad = _STENCIL // 2
    n = 2 ** int(max(5, np.ceil(np.log2(16 * np.sqrt(var.max())))))
    while n <= _MAX_CELLS:
        theta = np.pi / n * np.arange(-pad, n + pad + 1)
        mid = np.pi / n * (np.arange(n) + 0.5)
        values = _power_series(np.cos(np.concatenate([theta, mid])), coef)
        table, exact = values[:, : theta.size], values[:, theta.size :]
        base = np.repeat(np.arange(2 * m) * theta.size, n)
        (got,) = _interpolate([table.ravel()], base, n, np.tile(mid, 2 * m))
        if np.all(np.abs(got.reshape(2 * m, n) - exact) <= _TABLE_TOL * scale):
            return [_Table(table[i], table[m + i], n) for i in range(m)]
        n *= 2
    raise RuntimeError(f"θ-table did not reach its tolerance with {_MAX_CELLS} cells")


def _power_series(c: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """Σ_k coef[k, j] c_i^k for every column j and point i, shape (columns, points): one matrix
    product with the powers c^k (|c| ≤ 1, so the powers stay bounded)."""
    powers = np.empty((c.size, coef.shape[0]))
    powers[:, 0] = 1.0
    if coef.shape[0] > 1:
        powers[:, 1:] = c[:, None]
        np.cumprod(powers[:, 1:], axis=1, out=powers[:, 1:])
    return (powers @ coef).T


def _interpolate(
    tables: list[np.ndarray], base: np.ndarray, n: ArrayLike, theta: np.ndarray
) -> list[np.ndarray]:
    """Local Lagrange interpolation in θ: each of tables concatenates θ-tables, and point i reads
    the one starting at base[i] with n[i] cells, on the _STENCIL nodes around θ_i."""
    t = theta * n / np.pi
    start = np.minimum(np.floor(t), np.asarray(n) - 1).astype(int) - _STENCIL // 2 + 1
    index = np.arange(_STENCIL)[:, None] + (base + start + _STENCIL // 2)
    weights = _lagrange_weights(t - start)
    return [np.sum(weights * table[index], axis=0) for table in tables]


_LAGRANGE_DENOMINATORS = np.array(  # Π_{j≠m} (m − j)
    [(-1) ** (_STENCIL - 1 - m) * factorial(m) * factorial(_STENCIL - 1 - m)
     for m in range(_STENCIL)],
    dtype=float,
)[:, None]


def _lagrange_weights(s: np.ndarray) -> np.ndarray:
    """ℓ_m(s) = Π_{j≠m} (s − j)/(m − j) for nodes j = 0 … _STENCIL−1, shape (_STENCIL, points):
    prefix times suffix products (no division by s − j, so s may sit on a node), one row at a
    time so that every operation runs over contiguous points."""
    diff = s[None, :] - np.arange(_STENCIL, dtype=float)[:, None]
    prefix, suffix = np.ones_like(diff), np.ones_like(diff)
    for m in range(1, _STENCIL):
        np.multiply(prefix[m - 1], diff[m - 1], out=prefix[m])
        np.multiply(suffix[_STENCIL - m], diff[_STENCIL - m], out=suffix[_STENCIL - m - 1])
    return prefix * suffix / _LAGRANGE_DENOMINATORS