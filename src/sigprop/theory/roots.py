"""Vectorized bracketed root finding: many independent roots solved together."""

from __future__ import annotations

from typing import Callable

import numpy as np

_MAX_STEPS = 60


def bracketed_roots(
    g: Callable[[np.ndarray, np.ndarray], np.ndarray],
    low: np.ndarray,
    high: np.ndarray,
    tolerance: float = 1e-12,
) -> np.ndarray:
    """Roots of g in [low, high], elementwise, where g(low) and g(high) differ in sign.

    ``g(x, at)`` evaluates the i-th function at x for every i in the index array ``at`` (x and
    ``at`` have the same length): once a bracket is narrow enough its function is no longer
    evaluated, so the cost follows the brackets still open.

    The Illinois variant of regula falsi: superlinear on smooth g, and it never leaves the
    bracket. A root at an end point is returned as is. A bracket is closed when it is narrower
    than ``tolerance`` · max(1, |x|).
    """
    a, b = np.array(low, float), np.array(high, float)
    if a.size == 0:
        return a
    every = np.arange(a.size)
    fa, fb = g(a, every), g(b, every)
    root = np.where(fa == 0, a, b)
    open_ = np.flatnonzero((fa != 0) & (fb != 0))
    a, b, fa, fb = a[open_], b[open_], fa[open_], fb[open_]
    for _ in range(_MAX_STEPS):
        if open_.size == 0:
            break
        moving = fb != fa
        c = np.where(moving, b - fb * (b - a) / np.where(moving, fb - fa, 1.0), 0.5 * (a + b))
        c = np.clip(c, np.minimum(a, b), np.maximum(a, b))
        fc = g(c, open_)
        # Root between b and c: a ← b. Otherwise a stays and its value is halved (Illinois), so
        # the next secant step pulls towards a instead of creeping along one side.
        same_side = np.sign(fc) == np.sign(fb)
        a, fa = np.where(same_side, a, b), np.where(same_side, 0.5 * fa, fb)
        b, fb = c, fc
        root[open_] = c
        still = (fc != 0) & (np.abs(b - a) > tolerance * np.maximum(1.0, np.abs(b)))
        open_, a, b, fa, fb = open_[still], a[still], b[still], fa[still], fb[still]
    return root
