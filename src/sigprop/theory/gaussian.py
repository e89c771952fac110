"""Gaussian expectations of an activation φ, the integrals of the MLP and DyT maps
(docs/theory.md §1–§3).

For h ~ N(0, var) and (h_1, h_2) ~ N(0, [[var, cov], [cov, var]]), correlation c = cov/var:

    diagonal_moments  ->  (E[φ(h)²],       E[φ'(h)²])
    cross_moments     ->  (E[φ(h_1)φ(h_2)], E[φ'(h_1)φ'(h_2)])

erf, relu and linear have closed forms (arcsine and arc-cosine kernels). tanh, gelu and silu use

* diagonal: the trapezoid rule in z = h/sqrt(var) on a uniform grid. The integrand is analytic in a
  strip (tanh poles at σz = ±iπ/2, silu at ±iπ; gelu is entire), so the rule converges
  geometrically once the spacing is small against the strip width / σ, σ = sqrt(var). Its cost
  grows like σ, so above var _WINDOWED_DIAGONAL_VAR = 10³ the c = 1 case of the direct path
  below (nodes only where φ differs from its limit) is used instead: 1000 variances in
  [10³, 10⁴] take 0.01–0.08 s instead of 0.15–0.23 s (below 10³ the trapezoid is as fast or
  faster).
* cross, tabled (``mehler``): the Mehler series Σ_k a_k² c^k of the normalized Hermite
  coefficients, tabulated in θ = arccos c per variance and read off by interpolation. A table
  costs var^1.5–2 to build (~0.01 s for tanh at var 4, 4–6 s at 256): it pays only for a
  variance met at many points.
* cross, direct (gaussian_pairs, which has the details): with a = |c|, m ~ N(0, a var) and
  s² = (1 − a) var, h_1 = m + s z_1, h_2 = sign(c) m + s z_2, so

      E[f(h_1) f(h_2)] = E_m[F(m) F(sign(c) m)],   F(m) = E_z f(m + s z),   f = φ, φ'.

  f is split as g + (f − g), g its piecewise-linear limit (sign, relu; 0, step) smoothed at
  width 1: g's part of the moment is a closed form K (arcsine / arc-cosine kernel at variance
  var + 1), and with G = E_z g(m + s z) (closed form) and R = F − G, which vanishes beyond
  |m| = L + 10 s (L = 20 for tanh, 10 gelu, 40 silu),

      E[f(h_1) f(h_2)] = K + E_m[R(m) G(±m) + G(m) R(±m) + R(m) R(±m)].

  Both expectations are trapezoid rules: the inner one in z at spacing min(0.5, _SIGMA_SPACING/s),
  evaluating f only where |m + s z| <= L (f = its limit beyond, summed from tables of the
  Gaussian weights' tails); the outer one in m at spacing h_m = max(_SIGMA_SPACING, s/2), with a
  cap of 0.5 in u = m/sqrt(a var) (1/h_u² = a var/h_m² + 1/0.5²). A point costs ≤ 1.2·10⁴
  evaluations of φ and φ' at any var: 0.1–0.3 ms in a batch (tanh 0.16 ms, gelu 0.10, silu 0.27
  at var 10³), 0.3–0.6 ms alone.

Which path: _use_tables, per (activation, var). A cached table is read: from memory, or, for
calls with few distinct variances, from the on-disk table cache, where every table built is
stored, so that a new process (a command run again) finds it. Above _TABLE_MAX_VAR = 100, the
range the tables were validated on and where one already costs ~1700 direct tanh points, the
direct path is always taken. Below, a variance is integrated directly until the points it has
been met at, in this call and earlier ones, reach the cost of its table (_table_price, measured),
and tabulated from then on (rent or buy). A trajectory with one new variance per layer, or a grid
with one variance per point, thus never builds a table; a map iterated at fixed variances does,
after its first calls (or at once when each variance comes with enough correlations).

Accuracy, relative to the Cauchy–Schwarz bound sqrt(E[f²] E[g²]) (the diagonal moment). Tables,
against adaptive quadrature at var in [0.01, 100], |c| <= 1: below 1e-11, and below 1e-10
relative wherever the moment is not ~0. Direct path: against nested adaptive quadrature (scipy
quad, conditional on h_1) at var 10³ and 10⁴, c in {±1, ±(1 − 10⁻⁶), −0.5, 0, 0.3, 0.9}, below
9e-14, which is the reference's own error (an adaptive quad of the split form above agrees to
6e-16 there); against itself with halved spacings, 1.5 times the windows and |z| <= 12, over var
in [0.01, 10⁴] × 141 values of c in [−1, 1] (down to ±(1 − 10⁻¹⁵)), below 2e-15, except 7e-14 at
var 0.01 for gelu and silu (rounding: K and its correction are each ~100 times the moment there);
against the tables at var 4 and 16, below 1e-11 (the tables' error). Diagonal moments, against
adaptive quadrature: the trapezoid below 5e-16 up to var 10⁴; the windowed direct path below
2e-15 from var 1 to 10⁴ (2e-14 at var 0.01, rounding as above).
"""

