"""Cross moments of tanh, gelu and silu by direct quadrature, point by point (no θ-table).

For (h_1, h_2) ~ N(0, [[var, cov], [cov, var]]), c = cov/var, a = |c|, ς = sign c, write

    h_1 = m + s z_1,   h_2 = ς m + s z_2,   m ~ N(0, v),  z_1, z_2 ~ N(0, 1),  all independent,
    v = a var,  s² = (1 − a) var,

so that E[f(h_1) f(h_2)] = E_m[F(m) F(ς m)] with F(m) = E_z f(m + s z), for f = φ and f = φ'.

Subtraction. Let f∞ be the piecewise-linear limit of f: sign for tanh, relu for gelu and silu,
0 for tanh', the unit step for gelu' and silu'. |f − f∞| < 2e-16 for |x| > L (_Spec.window), but
f − f∞ jumps or kinks at 0, so the split uses the limit smoothed at width τ = _TAU,
g = f∞ * N(0, τ²). Its Gaussian means are closed forms: G(m) = E_z g(m + s z) = E_z f∞(m + S z)
with S² = s² + τ², and E_m[G(m) G(ς m)] = K, the arcsine (sign), arc-cosine (relu, step) kernel
of f∞ at variance var + τ² and covariance cov. With R = F − G = (f − g) * N(0, s²), analytic and
negligible beyond |m| = L + 10 s,

    E[f(h_1) f(h_2)] = K + E_m[R(m) G(ς m) + G(m) R(ς m) + R(m) R(ς m)].

Both expectations are trapezoid rules, which converge geometrically for analytic integrands:

* inner: F(m_i) = Σ_j w_j f(m_i + s z_j), z_j = j h_z, w_j = h_z e^{−z_j²/2}/sqrt(2π), |z_j| <= 10,
  h_z = min(0.5, δ/s), δ = _Spec.spacing (the largest σ·h that resolves E[f(σz)]). f is evaluated
  only on the nodes with |m_i + s z_j| <= L, at most 2L/δ + 1 of them whatever var is; on the
  others f = f∞, whose weighted sums are read from per-point tables of the tail sums
  Σ_{j>J} w_j and Σ_{j>J} w_j z_j (exact for the discrete rule, unlike erfc). At c = ±1, s = 0
  and the rule is the single node z = 0 with weight 1 (F = f), which diagonal_moments uses.
* outer: in u = m/sqrt(v), nodes u_i = i h_u with |u_i| <= 10 and |m_i| <= L + 10 s. R is f − g
  smoothed at width s and G is f∞ smoothed at width S >= s, so the spectrum of the integrand
  (R² N_v, R G N_v) falls off at least like a Gaussian of variance 2/s² + 1/v, and the aliasing
  error of spacing h is below exp(−(2π/h)²/(2(2/s² + 1/v))). Spacing h_m = max(δ, s/2) in m
  (_OUTER_RATIO = 1/2; δ for the strip of f − g when s is small), combined with the cap 0.5 in u
  as 1/h_u² = v/h_m² + 1/0.5², i.e. 1/h² = 1/h_m² + 4/v in m, makes the exponent at least
  (2π)² (4/s² + 4/v)/(4/s² + 2/v) >= 4π²: error < e^{−4π²} = 7e-18. (With ratio 0.65 the
  bound is e^{−23} = 1e-10; measured for tanh', 9e-12.)

Cost: ≈ 10⁴ evaluations of φ and φ' per point for any var (0.1–0.3 ms per point).
"""

from __future__ import annotations

from typing import Callable, Iterator, NamedTuple

import numpy as np
from sigprop.theory.activations import get_activation, scipy_special


class _Spec(NamedTuple):
    """spacing: largest σ·h at which the trapezoid rule for E[f(σz)], f = φ², φ'², is exact to
    ~1e-16 (set by the nearest complex singularity of φ); window: L, beyond which |φ − φ∞| and
    |φ' − φ'∞| are below 2e-16; limit, dlimit: the kinds of φ∞ and φ'∞."""

    spacing: float
    window: float
    limit: str
    dlimit: str


