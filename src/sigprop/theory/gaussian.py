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
  coefficients, tabulated in θ = arccos c on a lattice of variances (8 per octave) and read off
  by interpolation in θ and in log var (``mehler.lattice_moments``), for var in
  [mehler.LATTICE_LOW, mehler.LATTICE_HIGH] ≈ [0.014, 71]: 8 table reads a point.
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

Which path: the lattice tables inside their range (a lattice table, built once, is stored in
the on-disk table cache and shared by every process), the direct path outside it.

Accuracy, relative to the Cauchy–Schwarz bound sqrt(E[f²] E[g²]) (the diagonal moment). Tables,
against adaptive quadrature at var in [0.01, 100], |c| <= 1: below 1e-11, and below 1e-10
relative wherever the moment is not ~0. Direct path: against nested adaptive quadrature (scipy
quad, conditional on h_1) at var 10³ and 10⁴, c in {±1, ±(1 − 10⁻⁶), −0.5, 0, 0.3, 0.9}, below
9e-14, which is the reference's own error (an adaptive quad of the split form above agrees to
6e-16 there); against itself with halved spacings, 1.5 times the windows and |z| <= 12, over var
in [0.01, 10⁴] × 141 values of c in [−1, 1] (down to ±(1 − 10⁻¹⁵)), below 2e-15, except 7e-14 at
var 0.01 for gelu and silu (rounding: K and its correction are each ~100 times the moment there);
against the tables at var 4 and 16, below 1e-11 (the tables' error); the lattice interpolant
against the direct path at random var in its range and c in [−1, 1], below 1e-11. Diagonal moments, against
adaptive quadrature: the trapezoid below 5e-16 up to var 10⁴; the windowed direct path below
2e-15 from var 1 to 10⁴ (2e-14 at var 0.01, rounding as above).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike

from sigprop.theory.activations import get_activation
from sigprop.theory import mehler
from sigprop.theory.gaussian_pairs import pair_moments

_CLOSED_FORMS = ("erf", "relu", "linear")
_COV_SLACK = 1e-12  # |cov| may exceed var by this relative rounding
_WINDOWED_DIAGONAL_VAR = 1e3  # diagonal moments by gaussian_pairs above (3–12 times faster)


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
    tabled = (v >= mehler.LATTICE_LOW) & (v <= mehler.LATTICE_HIGH)
    for inside, values in ((tabled, mehler.lattice_moments(activation, v[tabled], c[tabled],
                                                           derivative) if tabled.any() else None),
                           (~tabled, pair_moments(activation, v[~tabled], c[~tabled], derivative)
                            if (~tabled).any() else None)):
        if values is None:
            continue
        phi.flat[rest[inside]] = values[0]
        if derivative:
            dphi.flat[rest[inside]] = values[1]
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

