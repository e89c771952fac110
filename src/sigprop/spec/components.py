"""The components a layer is built of: one description, read by the theory and by PyTorch.

A network is a stack of identical *layers*; a layer is a ``Serial`` chain of components. Each
component is a frozen dataclass holding its initialization hyperparameters (docs/theory.md §1):

    RMSNorm()                    N(x) = sqrt(d) · x / |x|, per token, no gain
    LayerNorm()                  N(x) = sqrt(d) · (x − x̄) / |x − x̄|, x̄ the mean of x's d entries
    DyT(κ)                       N(x) = tanh(κ x), elementwise (no normalization at all)
    SelfAttention(σ_A, …)        softmax attention, H heads of width d/H, optional output map
    MLP(σ_w, σ_b, φ, σ_2, …)     W_2 φ(W_1 y + b_1), or gated: W_2 (φ(W_1 y + b_1) ⊙ W_3 y)
    Dense(σ_w, σ_b, φ)           W φ(h) + b: one layer of a plain deep MLP (Poole et al. 2016)
    Residual(a, b, branch)       a · x + b · branch(x)
    Serial(components)           composition, applied left to right

``sigprop.models`` turns a description into an ``nn.Module``; ``sigprop.theory`` turns the same
description into its wide-limit map on the token geometry (q, p) and on the tangent geometry
(g_d, g_o). Adding a component means one new dataclass here plus one rule in each interpreter.

Numeric fields may be numpy arrays: the theory broadcasts them, so one description stands for a
whole grid of hyperparameter points. The PyTorch builder needs scalars. Fields named in
``STRUCTURAL_FIELDS`` choose the architecture (and must agree across networks trained or
measured together); every other field is a numeric hyperparameter.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Callable, Union

import numpy as np
from numpy.typing import ArrayLike

from sigprop.spec.errors import InvalidHyperparameter, check_range

Component = Union["RMSNorm", "LayerNorm", "DyT", "SelfAttention", "MLP", "Dense", "Residual",
                  "Serial"]

# Attention logits with a larger standard deviation saturate the softmax to a one-hot choice;
# the theory tabulates the finite-n attention expectations up to here (sigprop.theory.attention).
MAX_SIGMA_A = 8.0

# The nonlinearities φ an MLP may use; the theory implements each on numpy arrays
# (sigprop.theory.activations) and the models in PyTorch (sigprop.models.modules).
ACTIVATIONS = ("tanh", "erf", "relu", "gelu", "silu", "linear")


@dataclass(frozen=True)
class RMSNorm:
    """N(x) = sqrt(d) · x / |x| for each token: maps the geometry (q, p) to (1, ρ)."""


@dataclass(frozen=True)
class LayerNorm:
    """Mean-centred LayerNorm without gain: N(x) = sqrt(d) · (x − x̄ 1) / |x − x̄ 1|, with x̄ the
    mean of the token's d entries. In the wide limit x̄ is O(|x|/d), so its map is RMSNorm's."""


@dataclass(frozen=True)
class DyT:
    """Dynamic tanh (Zhu et al. 2025) at initialization, gain 1 and no bias: N(x) = tanh(κ x),
    entry by entry. It bounds the entries instead of normalizing the token."""

    kappa: ArrayLike = 0.5


@dataclass(frozen=True)
class SelfAttention:
    """Softmax self-attention with ``heads`` heads, bidirectional or ``causal`` (i sees j ≤ i).

    W_Q, W_K, W_V ∈ R^{d×d} are split into H heads of width d/H; head h has logits
    (Y W_Q,hᵀ)(Y W_K,hᵀ)ᵀ / sqrt(d/H). W_Q, W_K entries ~ N(0, σ_A/d), so every head's logits
    have standard deviation σ_A on inputs with |y|² = d; W_V entries ~ N(0, 1/d). The heads'
    outputs are concatenated and, with ``out_proj``, mapped by W_O ~ N(0, 1/d).
    """

    sigma_A: ArrayLike
    causal: bool = False
    heads: int = 1
    out_proj: bool = False


@dataclass(frozen=True)
class MLP:
    """MLP(y) = W_2 φ(W_1 y + b_1), or with ``gated`` (GLU: SwiGLU for φ = silu)
    W_2 (φ(W_1 y + b_1) ⊙ W_3 y).

    W_1 ~ N(0, σ_w²/d), b_1 ~ N(0, σ_b²), W_3 ~ N(0, 1/d), W_2 ~ N(0, σ_2²/d_ff), with hidden
    width d_ff = ``ff_ratio`` · d (rounded).
    """

    sigma_w: ArrayLike
    sigma_b: ArrayLike = 0.0
    activation: str = "tanh"
    sigma_2: ArrayLike = 1.0
    gated: bool = False
    ff_ratio: float = 1.0


@dataclass(frozen=True)
class Dense:
    """One layer of the plain deep MLP of Poole et al. (2016): h ← W φ(h) + b, no norm and no
    residual, with W ~ N(0, σ_w²/d) and b ~ N(0, σ_b²). The state is the pre-activation h (the
    input of a stack is read as the pre-activations of layer 0); the "tokens" of an MLP are
    the inputs of a batch, which never interact."""

    sigma_w: ArrayLike
    sigma_b: ArrayLike = 0.0
    activation: str = "tanh"


@dataclass(frozen=True)
class Residual:
    """x ← a · x + b · branch(x), a = ``skip`` ≥ 0 and b = ``scale`` ≥ 0.

    The paper's form is a = sqrt(1 − α²), b = α; standard blocks use
    a = b = 1; GPT-2 scales its branches by 1/sqrt(2L); DeepNorm uses a > 1 before a post-norm.
    """

    skip: ArrayLike
    scale: ArrayLike
    branch: Serial


@dataclass(frozen=True)
class Serial:
    """Components applied in order."""

    components: tuple[Component, ...] = field(default_factory=tuple)


# Fields that choose the architecture rather than hold a numeric hyperparameter.
STRUCTURAL_FIELDS = ("activation", "causal", "heads", "out_proj", "gated", "ff_ratio")

_BRANCHING = (Residual,)


def validate(component: Component) -> None:
    """Raise ``InvalidHyperparameter`` for the first value outside its allowed range."""
    if isinstance(component, Serial):
        for child in component.components:
            validate(child)
    elif isinstance(component, Residual):
        check_range("skip", component.skip, 0.0, np.inf, closed_low=True)
        check_range("scale", component.scale, 0.0, np.inf, closed_low=True)
        validate(component.branch)
    elif isinstance(component, SelfAttention):
        check_range("sigma_A", component.sigma_A, 0.0, MAX_SIGMA_A, closed_low=False)
        _check_count("heads", component.heads)
    elif isinstance(component, (MLP, Dense)):
        check_range("sigma_w", component.sigma_w, 0.0, np.inf, closed_low=False)
        check_range("sigma_b", component.sigma_b, 0.0, np.inf, closed_low=True)
        if isinstance(component, MLP):
            check_range("sigma_2", component.sigma_2, 0.0, np.inf, closed_low=False)
            check_range("ff_ratio", component.ff_ratio, 0.0, np.inf, closed_low=False)
        if component.activation not in ACTIVATIONS:
            allowed = ", ".join(ACTIVATIONS)
            raise InvalidHyperparameter(
                f"activation must be one of {allowed}; got {component.activation!r}"
            )
    elif isinstance(component, DyT):
        check_range("kappa", component.kappa, 0.0, np.inf, closed_low=False)
    elif not isinstance(component, (RMSNorm, LayerNorm)):
        raise TypeError(f"not an architecture component: {component!r}")


def _check_count(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidHyperparameter(f"{name} must be an integer >= 1; got {value!r}")


def map_hyperparameters(component: Component, fn: Callable[[ArrayLike], ArrayLike]) -> Component:
    """A copy of ``component`` with ``fn`` applied to every numeric hyperparameter."""
    if isinstance(component, Serial):
        return Serial(tuple(map_hyperparameters(c, fn) for c in component.components))
    numeric = {name: fn(value) for name, value in _own_hyperparameters(component)}
    if isinstance(component, _BRANCHING):
        numeric["branch"] = map_hyperparameters(component.branch, fn)
    return replace(component, **numeric)


def named_hyperparameters(component: Component) -> list[tuple[str, ArrayLike]]:
    """(field name, value) of every numeric hyperparameter of ``component``, depth first."""
    if isinstance(component, Serial):
        return [pair for c in component.components for pair in named_hyperparameters(c)]
    own = _own_hyperparameters(component)
    if isinstance(component, _BRANCHING):
        own += named_hyperparameters(component.branch)
    return own


def hyperparameter_values(component: Component) -> list[ArrayLike]:
    """Every numeric hyperparameter of ``component``, depth first."""
    return [value for _, value in named_hyperparameters(component)]


def structure(component: Component) -> tuple:
    """The component types and structural fields, without numeric hyperparameters: two
    descriptions with the same structure differ only in values (they stack and vmap)."""
    if isinstance(component, Serial):
        return tuple(structure(c) for c in component.components)
    own = tuple((f.name, getattr(component, f.name)) for f in fields(component)
                if f.name in STRUCTURAL_FIELDS)
    branch = structure(component.branch) if isinstance(component, _BRANCHING) else None
    return (type(component).__name__, own, branch)


def find(component: Component, kind: type) -> list:
    """Every sub-component of type ``kind``, depth first."""
    if isinstance(component, kind):
        return [component]
    if isinstance(component, Serial):
        return [found for c in component.components for found in find(c, kind)]
    if isinstance(component, _BRANCHING):
        return find(component.branch, kind)
    return []


def _own_hyperparameters(component: Component) -> list[tuple[str, ArrayLike]]:
    return [(f.name, getattr(component, f.name)) for f in fields(component)
            if f.name not in STRUCTURAL_FIELDS and f.name != "branch"]
