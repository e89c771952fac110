"""One description of an architecture, read by both the theory and the PyTorch builder.

A network is a stack of identical *layers*; a layer is a ``Serial`` chain of components. Each
component is a frozen dataclass holding only its initialization hyperparameters (THEORY.md §1):

    LayerNorm()                      LN(x) = sqrt(d) x / |x|, per token, no gain
    SelfAttention(sigma_A)           softmax((Y W_Qᵀ)(Y W_Kᵀ)ᵀ / sqrt(d)) Y W_Vᵀ, single head
    MLP(sigma_w, sigma_b, φ)         W_2 φ(W_1 y + b_1)
    Residual(alpha, branch)          sqrt(1 - α²) x + α · branch(x)
    Serial(components)               composition, applied left to right

``sigprop.models`` turns a description into an ``nn.Module``; ``sigprop.theory`` turns the same
description into its wide-limit map on the token geometry (q, p) and on the tangent geometry
(g_d, g_o). Adding a component means one new dataclass here plus one rule in each interpreter.

Numeric fields may be numpy arrays: the theory broadcasts them, so one description stands for a
whole grid of hyperparameter points. The PyTorch builder needs scalars.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Callable
from typing import Union

import numpy as np
from numpy.typing import ArrayLike

from sigprop.activations import ACTIVATIONS

Component = Union["LayerNorm", "SelfAttention", "MLP", "Residual", "Serial"]


@dataclass(frozen=True)
class LayerNorm:
    """LN(x) = sqrt(d) · x / |x| for each token: maps the geometry (q, p) to (1, ρ)."""


@dataclass(frozen=True)
class SelfAttention:
    """Single-head softmax self-attention, bidirectional or ``causal`` (token i sees j ≤ i).

    W_Q, W_K entries ~ N(0, σ_A/d), so logits have standard deviation σ_A on inputs with
    |y|² = d; W_V entries ~ N(0, 1/d). The wide-limit theory covers the bidirectional case.
    """

    sigma_A: ArrayLike
    causal: bool = False


@dataclass(frozen=True)
class MLP:
    """MLP(y) = W_2 φ(W_1 y + b_1) with W_1 ~ N(0, σ_w²/d), b_1 ~ N(0, σ_b²), W_2 ~ N(0, 1/d_ff)."""

    sigma_w: ArrayLike
    sigma_b: ArrayLike = 0.0
    activation: str = "tanh"


@dataclass(frozen=True)
class Residual:
    """x ← sqrt(1 − α²) · x + α · branch(x); α = 0 skips the branch, α = 1 drops the skip path."""

    alpha: ArrayLike
    branch: Serial


@dataclass(frozen=True)
class Serial:
    """Components applied in order."""

    components: tuple[Component, ...] = field(default_factory=tuple)


def reference_layer(
    alpha_A: ArrayLike,
    alpha_M: ArrayLike,
    sigma_A: ArrayLike,
    sigma_w: ArrayLike,
    sigma_b: ArrayLike = 0.0,
    activation: str = "tanh",
    causal: bool = False,
) -> Serial:
    """One layer of the reference transformer of THEORY.md §1: attention block, then MLP block.

    Raises ``InvalidHyperparameter`` naming the first hyperparameter outside its range.
    """
    _check_range("alpha_A", alpha_A, 0.0, 1.0, closed_low=True)
    _check_range("alpha_M", alpha_M, 0.0, 1.0, closed_low=True)
    layer = Serial(
        (
            Residual(alpha_A, Serial((LayerNorm(), SelfAttention(sigma_A, causal)))),
            Residual(alpha_M, Serial((LayerNorm(), MLP(sigma_w, sigma_b, activation)))),
        )
    )
    validate(layer)
    return layer


class InvalidHyperparameter(ValueError):
    """A hyperparameter lies outside its allowed range; the message names it and the range."""


def validate(component: Component) -> None:
    """Raise ``InvalidHyperparameter`` for the first hyperparameter outside its allowed range."""
    if isinstance(component, Serial):
        for child in component.components:
            validate(child)
    elif isinstance(component, Residual):
        _check_range("alpha", component.alpha, 0.0, 1.0, closed_low=True)
        validate(component.branch)
    elif isinstance(component, SelfAttention):
        _check_range("sigma_A", component.sigma_A, 0.0, MAX_SIGMA_A, closed_low=False)
    elif isinstance(component, MLP):
        _check_range("sigma_w", component.sigma_w, 0.0, np.inf, closed_low=False)
        _check_range("sigma_b", component.sigma_b, 0.0, np.inf, closed_low=True)
        if component.activation not in ACTIVATIONS:
            allowed = ", ".join(sorted(ACTIVATIONS))
            raise InvalidHyperparameter(
                f"activation must be one of {allowed}; got {component.activation!r}"
            )
    elif not isinstance(component, LayerNorm):
        raise TypeError(f"not an architecture component: {component!r}")


# Attention logits with standard deviation above this saturate the softmax to a one-hot choice;
# the finite-n attention expectations are tabulated up to here.
MAX_SIGMA_A = 8.0


def _check_range(name: str, value: ArrayLike, low: float, high: float, closed_low: bool) -> None:
    array = np.asarray(value, dtype=float)
    inside = (array >= low if closed_low else array > low) & (array <= high)  # NaN fails both
    if not np.all(inside):
        bracket = "[" if closed_low else "("
        upper = "∞)" if np.isinf(high) else f"{high:g}]"
        first_bad = array[~inside].flat[0]
        raise InvalidHyperparameter(f"{name} must be in {bracket}{low:g}, {upper}; got {first_bad:g}")


def map_hyperparameters(component: Component, fn: Callable[[ArrayLike], ArrayLike]) -> Component:
    """A copy of ``component`` with ``fn`` applied to every numeric hyperparameter."""
    if isinstance(component, Serial):
        return Serial(tuple(map_hyperparameters(c, fn) for c in component.components))
    if isinstance(component, Residual):
        return Residual(fn(component.alpha), map_hyperparameters(component.branch, fn))
    numeric = {f.name: fn(getattr(component, f.name)) for f in fields(component)
               if f.name not in _STRUCTURAL_FIELDS}
    return replace(component, **numeric)


def named_hyperparameters(component: Component) -> list[tuple[str, ArrayLike]]:
    """(field name, value) of every numeric hyperparameter of ``component``, depth first."""
    if isinstance(component, Serial):
        return [pair for c in component.components for pair in named_hyperparameters(c)]
    if isinstance(component, Residual):
        return [("alpha", component.alpha), *named_hyperparameters(component.branch)]
    return [(f.name, getattr(component, f.name)) for f in fields(component)
            if f.name not in _STRUCTURAL_FIELDS]


# Fields that choose the architecture rather than hold a numeric hyperparameter.
_STRUCTURAL_FIELDS = ("activation", "causal")


def hyperparameter_values(component: Component) -> list[ArrayLike]:
    """Every numeric hyperparameter of ``component``, depth first."""
    return [value for _, value in named_hyperparameters(component)]
