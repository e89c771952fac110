"""Token geometry (docs/theory.md §1): C = X Xᵀ / d, q = mean C_ii, p = mean C_ij (i ≠ j), ρ = p / q."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def simplex_tokens(
    n: int,
    width: int,
    q0: float,
    rho0: float,
    *,
    seed: int,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """``(n, width)`` tokens with the exact geometry (1/d) X Xᵀ = q0 ((1 − ρ0) I + ρ0 11ᵀ).

    x_i = sqrt(d q0) (sqrt(ρ0) e_0 + sqrt(1 − ρ0) e_i), i = 1..n, with e_0..e_n the first n + 1
    columns of a Haar-random rotation (QR of a Gaussian matrix, signs fixed), so n + 1 ≤ d.
    """
    if n < 1 or n + 1 > width:
        raise ValueError(f"n must be in [1, width - 1] = [1, {width - 1}]; got {n}")
    if not q0 > 0:
        raise ValueError(f"q0 must be > 0; got {q0}")
    if not 0.0 <= rho0 <= 1.0:
        raise ValueError(f"rho0 must be in [0, 1]; got {rho0}")
    generator = torch.Generator().manual_seed(seed)
    gaussian = torch.randn(width, n + 1, generator=generator, dtype=dtype)
    basis, triangle = torch.linalg.qr(gaussian)
    frame = (basis * torch.sign(torch.diagonal(triangle))).mT  # rows e_0..e_n
    tokens = math.sqrt(rho0) * frame[:1] + math.sqrt(1.0 - rho0) * frame[1:]
    return math.sqrt(width * q0) * tokens


def token_geometry(x: Tensor) -> dict[str, Tensor]:
    """q, p, ρ and 1 − ρ of tokens ``x`` of shape ``(..., n, d)``; batch dims are kept.

    Computed in O(n d) through the token spread q − p = Σ_i |x_i − x̄|² / ((n − 1) d), which
    keeps 1 − ρ = (q − p) / q accurate near collapse, far below the rounding of ρ itself.
    Needs n ≥ 2.
    """
    n, d = x.shape[-2:]
    q = x.square().sum((-2, -1)) / (n * d)
    centered = x - x.mean(-2, keepdim=True)
    spread = centered.square().sum((-2, -1)) / ((n - 1) * d)
    one_minus_rho = spread / q
    return {"q": q, "p": q - spread, "rho": 1.0 - one_minus_rho, "one_minus_rho": one_minus_rho}