from __future__ import annotations

from collections import OrderedDict
from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike

from sigprop.theory.activations import get_activation
from sigprop.theory import mehler
from sigprop.theory.gaussian_pairs import pair_moments

_CLOSED_FORMS = ("erf", "relu", "linear")
_COV_SLACK = 1e-12  # |cov| may exceed var by this relative rounding
_TABLE_MAX_VAR = 100.0  # no θ-table above (see the module docstring)
_WINDOWED_DIAGONAL_VAR = 1e3  # diagonal moments by gaussian_pairs above (3–12 times faster)
_ACCRUED_SIZE = 2**16  # (activation, var) whose direct points are counted
_TABLE_PRICE = {"tanh": 1.7, "gelu": 0.3, "silu": 0.1}  # see _table_price
_DISK_LOOKUPS = 1024  # calls with at most this many new variances look for stored tables


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
    unique, inverse, _ = _unique(var)
    phi2, dphi2 = np.empty_like(unique), np.empty_like(unique)
    wide = unique > _WINDOWED_DIAGONAL_VAR
    if wide.any():
        phi2[wide], dphi2[wide] = pair_moments(activation, unique[wide], np.ones(wide.sum()))
    narrow = np.flatnonzero(~wide)
    for group in mehler.groups(np.sqrt(unique[narrow])):
        sigma = np.sqrt(unique[narrow[group]])
        phi2[narrow[group]], dphi2[narrow[group]] = mehler.trapezoid_diagonal(activation, sigma)
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
    rest = np.flatnonzero(~equal)
    v, c = var.ravel()[rest], c.ravel()[rest]
    unique, inverse, counts = _unique(v)
    use = _use_tables(activation, unique, counts)
    tabled = use[inverse]
    if tabled.any():
        slot = np.cumsum(use) - 1  # index of a tabled variance among the tabled ones
        values = mehler.table_moments(activation, unique[use], slot[inverse[tabled]],
                                      c[tabled], derivative)
        phi.flat[rest[tabled]] = values[0]
        if derivative:
            dphi.flat[rest[tabled]] = values[1]
    if not tabled.all():
        values = pair_moments(activation, v[~tabled], c[~tabled], derivative)
        phi.flat[rest[~tabled]] = values[0]
        if derivative:
            dphi.flat[rest[~tabled]] = values[1]
    return phi, (dphi if derivative else None)


def _unique(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """np.unique(values) with inverse and counts (flat), remembered for the last arrays seen:
    a grid's fixed-point iterations ask again and again for the same variances, and sorting
    them every time would cost more than the rest of the map."""
    return _unique_of_bytes(np.ascontiguousarray(values, dtype=float).tobytes())


@lru_cache(maxsize=16)
def _unique_of_bytes(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    found = np.unique(np.frombuffer(data, dtype=float), return_inverse=True, return_counts=True)
    for array in found:
        array.flags.writeable = False
    return found


def _use_tables(activation: str, unique: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Whether each of the ``unique`` variances (met at ``counts`` points) is read off a θ-table
    (True) or integrated directly (False).

    Rent or buy, per (activation, var): a cached table is used; above _TABLE_MAX_VAR none is
    built; otherwise the points a variance has been integrated at directly, over this call and
    earlier ones, accrue in _ACCRUED, and its table is built once they reach _table_price,
    the build time counted in direct points. As in ski rental, the cost is then within about
    twice that of the better choice made in hindsight (as far as the price is right), whether a
    variance comes back (a map iterated at fixed var) or not (one new variance per layer or per
    grid point)."""
    use = np.zeros(unique.size, dtype=bool)
    new = sum(not mehler.has_table(activation, v, False) for v in unique.tolist())
    look_on_disk = new <= _DISK_LOOKUPS
    for k, (v, n) in enumerate(zip(unique.tolist(), counts.tolist())):
        key = (activation, v)
        if mehler.has_table(activation, v, look_on_disk and v <= _TABLE_MAX_VAR):
            use[k] = True
        elif v <= _TABLE_MAX_VAR:
            accrued = _ACCRUED.pop(key, 0.0) + n
            use[k] = accrued >= _table_price(activation, v)
            _ACCRUED[key] = np.inf if use[k] else accrued  # bought: kept even if evicted
    while len(_ACCRUED) > _ACCRUED_SIZE:
        _ACCRUED.popitem(last=False)
    return use


def _table_price(activation: str, var: float) -> float:
    """The build time of one θ-table in direct points (a direct point takes 0.1–0.5 ms):
    _TABLE_PRICE[activation] var^1.5, at least 8. Measured with 8 tables built together (tanh:
    7 points at var 1.4, 48 at 5.6, 188 at 22, 895 at 64, 2437 at 128; gelu: 44 at 22, 283 at
    128; silu: 18 at 22, 85 at 128), within a factor 2 of the fit."""
    return max(8.0, _TABLE_PRICE[activation] * var**1.5)


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


_ACCRUED: OrderedDict[tuple[str, float], float] = OrderedDict()
