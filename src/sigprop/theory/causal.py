"""Wide-limit theory of causal transformers: maps of the full token and tangent Gram matrices.

Causal attention (token i attends to j ≤ i) breaks the permutation symmetry of docs/theory.md
§1–§6: every position has its own norm C_ii and every pair its own C_ij, so the state is the
whole Gram matrix C = X Xᵀ/d and the tangent the whole G = T Tᵀ/d, shape (*grid, n, n). The maps
of each component (``propagate_gram``), with v_i = σ_w² C_ii + σ_b², c_ij = σ_w² C_ij + σ_b²:

    Residual    C ← a² C + b² C_branch,  G ← a² G + b² G_branch
    Norm        C_ij ← C_ij / sqrt(C_ii C_jj),  G_ij ← G_ij / sqrt(C_ii C_jj)   (RMS, Layer)
    DyT         C_ij ← E tanh(u_i) tanh(u_j),  G_ij ← κ² E[tanh'(u_i) tanh'(u_j)] G_ij,  Cov u = κ² C
    MLP         C_ij ← σ_2² E φ(h_i) φ(h_j),   G_ij ← σ_2² σ_w² E[φ'(h_i) φ'(h_j)] G_ij,  Cov h = c
      gated     C_ij ← σ_2² C_ij E φ_i φ_j,     G_ij ← σ_2² (σ_w² E[φ'_i φ'_j] C_ij + E φ_i φ_j) G_ij
    Attention   ``causal_attention.attention_maps`` (quasi-Monte Carlo, common random numbers)

Gaussian pair expectations: where every position has the same variance (an MLP after a norm: the
reference, pre-ln, post-ln, gpt2, llama and bert blocks) ``gaussian.cross_moments`` and
``diagonal_moments``; with unequal variances (DyT, and blocks without a norm) closed forms for
linear, relu and erf (arc-cosine and arcsine kernels with v_i ≠ v_j), and for tanh, gelu and silu
a tensor trapezoid rule in (z_1, z_2), h_i = σ_i z_1, h_j = σ_j (r z_1 + sqrt(1 − r²) z_2),
|z| ≤ 8, spacing min(0.5, δ/max σ) (δ the activation's strip width, ``gaussian_pairs.SPECS``):
within 3e-14 of ``gaussian`` at equal variances and 1e-12 of erf's closed form, at a cost of
(16 max σ/δ)² evaluations per pair.

Collapse (exact, no sampling). At C = q 11ᵀ every logit of a query is the same, A = P
(P_ij = 1/(i+1) for j ≤ i, positions from 0) and the softmax-path terms vanish (D_i 1 = 0):
attention maps G to P G Pᵀ, and every other component multiplies G by the scalar slope of its
bidirectional map at ρ = 1. Token departures from collapse are a tangent with zero token mean;
1 − ρ = mean_{i≠j} D_ij/(2q) with D_ij = (e_i − e_j)ᵀ G (e_i − e_j); attention maps D_ij to
(p_i − p_j)ᵀ G (p_i − p_j), p_i the rows of P, with p_i − p_j summing to zero, and the other
components scale it: D evolves on its own, and so does the projection Π G Π (Π = I − 11ᵀ/n) on
which the profile tracks it. The layer's tangent map at
collapse is a polynomial with nonnegative coefficients in the congruence 𝒫: G ↦ P G Pᵀ. P has
the eigenvalues 1/k (k = 1..n, eigenvector v_1 = 1), so 𝒫 has the eigenvectors
v_k v_lᵀ + v_l v_kᵀ with eigenvalues μ = 1/(kl), and the layer map f(μ), f the map with 𝒫
replaced by the number μ. Departures are the modes 2 ≤ k ≤ l (the others are common shifts):
λ_a = log max f(1/(kl)) = log f(1/4), independent of n; causal attention contracts departures by
at least 4 where bidirectional attention (11ᵀ/n: modes μ = 1 and 0 only) erases them, so
λ_a(causal) ≥ λ_a(bidirectional). All modes: λ_g = log f(1), the bidirectional value.

As in the bidirectional theory, each layer's expectations are taken at the previous layer's
expected Gram matrices (the attention pattern of one network stays random at any width).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import singledispatch

import numpy as np

from sigprop.theory.activations import get_activation
from sigprop.spec.components import (
    MLP,
    Dense,
    DyT,
    LayerNorm,
    Residual,
    RMSNorm,
    SelfAttention,
    Serial,
    find,
    validate,
)
from sigprop.spec.declarations import INPUTS
from sigprop.spec.errors import NotCovered, check_range
from sigprop.theory.causal_attention import DEFAULT_SAMPLES, attention_maps, causal_average
from sigprop.theory.dynamics import collapsed_norm
from sigprop.theory.fixed_points import grid_shape, take
from sigprop.theory.gaussian import cross_moments, diagonal_moments
from sigprop.theory.gaussian_pairs import SPECS
from sigprop.theory.maps import Geometry, Tangent, propagate
from sigprop.theory.results import DepthProfile, Exponents

# Non-collapsed fixed points (``causal_lambda_g``): at most this many grid points per call, each
# iterated through at most ``max_layers`` Monte Carlo layers (~0.25 s each at n = 16).
MAX_FIXED_POINTS = 8
# Samples of the Monte Carlo fixed points behind the reported exponents: the position averages
# that λ_g depends on are 10–100× more accurate than single entries, so 2^12 keep λ_g to ~1e-4.
FIXED_POINT_SAMPLES = 2**12
_QUADRATURE_RANGE = 8.0  # N(0, 1) mass beyond ±8 is 1.2e-15
_QUADRATURE_BLOCK = 2**22  # (pair, node, node) entries per block of the 2-D rule
# Largest σ·h of the 2-D rule per smooth activation (erf, entire like gelu: checks the rule
# against its closed form).
_QUADRATURE_SPACING = {"erf": 0.4, **{name: spec.spacing for name, spec in SPECS.items()}}


@dataclass(frozen=True)
class CausalTrajectory:
    """Per-layer state, l = 0 the input: ``C`` (L + 1, *grid, n, n); per position ``q_i`` = C_ii
    and ``log_jac_i`` = log G_ii (L + 1, *grid, n); position averages (L + 1, *grid) q = mean_i
    C_ii, p = mean_{i≠j} C_ij, ρ = p/q and log_jac = log mean_i G_ii = log(‖∂X_l/∂X_0‖_F²/(nd)),
    the averages ``sigprop.measure`` reports."""

    C: np.ndarray
    q_i: np.ndarray
    log_jac_i: np.ndarray
    q: np.ndarray
    p: np.ndarray
    rho: np.ndarray
    log_jac: np.ndarray


def causal_trajectory(layer: Serial, n_tokens: int, q0, rho0, depth: int,
                      samples: int = DEFAULT_SAMPLES, seed: int = 0) -> CausalTrajectory:
    """Iterate ``propagate_gram`` ``depth`` times from C_0 = q0((1 − ρ0) I + ρ0 11ᵀ), G_0 = I.

    G is renormalized to mean_i G_ii = 1 every layer and the log scale accumulated (as in
    ``dynamics.trajectory``). Cost: ``depth`` attention maps per attention component and grid
    point (``causal_attention.DEFAULT_SAMPLES``). Raises ``InvalidHyperparameter``.
    """
    n, depth = _check_inputs(layer, n_tokens, depth, q0, rho0)
    shape = np.broadcast_shapes(grid_shape(layer), np.shape(q0), np.shape(rho0))
    q0, rho0 = (np.broadcast_to(np.asarray(x, float), shape)[..., None, None] for x in (q0, rho0))
    C = q0 * ((1.0 - rho0) * np.eye(n) + rho0)
    G = np.broadcast_to(np.eye(n), C.shape)
    states, log_diagonals, log_jacs = [C], [np.zeros(shape + (n,))], [np.zeros(shape)]
    log_scale = np.zeros(shape)
    for _ in range(depth):
        C, G = propagate_gram(layer, C, G, samples, seed)
        scale = np.mean(np.diagonal(G, axis1=-2, axis2=-1), axis=-1)
        log_scale = log_scale + np.log(scale)
        G = G / scale[..., None, None]
        states.append(C)
        log_jacs.append(log_scale)
        log_diagonals.append(log_scale[..., None] + np.log(np.diagonal(G, axis1=-2, axis2=-1)))
    C = np.stack(states)
    q_i = np.diagonal(C, axis1=-2, axis2=-1).copy()
    q = q_i.mean(axis=-1)
    p = (C.sum(axis=(-2, -1)) - q_i.sum(axis=-1)) / (n * (n - 1))
    return CausalTrajectory(C=C, q_i=q_i, log_jac_i=np.stack(log_diagonals), q=q, p=p,
                            rho=p / q, log_jac=np.stack(log_jacs))


def causal_collapsed_profile(layer: Serial, n_tokens: int, q0, depth: int) -> DepthProfile:
    """q_l (with p_l = q_l, ρ_l = 1), log_spread_l and log_jac_l on the collapsed trajectory
    from norm q0 (module docstring): exact, vectorized over the grid. Departures start
    isotropic, G_0 = Π, and are projected with Π every layer; both tangents are renormalized
    every layer and their log scales accumulated. Raises ``InvalidHyperparameter``."""
    n, depth = _check_inputs(layer, n_tokens, depth, q0, 0.0)
    shape = np.broadcast_shapes(grid_shape(layer), np.shape(q0))
    q = np.broadcast_to(np.asarray(q0, float), shape).copy()
    centre = np.eye(n) - 1.0 / n
    tangents = np.stack([np.broadcast_to(centre, shape + (n, n)),
                         np.broadcast_to(np.eye(n), shape + (n, n))])
    attend = _matrix_attention(n)
    spread0 = _spread(tangents[0], q)
    qs, spreads, log_jacs = [q], [np.zeros(shape)], [np.zeros(shape)]
    log_scale = np.zeros((2,) + shape)
    for _ in range(depth):
        q, tangents = _collapsed(layer, q, tangents, attend, n)
        tangents[0] = centre @ tangents[0] @ centre
        scale = np.stack([_spread(tangents[0], 1.0),
                          np.mean(np.diagonal(tangents[1], axis1=-2, axis2=-1), axis=-1)])
        with np.errstate(divide="ignore"):
            log_scale = log_scale + np.log(scale)  # −∞ once a branch erases the departures
        tangents = tangents / np.where(scale > 0, scale, 1.0)[..., None, None]
        qs.append(q)
        spreads.append(log_scale[0] - np.log(q) - np.log(spread0))
        log_jacs.append(log_scale[1])
    q = np.stack(qs)
    return DepthProfile(q=q, p=q, rho=np.ones_like(q), log_spread=np.stack(spreads),
                            log_jac=np.stack(log_jacs))


def causal_lambda_a(layer: Serial, n_tokens: int, q_star: np.ndarray | None = None) -> np.ndarray:
    """λ_a = log of the spectral radius of the layer map on departures from collapse at the
    collapsed norm q* (``dynamics.collapsed_norm``; NaN where there is none): log max over the
    modes 2 ≤ i ≤ j ≤ n of f(1/(ij)) (module docstring). −∞ where a branch erases departures."""
    n = INPUTS["n_tokens"].check(n_tokens)
    validate(layer)
    return _collapsed_exponent(layer, n, _departure_modes(n), q_star)


def first_position_lambda_g(layer: Serial, n_tokens: int) -> np.ndarray:
    """log f(1): the per-layer growth of ‖J‖² at the first position, which attends only to
    itself and so evolves as a one-token network at the collapsed norm q* in either phase.

    The causal Jacobian is block lower triangular in the positions (outputs at i depend on
    inputs at j ≤ i), so the tangent map's spectrum is the union of the self-maps of the
    positions, and this is a lower bound on ``causal_lambda_g``; it is exact where the tokens
    collapse, and at the 12 chaotic points of the reproduction's grid where the Monte Carlo
    fixed point converged it agrees with it to 1e-3. Exact and vectorized: the value grids
    (phase diagrams, sweep analyses) use."""
    n = INPUTS["n_tokens"].check(n_tokens)
    validate(layer)
    return _collapsed_exponent(layer, n, _all_modes(n), None)


def causal_lambda_g(layer: Serial, n_tokens: int, samples: int = DEFAULT_SAMPLES, seed: int = 0,
                    max_layers: int = 400, tolerance: float = 1e-5) -> np.ndarray:
    """λ_g = log of the spectral radius of the tangent map at the attractor.

    Where the collapsed state attracts (λ_a < 0 for ``causal_lambda_a``; the state reached from
    other inputs is assumed to be that one) it is exact: log max over all modes 1 ≤ i ≤ j ≤ n of
    f(1/(ij)), which is f(1), the bidirectional value. Elsewhere (λ_a ≥ 0) the causal fixed point
    is found by iterating the Monte Carlo maps from C = q* I with the tangent (a power iteration
    on G, renormalized every layer) until the largest change of C/mean C_ii and of the log
    growth of G are below ``tolerance`` (NaN if that takes more than ``max_layers`` layers).
    NaN where there is no collapsed norm q* (blocks with unit residuals). Raises ``NotCovered``
    when more than ``MAX_FIXED_POINTS`` grid points need the Monte Carlo fixed point (~50 s for
    one point at n = 16 with the default samples).

    Position 0 attends only to itself, so it evolves as a one-token network: C_00 settles at q*
    and G_00 grows by f(1) per layer in either phase, hence λ_g ≥ log f(1) everywhere (equal to
    it within 2e-3 at the chaotic points checked, ``first_position_lambda_g``).
    """
    n = INPUTS["n_tokens"].check(n_tokens)
    validate(layer)
    q_star = collapsed_norm(_bidirectional(layer), n)
    angle = _collapsed_exponent(layer, n, _departure_modes(n), q_star)
    out = _collapsed_exponent(layer, n, _all_modes(n), q_star)
    chaotic = np.isfinite(q_star) & (angle >= 0)
    out[chaotic] = np.nan
    count = int(chaotic.sum())
    if count > MAX_FIXED_POINTS:
        raise NotCovered(f"causal λ_g at {count} grid points with λ_a >= 0 needs a Monte Carlo "
                         f"fixed point each; at most {MAX_FIXED_POINTS} per call: pass a smaller "
                         "grid, or use the finite-depth exponents (--depth L), exact from ρ0 → 1")
    if count:
        out[chaotic] = _fixed_point_growth(take(layer, chaotic), n, q_star[chaotic], samples,
                                           seed, max_layers, tolerance)
    return out


def is_causal(layer: Serial) -> bool:
    """Whether the layer's attention is causal (``NotCovered`` when it mixes causal and
    bidirectional attention, which neither theory covers)."""
    kinds = {attention.causal for attention in find(layer, SelfAttention)}
    if len(kinds) > 1:
        raise NotCovered("a layer mixing causal and bidirectional attention is not covered by "
                         "the theory; measure it with `sigprop simulate`")
    return kinds == {True}


def causal_exponents(layer: Serial, n_tokens: int, samples: int | None = FIXED_POINT_SAMPLES):
    """The asymptotic exponents of a causal layer as ``Exponents``: λ_a
    (``causal_lambda_a``), λ_g (``causal_lambda_g`` with ``samples`` for Monte Carlo fixed
    points; ``samples`` None: ``first_position_lambda_g``, exact and cheap on grids), q* and
    q_collapsed the collapsed norm, ρ* = 1 where the collapsed state attracts (λ_a < 0) and NaN
    elsewhere (the causal attractor has a cosine per pair of positions)."""
    q_star = collapsed_norm(_bidirectional(layer), INPUTS["n_tokens"].check(n_tokens))
    angle = causal_lambda_a(layer, n_tokens, q_star)
    gradient = (first_position_lambda_g(layer, n_tokens) if samples is None
                else causal_lambda_g(layer, n_tokens, samples))
    return Exponents(lambda_a=angle, lambda_g=gradient, q_star=q_star,
                     rho_star=np.where(angle < 0, 1.0, np.nan), q_collapsed=q_star)


# --- full Gram maps ---------------------------------------------------------------------------


@singledispatch
def propagate_gram(component, C: np.ndarray, G: np.ndarray | None, samples: int = DEFAULT_SAMPLES,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """C and G (shape (*grid, n, n); G may be None) after ``component`` (module docstring).
    Hyperparameter arrays broadcast against the grid axes; ``samples`` and ``seed`` choose the
    attention's quasi-Monte Carlo draws."""
    raise TypeError(f"no full-Gram map for component {component!r}")


