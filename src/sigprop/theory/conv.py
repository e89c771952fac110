"""Wide-limit theory of convolutional layers: spatial positions play the role of tokens.

The layer (circular padding, "Poole form", 1-D ring of n positions or 2-D torus H × W, d
channels, odd kernel size k, offsets S = {−(k−1)/2, …, (k−1)/2} per spatial axis, indices mod n):

    h^l_α = Σ_{s∈S} W^l_s φ(h^{l−1}_{α+s}) + b^l,   (W^l_s)_ij ~ N(0, σ_w²/(|S| d)),  b^l_i ~ N(0, σ_b²),

|S| = k (1-D) or k² (2-D, s = (s_1, s_2)). The state is the spatial Gram matrix K_αβ = h_α·h_β/d
(shape (..., n, n), n = H W in 2-D with positions flattened row-major). For d → ∞ the entries of
h^{l−1} are Gaussian across channels with covariance K, the weights of different offsets are
independent, and (Xiao et al. 2018, "Dynamical isometry and a mean field theory of CNNs")

    K' = σ_w² 𝒜(C(K)) + σ_b²,     C(K)_αβ = E[φ(u_α) φ(u_β)],  u ~ N(0, K),
    𝒜(M)_αβ = (1/|S|) Σ_{s∈S} M_{α+s, β+s}           (average along the circular diagonals).

Tangent: a perturbation T of h^{l−1} (Gram G = T Tᵀ/d) becomes Σ_s W_s (φ'(h_{α+s}) ⊙ T_{α+s}), so

    G' = σ_w² 𝒜(D(K) ⊙ G),        D(K)_αβ = E[φ'(u_α) φ'(u_β)].

From G_0 = I (an isotropic probe v, E ‖J v‖² = ‖J‖_F²), log(‖∂h^L/∂h^0‖_F²/(n d)) = log mean_α
(G_L)_αα. ``conv_trajectory`` renormalizes G every layer and accumulates the log scale.

Exponents at collapse. Let q* solve q = σ_w² E φ(√q z)² + σ_b² (z ~ N(0, 1)), and at K* = q* 11ᵀ
let χ_1 = σ_w² E φ'(√q* z)² (the correlation map's slope at ρ = 1) and χ_q = σ_w² E[φ'² + φ φ'']
(√q* z) = σ_w² E[z φ(√q* z) φ'(√q* z)]/√q* (the length map's slope at q*). Price's theorem gives
∂C_αβ/∂K_αβ = E φ'_α φ'_β = χ_1/σ_w² and ∂C_αβ/∂K_αα = E[φ''_α φ_β]/2 = (χ_q − χ_1)/(2σ_w²) (the
same formulas hold on the diagonal α = β), so the linearized map is

    δK' = 𝒜(χ_1 δK + (χ_q − χ_1)/2 (δd 1ᵀ + 1 δdᵀ)),    δd = diag δK.

𝒜 maps the Fourier mode e^{i(fα + gβ)} to μ(f + g) times itself, with the filter multiplier
μ(ω) = (1/k) Σ_{s∈S} e^{iωs} = sin(kω/2)/(k sin(ω/2)) (per axis; the product over axes in 2-D;
real, and negative for some ω when k ≥ 3). The diagonal of the mode (f, g) is the mode e^{i(f+g)α}
of δd, and δd 1ᵀ, 1 δdᵀ are the modes (f + g, 0), (0, f + g): the map keeps each total frequency
ω = f + g. On the symmetric perturbations of total frequency ω it has the eigenvalues

    μ(ω) χ_1   (angle modes: Σ_f c_{f, ω−f} = 0, i.e. the diagonal is unchanged to first order),
    μ(ω) χ_q   (one norm mode: δK_αβ = e^{iωα} + e^{iωβ}, positions keep ρ = 1 but their norms
                 vary along the ring as e^{iωα}).

So a single Fourier mode e^{i(fα + gβ)} is an eigenvector only when χ_q = χ_1 (relu, linear, or
q* = 0); otherwise its diagonal leaks into the norm mode. Translation-invariant perturbations
(ω = 0, μ = 1) give exactly the fully connected network's exponents: λ_a = log χ_1 for angles,
log χ_q for the norm, so the convolutional edge of chaos (χ_1 = 1) is the MLP's. Modes with ω ≠ 0
change by log|μ(ω)| < 0 more per layer (−∞ where μ(ω) = 0, e.g. every ω ≠ 0 when k = n).
``mode_exponents`` returns log|μ(ω)| + log χ_1 (or + log χ_q with ``family="norm"``).

Pair expectations with unequal variances come from ``sigprop.theory.causal.pair_moments`` (closed
forms for linear, relu, erf; a 2-D trapezoid rule for tanh, gelu, silu). Hyperparameters are
scalars or arrays that broadcast against the leading axes of K.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral

import numpy as np

from sigprop.theory.activations import ACTIVATIONS
from sigprop.spec.errors import InvalidHyperparameter, check_range
from sigprop.theory.causal import pair_moments

FAMILIES = ("angle", "norm")
_SYMMETRY_TOLERANCE = 1e-10  # relative to the largest |K_αβ| of each matrix
_PSD_TOLERANCE = 1e-8  # smallest eigenvalue allowed, relative to the largest diagonal entry
_QUADRATURE_RANGE = 10.0  # z in [−10, 10]: N(0, 1) mass beyond is 1.5e-23
_NEWTON_STEPS = 200
_DIVERGED = 1e8  # q beyond this counts as divergent (no fixed point; the rule would need 80·10⁴ nodes)


@dataclass(frozen=True)
class ConvTrajectory:
    """Per layer, l = 0 the input: ``gram`` K_l (depth + 1, ..., n, n); ``q`` = mean_α K_αα and
    ``rho`` = mean_{α≠β} K_αβ/sqrt(K_αα K_ββ) (depth + 1, ...; NaN when n = 1); ``log_jac`` =
    log(‖∂h^l/∂h^0‖_F²/(n d)) = log mean_α G_αα from G_0 = I (depth + 1, ...)."""

    gram: np.ndarray
    q: np.ndarray
    rho: np.ndarray
    log_jac: np.ndarray


def conv_map(K, G=None, *, sigma_w, sigma_b=0.0, activation: str = "tanh", kernel_size: int = 3,
             spatial_shape: tuple[int, int] | None = None
             ) -> tuple[np.ndarray, np.ndarray | None]:
    """One convolutional layer in the wide limit (module docstring):

        K' = σ_w² 𝒜(C(K)) + σ_b²,    G' = σ_w² 𝒜(D(K) ⊙ G)    (G' None when G is None),

    C(K)_αβ = E φ(u_α)φ(u_β), D(K)_αβ = E φ'(u_α)φ'(u_β), u ~ N(0, K), 𝒜 the average over the
    filter offsets s of M_{α+s, β+s} (circular). K: symmetric positive semidefinite (..., n, n)
    with a positive diagonal; G: symmetric, broadcastable to K. ``spatial_shape`` (H, W), n = H W:
    a 2-D torus with k × k filters. Raises ``InvalidHyperparameter``.
    """
    K, G, shape, sw2, sb2 = _check(K, G, sigma_w, sigma_b, activation, kernel_size, spatial_shape)
    phi, slope = pair_moments(activation, K, G is not None)
    K_out = sw2 * filter_average(phi, kernel_size, shape) + sb2
    G_out = None if G is None else sw2 * filter_average(slope * G, kernel_size, shape)
    return K_out, G_out


def conv_trajectory(K0, depth: int, *, sigma_w, sigma_b=0.0, activation: str = "tanh",
                    kernel_size: int = 3, spatial_shape: tuple[int, int] | None = None
                    ) -> ConvTrajectory:
    """Iterate ``conv_map`` ``depth`` times from K_0 = K0 and G_0 = I; G is renormalized to
    mean_α G_αα = 1 every layer and its log scale accumulated, so ``log_jac`` does not overflow.
    Raises ``InvalidHyperparameter``."""
    if isinstance(depth, bool) or not isinstance(depth, Integral) or depth < 0:
        raise InvalidHyperparameter(f"depth must be an integer >= 0; got {depth!r}")
    K, _, shape, sw2, sb2 = _check(K0, None, sigma_w, sigma_b, activation, kernel_size,
                                   spatial_shape)
    batch = np.broadcast_shapes(K.shape[:-2], sw2.shape[:-2], sb2.shape[:-2])
    n = K.shape[-1]
    K = np.broadcast_to(K, batch + (n, n))
    G = np.broadcast_to(np.eye(n), K.shape)
    grams, log_jacs, log_scale = [K], [np.zeros(batch)], np.zeros(batch)
    for _ in range(int(depth)):
        phi, slope = pair_moments(activation, K, True)
        K = sw2 * filter_average(phi, kernel_size, shape) + sb2
        G = sw2 * filter_average(slope * G, kernel_size, shape)
        scale = np.mean(np.diagonal(G, axis1=-2, axis2=-1), axis=-1)
        log_scale = log_scale + np.log(scale)
        G = G / scale[..., None, None]
        grams.append(K)
        log_jacs.append(log_scale)
    gram = np.stack(grams)
    diagonal = np.diagonal(gram, axis1=-2, axis2=-1)
    cosine = gram / np.sqrt(diagonal[..., :, None] * diagonal[..., None, :])
    off = ~np.eye(n, dtype=bool)
    rho = (cosine[..., off].mean(axis=-1) if n > 1 else np.full(diagonal.shape[:-1], np.nan))
    return ConvTrajectory(gram=gram, q=diagonal.mean(axis=-1), rho=rho,
                          log_jac=np.stack(log_jacs))


def mode_exponents(n: int, *, sigma_w, sigma_b=0.0, activation: str = "tanh",
                   kernel_size: int = 3, spatial_shape: tuple[int, int] | None = None,
                   family: str = "angle") -> np.ndarray:
    """Per-layer log growth of perturbations of the collapsed fixed point K* = q* 11ᵀ with total
    spatial frequency ω = 2πm/n (m = 0..n−1; module docstring):

        angle:  log|μ(ω)| + log χ_1,     norm:  log|μ(ω)| + log χ_q,

    μ(ω) = sin(kω/2)/(k sin(ω/2)) the filter multiplier (``filter_multiplier``), χ_1 and χ_q the
    slopes of ``collapsed_point``. Mode 0 is the fully connected network's λ_a = log χ_1. Shape
    (*grid, n), or (*grid, H, W) with ``spatial_shape`` (ω = (2πm_1/H, 2πm_2/W), μ the product of
    the two axes' multipliers); −∞ where μ(ω) = 0, NaN where there is no fixed point q*.
    Raises ``InvalidHyperparameter``."""
    n = _check_n(n)
    shape = _check_shape(n, spatial_shape)
    _check_kernel(kernel_size, shape)
    if family not in FAMILIES:
        raise InvalidHyperparameter(f"family must be one of {', '.join(FAMILIES)}; "
                                    f"got {family!r}")
    _, chi_1, chi_q = collapsed_point(sigma_w=sigma_w, sigma_b=sigma_b, activation=activation)
    chi = chi_1 if family == "angle" else chi_q
    mu = np.ones(())
    for axis, size in enumerate(shape):
        factor = filter_multiplier(size, kernel_size)
        mu = mu[..., None] * factor
    with np.errstate(divide="ignore"):
        log_mu = np.log(np.abs(mu))
    chi = np.asarray(chi)
    return np.log(chi).reshape(chi.shape + (1,) * len(shape)) + log_mu


def filter_multiplier(n: int, kernel_size: int = 3) -> np.ndarray:
    """μ(ω_m) = (1/k) Σ_{s∈S} cos(ω_m s) at ω_m = 2πm/n, m = 0..n−1: the factor by which the
    filter average 𝒜 multiplies the Fourier mode e^{i(fα + gβ)} with f + g = ω_m (one axis)."""
    n = _check_n(n)
    _check_kernel(kernel_size, (n,))
    omega = 2 * np.pi * np.arange(n) / n
    offsets = np.arange(kernel_size) - (kernel_size - 1) // 2
    mu = np.cos(np.outer(omega, offsets)).mean(axis=-1)
    # exact zeros (k m ≡ 0 mod n, m ≠ 0), which the cosine sum leaves at ~1e-17
    mu[(kernel_size * np.arange(n)) % n == 0] = 0.0
    mu[0] = 1.0
    return mu


def collapsed_point(*, sigma_w, sigma_b=0.0, activation: str = "tanh"
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(q*, χ_1, χ_q) at the collapsed fixed point: q* = σ_w² E φ(√q* z)² + σ_b², χ_1 = σ_w²
    E φ'(√q* z)², χ_q = σ_w² E[z φ(√q* z) φ'(√q* z)]/√q* = σ_w² E[φ'² + φ φ''] (Stein's lemma),
    χ_q = χ_1 = σ_w² φ'(0)² at q* = 0 (taken when σ_b = 0 and the iteration falls below 1e-13).

    relu: χ_1 = χ_q = σ_w²/2 and q* = σ_b²/(1 − σ_w²/2) (∞ for σ_w² ≥ 2 unless σ_b = 0 = σ_w² − 2,
    where every q is fixed: NaN); linear likewise with σ_w². Smooth activations: Newton's method
    from q = σ_w² + σ_b² (safeguarded by the iteration q ← σ_w² Eφ² + σ_b²), expectations by the
    trapezoid rule in z on [−10, 10] at spacing min(0.25, 0.25/√q) (error below 1e-15 for
    tanh, whose poles lie at √q z = ±iπ/2); NaN where it does not converge. The slopes do not
    depend on q* for relu and linear, so they are finite even where q* is not."""
    _check_activation(activation)
    check_range("sigma_w", sigma_w, 0.0, np.inf, closed_low=False, closed_high=False)
    check_range("sigma_b", sigma_b, 0.0, np.inf, closed_low=True, closed_high=False)
    sw2, sb2 = np.broadcast_arrays(np.asarray(sigma_w, float) ** 2,
                                   np.asarray(sigma_b, float) ** 2)
    if activation in ("relu", "linear"):
        slope = sw2 / 2 if activation == "relu" else sw2.copy()
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.where(slope < 1, sb2 / (1 - slope), np.where(sb2 > 0, np.inf, np.nan))
        q = np.where((slope > 1) & (sb2 == 0), np.inf, q)
        return q, slope, slope.copy()
    q = sw2 + sb2
    converged = np.zeros(q.shape, bool)
    for _ in range(_NEWTON_STEPS):
        phi2, _, chi = _gauss_moments(activation, q)
        F = sw2 * phi2 + sb2 - q
        dF = sw2 * chi - 1
        with np.errstate(divide="ignore", invalid="ignore"):
            newton = q - F / dF
        fixed_point = sw2 * phi2 + sb2
        step = np.where((dF < 0) & (newton > q / 4), newton, np.maximum(fixed_point, q / 4))
        step = np.where(step > _DIVERGED, np.inf, step)  # q grows without bound
        # q → 0 (σ_b = 0, ordered or critical): Newton halves q at criticality; below 1e-13 the
        # residual is rounding noise, and the slopes are those at q = 0 to O(q)
        vanishing = (sb2 == 0) & (step < 1e-13)
        converged = (np.abs(step - q) <= 1e-14 * q) | vanishing | np.isinf(step)
        q = np.where(vanishing, 0.0, step)
        if converged.all():
            break
    phi2, dphi2, chi = _gauss_moments(activation, q)
    residual = np.abs(sw2 * phi2 + sb2 - q)
    ok = converged & (residual <= 1e-12 * np.maximum(q, 1.0))  # False where q = ∞
    nan = np.where(ok, 1.0, np.nan)
    return q * nan, sw2 * dphi2 * nan, sw2 * chi * nan


def filter_average(M: np.ndarray, kernel_size: int, spatial_shape: tuple[int, ...]) -> np.ndarray:
    """𝒜(M)_αβ = (1/|S|) Σ_{s∈S} M_{α+s, β+s} over the last two axes (n, n), n = Π spatial_shape,
    positions flattened row-major, indices mod each side. Separable: one circular average per
    spatial axis, k shifts each."""
    M = np.asarray(M, float)
    shape = tuple(int(s) for s in spatial_shape)
    batch = M.shape[:-2]
    out = M.reshape(batch + shape + shape)
    dims = len(shape)
    offsets = np.arange(kernel_size) - (kernel_size - 1) // 2
    for axis in range(dims):
        axes = (len(batch) + axis, len(batch) + dims + axis)
        out = sum(np.roll(out, (-s, -s), axis=axes) for s in offsets) / kernel_size
    return out.reshape(M.shape)


# --- private helpers --------------------------------------------------------------------------


def _gauss_moments(activation: str, q: np.ndarray) -> tuple[np.ndarray, ...]:
    """(E φ(σz)², E φ'(σz)², E[z φ(σz) φ'(σz)]/σ) for σ = sqrt(q), z ~ N(0, 1), by the trapezoid
    rule of ``collapsed_point`` (one spacing for all points); the last is φ'(0)² at q = 0."""
    f = ACTIVATIONS[activation]
    sigma = np.sqrt(np.maximum(q, 0.0))
    finite = np.isfinite(sigma)
    top = float(sigma[finite].max()) if finite.any() else 1.0
    h = min(0.25, 0.25 / max(top, 1e-300))
    z = h * np.arange(-np.ceil(_QUADRATURE_RANGE / h), np.ceil(_QUADRATURE_RANGE / h) + 1)
    w = h * np.exp(-z**2 / 2) / np.sqrt(2 * np.pi)
    x = np.where(finite, sigma, 0.0)[..., None] * z
    phi, dphi = f.numpy(x), f.derivative(x)
    small = sigma < 1e-150
    with np.errstate(divide="ignore", invalid="ignore"):
        chi = np.where(small, float(f.derivative(np.zeros(1))[0]) ** 2,
                       (z * phi * dphi) @ w / np.where(small, 1.0, sigma))
    bad = np.where(finite, 1.0, np.nan)
    return (phi**2) @ w * bad, (dphi**2) @ w * bad, chi * bad


def _check_activation(activation) -> None:
    if not isinstance(activation, str) or activation not in ACTIVATIONS:
        raise InvalidHyperparameter(f"activation must be one of {', '.join(sorted(ACTIVATIONS))}; "
                                    f"got {activation!r}")


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, Integral) or n < 1:
        raise InvalidHyperparameter(f"n (the number of spatial positions) must be an integer "
                                    f">= 1; got {n!r}")
    return int(n)


def _check_shape(n: int, spatial_shape) -> tuple[int, ...]:
    if spatial_shape is None:
        return (n,)
    shape = tuple(spatial_shape)
    if (len(shape) != 2 or any(isinstance(s, bool) or not isinstance(s, Integral) or s < 1
                               for s in shape) or shape[0] * shape[1] != n):
        raise InvalidHyperparameter(f"spatial_shape must be two integers (H, W) >= 1 with H W = n "
                                    f"= {n}; got {spatial_shape!r}")
    return tuple(int(s) for s in shape)


def _check_kernel(kernel_size, shape: tuple[int, ...]) -> None:
    side = min(shape)
    if (isinstance(kernel_size, bool) or not isinstance(kernel_size, Integral)
            or kernel_size < 1 or kernel_size % 2 == 0 or kernel_size > side):
        raise InvalidHyperparameter(f"kernel_size must be an odd integer in [1, {side}] (at most "
                                    f"the number of positions along each spatial axis); "
                                    f"got {kernel_size!r}")


def _check_matrix(name: str, M, psd: bool) -> np.ndarray:
    M = np.asarray(M, dtype=float)
    if M.ndim < 2 or M.shape[-1] != M.shape[-2]:
        raise InvalidHyperparameter(f"{name} must have shape (..., n, n); got {M.shape}")
    if not np.all(np.isfinite(M)):
        raise InvalidHyperparameter(f"{name} must be finite")
    scale = np.max(np.abs(M), axis=(-2, -1), keepdims=True)
    if np.any(np.abs(M - np.swapaxes(M, -1, -2)) > _SYMMETRY_TOLERANCE * scale):
        raise InvalidHyperparameter(f"{name} must be symmetric")
    M = (M + np.swapaxes(M, -1, -2)) / 2
    if psd:
        diagonal = np.diagonal(M, axis1=-2, axis2=-1)
        if not np.all(diagonal > 0):
            raise InvalidHyperparameter(f"{name} must have a positive diagonal (K_αα > 0); "
                                        f"got min {diagonal.min():g}")
        lowest = np.linalg.eigvalsh(M)[..., 0]
        if np.any(lowest < -_PSD_TOLERANCE * diagonal.max(axis=-1)):
            raise InvalidHyperparameter(f"{name} must be positive semidefinite; smallest "
                                        f"eigenvalue {lowest.min():g}")
    return M


def _check(K, G, sigma_w, sigma_b, activation, kernel_size, spatial_shape):
    """Validated (K, G, spatial shape, σ_w² and σ_b² with two trailing unit axes)."""
    _check_activation(activation)
    check_range("sigma_w", sigma_w, 0.0, np.inf, closed_low=False, closed_high=False)
    check_range("sigma_b", sigma_b, 0.0, np.inf, closed_low=True, closed_high=False)
    K = _check_matrix("K", K, psd=True)
    n = K.shape[-1]
    shape = _check_shape(n, spatial_shape)
    _check_kernel(kernel_size, shape)
    if G is not None:
        G = _check_matrix("G", G, psd=False)
        try:
            np.broadcast_shapes(G.shape, K.shape)
        except ValueError:
            raise InvalidHyperparameter(f"G must broadcast against K {K.shape}; got "
                                        f"{G.shape}") from None
        if G.shape[-1] != n:
            raise InvalidHyperparameter(f"G must have shape (..., {n}, {n}); got {G.shape}")
    sw2 = (np.asarray(sigma_w, float) ** 2)[..., None, None]
    sb2 = (np.asarray(sigma_b, float) ** 2)[..., None, None]
    return K, G, shape, sw2, sb2
