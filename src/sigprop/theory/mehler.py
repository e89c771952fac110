"""θ-tables of the Mehler series: Gaussian cross moments of φ read off per-variance tables.

For h ~ N(0, var) and correlation c, with the normalized Hermite coefficients
a_k = E[φ(σz) He_k(z)]/sqrt(k!) (z ~ N(0, 1), σ = sqrt(var)):

    E[φ(h_1)φ(h_2)]   = Σ_k a_k² c^k,
    E[φ'(h_1)φ'(h_2)] = (1/var) Σ_k k a_k² c^(k-1)          (Price's theorem).

The series is cut at the first K where Parseval's identities Σ a_k² = E[φ²] and
Σ k a_k² = var E[φ'²] hold to _PARSEVAL_TOL, which bounds the truncation error for all |c| <= 1
(tanh needs K ≈ 115 var). For each var the series is tabulated on a uniform grid in θ = arccos c,
where both moments are smooth, even and 2π-periodic, and read off by local Lagrange
interpolation; the grid is refined until the interpolation error at the cell midpoints is below
_TABLE_TOL. Tables are kept in memory per (activation, var), built together an octave of σ at a
time, and stored in the on-disk table cache (``table_cache``), where a new process finds them.
One tanh table costs ~0.01 s at var 4, 0.03–0.08 s at 16, 0.25–0.4 s at 64, 4–6 s at 256.

Tables exist only on a lattice of variances, var_j = 2^(j/LATTICE_PER_OCTAVE), and a moment at
any other variance in [LATTICE_LOW, LATTICE_HIGH] is the local Lagrange interpolant in log var
through the _STENCIL lattice tables around it (``lattice_moments``). Both moments are analytic
in log var, and at 8 tables per octave the interpolant agrees with direct quadrature within
1e-11 of the Cauchy–Schwarz bound (tests/test_gaussian.py), the tables' own accuracy. So a grid
with one variance per point (σ_w and σ_b sweeping a plane) reads at most ~110 tables per
activation, built once and shared by every grid and process: 8 table reads a point instead of
~10⁴ evaluations of φ, and an on-disk cache of bounded size.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from functools import lru_cache
from math import factorial
from typing import Iterator, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from sigprop.theory.activations import get_activation
from sigprop.theory import table_cache
from sigprop.theory.gaussian_pairs import SPECS

# Largest σ·h at which the trapezoid rule for E[f(σz)] is exact to ~1e-16 (measured against
# adaptive quadrature); set by the distance of the nearest complex singularity of φ.
_SIGMA_SPACING = {name: spec.spacing for name, spec in SPECS.items()}
_MAX_SPACING = 0.5  # resolves the Gaussian weight itself when σ is small
_Z_MAX = 10.0  # e^{-z²/2} < 2e-22 beyond
_Z_MAX_HERMITE = 13.0  # the coefficient integrand carries e^{-z²/4} < 6e-19 beyond
_PARSEVAL_TOL = 1e-12
_TABLE_TOL = 1e-11
_STENCIL = 8  # points of the local Lagrange interpolant in θ
_GROUP_SIZE = 256  # variances whose Hermite coefficients are computed together
_BLOCK = 256  # Hermite orders per matrix product
_MAX_CELLS = 2**16
_CACHE_SIZE = 1024  # (activation, var) θ-tables kept
_DISK_KIND = "gaussian-theta"
_DISK_VERSION = "gaussian-theta-v1"
LATTICE_PER_OCTAVE = 8  # θ-tables per doubling of the variance
# The variances read off the lattice: the stencil's tables stay within [0.01, 100], where the
# tables were validated against adaptive quadrature.
LATTICE_LOW, LATTICE_HIGH = 0.01 * 2 ** (4 / LATTICE_PER_OCTAVE), 100 * 2 ** (-4 / LATTICE_PER_OCTAVE)


def lattice_moments(activation: str, var: np.ndarray, c: np.ndarray, derivative: bool
                    ) -> list[np.ndarray]:
    """Both cross moments (the first only unless ``derivative``) at variances ``var`` in
    [LATTICE_LOW, LATTICE_HIGH] and correlations ``c``: the Lagrange interpolant in log₂ var
    through the θ-tables of the _STENCIL nearest lattice variances."""
    x = np.log2(var) * LATTICE_PER_OCTAVE
    start = np.floor(x).astype(int) - _STENCIL // 2 + 1
    nodes = start[None, :] + np.arange(_STENCIL)[:, None]
    lowest = start.min(initial=0)
    needed = np.flatnonzero(np.bincount((nodes - lowest).ravel())) + lowest  # np.unique, O(points)
    variances = 2.0 ** (needed / LATTICE_PER_OCTAVE)
    slots = np.searchsorted(needed, nodes)
    weights = _lagrange_weights(x - start)
    theta = np.arccos(c)
    bank = _bank(activation, variances.tobytes())
    tables = [bank.phi, bank.dphi] if derivative else [bank.phi]
    totals = [np.zeros(var.shape) for _ in tables]
    for m in range(_STENCIL):
        values = _interpolate(tables, bank.base[slots[m]], bank.n[slots[m]], theta)
        for total, value in zip(totals, values):
            total += weights[m] * value
    return totals


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
    lattice variances: concatenating once per set, not per call, keeps those calls
    O(points)."""
    tables = _tables(activation, np.frombuffer(variances, dtype=float))
    sizes = np.array([t.phi.size for t in tables])
    return _Bank(
        phi=np.concatenate([t.phi for t in tables]),
        dphi=np.concatenate([t.dphi for t in tables]),
        base=np.cumsum(sizes) - sizes,
        n=np.array([t.n for t in tables]),
    )


