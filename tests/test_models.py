"""sigprop.models: initialization statistics (docs/theory.md §1), forward semantics, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sigprop.models import LayerNormModule, RMSNormModule, build_network
from sigprop.spec import (
    MLP,
    Architecture,
    InvalidHyperparameter,
    Residual,
    RMSNorm,
    SelfAttention,
    Serial,
    reference_layer,
)

WIDTH, FF_WIDTH = 64, 96
SIGMA_A, SIGMA_W, SIGMA_B = 0.6, 2.0, 0.3


@pytest.fixture(autouse=True)
def _deterministic_test_inputs():
    torch.manual_seed(0)


def _layer(alpha_A: float = 0.5, alpha_M: float = 0.5, activation: str = "tanh") -> Serial:
    """The reference layer with d_ff = FF_WIDTH at width WIDTH."""
    return Architecture.load().with_values(
        alpha_A=alpha_A, alpha_M=alpha_M, sigma_A=SIGMA_A, sigma_w=SIGMA_W, sigma_b=SIGMA_B,
        activation=activation, ff_ratio=FF_WIDTH / WIDTH).layer()


def _params(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach() for name, p in net.named_parameters()}


def test_init_variances_match_theory():
    net = build_network(_layer(), depth=3, width=WIDTH, seed=0)
    expected = {
        "W_Q": SIGMA_A / WIDTH,
        "W_K": SIGMA_A / WIDTH,
        "W_V": 1.0 / WIDTH,
        "W_1": SIGMA_W**2 / WIDTH,
        "b_1": SIGMA_B**2,
        "W_2": 1.0 / FF_WIDTH,
    }
    pooled = {key: [] for key in expected}
    for name, value in _params(net).items():
        pooled[name.rsplit(".", 1)[-1]].append(value.flatten())
    for key, variance in expected.items():
        sample = torch.cat(pooled[key]).numpy()
        # Sample variance of N Gaussians has relative standard deviation sqrt(2 / N).
        assert abs(sample.var() / variance - 1) < 5 * math.sqrt(2 / sample.size), key
        assert abs(sample.mean()) < 5 * math.sqrt(variance / sample.size), key


def test_init_shapes_follow_ff_width():
    block = build_network(_layer(), depth=1, width=WIDTH).blocks[0]
    shapes = {name.rsplit(".", 1)[-1]: tuple(p.shape) for name, p in block.named_parameters()}
    assert shapes == {
        "W_Q": (WIDTH, WIDTH),
        "W_K": (WIDTH, WIDTH),
        "W_V": (WIDTH, WIDTH),
        "W_1": (FF_WIDTH, WIDTH),
        "b_1": (FF_WIDTH,),
        "W_2": (WIDTH, FF_WIDTH),
    }
    assert all(p.dtype == torch.float64 for p in block.parameters())


def test_init_is_deterministic_and_independent():
    first, again = (build_network(_layer(), 2, 16, seed=7) for _ in range(2))
    other = build_network(_layer(), 2, 16, seed=8)
    for name, value in _params(first).items():
        assert torch.equal(value, _params(again)[name])
        assert not torch.equal(value, _params(other)[name])
    block_0, block_1 = (_params(block) for block in first.blocks)
    assert all(not torch.equal(block_0[name], block_1[name]) for name in block_0)


def test_alpha_zero_is_identity():
    net = build_network(_layer(0.0, 0.0), depth=4, width=16, seed=1)
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    assert torch.equal(net(x), x)


@pytest.mark.parametrize("alpha_A, alpha_M", [(1.0, 1.0), (0.3, 0.8)])
def test_forward_matches_theory_formulas(alpha_A, alpha_M):
    """One block against docs/theory.md §1 written out; with α = 1 there is no skip path."""
    net = build_network(_layer(alpha_A, alpha_M), depth=1, width=WIDTH)
    p = {name.rsplit(".", 1)[-1]: value for name, value in _params(net).items()}
    x = torch.randn(6, WIDTH, dtype=torch.float64)

    def ln(x):
        return math.sqrt(WIDTH) * x / x.norm(dim=-1, keepdim=True)

    y = ln(x)
    attention = torch.softmax((y @ p["W_Q"].T) @ (y @ p["W_K"].T).T / math.sqrt(WIDTH), dim=-1)
    mid = math.sqrt(1 - alpha_A**2) * x + alpha_A * attention @ (y @ p["W_V"].T)
    mlp = torch.tanh(ln(mid) @ p["W_1"].T + p["b_1"]) @ p["W_2"].T
    expected = math.sqrt(1 - alpha_M**2) * mid + alpha_M * mlp
    torch.testing.assert_close(net(x), expected, rtol=1e-12, atol=1e-12)


def test_attention_is_non_causal_and_batched():
    """Every token attends to every token; leading batch dims are carried through."""
    net = build_network(_layer(1.0, 0.0), depth=1, width=16, seed=2)
    x = torch.randn(3, 5, 16, dtype=torch.float64)
    changed = x.clone()
    changed[:, -1] += 1.0
    assert not torch.allclose(net(x)[:, 0], net(changed)[:, 0])
    torch.testing.assert_close(net(x)[1], net(x[1]), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("norm", [RMSNormModule, LayerNormModule])
def test_norm_output_has_norm_d(norm):
    y = norm()(3.0 * torch.randn(4, 7, 32, dtype=torch.float64) + 1.0)
    torch.testing.assert_close(y.square().sum(-1), torch.full((4, 7), 32.0, dtype=torch.float64))


def test_layer_norm_centres_each_token():
    y = LayerNormModule()(3.0 * torch.randn(4, 7, 32, dtype=torch.float64) + 1.0)
    torch.testing.assert_close(y.mean(-1), torch.zeros(4, 7, dtype=torch.float64))


@pytest.mark.parametrize("activation", ["relu", "gelu", "silu", "erf", "linear"])
def test_other_activations_build(activation):
    net = build_network(_layer(activation=activation), depth=2, width=8)
    assert torch.isfinite(net(torch.randn(3, 8, dtype=torch.float64))).all()


def test_custom_description_builds():
    """Components compose freely: a plain residual MLP stack without attention."""
    layer = Serial((Residual(math.sqrt(1 - 0.7**2), 0.7, Serial((RMSNorm(), MLP(1.5)))),))
    net = build_network(layer, depth=2, width=8, seed=3)
    assert {name.rsplit(".", 1)[-1] for name, _ in net.named_parameters()} == {"W_1", "b_1", "W_2"}


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(depth=0, width=8), "depth"),
        (dict(depth=2, width=0), "width"),
        (dict(depth=2.5, width=8), "depth"),
    ],
)
def test_invalid_sizes_name_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        build_network(_layer(), **kwargs)


def test_heads_must_divide_the_width():
    layer = Architecture.load().with_values(heads=4).layer()
    with pytest.raises(ValueError, match="heads must divide the width 10"):
        build_network(layer, depth=1, width=10)


def test_array_hyperparameters_are_rejected():
    layer = reference_layer(np.array([0.1, 0.2]), 0.5, SIGMA_A, SIGMA_W)
    with pytest.raises(ValueError, match="skip"):
        build_network(layer, depth=1, width=8)
    layer = Serial((SelfAttention(np.linspace(0.5, 1.0, 3)),))
    with pytest.raises(ValueError, match="sigma_A"):
        build_network(layer, depth=1, width=8)


def test_numpy_scalars_are_accepted_and_ranges_checked():
    build_network(reference_layer(np.float64(0.5), np.array(0.5), 0.6, np.int64(2)), 1, 8)
    with pytest.raises(InvalidHyperparameter, match="sigma_w"):
        build_network(Serial((MLP(-1.0),)), depth=1, width=8)
