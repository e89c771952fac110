"""PyTorch modules for the components of THEORY.md §1, one class per component.

The modules hold already-initialized parameters; how they are drawn lives in ``build.py``. Every
module maps tokens ``(..., n, d) -> (..., n, d)`` and is written with plain tensor operations so
that ``torch.func`` (``vmap``, ``jvp``, ``functional_call``) applies to it.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn


class LayerNormModule(nn.Module):
    """LN(x) = sqrt(d) · x / |x| for each token (no gain, no centering)."""

    def forward(self, x: Tensor) -> Tensor:
        return math.sqrt(x.shape[-1]) * x / torch.linalg.vector_norm(x, dim=-1, keepdim=True)


class SelfAttentionModule(nn.Module):
    """SA(Y) = softmax_row((Y W_Qᵀ)(Y W_Kᵀ)ᵀ / sqrt(d) + M) · Y W_Vᵀ, single head; the mask M is
    −∞ above the diagonal when ``causal`` (token i attends to j ≤ i), 0 otherwise.

    Written out by hand: ``F.scaled_dot_product_attention`` has no ``vmap`` rule.
    """

    def __init__(self, W_Q: Tensor, W_K: Tensor, W_V: Tensor, causal: bool = False) -> None:
        super().__init__()
        self.W_Q = nn.Parameter(W_Q)
        self.W_K = nn.Parameter(W_K)
        self.W_V = nn.Parameter(W_V)
        self.causal = causal

    def forward(self, y: Tensor) -> Tensor:
        queries = y @ self.W_Q.mT
        keys = y @ self.W_K.mT
        values = y @ self.W_V.mT
        logits = queries @ keys.mT / math.sqrt(y.shape[-1])
        if self.causal:
            n = y.shape[-2]
            future = torch.ones(n, n, dtype=torch.bool, device=y.device).triu(1)
            logits = logits.masked_fill(future, float("-inf"))
        return torch.softmax(logits, dim=-1) @ values

    def extra_repr(self) -> str:
        return f"causal={self.causal}"


class MLPModule(nn.Module):
    """MLP(y) = W_2 φ(W_1 y + b_1), applied to each token."""

    def __init__(
        self,
        W_1: Tensor,
        b_1: Tensor,
        W_2: Tensor,
        activation: Callable[[Tensor], Tensor],
    ) -> None:
        super().__init__()
        self.W_1 = nn.Parameter(W_1)
        self.b_1 = nn.Parameter(b_1)
        self.W_2 = nn.Parameter(W_2)
        self.activation = activation

    def forward(self, y: Tensor) -> Tensor:
        return self.activation(y @ self.W_1.mT + self.b_1) @ self.W_2.mT


class ResidualModule(nn.Module):
    """x ← sqrt(1 − α²) · x + α · branch(x)."""

    def __init__(self, alpha: Tensor, branch: nn.Module) -> None:
        super().__init__()
        # A buffer, not a Python float, so that networks with different α stack and vmap.
        self.register_buffer("alpha", alpha)
        self.branch = branch

    def forward(self, x: Tensor) -> Tensor:
        return torch.sqrt(1.0 - self.alpha**2) * x + self.alpha * self.branch(x)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha.tolist()}"


class Network(nn.Module):
    """A stack of blocks applied in order: X_l = block_l(X_{l-1}), tokens ``(..., n, d)``."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return x
