"""Tangent dynamics of token differences at the collapsed state (docs/theory.md §4, angle exponent).

At collapse all n tokens equal one vector x_l, which the network carries along on its own:
x_{l+1} is the common row of block_l(1 x_lᵀ). A small token difference X = 1 x_lᵀ + ε T with
token-mean-zero T (the common mode only moves along the collapsed line) gives, to leading order,

    1 − ρ = ε² D(T, x),   D(T, x) = Σ_i |P⊥ T_i|² / ((n − 1) |x|²)
                                  = mean over pairs i < j of |P⊥(T_i − T_j)|² / (2 |x|²),

with P⊥ the projection orthogonal to x (the radial part changes token norms, not angles; in
the wide limit it decays faster and feeds only the angular part). Benettin's method: apply the
block Jacobian at 1 x_lᵀ (forward mode), project back onto the token-mean-zero, ⊥ x_{l+1}
subspace, record log D, renormalize to D = 1, continue.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor

from sigprop.measure.ensemble import StackedBlock


def collapsed_log_ratios(blocks: Iterable[StackedBlock], x0: Tensor, t0: Tensor) -> Tensor:
    """Per-layer log growth of 1 − ρ near collapse, shape ``(S, L)``.

    ``x0``: ``(S, d)`` collapsed token per seed; ``t0``: ``(S, n, d)`` initial difference
    tangent (projected and normalized here). Entry l is log D after block l + 1 given D = 1
    before it.
    """
    x, tangent = x0, _normalize(project_differences(t0, x0), x0)
    ratios = []
    for block in blocks:
        tokens = x[:, None, :].expand_as(tangent).contiguous()  # make_dual rejects overlaps
        outputs, pushed = block.jvp(tokens, tangent[:, None])
        x = outputs.mean(-2)
        tangent = project_differences(pushed[:, 0], x)
        ratios.append(torch.log(angle_spread(tangent, x)))
        tangent = _normalize(tangent, x)
    return torch.stack(ratios, dim=-1)


def project_differences(tangent: Tensor, x: Tensor) -> Tensor:
    """Remove the token mean of ``tangent`` ``(..., n, d)`` and, per token, its part along x."""
    centered = tangent - tangent.mean(-2, keepdim=True)
    direction = x / torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    along = (centered @ direction[..., :, None]) * direction[..., None, :]
    return centered - along


def angle_spread(tangent: Tensor, x: Tensor) -> Tensor:
    """D(T, x) = Σ_i |T_i|² / ((n − 1) |x|²) for an already projected tangent."""
    n = tangent.shape[-2]
    return tangent.square().sum((-2, -1)) / ((n - 1) * x.square().sum(-1))


def _normalize(tangent: Tensor, x: Tensor) -> Tensor:
    return tangent / torch.sqrt(angle_spread(tangent, x))[..., None, None]
