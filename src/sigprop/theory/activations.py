"""Pointwise nonlinearities φ and their derivatives on float64 numpy arrays, for the theory.

The PyTorch forms of the same functions live with the modules (``sigprop.models.modules``), so
that the theory never imports torch. scipy.special (erf, ndtr, expit) loads on first use: its
import alone takes ~0.15 s, more than a whole tanh computation from stored tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Activation:
    """φ and its derivative φ' on numpy arrays (float64)."""

    name: str
    numpy: Callable[[np.ndarray], np.ndarray]
    derivative: Callable[[np.ndarray], np.ndarray]


def scipy_special() -> ModuleType:
    """``scipy.special``, imported on first use."""
    from scipy import special

    return special


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return scipy_special().expit(x)


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation("tanh", np.tanh, lambda x: 1.0 / np.cosh(np.clip(x, -350.0, 350.0)) ** 2),
        Activation("erf", lambda x: scipy_special().erf(x),
                   lambda x: 2.0 / np.sqrt(np.pi) * np.exp(-(x**2))),
        Activation("relu", lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype(float)),
        Activation(
            "gelu",
            lambda x: x * scipy_special().ndtr(x),
            lambda x: scipy_special().ndtr(x) + x * np.exp(-(x**2) / 2) / np.sqrt(2 * np.pi),
        ),
        Activation(
            "silu",
            lambda x: x * _sigmoid(x),
            lambda x: _sigmoid(x) * (1.0 + x * (1.0 - _sigmoid(x))),
        ),
        Activation("linear", lambda x: x, np.ones_like),
    )
}


def get_activation(name: str) -> Activation:
    """The activation called ``name``; ``ValueError`` naming the allowed names otherwise."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        allowed = ", ".join(sorted(ACTIVATIONS))
        raise ValueError(f"activation must be one of {allowed}; got {name!r}") from None
