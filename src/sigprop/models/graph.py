"""Graph convolutional networks (Kipf & Welling 2017) without torch_geometric.

``random_graph`` draws a connected Erdős–Rényi graph and returns its symmetric-normalized
adjacency with self loops Â = D^{-1/2}(A + I)D^{-1/2}; ``GCN`` stacks message-passing layers
X ← φ(Â X W) (optionally X + φ(Â X W)) on node features of shape (batch, n_nodes, d), kept in the
``nn.ModuleList`` ``layers`` so that ``sigprop diagnose`` finds them. The adjacency is the buffer
``adjacency`` (how diagnose recognizes a graph network and its nodes).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def random_graph(n_nodes: int, mean_degree: float = 4.0, seed: int = 0, *,
                 connected: bool = True, dtype: torch.dtype = torch.float64) -> Tensor:
    """Â = D^{-1/2}(A + I)D^{-1/2} of an Erdős–Rényi graph G(n, p = mean_degree / (n − 1)),
    (n_nodes, n_nodes), symmetric. With ``connected`` (default) graphs are redrawn from the same
    generator until connected (up to 1000 draws), so that over-smoothing has one limit."""
    if isinstance(n_nodes, bool) or not isinstance(n_nodes, int) or n_nodes < 2:
        raise ValueError(f"n_nodes must be an integer >= 2; got {n_nodes!r}")
    if not 0 < mean_degree <= n_nodes - 1:
        raise ValueError(f"mean_degree must be in (0, n_nodes - 1 = {n_nodes - 1}]; "
                         f"got {mean_degree}")
    generator = torch.Generator().manual_seed(seed)
    p = mean_degree / (n_nodes - 1)
    for _ in range(1000):
        upper = (torch.rand(n_nodes, n_nodes, generator=generator) < p).triu(1)
        adjacency = (upper | upper.T).to(dtype)
        if not connected or _connected(adjacency):
            break
    else:
        raise ValueError(f"no connected graph in 1000 draws at n_nodes {n_nodes}, mean degree "
                         f"{mean_degree}; raise the mean degree")
    return normalized_adjacency(adjacency)


def normalized_adjacency(adjacency: Tensor) -> Tensor:
    """D^{-1/2}(A + I)D^{-1/2}, D the degrees of A + I."""
    looped = adjacency + torch.eye(adjacency.shape[0], dtype=adjacency.dtype)
    scale = looped.sum(1).rsqrt()
    return scale[:, None] * looped * scale[None, :]


def _connected(adjacency: Tensor) -> bool:
    reached = torch.zeros(adjacency.shape[0], dtype=torch.bool)
    reached[0] = True
    for _ in range(adjacency.shape[0]):
        grown = reached | (adjacency[reached].sum(0) > 0)
        if torch.equal(grown, reached):
            break
        reached = grown
    return bool(reached.all())


_ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "identity": lambda x: x,
                "linear": lambda x: x}


class GraphConvolution(nn.Module):
    """X ↦ φ(Â X W) (or X + φ(Â X W) with ``residual``), W (d, d) ~ N(0, σ_w²/d), no bias."""

    def __init__(self, width: int, adjacency: Tensor, activation: str = "relu",
                 sigma_w: float = math.sqrt(2.0), residual: bool = False) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(_ACTIVATIONS)}; "
                             f"got {activation!r}")
        self.weight = nn.Parameter(torch.randn(width, width) * (sigma_w / math.sqrt(width)))
        self.register_buffer("adjacency", adjacency.clone())
        self.activation, self.residual = activation, residual

    def forward(self, x: Tensor) -> Tensor:
        out = _ACTIVATIONS[self.activation](self.adjacency.to(x.dtype) @ x @ self.weight)
        return x + out if self.residual else out


class GCN(nn.Module):
    """``depth`` graph convolutions X ← φ(Â X W) on node features (batch, n_nodes, width).

    ``adjacency``: the (normalized) adjacency Â, e.g. ``random_graph(...)``; weights
    W ~ N(0, σ_w²/width) (default σ_w = √2, He's scale for ReLU)."""

    def __init__(self, depth: int, width: int, adjacency: Tensor, activation: str = "relu",
                 sigma_w: float = math.sqrt(2.0), residual: bool = False) -> None:
        super().__init__()
        for name, value in (("depth", depth), ("width", width)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
        adjacency = torch.as_tensor(adjacency)
        if adjacency.ndim != 2 or adjacency.shape[0] != adjacency.shape[1]:
            raise ValueError(f"adjacency must be a square matrix; got shape "
                             f"{tuple(adjacency.shape)}")
        self.width = width
        self.register_buffer("adjacency", adjacency.clone())
        self.layers = nn.ModuleList(
            GraphConvolution(width, adjacency, activation, sigma_w, residual)
            for _ in range(depth)
        )

    @property
    def n_nodes(self) -> int:
        return self.adjacency.shape[0]

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x