SPECS = {
    "tanh": _Spec(0.2, 20.0, "sign", "zero"),  # poles at ±iπ/2; 1 − tanh 20 = 8e-18
    "gelu": _Spec(0.4, 10.0, "relu", "step"),  # entire; 10 Φ(−10) = 8e-23
    "silu": _Spec(0.4, 40.0, "relu", "step"),  # poles at ±iπ; 40/(1 + e^40) = 2e-16
}
_TAU = 1.0  # width of the smoothed limit g
_Z_MAX = 10.0  # e^{-z²/2} < 2e-22 beyond
_MAX_SPACING = 0.5  # resolves the Gaussian weight itself
_OUTER_RATIO = 0.5
_ROW_BUDGET = 2**18  # outer nodes per chunk of points
_TABLE_BUDGET = 2**19  # tail-table entries per chunk of points
_PAIR_BUDGET = 2**16  # (outer node, inner node) pairs per block: 0.5 MB per temporary (cache-sized)


class _Points(NamedTuple):
    """Quadrature parameters of each point (1-D arrays)."""

    v: np.ndarray  # variance of m
    s: np.ndarray  # inner width
    flip: np.ndarray  # c < 0
    h_z: np.ndarray
    h_u: np.ndarray
    n_outer: np.ndarray  # outer nodes i = −n … n
    depth: np.ndarray  # inner nodes j = −D … D


class _Rows(NamedTuple):
    """The outer nodes of a chunk of points laid end to end."""

    point: np.ndarray  # owner
    m: np.ndarray
    weight: np.ndarray  # h_u e^{−u_i²/2}/sqrt(2π)
    mirror: np.ndarray  # row of the node ς m_i


