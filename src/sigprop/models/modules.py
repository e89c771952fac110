"""PyTorch modules for the components of ``sigprop.spec.components``, one class per component.

The modules hold already-initialized parameters; how they are drawn lives in ``build.py``. Every
module maps tokens ``(..., n, d) -> (..., n, d)`` and is written with plain tensor operations so
that ``torch.func`` (``vmap``, ``jvp``, ``functional_call``) applies to it.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

TORCH_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": torch.tanh,
    "erf": torch.erf,
    "relu": torch.relu,
    "gelu": nn.functional.gelu,
    "silu": nn.functional.silu,
    "linear": lambda x: x,
}


class RMSNormModule(nn.Module):
    """N(x) = sqrt(d) · x / |x| for each token (no gain)."""

    def forward(self, x: Tensor) -> Tensor:
        return math.sqrt(x.shape[-1]) * x / torch.linalg.vector_norm(x, dim=-1, keepdim=True)


class LayerNormModule(nn.Module):
    """N(x) = sqrt(d) · (x − x̄) / |x − x̄| for each token, x̄ the mean of its entries (no gain,
    no bias: ``nn.LayerNorm`` at initialization, without its ε)."""

    def forward(self, x: Tensor) -> Tensor:
        centered = x - x.mean(-1, keepdim=True)
        return math.sqrt(x.shape[-1]) * centered / torch.linalg.vector_norm(centered, dim=-1,
                                                                             keepdim=True)


class DyTModule(nn.Module):
    """N(x) = tanh(κ x), entry by entry (DyT at initialization: gain 1, no bias)."""

    def __init__(self, kappa: Tensor) -> None:
        super().__init__()
        self.register_buffer("kappa", kappa)  # a buffer, so networks with different κ stack

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(self.kappa * x)


class SelfAttentionModule(nn.Module):
    """H-head softmax attention: head h computes softmax((Y W_Q,hᵀ)(Y W_K,hᵀ)ᵀ / sqrt(d/H) + M)
    · Y W_V,hᵀ, with M = −∞ above the diagonal when ``causal`` (token i attends to j ≤ i); the
    heads are concatenated and mapped by W_O when given.

    Written out by hand: ``F.scaled_dot_product_attention`` has no ``vmap`` rule.
    """

    def __init__(self, W_Q: Tensor, W_K: Tensor, W_V: Tensor, W_O: Tensor | None = None,
                 heads: int = 1, causal: bool = False) -> None:
        super().__init__()
        self.W_Q = nn.Parameter(W_Q)
        self.W_K = nn.Parameter(W_K)
        self.W_V = nn.Parameter(W_V)
        self.W_O = None if W_O is None else nn.Parameter(W_O)
        self.heads = heads
        self.causal = causal

    def forward(self, y: Tensor) -> Tensor:
        queries, keys, values = (self._split(y @ W.mT) for W in (self.W_Q, self.W_K, self.W_V))
        logits = queries @ keys.mT / math.sqrt(queries.shape[-1])
        if self.causal:
            n = y.shape[-2]
            future = torch.ones(n, n, dtype=torch.bool, device=y.device).triu(1)
            logits = logits.masked_fill(future, float("-inf"))
        out = self._merge(torch.softmax(logits, dim=-1) @ values)
        return out if self.W_O is None else out @ self.W_O.mT

    def _split(self, x: Tensor) -> Tensor:
        """(..., n, d) → (..., H, n, d/H); a single head keeps its shape."""
        if self.heads == 1:
            return x
        return x.unflatten(-1, (self.heads, -1)).transpose(-3, -2)

    def _merge(self, x: Tensor) -> Tensor:
        if self.heads == 1:
            return x
        return x.transpose(-3, -2).flatten(-2)

    def extra_repr(self) -> str:
        return f"heads={self.heads}, causal={self.causal}, out_proj={self.W_O is not None}"


class MLPModule(nn.Module):
    """MLP(y) = W_2 φ(W_1 y + b_1), or gated W_2 (φ(W_1 y + b_1) ⊙ W_3 y), on each token."""

    def __init__(self, W_1: Tensor, b_1: Tensor, W_2: Tensor, activation: str,
                 W_3: Tensor | None = None) -> None:
        super().__init__()
        self.W_1 = nn.Parameter(W_1)
        self.b_1 = nn.Parameter(b_1)
        self.W_2 = nn.Parameter(W_2)
        self.W_3 = None if W_3 is None else nn.Parameter(W_3)
        self.activation = activation

    def forward(self, y: Tensor) -> Tensor:
        hidden = TORCH_ACTIVATIONS[self.activation](y @ self.W_1.mT + self.b_1)
        if self.W_3 is not None:
            hidden = hidden * (y @ self.W_3.mT)
        return hidden @ self.W_2.mT

    def extra_repr(self) -> str:
        return f"activation={self.activation}, gated={self.W_3 is not None}"


class DenseModule(nn.Module):
    """h ← W φ(h) + b on each token (one layer of a plain deep MLP)."""

    def __init__(self, W: Tensor, b: Tensor, activation: str) -> None:
        super().__init__()
        self.W = nn.Parameter(W)
        self.b = nn.Parameter(b)
        self.activation = activation

    def forward(self, h: Tensor) -> Tensor:
        return TORCH_ACTIVATIONS[self.activation](h) @ self.W.mT + self.b

    def extra_repr(self) -> str:
        return f"activation={self.activation}"


class ResidualModule(nn.Module):
    """x ← a · x + b · branch(x)."""

    def __init__(self, skip: Tensor, scale: Tensor, branch: nn.Module) -> None:
        super().__init__()
        # Buffers, not Python floats, so that networks with different weights stack and vmap.
        self.register_buffer("skip", skip)
        self.register_buffer("scale", scale)
        self.branch = branch

    def forward(self, x: Tensor) -> Tensor:
        return self.skip * x + self.scale * self.branch(x)

    def extra_repr(self) -> str:
        return f"skip={self.skip.tolist()}, scale={self.scale.tolist()}"


class Network(nn.Module):
    """A stack of blocks applied in order: X_l = block_l(X_{l-1}), tokens ``(..., n, d)``."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return x
