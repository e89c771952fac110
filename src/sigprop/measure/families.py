"""What a "token" and a "layer" are in each family of networks that ``diagnose`` measures.

The measurements (``model_probe.py``) are made on tokens: a tensor (members, n, d) per layer.
Each family says what its n tokens of width d are, how its hidden state of layer l reads as
tokens (``to_tokens``) and back (``from_tokens``), and what drives the model:

* ``transformer``: tokens are the sequence positions of the hidden states (batch, n, d) between
  blocks; layers are the blocks. Inputs: the model's own embeddings of random token ids
  (Hugging Face) or orthogonal tokens |x_i|² = d.
* ``convolutional``: tokens are the spatial positions of a feature map (batch, C, H, W), read as
  n = H·W tokens of width d = C; layers are the residual blocks (torchvision's BasicBlock and
  Bottleneck: every block of layer1 … layer4, in order). X_0 is the feature map leaving the stem
  for an image with N(0, 1) pixels drawn per seed (64×64 by default, so that ResNet-18's last
  stage keeps 2×2 positions). Channels and resolution change between stages, so q, ρ are per
  layer at that layer's own shape, and log_jac = log(‖J_l‖_F² / numel(X_0)) is the per-entry
  gain of back-propagated gradients (a stage that halves the number of entries does not count
  as gradient growth).
  BatchNorm: the model runs in eval mode, with every BatchNorm's running statistics set first
  to the batch statistics (biased variance, as training normalizes) of a batch of
  ``CALIBRATION`` images of the seed (the measured image among them). So each block applies the
  normalization a training step applies to that batch, while the members of the jvp pass stay
  independent. Left out is the derivative through the batch statistics themselves: O(1/(B H W))
  per entry and block, but it accumulates where the maps are small. On a width-8 ResNet-18 it
  lowers log_jac_L by 0.35 at 64×64 inputs (B = 8) and by about 2 at 32×32, where the last
  stage has B·H·W = 8 entries per channel; hence the 64×64 default (larger is closer). Eval mode with the initial running statistics (mean 0, variance 1) would measure a
  network without normalization, which is not what trains; train mode inside the jvp pass
  would mix the probes with each other and with the collapsed member.
  Zero padding gives border positions a signal of their own, so identical positions do not stay
  identical: λ_a (the collapsed member) is measured with every padded convolution of the blocks
  switched to circular padding, the translation-invariant bulk of the network (border effects
  vanish as H, W grow); the per-layer geometry and log_jac use the model's own padding.
  A layer with fewer than 2 positions has no token geometry (NaN, with a warning).
* ``recurrent``: an nn.RNN/LSTM/GRU unrolled over T steps (``sigprop.models.recurrent``) is a
  T-layer network with tied weights; layers are time steps. Tokens are n copies of the network
  driven by the same input sequence (N(0, 1) entries per seed) from n orthogonal initial states
  (|h_0|² = D): ρ_t → 1 means it forgets where it started. The state is h_t, or (h_t, c_t) for
  an LSTM.
* ``graph``: tokens are the nodes, layers the message-passing layers. A graph convolution
  X ← φ(Â X W) with Â = D^{-1/2}(A + I)D^{-1/2} over-smooths towards X = u xᵀ, u the Perron
  vector of Â (u_i ∝ sqrt(deg_i + 1)), not towards equal nodes. So node i's token is
  y_i = x_i / u_i (u scaled to mean u_i² = 1): over-smoothing is y_i → one common x, ρ → 1,
  exactly the existing geometry, and for a positively homogeneous φ (ReLU, identity) the
  smooth line is invariant, as identical tokens are in a transformer. Inputs: orthogonal node
  tokens y_i, |y_i|² = d.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import Tensor, nn

from sigprop.measure.blocks import DiagnoseError, Run, TokensRun, _device_of, default_run
from sigprop.measure.ensemble import stream_seed

FAMILIES = ("transformer", "convolutional", "recurrent", "graph")
CALIBRATION = 8      # images whose batch statistics BatchNorm uses (the measured one included)
IMAGE_SIZE = 64      # default input resolution of a convolutional network


@dataclass(frozen=True)
class Nouns:
    """The family's words: one token, one layer, and what the tokens are."""

    family: str
    token: str
    layer: str
    definition: str


