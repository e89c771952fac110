"""Pointwise nonlinearities φ, with the numpy and torch forms the theory and the models share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from scipy import special


@dataclass(frozen=True)
class Activation:
    """φ and its derivative φ' on numpy arrays (float64), and φ on torch tensors."""

    name: str
    numpy: Callable[[np.ndarray], np.ndarray]
    derivative: Callable[[np.ndarray], np.ndarray]
    torch: Callable[[torch.Tensor], torch.Tensor]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return special.expit(x)


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation(
            "tanh",
            np.tanh,
            lambda x: 1.0 / np.cosh(np.clip(x, -350.0, 350.0)) ** 2,
            torch.tanh,
        ),
        Activation(
            "erf",
            special.erf,
            lambda x: 2.0 / np.sqrt(np.pi) * np.exp(-(x**2)),
            torch.erf,
        ),
        Activation(
            "relu",
            lambda x: np.maximum(x, 0.0),
            lambda x: (x > 0).astype(float),
            torch.relu,
        ),
        Activation(
            "gelu",
            lambda x: x * special.ndtr(x),
            lambda x: special.ndtr(x) + x * np.exp(-(x**2) / 2) / np.sqrt(2 * np.pi),
            torch.nn.functional.gelu,
        ),
        Activation(
            "silu",
            lambda x: x * _sigmoid(x),
            lambda x: _sigmoid(x) * (1.0 + x * (1.0 - _sigmoid(x))),
            torch.nn.functional.silu,
        ),
        Activation("linear", lambda x: x, np.ones_like, lambda x: x),
    )
}


def get_activation(name: str) -> Activation:
    """The activation called ``name``; ``ValueError`` naming the allowed names otherwise."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        allowed = ", ".join(sorted(ACTIVATIONS))
        raise ValueError(f"activation must be one of {allowed}; got {name!r}") from None