@propagate_gram.register
def _(component: Serial, C, G, samples=DEFAULT_SAMPLES, seed=0):
    for child in component.components:
        C, G = propagate_gram(child, C, G, samples, seed)
    return C, G


@propagate_gram.register
def _(component: Residual, C, G, samples=DEFAULT_SAMPLES, seed=0):
    C_f, G_f = propagate_gram(component.branch, C, G, samples, seed)
    a2, b2 = _matrix_parameter(component.skip) ** 2, _matrix_parameter(component.scale) ** 2
    return a2 * C + b2 * C_f, None if G is None else a2 * G + b2 * G_f


@propagate_gram.register(RMSNorm)
@propagate_gram.register(LayerNorm)
def _(component, C, G, samples=DEFAULT_SAMPLES, seed=0):
    norms = np.sqrt(np.diagonal(C, axis1=-2, axis2=-1))
    outer = norms[..., :, None] * norms[..., None, :]
    normalized = C / outer
    index = np.arange(C.shape[-1])
    # Exactly 1 (NaN stays NaN): equal variances for what follows.
    normalized[..., index, index] = np.where(np.isfinite(norms), 1.0, np.nan)
    return normalized, None if G is None else G / outer


@propagate_gram.register
def _(component: DyT, C, G, samples=DEFAULT_SAMPLES, seed=0):
    kappa2 = _matrix_parameter(component.kappa) ** 2
    phi, slope = pair_moments("tanh", kappa2 * C, G is not None)
    return phi, None if G is None else kappa2 * slope * G


