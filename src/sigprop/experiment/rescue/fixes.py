"""The published fixes the rescue suite compares ``sigprop.critical_init`` with, each applied in
place to a freshly built model of ``sigprop.experiment.rescue.models`` (redrawn weights use
torch's global generator, which the trial seeds).

Post-LN transformers (``CausalLM`` of ``nn.TransformerEncoderLayer``, or a Hugging Face
BERT; N blocks):

* ``deepnorm`` — DeepNet (Wang et al. 2022, §3 and Fig. 2; decoder-only constants): each
  sublayer computes LN(α x + f(x)), α = (2N)^{1/4}; fc1, fc2, the value and output maps drawn
  Xavier-normal with gain β = (8N)^{-1/4}, query and key with gain 1 (each a d × d matrix, not
  the packed 3d × d one). LN(α x + f) = LN(x + f/α) exactly (LayerNorm is scale invariant up
  to its ε), so α is a forward hook dividing each branch's output by α: the same function of
  the same parameters, and the same Adam trajectory.
* ``admin`` — Admin without profiling (Liu et al. 2020; the constant-scalar form of
  admin-torch, output change O(log n)): LN(ω x + f(x)) with ω = sqrt((n + 1)/ln(n + 1) − 1),
  n = 2N sublayers, as a hook dividing each branch by ω. (A Post-LN decoder-only LM was not
  in their paper: n = 2N is the transfer the method's definition gives.)
* ``warmup`` — learning-rate warm-up (Xiong et al. 2020): not a change of the model but of the
  training (``ARM_TRAINING``), linear over the first 10 % of the steps.

Transformers without normalization (``CausalLM`` of ``NoNormBlock``):

* ``rezero`` — ReZero (Bachlechner et al. 2021): x ← x + α F(x) with one learnable α per
  block, shared by its two sublayers, initialized to 0.
* ``fixup`` — Fixup's transformer (Zhang et al. 2019; the authors' fairseq code), L = 2N
  branches: the output map and fc2 set to 0, fc1 × L^{-1/2}, the query, key and value maps
  × L^{-1/6} (on Xavier).
* ``tfixup`` — T-Fixup (Huang et al. 2020), its encoder rule: value and output maps, fc1, fc2
  drawn Xavier × 0.67 N^{-1/4}; the token embedding N(0, (9N)^{-1/2}) (the decoder's input
  scale; the model has no normalization in its blocks, as T-Fixup requires).
* ``dyt`` — Dynamic Tanh (Zhu et al. 2025): DyT(x) = γ tanh(α x) + β, α learnable from
  α0 = 0.5, γ = 1, β = 0, inserted before each branch (x ← x + F(DyT(x))): the norm-free
  block gets the element-wise norm of the paper's Pre-LN models.

Deep networks without residuals: ``orthogonal`` (Saxe et al. 2014; Pennington et al. 2017:
orthogonal W of gain σ_w = sqrt(1.05) and biases N(0, 2e-5), a point of tanh's critical line
with small q*), ``he`` (He et al. 2015: N(0, 2/fan_in), biases 0, for ReLU) and
``delta_orthogonal`` (Xiao et al. 2018: a convolution's centre tap an orthogonal matrix of gain
sqrt(2) for ReLU, every other tap 0, biases 0).

Recurrent networks: ``forget_bias`` (Gers et al. 2000; Józefowicz et al. 2015: the bias of the
gate that keeps the old state + 1: an LSTM's forget gate, a GRU's update gate z, which in
PyTorch multiplies the old state) and ``chrono`` (Tallec & Ollivier 2018: that bias
~ log U[1, T_max − 1] per unit, T_max the task's lag; an LSTM's input-gate bias its negative),
set on ``bias_ih`` with the matching ``bias_hh`` slice 0 (their sum is the gate's bias).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from sigprop.experiment.rescue.models import NoNormBlock

WARMUP_SHARE = 0.1  # the warm-up arm's linear warm-up, as a share of the training steps


def deepnorm(model: nn.Module) -> nn.Module:
    blocks = _post_ln_blocks(model)
    n = len(blocks)
    alpha, beta = (2 * n) ** 0.25, (8 * n) ** -0.25
    with torch.no_grad():
        for block in blocks:
            for weight, gain in _deepnorm_gains(block, beta):
                nn.init.xavier_normal_(weight, gain=gain)
    _divide_branches(blocks, alpha)
    return model


def admin(model: nn.Module) -> nn.Module:
    blocks = _post_ln_blocks(model)
    n = 2 * len(blocks)
    _divide_branches(blocks, math.sqrt((n + 1) / math.log(n + 1) - 1))
    return model


def rezero(model: nn.Module) -> nn.Module:
    for block in _blocks(model, NoNormBlock):
        alpha = nn.Parameter(torch.zeros(()))
        block.branch_attention = Scale(alpha)
        block.branch_mlp = Scale(alpha)
    return model


def fixup(model: nn.Module) -> nn.Module:
    blocks = _blocks(model, NoNormBlock)
    branches = 2 * len(blocks)
    with torch.no_grad():
        for block in blocks:
            for weight in _qkv(block.self_attn):
                nn.init.xavier_uniform_(weight)
                weight.mul_(branches ** (-1 / 6))
            block.self_attn.out_proj.weight.zero_()
            block.linear1.weight.mul_(branches ** -0.5)
            block.linear2.weight.zero_()
    return model


def tfixup(model: nn.Module) -> nn.Module:
    blocks = _blocks(model, NoNormBlock)
    n = len(blocks)
    scale = 0.67 * n ** -0.25
    with torch.no_grad():
        for block in blocks:
            _, _, value = _qkv(block.self_attn)
            for weight in (value, block.self_attn.out_proj.weight, block.linear1.weight,
                           block.linear2.weight):
                nn.init.xavier_uniform_(weight)
                weight.mul_(scale)
        nn.init.normal_(model.embedding.weight, std=(9 * n) ** -0.5)
    return model


def dyt(model: nn.Module) -> nn.Module:
    for block in _blocks(model, NoNormBlock):
        width = block.linear1.in_features
        block.pre_attention = DyT(width)
        block.pre_mlp = DyT(width)
    return model


def orthogonal(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        for layer in _layers(model, nn.Linear):
            nn.init.orthogonal_(layer.weight, gain=math.sqrt(1.05))
            nn.init.normal_(layer.bias, std=math.sqrt(2e-5))
    return model


def he(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        for layer in _layers(model, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)
    return model


def delta_orthogonal(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        for layer in _layers(model, nn.Conv2d):
            out, inputs, height, width = layer.weight.shape
            layer.weight.zero_()
            centre = torch.empty(out, inputs)
            nn.init.orthogonal_(centre, gain=math.sqrt(2.0))
            layer.weight[:, :, (height - 1) // 2, (width - 1) // 2] = centre
            nn.init.zeros_(layer.bias)
    return model


def forget_bias(model: nn.Module) -> nn.Module:
    rnn = model.rnn
    hidden = rnn.hidden_size
    with torch.no_grad():
        rnn.bias_ih_l0[hidden:2 * hidden] = 1.0
        rnn.bias_hh_l0[hidden:2 * hidden] = 0.0
    return model


def chrono(model: nn.Module, t_max: int) -> nn.Module:
    rnn = model.rnn
    hidden = rnn.hidden_size
    with torch.no_grad():
        keep = torch.log(torch.empty(hidden).uniform_(1.0, float(t_max - 1)))
        rnn.bias_ih_l0[hidden:2 * hidden] = keep
        rnn.bias_hh_l0[hidden:2 * hidden] = 0.0
        if isinstance(rnn, nn.LSTM):
            rnn.bias_ih_l0[:hidden] = -keep
            rnn.bias_hh_l0[:hidden] = 0.0
    return model


class Scale(nn.Module):
    """x ↦ α x with a learnable scalar α (shared by every module holding it)."""

    def __init__(self, alpha: nn.Parameter) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.alpha * x


class DyT(nn.Module):
    """DyT(x) = γ ⊙ tanh(α x) + β: α a learnable scalar from ``alpha0``, γ = 1, β = 0 per
    channel (Zhu et al. 2025)."""

    def __init__(self, width: int, alpha0: float = 0.5) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.tensor(float(alpha0)))
        self.weight = nn.Parameter(torch.ones(width))
        self.bias = nn.Parameter(torch.zeros(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * torch.tanh(self.alpha * x) + self.bias


FIXES: dict[str, Callable[[nn.Module], nn.Module]] = {
    "deepnorm": deepnorm, "admin": admin, "rezero": rezero, "fixup": fixup, "tfixup": tfixup,
    "dyt": dyt, "orthogonal": orthogonal, "he": he, "delta-orthogonal": delta_orthogonal,
    "forget-bias": forget_bias,
}
"""Every fix that needs only the model (``chrono`` needs the task's lag too)."""


def _blocks(model: nn.Module, kind: type) -> list[nn.Module]:
    blocks = [block for block in model.blocks if isinstance(block, kind)]
    if len(blocks) != len(model.blocks) or not blocks:
        raise ValueError(f"this fix needs blocks of type {kind.__name__}; got "
                         f"{type(model.blocks[0]).__name__}")
    return blocks


def _layers(model: nn.Module, kind: type) -> list[nn.Module]:
    layers = [m for m in model.modules() if isinstance(m, kind)]
    if not layers:
        raise ValueError(f"this fix needs {kind.__name__} layers")
    return layers


def _qkv(attention: nn.MultiheadAttention) -> tuple[torch.Tensor, ...]:
    """The query, key and value maps: views of the packed in_proj_weight (3d × d)."""
    return attention.in_proj_weight.chunk(3, dim=0)


def _post_ln_blocks(model: nn.Module) -> list[nn.Module]:
    """The Post-LN blocks: ``nn.TransformerEncoderLayer`` of a ``CausalLM``, or the layers of
    a Hugging Face BERT (``bert.encoder.layer``)."""
    if hasattr(model, "bert"):
        return list(model.bert.encoder.layer)
    return _blocks(model, nn.TransformerEncoderLayer)


def _deepnorm_gains(block: nn.Module, beta: float) -> list[tuple[torch.Tensor, float]]:
    """(weight, Xavier gain) of DeepNorm: query and key 1; value, output map, fc1, fc2 β."""
    if isinstance(block, nn.TransformerEncoderLayer):
        query, key, value = _qkv(block.self_attn)
        return [(query, 1.0), (key, 1.0), (value, beta), (block.self_attn.out_proj.weight, beta),
                (block.linear1.weight, beta), (block.linear2.weight, beta)]
    attention = block.attention  # Hugging Face BERT: nn.Linear (out × in) everywhere
    return [(attention.self.query.weight, 1.0), (attention.self.key.weight, 1.0),
            (attention.self.value.weight, beta), (attention.output.dense.weight, beta),
            (block.intermediate.dense.weight, beta), (block.output.dense.weight, beta)]


def _branch_exits(block: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The modules each branch's output leaves through before the residual sum: dropout1 and
    dropout2 of ``nn.TransformerEncoderLayer``; the output maps of a Hugging Face BERT layer."""
    if isinstance(block, nn.TransformerEncoderLayer):
        return block.dropout1, block.dropout2
    return block.attention.output.dense, block.output.dense


def _divide_branches(blocks: list[nn.Module], factor: float) -> None:
    """LN(factor · x + f(x)) = LN(x + f(x)/factor): each branch's output, as it leaves
    (``_branch_exits``), divided by ``factor``."""
    for block in blocks:
        for exit_ in _branch_exits(block):
            exit_.register_forward_hook(lambda module, inputs, output, f=factor: output / f)
