"""The wide-limit theory of circular convolutional layers (sigprop.theory.conv).

Checks: the Gram and tangent maps against simulated torch networks (1-D ring and 2-D torus) from
a non-circulant input; closed forms (relu arc-cosine, erf arcsine kernels) and k = 1 against
formulas and quadratures written here; translation-invariant inputs against the fully connected
pair map; the Fourier-mode exponents against a numerical linearization of ``conv_map`` at the
collapsed fixed point; and the input checks.

Simulation tolerance. For one seed, the error of an entry of h·h/d has standard deviation close to
s_l sqrt((K_αα K_ββ + K_αβ²)/d) (the Wishart scale, times a factor s_l that grows with depth as
fluctuations propagate); measured with 32 seeds at d = 1000, the per-entry standard deviations
lie within 0.6–1.35 of the pooled one. So each layer's s_l is estimated from the spread across
seeds pooled over all entries (36 × 7 degrees of freedom: a stable estimate, insensitive to a
systematic error, which moves the mean and not the spread), and every entry of the seed mean must
lie within 5 standard errors s_l sqrt(...)/sqrt(S) of the theory. The same criterion rejects the
prediction without the filter average (k = 1) by a wide margin, so it has the power to fail.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import integrate, optimize

from sigprop.spec.errors import InvalidHyperparameter
from sigprop.theory.conv import (
    collapsed_point,
    conv_map,
    conv_trajectory,
    filter_average,
    filter_multiplier,
    mode_exponents,
)
from sigprop.theory.gaussian import cross_moments

SIGMA = {"tanh": (1.5, 0.3), "relu": (1.4, 0.2)}
Z_LIMIT = 5.0  # standard errors


def _random_gram(n: int, seed: int) -> np.ndarray:
    """A non-circulant Gram matrix: tokens with unequal norms and cosines of both signs."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, n)) * rng.uniform(0.5, 1.5, size=(n, 1))
    return A @ A.T / n + 0.3