def pair_moments(
    activation: str, var: np.ndarray, c: np.ndarray, derivative: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """(E[φ(h1)φ(h2)], E[φ'(h1)φ'(h2)]) at variances var > 0 and correlations c (1-D arrays,
    |c| <= 1) by the direct quadrature of the module docstring; None for the second unless
    ``derivative``."""
    spec, act = SPECS[activation], get_activation(activation)
    var, c = np.asarray(var, dtype=float), np.asarray(c, dtype=float)
    points = _points(spec, var, c)
    funcs = [act.numpy, act.derivative] if derivative else [act.numpy]
    kinds = [spec.limit, spec.dlimit] if derivative else [spec.limit]
    out = [np.empty(var.size) for _ in funcs]
    for chunk in _chunks(points):
        values = _chunk_moments(spec, funcs, kinds, var[chunk], c[chunk],
                                _Points(*(field[chunk] for field in points)))
        for total, value in zip(out, values):
            total[chunk] = value
    return out[0], (out[1] if derivative else None)


def _points(spec: _Spec, var: np.ndarray, c: np.ndarray) -> _Points:
    """Spacings and node counts of the module docstring for each point."""
    a = np.abs(c)
    v, s = a * var, np.sqrt((1 - a) * var)
    with np.errstate(divide="ignore"):
        h_z = np.minimum(_MAX_SPACING, spec.spacing / s)
        h_m = np.maximum(spec.spacing, _OUTER_RATIO * s)
        h_u = 1 / np.sqrt(v / h_m**2 + 1 / _MAX_SPACING**2)
        reach = np.minimum(_Z_MAX, (spec.window + _Z_MAX * s) / np.sqrt(v))
    return _Points(v=v, s=s, flip=c < 0, h_z=h_z, h_u=h_u,
                   n_outer=np.floor(reach / h_u).astype(int),
                   depth=np.where(s > 0, np.ceil(_Z_MAX / h_z), 0).astype(int))


def _chunks(points: _Points) -> Iterator[np.ndarray]:
    """Indices of the points, in order of depth, in chunks within _ROW_BUDGET outer nodes and
    _TABLE_BUDGET tail-table entries (points × largest depth)."""
    order = np.argsort(points.depth, kind="stable")
    start = 0
    while start < order.size:
        rest = order[start : start + _TABLE_BUDGET // (points.depth[order[start]] + 2) + 1]
        tables = np.arange(1, rest.size + 1) * (points.depth[rest] + 2)
        rows = np.cumsum(2 * points.n_outer[rest] + 1)
        stop = start + max(1, min(np.searchsorted(tables, _TABLE_BUDGET, side="right"),
                                  np.searchsorted(rows, _ROW_BUDGET, side="right")))
        yield order[start:stop]
        start = stop


def _chunk_moments(
    spec: _Spec, funcs: list[Callable], kinds: list[str], var: np.ndarray, c: np.ndarray,
    points: _Points,
) -> list[np.ndarray]:
    """K + Σ_i weight_i (R_i G_i' + G_i R_i' + R_i R_i'), i' the row of ς m_i, for each f."""
    rows = _outer_rows(points)
    s, h_z = points.s[rows.point], points.h_z[rows.point]
    lo, hi = _window(spec.window, rows.m, s * h_z, points.depth[rows.point])
    sums = _window_sums(funcs, rows.m, s, h_z, lo, hi)
    tables = _tail_tables(points.h_z, points.depth)
    width = np.sqrt(s**2 + _TAU**2)
    values = []
    for kind, window_sum in zip(kinds, sums):
        G = _limit_mean(kind, rows.m, width)
        R = window_sum + _tail_sum(kind, rows, s, lo, hi, tables) - G
        integrand = R * G[rows.mirror] + G * R[rows.mirror] + R * R[rows.mirror]
        quadrature = np.bincount(rows.point, rows.weight * integrand, minlength=var.size)
        values.append(_limit_kernel(kind, var + _TAU**2, c * var) + quadrature)
    return values


def _outer_rows(points: _Points) -> _Rows:
    """Outer nodes m_i = sqrt(v) i h_u, i = −n … n, of every point, one row each."""
    count = 2 * points.n_outer + 1
    point = np.repeat(np.arange(count.size), count)
    start = (np.cumsum(count) - count)[point]
    row = np.arange(point.size)
    u = (row - start - points.n_outer[point]) * points.h_u[point]
    return _Rows(
        point=point,
        m=np.sqrt(points.v[point]) * u,
        weight=points.h_u[point] * np.exp(-(u**2) / 2) / np.sqrt(2 * np.pi),
        mirror=np.where(points.flip[point], 2 * start + count[point] - 1 - row, row),
    )


def _window(
    L: float, m: np.ndarray, dx: np.ndarray, depth: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """First and last inner node j, |j| <= depth, with |m + j dx| <= L (all if dx = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        lo = np.where(dx > 0, np.ceil((-L - m) / dx), -np.inf)
        hi = np.where(dx > 0, np.floor((L - m) / dx), np.inf)
    return (np.clip(lo, -depth, depth + 1).astype(int),
            np.clip(hi, -depth - 1, depth).astype(int))


def _window_sums(
    funcs: list[Callable], m: np.ndarray, s: np.ndarray, h_z: np.ndarray, lo: np.ndarray,
    hi: np.ndarray,
) -> list[np.ndarray]:
    """Σ_{lo <= j <= hi} w_j f(m + s z_j) for each row and each f, over blocks of rows of similar
    node count (sorted) with at most _PAIR_BUDGET (row, node) pairs each."""
    count = np.maximum(hi - lo + 1, 0)
    order = np.argsort(count, kind="stable")
    sums = [np.zeros(m.size) for _ in funcs]
    start = 0
    while start < order.size:
        rest = order[start : start + _PAIR_BUDGET // max(count[order[start]], 1) + 1]
        pairs = np.arange(1, rest.size + 1) * np.maximum(count[rest], 1)
        rows = rest[: max(1, np.searchsorted(pairs, _PAIR_BUDGET, side="right"))]
        start += rows.size
        n = np.arange(max(count[rows[-1]], 1))
        inside = n < count[rows, None]
        z = (lo[rows, None] + n) * h_z[rows, None]
        w = np.where(inside, _weights(z, h_z[rows, None], s[rows, None] == 0), 0.0)
        x = np.where(inside, m[rows, None] + s[rows, None] * z, 0.0)
        for total, f in zip(sums, funcs):
            total[rows] = np.sum(w * f(x), axis=1)
    return sums


def _weights(z: np.ndarray, h_z: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """w_j = h_z e^{−z_j²/2}/sqrt(2π); where s = 0 (``exact``) the one node z = 0, weight 1."""
    return np.where(exact, 1.0, h_z / np.sqrt(2 * np.pi) * np.exp(-(z**2) / 2))


def _tail_tables(h_z: np.ndarray, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """T_k[p, J] = Σ_{J<j<=D} w_j z_j^k of point p for J = 0 … max depth and k = 0, 1: suffix
    sums, accumulated from the far tail inwards."""
    j = np.arange(depth.max() + 2)
    z = j * h_z[:, None]
    w = np.where(j <= depth[:, None], _weights(z, h_z[:, None], depth[:, None] == 0), 0.0)
    return (np.cumsum(w[:, :0:-1], axis=1)[:, ::-1],
            np.cumsum((w * z)[:, :0:-1], axis=1)[:, ::-1])


def _upper(table: np.ndarray, point: np.ndarray, J: np.ndarray, k: int) -> np.ndarray:
    """Σ_{j>J} w_j z_j^k for J in [−D − 1, D] from T_k, which holds J >= 0: by w_{−j} = w_j,
    Σ_j w_j = 1 and Σ_j w_j z_j = 0 it is 1 − T_0(−J − 1) for k = 0 and T_1(−J − 1) for k = 1
    when J < 0."""
    negative = J < 0
    value = table[point, np.where(negative, -J - 1, J)]
    return np.where(negative, 1.0 - value, value) if k == 0 else value


def _tail_sum(
    kind: str, rows: _Rows, s: np.ndarray, lo: np.ndarray, hi: np.ndarray,
    tables: tuple[np.ndarray, np.ndarray],
) -> np.ndarray | float:
    """Σ_{j<lo or j>hi} w_j f∞(m + s z_j): there m + s z_j > L for j > hi and < −L for j < lo."""
    if kind == "zero":
        return 0.0
    above = _upper(tables[0], rows.point, hi, 0)
    if kind == "step":
        return above
    if kind == "relu":
        return rows.m * above + s * _upper(tables[1], rows.point, hi, 1)
    below = 1.0 - _upper(tables[0], rows.point, lo - 1, 0)
    return above - below  # sign


def _limit_mean(kind: str, m: np.ndarray, width: np.ndarray) -> np.ndarray:
    """E_z f∞(m + S z), S = width: erf(t/√2), Φ(t) or m Φ(t) + S N(t) with t = m/S."""
    if kind == "zero":
        return np.zeros_like(m)
    t = m / width
    if kind == "sign":
        return scipy_special().erf(t / np.sqrt(2))
    if kind == "step":
        return scipy_special().ndtr(t)
    return m * scipy_special().ndtr(t) + width * np.exp(-(t**2) / 2) / np.sqrt(2 * np.pi)


def _limit_kernel(kind: str, var: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """E[f∞(h_1) f∞(h_2)], (h_1, h_2) ~ N(0, [[var, cov], [cov, var]]), θ = arccos(cov/var):
    sign (2/π) arcsin(cov/var), step (π − θ)/(2π), relu var (sin θ + (π − θ) cos θ)/(2π)."""
    if kind == "zero":
        return np.zeros_like(var)
    c = cov / var
    if kind == "sign":
        return 2 / np.pi * np.arcsin(c)
    theta = np.arccos(c)
    if kind == "step":
        return (np.pi - theta) / (2 * np.pi)
    return var * (np.sin(theta) + (np.pi - theta) * c) / (2 * np.pi)