@propagate_gram.register
def _(component: SelfAttention, C, G, samples=DEFAULT_SAMPLES, seed=0):
    return attention_maps(C, G, component.sigma_A, component.causal, samples, seed)


@propagate_gram.register
def _(component: MLP, C, G, samples=DEFAULT_SAMPLES, seed=0):
    sigma_w2 = _matrix_parameter(component.sigma_w) ** 2
    sigma_22 = _matrix_parameter(component.sigma_2) ** 2
    cov = sigma_w2 * C + _matrix_parameter(component.sigma_b) ** 2
    phi, slope = pair_moments(component.activation, cov, G is not None)
    if not component.gated:
        return sigma_22 * phi, None if G is None else sigma_22 * sigma_w2 * slope * G
    output = sigma_22 * C * phi
    return output, None if G is None else sigma_22 * (sigma_w2 * slope * C + phi) * G


@propagate_gram.register
def _(component: Dense, C, G, samples=DEFAULT_SAMPLES, seed=0):
    sigma_w2 = _matrix_parameter(component.sigma_w) ** 2
    phi, slope = pair_moments(component.activation, C, G is not None)
    output = sigma_w2 * phi + _matrix_parameter(component.sigma_b) ** 2
    return output, None if G is None else sigma_w2 * slope * G