def _explicit_average(M: np.ndarray, k: int) -> np.ndarray:
    """𝒜(M)_αβ = (1/k) Σ_s M_{α+s, β+s} mod n, written with loops."""
    n = M.shape[-1]
    out = np.zeros_like(M)
    for a in range(n):
        for b in range(n):
            for s in range(-(k // 2), k // 2 + 1):
                out[a, b] += M[(a + s) % n, (b + s) % n] / k
    return out


# --- simulation ---------------------------------------------------------------------------------


def _simulate(K0, activation, sigma_w, sigma_b, kernel, d, depth, seeds, probes=2, shape=None):
    """Per seed: the Grams h_l·h_l/d (l = 0..depth; l = 0 the population K0) and ‖J v‖²/(n d)
    averaged over ``probes`` isotropic probes v (forward-mode AD), for a circular conv stack
    with φ applied before every layer (h^0 ~ N(0, K0) across channels)."""
    n = K0.shape[0]
    dims = 1 if shape is None else 2
    conv = torch.nn.Conv1d if dims == 1 else torch.nn.Conv2d
    layers = [torch.nn.utils.skip_init(conv, d, d, kernel, padding=kernel // 2,
                                       padding_mode="circular", dtype=torch.float64)
              for _ in range(depth)]
    phi = torch.tanh if activation == "tanh" else torch.relu
    spatial = (n,) if shape is None else tuple(shape)
    cholesky = np.linalg.cholesky(K0)
    grams, jacobians = [], []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        h0 = torch.from_numpy((cholesky @ rng.standard_normal((n, d))).T.reshape((1, d) + spatial))
        with torch.no_grad():
            for layer in layers:
                layer.weight.copy_(torch.from_numpy(rng.standard_normal(layer.weight.shape))
                                   * (sigma_w / np.sqrt(kernel**dims * d)))
                layer.bias.copy_(torch.from_numpy(rng.standard_normal(d)) * sigma_b)

        def forward(x):
            outputs = []
            for layer in layers:
                x = layer(phi(x))
                outputs.append(x)
            return outputs

        v = torch.from_numpy(rng.standard_normal((probes, d) + spatial))
        with torch.no_grad():
            hs, jvs = torch.func.jvp(forward, (h0.expand((probes, d) + spatial).clone(),), (v,))
        flat = [h[0].reshape(d, n) for h in hs]
        grams.append(np.stack([K0] + [(x.T @ x / d).numpy() for x in flat]))
        jacobians.append(float((jvs[-1] ** 2).sum()) / (probes * n * d))
    return np.stack(grams), np.log(jacobians)


def _z_scores(simulated: np.ndarray, predicted: np.ndarray, d: int) -> np.ndarray:
    """(seed mean − theory)/standard error per layer ≥ 1 and entry, with the pooled Wishart-scaled
    spread of the module docstring."""
    sim, theory = simulated[:, 1:], predicted[1:]
    diagonal = np.diagonal(theory, axis1=-2, axis2=-1)
    scale = np.sqrt((diagonal[..., :, None] * diagonal[..., None, :] + theory**2) / d)
    normalized = (sim - theory) / scale
    pooled = np.sqrt(normalized.var(axis=0, ddof=1).mean(axis=(-2, -1)))
    return normalized.mean(axis=0) / (pooled[:, None, None] / np.sqrt(len(sim)))


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_ring_matches_simulation(activation):
    n, d, depth, seeds, kernel = 8, 1000, 4, 8, 3
    sigma_w, sigma_b = SIGMA[activation]
    K0 = _random_gram(n, 1)
    grams, log_jacobians = _simulate(K0, activation, sigma_w, sigma_b, kernel, d, depth, seeds)
    theory = conv_trajectory(K0, depth, sigma_w=sigma_w, sigma_b=sigma_b, activation=activation,
                             kernel_size=kernel)
    z = _z_scores(grams, theory.gram, d)
    assert np.abs(z).max() < Z_LIMIT, (np.abs(z).max(), np.abs(grams.mean(0) - theory.gram).max())
    # power: the map without the filter average is rejected by the same criterion
    pointwise = conv_trajectory(K0, depth, sigma_w=sigma_w, sigma_b=sigma_b,
                                activation=activation, kernel_size=1)
    assert np.abs(_z_scores(grams, pointwise.gram, d)).max() > 3 * Z_LIMIT
    # tangent: log ‖J v‖²/(n d) per seed, 5 standard errors across seeds
    error = log_jacobians.mean() - theory.log_jac[-1]
    assert abs(error) < Z_LIMIT * log_jacobians.std(ddof=1) / np.sqrt(seeds), error
    # summary statistics of the trajectory
    diagonal = np.diagonal(theory.gram, axis1=-2, axis2=-1)
    np.testing.assert_allclose(theory.q, diagonal.mean(-1))
    cosine = theory.gram / np.sqrt(diagonal[..., :, None] * diagonal[..., None, :])
    np.testing.assert_allclose(theory.rho, (cosine.sum((-2, -1)) - n) / (n * (n - 1)))


def test_torus_matches_simulation():
    shape, d, depth, seeds, kernel = (4, 3), 500, 3, 12, 3
    K0 = _random_gram(12, 2)
    grams, log_jacobians = _simulate(K0, "tanh", 1.5, 0.3, kernel, d, depth, seeds, shape=shape)
    theory = conv_trajectory(K0, depth, sigma_w=1.5, sigma_b=0.3, activation="tanh",
                             kernel_size=kernel, spatial_shape=shape)
    assert np.abs(_z_scores(grams, theory.gram, d)).max() < Z_LIMIT
    ring = conv_trajectory(K0, depth, sigma_w=1.5, sigma_b=0.3, activation="tanh",
                           kernel_size=kernel)  # the same 12 positions read as a 1-D ring
    assert np.abs(_z_scores(grams, ring.gram, d)).max() > 3 * Z_LIMIT
    error = log_jacobians.mean() - theory.log_jac[-1]
    assert abs(error) < Z_LIMIT * log_jacobians.std(ddof=1) / np.sqrt(seeds), error


# --- closed forms and reductions -------------------------------------------------------------


def _relu_kernels(K):
    v = np.diag(K)
    norms = np.sqrt(np.outer(v, v))
    theta = np.arccos(np.clip(K / norms, -1, 1))
    return (norms * (np.sin(theta) + (np.pi - theta) * np.cos(theta)) / (2 * np.pi),
            (np.pi - theta) / (2 * np.pi))


def _erf_kernels(K):
    v = np.diag(K)
    a = np.outer(1 + 2 * v, 1 + 2 * v)
    return 2 / np.pi * np.arcsin(2 * K / np.sqrt(a)), 4 / np.pi / np.sqrt(a - 4 * K**2)


@pytest.mark.parametrize("activation, kernels", [("relu", _relu_kernels), ("erf", _erf_kernels)])
def test_closed_forms(activation, kernels):
    K = _random_gram(7, 3)
    G = _random_gram(7, 4)
    for k in (1, 3, 5):
        K_out, G_out = conv_map(K, G, sigma_w=1.3, sigma_b=0.4, activation=activation,
                                kernel_size=k)
        C, D = kernels(K)
        np.testing.assert_allclose(K_out, 1.3**2 * _explicit_average(C, k) + 0.4**2,
                                   rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(G_out, 1.3**2 * _explicit_average(D * G, k), rtol=1e-12,
                                   atol=1e-14)


def test_kernel_one_is_the_fully_connected_map():
    """k = 1: every pair of positions goes through the MLP's pair map, with unequal variances:
    checked against a 401 × 401 trapezoid rule per pair (spacing 0.05 on [−10, 10]: its error
    is ~exp(−π²/(0.05 σ)), tanh having poles at σz = ±iπ/2)."""
    K = _random_gram(5, 5)
    G = _random_gram(5, 6)
    K_out, G_out = conv_map(K, G, sigma_w=1.5, sigma_b=0.3, activation="tanh", kernel_size=1)
    z = np.linspace(-10, 10, 401)
    w = np.exp(-z**2 / 2) * 0.05 / np.sqrt(2 * np.pi)
    expected_K, expected_G = np.empty_like(K), np.empty_like(K)
    for a in range(5):
        for b in range(5):
            r = K[a, b] / np.sqrt(K[a, a] * K[b, b])
            u = np.sqrt(K[a, a]) * z[:, None] + 0 * z
            v = np.sqrt(K[b, b]) * (r * z[:, None] + np.sqrt(1 - r**2) * z)
            weight = w[:, None] * w
            expected_K[a, b] = 1.5**2 * np.sum(weight * np.tanh(u) * np.tanh(v)) + 0.3**2
            expected_G[a, b] = 1.5**2 * G[a, b] * np.sum(weight / np.cosh(u) ** 2
                                                         / np.cosh(v) ** 2)
    np.testing.assert_allclose(K_out, expected_K, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(G_out, expected_G, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_translation_invariant_input(activation):
    """A circulant K (K_αβ = c(α − β)) stays circulant and maps as in a fully connected network;
    a non-circulant one is changed by the filter average."""
    n = 8
    spectrum = np.array([3.0, 1.2, 0.4, 0.2, 0.1, 0.2, 0.4, 1.2])
    c = np.real(np.fft.ifft(spectrum))
    K = c[(np.arange(n)[:, None] - np.arange(n)) % n]
    out, _ = conv_map(K, sigma_w=1.5, sigma_b=0.3, activation=activation, kernel_size=5)
    np.testing.assert_allclose(out, np.roll(out, (1, 1), axis=(0, 1)), rtol=1e-13, atol=1e-13)
    q = np.diag(K)[0]
    fully_connected = 1.5**2 * cross_moments(activation, q, K, derivative=False)[0] + 0.3**2
    np.testing.assert_allclose(out, fully_connected, rtol=1e-12, atol=1e-13)

    K = _random_gram(n, 7)
    averaged, _ = conv_map(K, sigma_w=1.5, sigma_b=0.3, activation=activation, kernel_size=3)
    pointwise, _ = conv_map(K, sigma_w=1.5, sigma_b=0.3, activation=activation, kernel_size=1)
    assert np.abs(averaged - pointwise).max() > 0.05
    np.testing.assert_allclose(averaged - 0.3**2, _explicit_average(pointwise - 0.3**2, 3),
                               rtol=1e-12, atol=1e-13)


def test_torus_average_and_multiplier():
    rng = np.random.default_rng(8)
    M = rng.normal(size=(2, 12, 12))
    H, W, k = 4, 3, 3
    expected = np.zeros_like(M)
    for a in range(12):
        for b in range(12):
            for s in range(-1, 2):
                for t in range(-1, 2):
                    a2 = ((a // W + s) % H) * W + (a % W + t) % W
                    b2 = ((b // W + s) % H) * W + (b % W + t) % W
                    expected[:, a, b] += M[:, a2, b2] / k**2
    np.testing.assert_allclose(filter_average(M, k, (H, W)), expected, rtol=1e-13, atol=1e-14)
    # 𝒜 multiplies the mode e^{i(fα + gβ)} by μ(f + g)
    n, f, g = 9, 2, 3
    alpha = np.arange(n)
    mode = np.exp(2j * np.pi * (f * alpha[:, None] + g * alpha) / n)
    averaged = sum(np.roll(mode, (-s, -s), axis=(0, 1)) for s in (-2, -1, 0, 1, 2)) / 5
    np.testing.assert_allclose(averaged, filter_multiplier(n, 5)[f + g] * mode, atol=1e-13)


def test_deep_tangent_does_not_overflow():
    """tanh at σ_w = 3 (chaotic): ‖J‖² grows by ~e^0.6 per layer, past float64 after ~1200
    layers; the renormalized log scale stays finite and agrees with the plain iteration while
    that one is representable."""
    K = _random_gram(6, 9)
    trajectory = conv_trajectory(K, 2000, sigma_w=3.0, sigma_b=0.1, activation="tanh",
                                 kernel_size=3)
    assert np.all(np.isfinite(trajectory.log_jac)) and trajectory.log_jac[-1] > 709
    G = np.eye(6)
    for layer in range(1, 101):
        K, G = conv_map(K, G, sigma_w=3.0, sigma_b=0.1, activation="tanh", kernel_size=3)
        assert np.log(np.mean(np.diag(G))) == pytest.approx(trajectory.log_jac[layer], rel=1e-12)
    np.testing.assert_allclose(trajectory.gram[100], K, rtol=1e-12)


# --- exponents --------------------------------------------------------------------------------


def _tanh_collapsed(sigma_w, sigma_b):
    """q*, χ_1 = σ_w² E tanh'², χ_q = σ_w² E[tanh'² + tanh tanh''] by scipy quad and brentq."""
    def mean(f):
        return integrate.quad(lambda z: f(z) * np.exp(-z**2 / 2) / np.sqrt(2 * np.pi),
                              -np.inf, np.inf, epsabs=1e-14, epsrel=1e-13)[0]

    q = optimize.brentq(lambda q: sigma_w**2 * mean(lambda z: np.tanh(np.sqrt(q) * z) ** 2)
                        + sigma_b**2 - q, 1e-6, sigma_w**2 + sigma_b**2, xtol=1e-15, rtol=1e-14)
    s = np.sqrt(q)
    chi_1 = sigma_w**2 * mean(lambda z: (1 - np.tanh(s * z) ** 2) ** 2)  # tanh' = 1 − tanh²
    chi_q = sigma_w**2 * mean(lambda z: (1 - np.tanh(s * z) ** 2) ** 2  # tanh'' = −2 tanh tanh'
                              - 2 * np.tanh(s * z) ** 2 * (1 - np.tanh(s * z) ** 2))
    return q, chi_1, chi_q


def test_mode_zero_is_the_fully_connected_exponent():
    for sigma_w, sigma_b in [(1.5, 0.3), (0.9, 0.05), (2.5, 1.0)]:
        q, chi_1, chi_q = _tanh_collapsed(sigma_w, sigma_b)
        np.testing.assert_allclose(collapsed_point(sigma_w=sigma_w, sigma_b=sigma_b),
                                   (q, chi_1, chi_q), rtol=1e-10)
        angle = mode_exponents(7, sigma_w=sigma_w, sigma_b=sigma_b)
        norm = mode_exponents(7, sigma_w=sigma_w, sigma_b=sigma_b, family="norm")
        assert angle[0] == pytest.approx(np.log(chi_1), abs=1e-10)
        assert norm[0] == pytest.approx(np.log(chi_q), abs=1e-10)
        mu = np.array([np.mean(np.cos(2 * np.pi * m / 7 * np.arange(-1, 2))) for m in range(7)])
        np.testing.assert_allclose(angle, np.log(chi_1 * np.abs(mu)), rtol=1e-10)
    # relu: slope σ_w²/2 whatever q*; edge of chaos at σ_w² = 2 as for the MLP
    np.testing.assert_allclose(mode_exponents(5, sigma_w=np.sqrt(2.0), activation="relu")[0], 0,
                               atol=1e-15)
    torus = mode_exponents(20, sigma_w=1.5, sigma_b=0.3, kernel_size=3, spatial_shape=(4, 5))
    expected = (np.log(_tanh_collapsed(1.5, 0.3)[1])
                + np.log(np.abs(np.outer(filter_multiplier(4, 3), filter_multiplier(5, 3)))))
    np.testing.assert_allclose(torus, expected, rtol=1e-10)


def _linearization(n, k, sigma_w, sigma_b, q, epsilon=1e-4):
    """The numerical Jacobian of K ↦ conv_map(K) at K* = q 11ᵀ on symmetric matrices, in the
    orthonormal basis of symmetric unit matrices (n(n+1)/2 of them). K* lies on the boundary of
    the positive semidefinite cone, so only directions P ⪰ 0 can be taken (one-sided, second-
    order differences); symmetric unit matrices are differences of such directions:
    E_ab + E_ba = (e_a + e_b)(e_a + e_b)ᵀ − E_aa − E_bb."""
    star = q * np.ones((n, n))
    units = np.eye(n)
    directions = [np.outer(units[a], units[a]) for a in range(n)]
    pairs = [(a, b) for a in range(n) for b in range(a + 1, n)]
    directions += [np.outer(units[a] + units[b], units[a] + units[b]) for a, b in pairs]
    P = np.stack(directions)
    batch = np.concatenate([star[None], star + epsilon * P, star + 2 * epsilon * P])
    out = conv_map(batch, sigma_w=sigma_w, sigma_b=sigma_b, activation="tanh",
                   kernel_size=k)[0]
    f0, f1, f2 = out[0], out[1:len(P) + 1], out[len(P) + 1:]
    derivative = (-3 * f0 + 4 * f1 - f2) / (2 * epsilon)  # of each direction P
    responses = list(derivative[:n])
    responses += [derivative[n + i] - derivative[a] - derivative[b]
                  for i, (a, b) in enumerate(pairs)]
    basis = [np.outer(units[a], units[a]) for a in range(n)]
    basis += [(np.outer(units[a], units[b]) + np.outer(units[b], units[a])) / np.sqrt(2)
              for a, b in pairs]
    norms = [1.0] * n + [np.sqrt(2)] * len(pairs)
    Q = np.stack([m.ravel() for m in basis], axis=1)
    J = np.stack([r.ravel() / s for r, s in zip(responses, norms)], axis=1)
    return Q.T @ J, Q


@pytest.mark.parametrize("n, k", [(6, 3), (7, 5)])
def test_mode_exponents_match_the_linearized_map(n, k):
    """Eigenvalues of the numerically linearized map against the derived spectrum: per total
    frequency ω_m, |μ(ω_m)| χ_1 on the angle modes (one fewer than the symmetric modes of that
    frequency) and |μ(ω_m)| χ_q on the norm mode."""
    sigma_w, sigma_b = 1.5, 0.3
    q, chi_1, chi_q = _tanh_collapsed(sigma_w, sigma_b)
    M, _ = _linearization(n, k, sigma_w, sigma_b, q)
    numeric = np.sort(np.abs(np.linalg.eigvals(M)))
    angle = np.exp(mode_exponents(n, sigma_w=sigma_w, sigma_b=sigma_b, kernel_size=k))
    norm = np.exp(mode_exponents(n, sigma_w=sigma_w, sigma_b=sigma_b, kernel_size=k,
                                 family="norm"))
    predicted = []
    for m in range(n):
        fixed = sum((2 * f - m) % n == 0 for f in range(n))  # modes (f, m − f) with f = m − f
        symmetric = (n + fixed) // 2
        predicted += [angle[m]] * (symmetric - 1) + [norm[m]]
    assert len(predicted) == n * (n + 1) // 2
    np.testing.assert_allclose(numeric, np.sort(predicted), rtol=1e-6, atol=1e-7)
    # the brief's simpler claim, every mode multiplied by χ_1 μ: wrong for tanh (χ_q ≠ χ_1)
    assert abs(chi_q - chi_1) > 0.1
    assert np.abs(numeric - np.sort(np.repeat(angle, n)[: n * (n + 1) // 2])).max() > 0.1


def test_single_fourier_mode_leaks_into_the_norm_mode():
    """δK = cos(2π(fα + gβ)/n) (symmetrized; f, g ≠ 0) is not an eigenvector when χ_q ≠ χ_1:
    its image is μ(ω)[χ_1 δK + (χ_q − χ_1)/2 (δd 1ᵀ + 1 δdᵀ)], δd = diag δK."""
    n, k, f, g = 6, 3, 1, 2
    q, chi_1, chi_q = _tanh_collapsed(1.5, 0.3)
    M, Q = _linearization(n, k, 1.5, 0.3, q)
    alpha = np.arange(n)
    mode = np.cos(2 * np.pi * (f * alpha[:, None] + g * alpha) / n)
    mode = (mode + mode.T) / 2
    image = (Q @ (M @ (Q.T @ mode.ravel()))).reshape(n, n)
    mu = filter_multiplier(n, k)[(f + g) % n]
    diagonal = np.diag(mode)
    expected = mu * (chi_1 * mode + (chi_q - chi_1) / 2 * (diagonal[:, None] + diagonal))
    np.testing.assert_allclose(image, expected, atol=1e-6)
    assert np.abs(image - mu * chi_1 * mode).max() > 0.05


# --- input checks -----------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, name", [
    ({"kernel_size": 4}, "kernel_size"),
    ({"kernel_size": 9}, "kernel_size"),
    ({"kernel_size": 0}, "kernel_size"),
    ({"kernel_size": 3.0}, "kernel_size"),
    ({"sigma_w": 0.0}, "sigma_w"),
    ({"sigma_w": -1.0}, "sigma_w"),
    ({"sigma_b": -0.1}, "sigma_b"),
    ({"activation": "softplus"}, "activation"),
    ({"spatial_shape": (3, 3)}, "spatial_shape"),
])
def test_bad_input_names_the_parameter(kwargs, name):
    arguments = {"sigma_w": 1.0, **kwargs}
    with pytest.raises(InvalidHyperparameter, match=name):
        conv_map(np.eye(8), **arguments)
    if name != "spatial_shape":
        with pytest.raises(InvalidHyperparameter, match=name):
            mode_exponents(8, **arguments)


def test_bad_matrices():
    with pytest.raises(InvalidHyperparameter, match="symmetric"):
        conv_map(np.triu(np.ones((4, 4))), sigma_w=1.0)
    with pytest.raises(InvalidHyperparameter, match="semidefinite"):
        conv_map(np.array([[1.0, 0.9, 0.9], [0.9, 1.0, -0.9], [0.9, -0.9, 1.0]]), sigma_w=1.0,
                 kernel_size=1)
    with pytest.raises(InvalidHyperparameter, match="shape"):
        conv_map(np.ones((3, 4)), sigma_w=1.0)
    with pytest.raises(InvalidHyperparameter, match="G"):
        conv_map(np.eye(4), np.eye(5), sigma_w=1.0)
    with pytest.raises(InvalidHyperparameter, match="depth"):
        conv_trajectory(np.eye(4), -1, sigma_w=1.0)