NOUNS = {
    "transformer": Nouns("transformer", "token", "block",
                         "tokens: the sequence positions of the hidden states between blocks; "
                         "layers: the blocks"),
    "convolutional": Nouns("convolutional", "spatial position", "residual block",
                           "tokens: the H·W spatial positions of a feature map (C, H, W), each "
                           "of width C; layers: the residual blocks"),
    "recurrent": Nouns("recurrent", "initial state", "time step",
                       "tokens: copies of the network driven by the same input sequence from "
                       "different initial states; layers: time steps"),
    "graph": Nouns("graph", "node", "message-passing layer",
                   "tokens: the nodes (features divided by the graph's Perron vector "
                   "u_i ∝ sqrt(deg_i + 1)); layers: the message-passing layers"),
}


def detect_family(model: nn.Module, family: str | None = None) -> str:
    """``family`` when given (checked), else: an nn.RNN/LSTM/GRU (or ``Unrolled``) → recurrent;
    a model with an ``adjacency`` tensor → graph; a model whose blocks hold an ``nn.Conv2d`` →
    convolutional; anything else → transformer."""
    from sigprop.models.recurrent import Unrolled

    if family is not None:
        if family not in FAMILIES:
            raise DiagnoseError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}")
        return family
    if isinstance(model, (nn.RNNBase, Unrolled)):
        return "recurrent"
    if isinstance(getattr(model, "adjacency", None), Tensor):
        return "graph"
    if any(isinstance(m, nn.Conv2d) for m in model.modules()):
        return "convolutional"
    return "transformer"


class Layout:
    """Transformers and recurrent networks: the hidden state already is (members, n, d)."""

    nouns: Nouns
    separate_collapse = False

    def __init__(self, family: str) -> None:
        self.nouns = NOUNS[family]

    def to_tokens(self, x: Tensor) -> Tensor:
        return x

    def from_tokens(self, tokens: Tensor, like: Tensor) -> Tensor:
        return tokens.reshape(tokens.shape[0], *like.shape[1:])

    def prepare(self, model: nn.Module, seed: int) -> list[str]:
        """Per-measurement setup of the model (BatchNorm statistics); returns warnings."""
        return []

    @contextlib.contextmanager
    def collapse_mode(self) -> Iterator[None]:
        yield


class FeatureMapLayout(Layout):
    """(members, C, H, W) ↔ (members, H·W, C); BatchNorm calibration; circular padding for
    the collapsed member."""

    separate_collapse = True

    def __init__(self, model: nn.Module, blocks: list[nn.Module], run: ImageRun) -> None:
        super().__init__("convolutional")
        self.model, self.blocks, self.run = model, blocks, run

    def to_tokens(self, x: Tensor) -> Tensor:
        if x.ndim != 4:
            raise DiagnoseError(f"expected feature maps (batch, C, H, W); got shape "
                                f"{tuple(x.shape)}")
        return x.flatten(2).transpose(1, 2)

    def from_tokens(self, tokens: Tensor, like: Tensor) -> Tensor:
        return tokens.transpose(1, 2).reshape(tokens.shape[0], *like.shape[1:])

    def prepare(self, model: nn.Module, seed: int) -> list[str]:
        calibrate_batch_norm(model, self.run.images(seed, CALIBRATION))
        return []

    @contextlib.contextmanager
    def collapse_mode(self) -> Iterator[None]:
        padded = [m for block in self.blocks for m in block.modules()
                  if isinstance(m, nn.Conv2d) and m.padding_mode == "zeros"
                  and (isinstance(m.padding, str) or any(m.padding))]
        for conv in padded:
            conv.padding_mode = "circular"
        try:
            yield
        finally:
            for conv in padded:
                conv.padding_mode = "zeros"


class GraphLayout(Layout):
    """Node features x_i ↔ tokens y_i = x_i / u_i, u the Perron vector of the adjacency."""

    def __init__(self, adjacency: Tensor) -> None:
        super().__init__("graph")
        self.scale = perron_vector(adjacency)

    def to_tokens(self, x: Tensor) -> Tensor:
        return x / self.scale.to(x)[:, None]

    def from_tokens(self, tokens: Tensor, like: Tensor) -> Tensor:
        return tokens.reshape(tokens.shape[0], *like.shape[1:]) * self.scale.to(tokens)[:, None]


def perron_vector(adjacency: Tensor) -> Tensor:
    """u > 0 with Â u = λ_max u, scaled to mean u_i² = 1 (u_i ∝ sqrt(deg_i + 1) for the
    symmetric normalization, u = 1 for a row-stochastic Â)."""
    matrix = adjacency.detach().to(device="cpu", dtype=torch.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] < 2:
        raise DiagnoseError(f"the adjacency must be a square matrix of 2 or more nodes; got "
                            f"shape {tuple(matrix.shape)}")
    values, vectors = torch.linalg.eig(matrix)
    top = int(values.real.argmax())
    vector = vectors[:, top].real
    vector = vector * torch.sign(vector.sum())
    if not bool((vector > 1e-9 * vector.abs().max()).all()):
        raise DiagnoseError("the graph's adjacency has no positive leading eigenvector (is the "
                            "graph connected?); over-smoothing has no single limit")
    return vector / vector.square().mean().sqrt()


