"""Build PyTorch modules from an architecture description (``sigprop.spec.components``).

One builder per component type, registered on ``build_component`` (``functools.singledispatch``):
a new component adds one builder here and one module in ``modules.py``.

Initialization is docs/theory.md §1, drawn from one ``torch.Generator`` seeded with ``seed``,
block after block in the order the components appear (within a component in the order of its
docstring; optional matrices such as W_O and W_3 last), so a network is a deterministic function
of (description, depth, width, seed) and its blocks are independent draws. The MLP hidden width
is d_ff = round(ff_ratio · d).

The same builders also draw a *stack* of S networks at once (``iter_stacked_blocks``): every
parameter and buffer then carries a leading member axis, member m drawn from its own generator
exactly as ``build_network(layer_m, ..., seed=seed_m)`` would draw it. A stacked block is used
through ``torch.func.functional_call`` under ``vmap`` over that axis.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from sigprop.spec.components import (
    MLP,
    Component,
    Dense,
    DyT,
    LayerNorm,
    Residual,
    RMSNorm,
    SelfAttention,
    Serial,
    find,
    hyperparameter_values,
    map_hyperparameters,
    named_hyperparameters,
    validate,
)
from sigprop.models.modules import (
    DenseModule,
    DyTModule,
    LayerNormModule,
    MLPModule,
    Network,
    ResidualModule,
    RMSNormModule,
    SelfAttentionModule,
)


def build_network(
    layer: Serial,
    depth: int,
    width: int,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> Network:
    """``depth`` independently initialized copies of ``layer`` at width d = ``width``.

    Raises ``ValueError`` naming the offending argument for a non-positive size, a head count
    that does not divide the width, or a non-scalar hyperparameter.
    """
    return Network(list(iter_blocks(layer, depth, width, seed=seed, dtype=dtype)))


def iter_blocks(
    layer: Serial,
    depth: int,
    width: int,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> Iterator[nn.Module]:
    """The blocks of ``build_network(layer, depth, width, seed=seed)``, one at a time.

    Yields exactly the same parameters as ``build_network`` without holding all blocks in memory.
    Arguments are validated immediately, not at the first ``next``.
    """
    _check_layer(layer, depth, width)
    context = BuildContext(width, (torch.Generator().manual_seed(seed),), dtype, stacked=False)
    return (build_component(layer, context) for _ in range(depth))


def iter_stacked_blocks(
    layers: Sequence[Serial],
    seeds: Sequence[int],
    depth: int,
    width: int,
    *,
    dtype: torch.dtype = torch.float64,
) -> Iterator[nn.Module]:
    """Block l of the S networks ``build_network(layers[m], ..., seed=seeds[m])``, stacked.

    The layers may differ in their numeric hyperparameters only. Each yielded module holds every
    parameter and buffer with a leading axis of size S; slice m is bit-for-bit member m's.
    """
    if len(layers) != len(seeds) or not layers:
        raise ValueError(f"need one seed per layer description; got {len(seeds)} and {len(layers)}")
    for layer in layers:
        _check_layer(layer, depth, width)
    columns = iter(np.array([hyperparameter_values(layer) for layer in layers], dtype=float).T)
    stacked = map_hyperparameters(layers[0], lambda _: next(columns))
    generators = tuple(torch.Generator().manual_seed(int(s)) for s in seeds)
    context = BuildContext(width, generators, dtype, stacked=True)
    return (build_component(stacked, context) for _ in range(depth))


def ff_width(component: MLP, width: int) -> int:
    """The MLP hidden width d_ff = round(ff_ratio · d), at least 1."""
    return max(1, round(component.ff_ratio * width))


@dataclass(frozen=True)
class BuildContext:
    """What every builder needs: the width, the random streams (one per member) and the dtype.

    With ``stacked`` the numeric hyperparameters are arrays over members and every tensor gets
    a leading member axis; otherwise there is one generator and plain shapes.
    """

    width: int
    generators: tuple[torch.Generator, ...]
    dtype: torch.dtype
    stacked: bool

    def gaussian(self, *shape: int, variance) -> torch.Tensor:
        """Entries iid N(0, variance), each member drawing from its own stream.

        The standard normals are drawn in float32 and widened: drawing them in float64 costs
        about 12 times more (30 ns per number here) and dominated the time of a measurement,
        while a float32 sample differs from an exact Gaussian draw by a relative 1e-7 at most.
        """
        noise = torch.empty((len(self.generators),) + shape, dtype=torch.float32)
        for member, generator in zip(noise, self.generators):
            member.normal_(generator=generator)
        scale = self.tensor(np.sqrt(variance))
        scaled = scale.reshape(scale.shape + (1,) * len(shape)) * noise.to(self.dtype)
        return scaled if self.stacked else scaled[0]

    def tensor(self, value) -> torch.Tensor:
        """A hyperparameter as a tensor: shape (S,) when stacked, () otherwise."""
        return torch.as_tensor(np.asarray(value, dtype=float), dtype=self.dtype)


@functools.singledispatch
def build_component(component: Component, context: BuildContext) -> nn.Module:
    """The initialized module for one component of an architecture description."""
    raise TypeError(f"no PyTorch builder for {type(component).__name__}: {component!r}")


@build_component.register(RMSNorm)
def _(component: RMSNorm, context: BuildContext) -> nn.Module:
    return RMSNormModule()


@build_component.register(LayerNorm)
def _(component: LayerNorm, context: BuildContext) -> nn.Module:
    return LayerNormModule()


@build_component.register(DyT)
def _(component: DyT, context: BuildContext) -> nn.Module:
    return DyTModule(context.tensor(component.kappa))


@build_component.register(SelfAttention)
def _(component: SelfAttention, context: BuildContext) -> nn.Module:
    """W_Q, W_K ~ N(0, σ_A/d) (every head's logits have standard deviation σ_A at |y|² = d);
    W_V ~ N(0, 1/d); with ``out_proj`` W_O ~ N(0, 1/d)."""
    d = context.width
    sigma_A = np.asarray(component.sigma_A, dtype=float)
    unit = np.ones_like(sigma_A) / d
    return SelfAttentionModule(
        W_Q=context.gaussian(d, d, variance=sigma_A / d),
        W_K=context.gaussian(d, d, variance=sigma_A / d),
        W_V=context.gaussian(d, d, variance=unit),
        W_O=context.gaussian(d, d, variance=unit) if component.out_proj else None,
        heads=component.heads,
        causal=component.causal,
    )


@build_component.register(MLP)
def _(component: MLP, context: BuildContext) -> nn.Module:
    """W_1 ~ N(0, σ_w²/d), b_1 ~ N(0, σ_b²), W_2 ~ N(0, σ_2²/d_ff); gated: W_3 ~ N(0, 1/d)."""
    d, d_ff = context.width, ff_width(component, context.width)
    sigma_w = np.asarray(component.sigma_w, dtype=float)
    sigma_b = np.asarray(component.sigma_b, dtype=float)
    sigma_2 = np.asarray(component.sigma_2, dtype=float)
    return MLPModule(
        W_1=context.gaussian(d_ff, d, variance=sigma_w**2 / d),
        b_1=context.gaussian(d_ff, variance=sigma_b**2),
        W_2=context.gaussian(d, d_ff, variance=sigma_2**2 / d_ff),
        activation=component.activation,
        W_3=context.gaussian(d_ff, d, variance=np.ones_like(sigma_w) / d) if component.gated else None,
    )


@build_component.register(Dense)
def _(component: Dense, context: BuildContext) -> nn.Module:
    """W ~ N(0, σ_w²/d), b ~ N(0, σ_b²)."""
    d = context.width
    sigma_w = np.asarray(component.sigma_w, dtype=float)
    sigma_b = np.asarray(component.sigma_b, dtype=float)
    return DenseModule(W=context.gaussian(d, d, variance=sigma_w**2 / d),
                       b=context.gaussian(d, variance=sigma_b**2),
                       activation=component.activation)


@build_component.register(Residual)
def _(component: Residual, context: BuildContext) -> nn.Module:
    return ResidualModule(context.tensor(component.skip), context.tensor(component.scale),
                          build_component(component.branch, context))


@build_component.register(Serial)
def _(component: Serial, context: BuildContext) -> nn.Module:
    return nn.Sequential(*(build_component(child, context) for child in component.components))


def _check_layer(layer: Serial, depth: int, width: int) -> None:
    """Sizes, scalar hyperparameters, ranges, and heads that divide the width."""
    _check_size("depth", depth)
    _check_size("width", width)
    _check_scalar_fields(layer)
    validate(layer)
    for attention in find(layer, SelfAttention):
        if width % attention.heads:
            raise ValueError(f"heads must divide the width {width}; got {attention.heads}")


def _check_size(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1; got {value!r}")


def _check_scalar_fields(component: Component) -> None:
    """A network is one draw, so every numeric hyperparameter must be a real scalar."""
    for name, value in named_hyperparameters(component):
        array = np.asarray(value)
        if array.ndim != 0 or array.dtype.kind not in "iuf":
            raise ValueError(f"{name} must be a Python or numpy scalar to build a network; got {value!r}")