def groups(sigma: np.ndarray) -> Iterator[np.ndarray]:
    """Indices of σ grouped by octave (so one grid fits all), at most _GROUP_SIZE at a time."""
    octave = np.ceil(np.log2(sigma))
    for value in np.unique(octave):
        members = np.flatnonzero(octave == value)
        yield from np.array_split(members, -(-members.size // _GROUP_SIZE))


def _spacing(activation: str, sigma_max: float) -> float:
    """Trapezoid spacing in z resolving φ(σz) for every σ <= sigma_max."""
    return min(_MAX_SPACING, _SIGMA_SPACING[activation] / sigma_max)


def trapezoid_diagonal(activation: str, sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
_CACHE_LOCK = threading.Lock()  # the grid's bands run on several threads (slices.on_grid)
# (activation, var) found missing on disk in this process: not looked up again (a fixed-point
# search asks for a few new variances at every step, and each failed lookup costs a file open).
_MISSING: OrderedDict[tuple[str, float], None] = OrderedDict()


def _tables(activation: str, variances: np.ndarray) -> list[_Table]:
    """The θ-tables for each variance: from memory, else from the on-disk cache, else built
    together (and stored on disk). One thread at a time: the memory caches are shared."""
    with _CACHE_LOCK:
        return _tables_locked(activation, variances)


def _tables_locked(activation: str, variances: np.ndarray) -> list[_Table]:
    keys = [(activation, float(v)) for v in variances]
    missing = [key for key in keys if key not in _CACHE and not _load_table(*key)]
    new = dict(zip(missing, _build_tables(activation, np.array([v for _, v in missing]))))
    for key, table in new.items():
        table_cache.store(_DISK_KIND, _disk_key(*key), np.stack([table.phi, table.dphi]))
        _MISSING.pop(key, None)
    tables = [new[key] if key in new else _CACHE[key] for key in keys]
    for key, table in zip(keys, tables):
        _CACHE[key] = table
        _CACHE.move_to_end(key)
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return tables


def _load_table(activation: str, var: float) -> bool:
    """Put the stored θ-table of (activation, var) into the memory cache, if there is one."""
    if (activation, var) in _MISSING:
        return False
    stored = table_cache.stored(_DISK_KIND, _disk_key(activation, var))
    if stored is None or stored.ndim != 2 or stored.shape[0] != 2:
        _MISSING[(activation, var)] = None
        while len(_MISSING) > 64 * _CACHE_SIZE:
            _MISSING.popitem(last=False)
        return False
    _CACHE[(activation, var)] = _Table(stored[0], stored[1], stored.shape[1] - _STENCIL - 1)
    return True


def _disk_key(activation: str, var: float) -> tuple:
    """What a stored table depends on: the version, the activation, var and the tolerances."""
    return (_DISK_VERSION, activation, float(var), _PARSEVAL_TOL, _TABLE_TOL, _STENCIL)


def _build_tables(activation: str, variances: np.ndarray) -> list[_Table]:
    """θ-tables of the Mehler series, one per variance, computed group by group."""
    tables: dict[int, _Table] = {}
    sigma = np.sqrt(variances)
    for group in groups(sigma):
        phi2, dphi2 = trapezoid_diagonal(activation, sigma[group])
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
    the prefix product Π_{j<m} times the suffix product Π_{j>m} (no division by s − j, so s
    may sit on a node), filled in place one row at a time so that every operation runs over
    contiguous points."""
    diff = s[None, :] - np.arange(_STENCIL, dtype=float)[:, None]
    weights = np.empty_like(diff)
    weights[0] = 1.0
    for m in range(1, _STENCIL):
        np.multiply(weights[m - 1], diff[m - 1], out=weights[m])
    suffix = diff[_STENCIL - 1].copy()
    for m in range(_STENCIL - 2, -1, -1):
        weights[m] *= suffix
        if m:
            suffix *= diff[m]
    weights /= _LAGRANGE_DENOMINATORS
    return weights
