"""Vectorized bracketed root finding: many independent roots solved together."""

from __future__ import annotations

from typing import Callable

import numpy as np

_MAX_STEPS = 60


def bracketed_roots(
    g: Callable[[np.ndarray], np.ndarray],
    low: np.ndarray,
    high: np.ndarray,
    tolerance: float = 1e-12,
) -> np.ndarray:
    """Roots of g in [low, high], elementwise, where g(low) and g(high) differ in sign.

    The Illinois variant of regula falsi: superlinear on smooth g, and it never leaves the
    bracket. A root at an end point is returned as is. Stops when every bracket is narrower than
    ``tolerance`` · max(1, |x|).
    """
    a, b = np.array(low, float), np.array(high, float)
    if a.size == 0:
        return a
    fa, fb = g(a), g(b)
    root = np.where(fa == 0, a, b)
    done = (fa == 0) | (fb == 0)
    for _ in range(_MAX_STEPS):
        moving = fb != fa
        c = np.where(moving, b - fb * (b - a) / np.where(moving, fb - fa, 1.0), 0.5 * (a + b))
        c = np.clip(c, np.minimum(a, b), np.maximum(a, b))
        fc = g(c)
        # Root between b and c: a ← b. Otherwise a stays and its value is halved (Illinois), so
        # the next secant step pulls towards a instead of creeping along one side.
        same_side = np.sign(fc) == np.sign(fb)
        a, fa = np.where(same_side, a, b), np.where(same_side, 0.5 * fa, fb)
        b, fb = c, fc
        root = np.where(done, root, c)
        done = done | (fc == 0) | (np.abs(b - a) <= tolerance * np.maximum(1.0, np.abs(b)))
        if np.all(done):
            break
    return root
