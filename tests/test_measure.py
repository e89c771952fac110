"""sigprop.measure: geometry of inputs, Jacobian probes against exact Jacobians, seed batching,
and sanity checks of the empirical exponents (identity network, attention-only network)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.autograd.functional import jacobian
from torch.func import jvp

from sigprop.spec import Architecture, reference_layer
from sigprop.measure import (
    StackedBlock,
    angle_spread,
    empirical_lambda_a,
    empirical_lambda_g,
    measure_trajectory,
    project_differences,
    propagate,
    simplex_tokens,
    sphere_probes,
    stacked_blocks,
    token_geometry,
)
from sigprop.models import build_network

# Loading torch's forward-AD decompositions calls the deprecated torch.jit.script internally.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")

REFERENCE = reference_layer(0.5, 0.5, 0.6, 2.0)
# d_ff = 1.5 d, to check that the MLP's hidden width follows the block
WIDER_MLP = Architecture.load().with_values(alpha=0.5, ff_ratio=1.5).layer()
SMALL = dict(depth=4, width=16, n_tokens=4, q0=1.3, rho0=0.2, n_probes=3)
TINY = dict(depth=5, width=8, seeds=[0])


@pytest.fixture(autouse=True)
def _deterministic_test_inputs():
    torch.manual_seed(0)


@pytest.mark.parametrize("q0, rho0", [(1.0, 0.0), (2.5, 0.3), (0.7, 1.0)])
def test_simplex_tokens_have_exact_geometry(q0, rho0):
    n, d = 6, 16
    x = simplex_tokens(n, d, q0, rho0, seed=4)
    eye, ones = torch.eye(n, dtype=torch.float64), torch.ones(n, n, dtype=torch.float64)
    expected = q0 * ((1 - rho0) * eye + rho0 * ones)
    torch.testing.assert_close(x @ x.T / d, expected, rtol=0, atol=1e-13)
    assert torch.equal(x, simplex_tokens(n, d, q0, rho0, seed=4))
    assert not torch.equal(x, simplex_tokens(n, d, q0, rho0, seed=5))


def test_token_geometry_matches_gram_matrix():
    x = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    gram = x @ x.mT / 7
    q = torch.diagonal(gram, dim1=-2, dim2=-1).mean(-1)
    p = (gram.sum((-2, -1)) - 5 * q) / 20
    geometry = token_geometry(x)
    torch.testing.assert_close(geometry["q"], q)
    torch.testing.assert_close(geometry["p"], p)
    torch.testing.assert_close(geometry["rho"], p / q)
    torch.testing.assert_close(geometry["one_minus_rho"], 1 - p / q)


def test_angle_spread_is_one_minus_rho_to_leading_order():
    x = simplex_tokens(1, 32, 1.7, 0.0, seed=0)[0]
    tangent = project_differences(torch.randn(5, 32, dtype=torch.float64), x)
    eps = 1e-5
    one_minus_rho = token_geometry(x + eps * tangent)["one_minus_rho"]
    assert one_minus_rho / eps**2 == pytest.approx(angle_spread(tangent, x).item(), rel=1e-4)


def test_probe_estimate_matches_exact_jacobian():
    """mean_v |J v|² estimates ‖J‖_F² within the probe-sampling error sqrt(2 tr((JᵀJ)²) / P)."""
    n, d, depth, n_probes = 3, 8, 3, 20_000
    x0 = simplex_tokens(n, d, 1.0, 0.3, seed=1)
    probes = sphere_probes(n_probes, n, d, seed=2)
    blocks = stacked_blocks(REFERENCE, depth=depth, width=d, seeds=[0])
    log_jac = propagate(blocks, x0[None], probes[None]).log_jac[0]
    net = build_network(REFERENCE, depth, d, seed=0)
    for l in range(1, depth + 1):
        J = jacobian(torch.nn.Sequential(*net.blocks[:l]), x0).reshape(n * d, n * d)
        M = J.T @ J
        frobenius, sampling_error = M.trace(), torch.sqrt(2 * (M @ M).trace() / n_probes)
        estimate = math.exp(log_jac[l]) * n * d
        assert abs(estimate - frobenius) < 4 * sampling_error, l


def test_vmapped_seeds_equal_a_loop_over_seeds():
    """The stacked, vmapped evaluation reproduces per-seed networks run one by one."""
    seeds, n, d = [0, 3, 11], 4, 16
    x0 = torch.stack([simplex_tokens(n, d, 1.0, 0.1, seed=100 + s) for s in seeds])
    probes = torch.stack([sphere_probes(3, n, d, seed=200 + s) for s in seeds])
    blocks = stacked_blocks(WIDER_MLP, depth=4, width=d, seeds=seeds)
    batched = propagate(blocks, x0, probes)
    for row, seed in enumerate(seeds):
        net = build_network(WIDER_MLP, 4, d, seed=seed).requires_grad_(False)
        x, tangents = x0[row], list(probes[row])
        for l, block in enumerate(net.blocks, start=1):
            pushed = [jvp(block, (x,), (t,)) for t in tangents]
            x, tangents = pushed[0][0], [t for _, t in pushed]
            mean_sq_norm = torch.stack([t.square().sum() for t in tangents]).mean() / (n * d)
            assert batched.log_jac[row, l] == pytest.approx(math.log(mean_sq_norm), abs=1e-12)
            for key, value in token_geometry(x).items():
                assert getattr(batched, key)[row, l] == pytest.approx(value.item(), rel=1e-12)


def test_trajectory_rows_do_not_depend_on_the_other_seeds():
    together = measure_trajectory(REFERENCE, seeds=[0, 1, 2], **SMALL)
    for row, seed in enumerate([0, 1, 2]):
        alone = measure_trajectory(REFERENCE, seeds=[seed], **SMALL)
        np.testing.assert_allclose(together.log_jac[row], alone.log_jac[0], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(together.rho[row], alone.rho[0], rtol=1e-12)


def test_trajectory_shapes_and_input_layer():
    trajectory = measure_trajectory(REFERENCE, seeds=[0, 1], **SMALL)
    for values in (trajectory.q, trajectory.p, trajectory.rho, trajectory.log_jac):
        assert values.shape == (2, SMALL["depth"] + 1)
    np.testing.assert_allclose(trajectory.q[:, 0], SMALL["q0"], rtol=1e-13)
    np.testing.assert_allclose(trajectory.rho[:, 0], SMALL["rho0"], rtol=1e-12)
    np.testing.assert_allclose(trajectory.log_jac[:, 0], 0.0, atol=1e-14)


class _Sine(torch.nn.Module):
    """x -> sin(ω x): bounded output, Jacobian ~ ω per layer."""

    def __init__(self) -> None:
        super().__init__()
        self.omega = torch.nn.Parameter(torch.ones((), dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.omega * x)


def test_log_jac_does_not_overflow_at_depth():
    """‖J‖_F² passes 10^308 after ~40 layers of ω = 10⁴; the log scale is accumulated."""
    block = StackedBlock(_Sine().to("meta"), {"omega": torch.full((1,), 1e4, dtype=torch.float64)})
    probes = sphere_probes(3, 4, 8, seed=0)[None]
    log_jac = propagate([block] * 60, simplex_tokens(4, 8, 1.0, 0.2, seed=0)[None], probes).log_jac
    assert np.isfinite(log_jac).all() and log_jac[0, -1] > math.log(np.finfo(np.float64).max)


def test_identity_network_has_zero_exponents():
    layer = reference_layer(0.0, 0.0, 0.6, 2.0)
    common = dict(depth=10, width=32, n_tokens=4, seeds=[0, 1, 2], burn_in=3)
    lambda_a = empirical_lambda_a(layer, **common)
    lambda_g = empirical_lambda_g(layer, **common)
    np.testing.assert_allclose(lambda_a.per_seed, 0.0, atol=1e-12)
    np.testing.assert_allclose(lambda_g.per_seed, 0.0, atol=1e-12)


def test_attention_only_lambda_a_is_the_skip_path():
    """At collapse uniform attention erases token differences: λ_a = log(1 − α_A²) (§3)."""
    alpha_A = 0.5
    layer = reference_layer(alpha_A, 0.0, 0.6, 2.0)
    estimate = empirical_lambda_a(layer, depth=30, width=64, n_tokens=8, seeds=range(4), burn_in=10)
    assert estimate.mean == pytest.approx(math.log(1 - alpha_A**2), abs=0.01)
    assert estimate.stderr < 0.01


def test_exponents_are_deterministic_and_seed_batched():
    common = dict(depth=8, width=16, n_tokens=4, burn_in=2)
    together = empirical_lambda_a(REFERENCE, seeds=[0, 1], **common)
    again = empirical_lambda_a(REFERENCE, seeds=[0, 1], **common)
    alone = [empirical_lambda_a(REFERENCE, seeds=[s], **common).per_seed[0] for s in (0, 1)]
    np.testing.assert_array_equal(together.per_seed, again.per_seed)
    np.testing.assert_allclose(together.per_seed, alone, rtol=1e-10)
    assert together.mean == pytest.approx(np.mean(alone))
    assert together.stderr == pytest.approx(np.std(alone, ddof=1) / math.sqrt(2))
    lambda_g = empirical_lambda_g(REFERENCE, seeds=[0, 1], **common)
    log_jac = measure_trajectory(
        REFERENCE, depth=8, width=16, n_tokens=4, q0=1.0, rho0=0.0, seeds=[0, 1]
    ).log_jac
    np.testing.assert_array_equal(lambda_g.per_seed, (log_jac[:, 8] - log_jac[:, 2]) / 6)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: simplex_tokens(16, 16, 1.0, 0.0, seed=0), "n"),
        (lambda: simplex_tokens(4, 16, 1.0, 1.5, seed=0), "rho0"),
        (lambda: measure_trajectory(REFERENCE, seeds=[], **SMALL), "seeds"),
        (lambda: measure_trajectory(REFERENCE, seeds=[-1], **SMALL), "seeds"),
        (lambda: measure_trajectory(REFERENCE, seeds=[0], **{**SMALL, "n_probes": 0}), "n_probes"),
        (lambda: measure_trajectory(REFERENCE, seeds=[0], **{**SMALL, "n_tokens": 1}), "n_tokens"),
        (lambda: empirical_lambda_a(REFERENCE, **TINY, n_tokens=3, burn_in=5), "burn_in"),
        (lambda: empirical_lambda_g(REFERENCE, **TINY, n_tokens=3, burn_in=-1), "burn_in"),
        (lambda: empirical_lambda_a(REFERENCE, **TINY, n_tokens=1, burn_in=1), "n_tokens"),
    ],
)
def test_invalid_arguments_name_the_parameter(call, name):
    with pytest.raises(ValueError, match=name):
        call()
