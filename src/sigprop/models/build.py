"""Build PyTorch modules from an architecture description (``sigprop.architecture``).

One builder per component type, registered on ``build_component`` (``functools.singledispatch``):
a new component adds one builder here and one module in ``modules.py``.

Initialization is THEORY.md §1, drawn from one ``torch.Generator`` seeded with ``seed``, block
after block in the order the components appear, so a network is a deterministic function of
(description, depth, width, ff_width, seed) and its blocks are independent draws.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields
from typing import Iterator

import numpy as np
import torch
from torch import nn

from sigprop.activations import get_activation
from sigprop.architecture import (
    MLP,
    Component,
    LayerNorm,
    Residual,
    SelfAttention,
    Serial,
    validate,
)
from sigprop.models.modules import (
    LayerNormModule,
    MLPModule,
    Network,
    ResidualModule,
    SelfAttentionModule,
)


def build_network(
    layer: Serial,
    depth: int,
    width: int,
    ff_width: int | None = None,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> Network:
    """``depth`` independently initialized copies of ``layer`` at width d = ``width``.

    ``ff_width`` is the MLP hidden width d_ff (default: ``width``). Raises ``ValueError`` naming
    the offending argument for a non-positive size or a non-scalar hyperparameter.
    """
    return Network(list(iter_blocks(layer, depth, width, ff_width, seed=seed, dtype=dtype)))


def iter_blocks(
    layer: Serial,
    depth: int,
    width: int,
    ff_width: int | None = None,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> Iterator[nn.Module]:
    """The blocks of ``build_network(layer, depth, width, ff_width, seed=seed)``, one at a time.

    Yields exactly the same parameters as ``build_network`` without holding all blocks in memory.
    Arguments are validated immediately, not at the first ``next``.
    """
    _check_size("depth", depth)
    _check_size("width", width)
    if ff_width is not None:
        _check_size("ff_width", ff_width)
    _check_scalar_fields(layer)
    validate(layer)
    context = BuildContext(
        width=width,
        ff_width=width if ff_width is None else ff_width,
        generator=torch.Generator().manual_seed(seed),
        dtype=dtype,
    )
    return (build_component(layer, context) for _ in range(depth))


@dataclass(frozen=True)
class BuildContext:
    """What every builder needs: sizes, the random stream and the dtype."""

    width: int
    ff_width: int
    generator: torch.Generator
    dtype: torch.dtype

    def gaussian(self, *shape: int, variance: float) -> torch.Tensor:
        """Entries iid N(0, variance), drawn from the shared stream."""
        noise = torch.randn(*shape, generator=self.generator, dtype=self.dtype)
        return math.sqrt(variance) * noise


@functools.singledispatch
def build_component(component: Component, context: BuildContext) -> nn.Module:
    """The initialized module for one component of an architecture description."""
    raise TypeError(f"no PyTorch builder for {type(component).__name__}: {component!r}")


@build_component.register(LayerNorm)
def _(component: LayerNorm, context: BuildContext) -> nn.Module:
    return LayerNormModule()


@build_component.register(SelfAttention)
def _(component: SelfAttention, context: BuildContext) -> nn.Module:
    """W_Q, W_K ~ N(0, σ_A/d) (logit standard deviation σ_A at |y|² = d); W_V ~ N(0, 1/d)."""
    d = context.width
    sigma_A = float(component.sigma_A)
    return SelfAttentionModule(
        W_Q=context.gaussian(d, d, variance=sigma_A / d),
        W_K=context.gaussian(d, d, variance=sigma_A / d),
        W_V=context.gaussian(d, d, variance=1.0 / d),
    )


@build_component.register(MLP)
def _(component: MLP, context: BuildContext) -> nn.Module:
    """W_1 ~ N(0, σ_w²/d), b_1 ~ N(0, σ_b²), W_2 ~ N(0, 1/d_ff)."""
    d, d_ff = context.width, context.ff_width
    sigma_w, sigma_b = float(component.sigma_w), float(component.sigma_b)
    return MLPModule(
        W_1=context.gaussian(d_ff, d, variance=sigma_w**2 / d),
        b_1=context.gaussian(d_ff, variance=sigma_b**2),
        W_2=context.gaussian(d, d_ff, variance=1.0 / d_ff),
        activation=get_activation(component.activation).torch,
    )


@build_component.register(Residual)
def _(component: Residual, context: BuildContext) -> nn.Module:
    return ResidualModule(float(component.alpha), build_component(component.branch, context))


@build_component.register(Serial)
def _(component: Serial, context: BuildContext) -> nn.Module:
    return nn.Sequential(*(build_component(child, context) for child in component.components))


def _check_size(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1; got {value!r}")


def _check_scalar_fields(component: Component) -> None:
    """The builder draws one network, so every numeric hyperparameter must be a scalar."""
    if isinstance(component, Serial):
        for child in component.components:
            _check_scalar_fields(child)
        return
    for spec in fields(component):
        value = getattr(component, spec.name)
        if isinstance(value, Serial):
            _check_scalar_fields(value)
        elif not isinstance(value, str) and not _is_real_scalar(value):
            raise ValueError(
                f"{spec.name} must be a Python or numpy scalar to build a network; got {value!r}"
            )


def _is_real_scalar(value: object) -> bool:
    """A Python or numpy real number (0-d numpy arrays included; booleans excluded)."""
    array = np.asarray(value)
    return array.ndim == 0 and array.dtype.kind in "iuf"
