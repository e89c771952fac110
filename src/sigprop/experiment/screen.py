"""sigprop's exponent screen: the generic box of ``sigprop.sweep.screen`` on the theory's totals.

A point x (a block's hyperparameters) trained at depth L is scored by the exponents of its
bidirectional block over the L layers (``sigprop.experiment.init_exponents.depth_exponents``):

    a(x) = L·λ_a^(L),    g(x) = L·λ_g^(L)

from nearly collapsed inputs (q0 = 1, ρ0 → 1; ``definition="finite-depth"``), or L times the
asymptotic per-layer exponents (``definition="asymptotic"``). The screen accepts x iff
|a(x)| ≤ τ_a and |g(x)| ≤ τ_g.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sigprop.experiment.init_exponents import DEFINITIONS, depth_exponents
from sigprop.sweep.screen import BoxScreen


@dataclass(frozen=True)
class Screen(BoxScreen):
    """The box |L·λ_a| ≤ ``tau_a``, |L·λ_g| ≤ ``tau_g`` at the trained ``depth`` L, for points of
    the block ``arch`` with the fixed ``values``. ``n_tokens``: tokens n of the theory (the
    sweep's measurement setting, 16); ``definition``: "finite-depth" (ρ0 → 1, the default) or
    "asymptotic" (module docstring). Use it with ``screen_trial``, ``ScreenedSampler`` or
    ``screen_samples`` (``sigprop.sweep.screen``)."""

    definition: str = "finite-depth"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.definition not in DEFINITIONS:
            raise ValueError(f"definition: must be one of {', '.join(DEFINITIONS)}; got "
                             f"{self.definition!r}")

    def totals(self, configs: list[dict[str, Any]]) -> np.ndarray:
        """(L·λ_a, L·λ_g) of each config at the screen's depth, shape (len(configs), 2)."""
        return np.asarray(depth_exponents(configs, self.depth, self.n_tokens, self.definition),
                          dtype=float).reshape(-1, 2)

    def describe(self) -> dict[str, Any]:
        """The screen's settings as plain JSON (what a sweep stores with its study)."""
        return {**super().describe(), "definition": self.definition}

    def __repr__(self) -> str:
        return (f"Screen(tau_a={self.tau_a:g}, tau_g={self.tau_g:g}, depth={self.depth}, "
                f"definition={self.definition!r})")
