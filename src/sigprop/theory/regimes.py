"""The words for the exponents: one rule and one threshold, in JSON, text and figure titles.

Over a network of L layers, token differences near collapse change by e^{L·λ_a} and squared
gradients by e^{L·λ_g}. Those totals, not the per-layer rates, decide the words:

    |L·λ| ≤ EDGE            "near the edge"
    L·λ_a < −EDGE           "ordered"     (tokens collapse: rank collapse)
    L·λ_a > +EDGE           "chaotic"     (tokens repel)
    L·λ_g < −EDGE           "vanishing"   (gradients)
    L·λ_g > +EDGE           "exploding"   (gradients)
    NaN                     "undefined"

``EDGE`` = 0.5 is a factor e^0.5 ≈ 1.6 over the whole network; it is also the default target of
``sigprop.critical_init``, so a model it calls critical is "near the edge" on both counts.
Asymptotic exponents (per layer, at the fixed point of an infinitely deep network) are spelled
out over ``WORDS_DEPTH`` layers when no depth is given.
"""

from __future__ import annotations

import numpy as np

EDGE = 0.5
WORDS_DEPTH = 32
NEAR = "near the edge"
UNDEFINED = "undefined"


def angle_regime(total: np.ndarray | float) -> np.ndarray:
    """"ordered", "chaotic", "near the edge" or "undefined" for L·λ_a (elementwise)."""
    return _regime(total, "ordered", "chaotic")


def gradient_regime(total: np.ndarray | float) -> np.ndarray:
    """"vanishing", "exploding", "near the edge" or "undefined" for L·λ_g (elementwise)."""
    return _regime(total, "vanishing", "exploding")


def _regime(total: np.ndarray | float, below: str, above: str) -> np.ndarray:
    total = np.asarray(total, dtype=float)
    words = np.where(total < -EDGE, below, np.where(total > EDGE, above, NEAR))
    return np.where(np.isnan(total), UNDEFINED, words)