def pair_moments(activation: str, cov: np.ndarray, derivative: bool = True
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """(E φ(h_i)φ(h_j), E φ'(h_i)φ'(h_j)) for h ~ N(0, cov), cov of shape (*grid, n, n); the
    second is None without ``derivative``. Points whose positions share one variance use
    ``gaussian``; the others closed forms or the 2-D rule (module docstring). Points with a
    non-finite cov give NaN."""
    get_activation(activation)
    var = np.diagonal(cov, axis1=-2, axis2=-1)
    ok = np.isfinite(cov).all(axis=(-2, -1))
    equal = ok & np.all(var == var[..., :1], axis=-1)
    phi, slope = np.full(cov.shape, np.nan), np.full(cov.shape, np.nan)
    if equal.any():
        v = np.broadcast_to(var[equal][:, :1, None], cov[equal].shape)
        values = cross_moments(activation, v, np.clip(cov[equal], -v, v), derivative)
        phi[equal] = values[0]
        if derivative:
            slope[equal] = values[1]
    unequal = ok & ~equal
    if unequal.any():
        values = _unequal_moments(activation, cov[unequal], derivative)
        phi[unequal] = values[0]
        if derivative:
            slope[unequal] = values[1]
    return phi, slope if derivative else None


def _unequal_moments(activation: str, cov: np.ndarray, derivative: bool):
    """Pair moments for points (B, n, n) with unequal variances: closed forms, or the diagonal
    from ``diagonal_moments`` and the pairs i < j from ``_pair_quadrature``."""
    var = np.diagonal(cov, axis1=-2, axis2=-1)
    v_i, v_j = var[..., :, None], var[..., None, :]
    c = np.clip(cov, -np.sqrt(v_i * v_j), np.sqrt(v_i * v_j))
    if activation == "linear":
        return c, np.ones_like(c)
    if activation == "relu":
        theta = np.arccos(np.clip(c / np.sqrt(v_i * v_j), -1.0, 1.0))
        phi = np.sqrt(v_i * v_j) * (np.sin(theta) + (np.pi - theta) * np.cos(theta)) / (2 * np.pi)
        return phi, (np.pi - theta) / (2 * np.pi)
    if activation == "erf":
        phi = 2 / np.pi * np.arcsin(2 * c / np.sqrt((1 + 2 * v_i) * (1 + 2 * v_j)))
        return phi, 4 / np.pi / np.sqrt((1 + 2 * v_i) * (1 + 2 * v_j) - 4 * c**2)
    n = cov.shape[-1]
    upper_i, upper_j = np.triu_indices(n, 1)
    phi, slope = np.empty(cov.shape), np.empty(cov.shape)
    diagonal = diagonal_moments(activation, var)
    pairs = _pair_quadrature(activation, var[:, upper_i], var[:, upper_j], c[:, upper_i, upper_j],
                             derivative)
    for out, diag, pair in zip((phi, slope), diagonal, pairs):
        out[:, upper_i, upper_j] = out[:, upper_j, upper_i] = pair
        out[:, np.arange(n), np.arange(n)] = diag
    return phi, slope


def _pair_quadrature(activation: str, v_1: np.ndarray, v_2: np.ndarray, cov: np.ndarray,
                     derivative: bool) -> tuple[np.ndarray, np.ndarray]:
    """E[f(h_1) f(h_2)] for f = φ, φ' by the tensor trapezoid rule of the module docstring, one
    spacing for all the given pairs (same shape arrays)."""
    f = get_activation(activation)
    s_1, s_2 = np.sqrt(v_1).ravel(), np.sqrt(v_2).ravel()
    r = np.clip(cov.ravel() / (s_1 * s_2), -1.0, 1.0)
    h = min(0.5, _QUADRATURE_SPACING[activation] / float(max(s_1.max(), s_2.max())))
    z = h * np.arange(-np.ceil(_QUADRATURE_RANGE / h), np.ceil(_QUADRATURE_RANGE / h) + 1)
    w = h * np.exp(-z**2 / 2) / np.sqrt(2 * np.pi)
    phi, slope = np.empty(r.shape), np.empty(r.shape)
    block = max(1, _QUADRATURE_BLOCK // z.size**2)
    for start in range(0, r.size, block):
        part = slice(start, start + block)
        x = s_1[part, None] * z
        y = s_2[part, None, None] * (r[part, None, None] * z[:, None]
                                     + np.sqrt(1 - r[part, None, None] ** 2) * z)
        phi[part] = np.einsum("pa,pab,a,b->p", f.numpy(x), f.numpy(y), w, w)
        if derivative:
            slope[part] = np.einsum("pa,pab,a,b->p", f.derivative(x), f.derivative(y), w, w)
    return phi.reshape(v_1.shape), slope.reshape(v_1.shape)


# --- collapsed maps ---------------------------------------------------------------------------

Attend = Callable[[np.ndarray, bool], np.ndarray]


@singledispatch
def _collapsed(component, q: np.ndarray, tangent: np.ndarray, attend: Attend, n: int):
    """(q, tangent) after ``component`` at the collapsed state C = q 11ᵀ. ``tangent`` has shape
    (k, *grid, a, b) (k stacked tangents); norms, MLP and DyT multiply it by their bidirectional
    slope at ρ = 1 and ``attend(tangent, causal)`` is the attention's action on it."""
    geometry, slope = propagate(component, Geometry(q, q), Tangent(np.ones_like(q),
                                                                   np.ones_like(q)), n)
    return geometry.q, tangent * slope.g_d[..., None, None]


@_collapsed.register
def _(component: Serial, q, tangent, attend, n):
    for child in component.components:
        q, tangent = _collapsed(child, q, tangent, attend, n)
    return q, tangent


@_collapsed.register
def _(component: Residual, q, tangent, attend, n):
    q_f, tangent_f = _collapsed(component.branch, q, tangent, attend, n)
    a2, b2 = np.asarray(component.skip, float) ** 2, np.asarray(component.scale, float) ** 2
    return a2 * q + b2 * q_f, a2[..., None, None] * tangent + b2[..., None, None] * tangent_f


@_collapsed.register
def _(component: SelfAttention, q, tangent, attend, n):
    return q, attend(tangent, component.causal)


def _matrix_attention(n: int) -> Attend:
    """Attention on matrix tangents at collapse: G ↦ P G Pᵀ (causal) or U G U, U = 11ᵀ/n."""
    average = {True: causal_average(n), False: np.full((n, n), 1.0 / n)}
    return lambda G, causal: average[causal] @ G @ average[causal].T


def _mode_attention(modes: np.ndarray) -> Attend:
    """Attention on the eigenmodes μ = 1/(ij) (tangent axis 0): multiplies mode μ by μ
    (causal), or by 1 for μ = 1 and 0 otherwise (bidirectional: 11ᵀ/n)."""
    factors = {True: modes, False: (modes == 1.0).astype(float)}
    return lambda x, causal: x * factors[causal].reshape((-1,) + (1,) * (x.ndim - 1))


def _collapsed_exponent(layer: Serial, n: int, modes: np.ndarray,
                        q_star: np.ndarray | None) -> np.ndarray:
    """log max over ``modes`` of f(μ), the layer map's eigenvalue on mode μ at (q*, collapse)."""
    is_causal(layer)  # raises for a layer mixing causal and bidirectional attention
    q_star = collapsed_norm(_bidirectional(layer), n) if q_star is None else q_star
    settled = np.isfinite(q_star)
    out = np.full(q_star.shape, np.nan)
    if settled.any():
        q = q_star[settled]
        modes_tangent = np.ones((modes.size,) + q.shape + (1, 1))
        _, values = _collapsed(take(layer, settled), q, modes_tangent, _mode_attention(modes), n)
        with np.errstate(divide="ignore"):
            out[settled] = np.log(np.max(np.abs(values[..., 0, 0]), axis=0))
    return out


def _departure_modes(n: int) -> np.ndarray:
    """Distinct μ = 1/(ij), 2 ≤ i ≤ j ≤ n: departures from collapse."""
    i = np.arange(2, n + 1)
    return np.unique(1.0 / np.outer(i, i))


def _all_modes(n: int) -> np.ndarray:
    """Distinct μ = 1/(ij), 1 ≤ i ≤ j ≤ n: every tangent mode at collapse."""
    i = np.arange(1, n + 1)
    return np.unique(1.0 / np.outer(i, i))


def _spread(G: np.ndarray, q) -> np.ndarray:
    """1 − ρ = mean_{i≠j} D_ij / (2q), D_ij = G_ii + G_jj − 2 G_ij."""
    n = G.shape[-1]
    trace = np.trace(G, axis1=-2, axis2=-1)
    return (n * trace - G.sum(axis=(-2, -1))) / (n * (n - 1) * q)


# --- fixed point ------------------------------------------------------------------------------


def _fixed_point_growth(layer: Serial, n: int, q_start: np.ndarray, samples: int, seed: int,
                        max_layers: int, tolerance: float) -> np.ndarray:
    """log growth per layer of G at the fixed point reached from C = q_start I (1-D grid)."""
    C = q_start[:, None, None] * np.eye(n)
    G = np.broadcast_to(np.eye(n), C.shape)
    growth = np.full(q_start.shape, np.nan)
    converged = np.zeros(q_start.shape, dtype=bool)
    for _ in range(max_layers):
        C_next, G = propagate_gram(layer, C, G, samples, seed)
        scale = np.mean(np.diagonal(G, axis1=-2, axis2=-1), axis=-1)
        G = G / scale[:, None, None]
        size = np.mean(np.diagonal(C_next, axis1=-2, axis2=-1), axis=-1)
        change = np.max(np.abs(C_next - C), axis=(-2, -1)) / size
        step = np.abs(np.log(scale) - growth)
        converged = (change <= tolerance) & (step <= tolerance)
        growth, C = np.log(scale), C_next
        if converged.all():
            break
    return np.where(converged, growth, np.nan)


# --- helpers ----------------------------------------------------------------------------------


def _bidirectional(component):
    """The description with every attention bidirectional: the same maps at collapse."""
    if isinstance(component, Serial):
        return Serial(tuple(_bidirectional(c) for c in component.components))
    if isinstance(component, Residual):
        return replace(component, branch=_bidirectional(component.branch))
    if isinstance(component, SelfAttention):
        return replace(component, causal=False)
    return component


def _matrix_parameter(value) -> np.ndarray:
    """A hyperparameter (grid shape) broadcastable against (*grid, n, n)."""
    return np.asarray(value, float)[..., None, None]


def _check_inputs(layer: Serial, n_tokens: int, depth: int, q0, rho0) -> tuple[int, int]:
    validate(layer)
    check_range("q0", q0, 0.0, np.inf, closed_low=False, closed_high=False)
    check_range("rho0", rho0, 0.0, 1.0, closed_low=True)
    return INPUTS["n_tokens"].check(n_tokens), INPUTS["depth"].check(depth)