class ImageRun:
    """``model(image)``: one image (1, channels, size, size) with N(0, 1) pixels per seed, the
    first of the seed's calibration batch (``images``)."""

    def __init__(self, size: int, channels: int) -> None:
        self.size, self.channels = size, channels

    def images(self, seed: int, count: int) -> Tensor:
        generator = torch.Generator().manual_seed(stream_seed(seed, "images"))
        return torch.randn(count, self.channels, self.size, self.size, generator=generator,
                           dtype=torch.float64)

    def __call__(self, model: nn.Module, n_tokens: int, seed: int) -> Any:
        parameter = next(model.parameters())
        return model(self.images(seed, 1).to(parameter))


class NodesRun(TokensRun):
    """A graph network: orthogonal node tokens y_i (|y_i|² = d), fed as x_i = u_i y_i."""

    def __init__(self, width: int, layout: GraphLayout) -> None:
        super().__init__(width)
        self.layout = layout

    def __call__(self, model: nn.Module, n_tokens: int, seed: int) -> Any:
        from sigprop.measure.geometry import simplex_tokens

        if n_tokens >= self.width:
            raise DiagnoseError(f"a graph of {n_tokens} nodes needs a width above {n_tokens} "
                                f"for orthogonal node features; got width {self.width}")
        y = simplex_tokens(n_tokens, self.width, 1.0, 0.0, seed=stream_seed(seed, "input tokens"))
        x = self.layout.from_tokens(y[None], y[None]).to(_device_of(model))
        return model(x.to(next(model.parameters()).dtype))


def calibrate_batch_norm(model: nn.Module, images: Tensor) -> None:
    """Set every BatchNorm's running mean and variance to the batch statistics of ``images``
    (one forward pass in eval mode: each BatchNorm's statistics are set from its own input just
    before it normalizes, so the pass itself is the training-mode pass)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        if norm.running_mean is None:
            raise DiagnoseError(f"{type(norm).__name__} without running statistics "
                                "(track_running_stats=False) normalizes every batch by its own "
                                "statistics, which would mix diagnose's independent members; "
                                "build it with track_running_stats=True")

    def set_statistics(module: nn.Module, args: tuple) -> None:
        x = args[0]
        dims = [0, *range(2, x.ndim)]
        module.running_mean.copy_(x.mean(dims))
        module.running_var.copy_(x.var(dims, unbiased=False))

    handles = [norm.register_forward_pre_hook(set_statistics) for norm in norms]
    try:
        with torch.no_grad():
            parameter = next(model.parameters())
            model(images.to(parameter))
    finally:
        for handle in handles:
            handle.remove()


def family_setup(model: nn.Module, family: str, blocks: list[nn.Module], width: int | None,
                 run: Run | None, image_size: int) -> tuple[Layout, Run, int | None]:
    """The layout, the run and (for graphs) the number of tokens n of ``model``."""
    if family == "convolutional":
        conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        if conv is None and run is None:
            raise DiagnoseError(f"{type(model).__name__} has no nn.Conv2d: a convolutional "
                                "network needs one to take images (or pass run=...)")
        image_run = run if run is not None else ImageRun(image_size, conv.in_channels)
        if not hasattr(image_run, "images"):
            raise DiagnoseError("a convolutional network's run needs an `images(seed, count)` "
                                "method for the BatchNorm batch; use ImageRun")
        return FeatureMapLayout(model, blocks, image_run), image_run, None
    if family == "graph":
        adjacency = getattr(model, "adjacency", None)
        if not isinstance(adjacency, Tensor):
            raise DiagnoseError(f"{type(model).__name__} has no `adjacency` tensor: a graph "
                                "network needs one (its nodes are the tokens)")
        layout = GraphLayout(adjacency)
        if run is None:
            from sigprop.measure.blocks import infer_width

            run = NodesRun(width if width is not None else infer_width(model, blocks), layout)
        return layout, run, adjacency.shape[-1]
    if family == "recurrent":
        from sigprop.models.recurrent import Unrolled

        if not isinstance(model, Unrolled):
            raise DiagnoseError(f"{type(model).__name__} is not an unrolled recurrent network: "
                                "pass an nn.RNN, nn.LSTM or nn.GRU (diagnose unrolls it)")
        return Layout("recurrent"), (run if run is not None else TokensRun(model.width)), None
    return Layout("transformer"), (run if run is not None else default_run(model, blocks, width)), None
