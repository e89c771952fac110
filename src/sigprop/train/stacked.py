"""A group of LMs trained as one stacked model: parameters with a leading member axis, ``vmap``
over members, one fused Adam, and per-member divergence bookkeeping.

A step evaluates every member's mean cross-entropy on one shared batch,

    losses = vmap(member ↦ CE(functional_call(template, member, inputs), targets))(params),

and back-propagates the sum over the members still training. Members share no parameter, and
the gradient of the sum with respect to member m's parameters is the gradient of loss_m alone,
so Adam over the stacked tensors (an elementwise update) is exactly one Adam per member.

Divergence. A member whose loss, or gradient, is NaN/inf is frozen at once: its loss is masked
out of the sum, and its gradients and Adam moments are zeroed before every later update, so
Adam leaves it where it is (an update is lr · m̂ / (sqrt(v̂) + ε) = 0). Nothing mixes members
but the masked sum, so a frozen member cannot reach the others. With finite gradients Adam's
steps stay bounded (about lr per coordinate): parameters cannot become non-finite.

Everything a run creates lives on the device of the stacked model it is given; losses and
the divergence bookkeeping come back to the CPU as numpy arrays.

The template the members are called through is one single-member LM per architecture and
device, shared by every group and every call: with ``compile`` the compiled step is then reused as long as the
group size stays the same (``torch.compile`` specializes on shapes).
"""

from __future__ import annotations

import functools
import warnings
from typing import Callable

import numpy as np
import torch
from torch import Tensor
from torch.func import functional_call, vmap

from sigprop.train.model import CausalLM, build_lm, cross_entropy


class StackedRun:
    """The members of one stacked ``CausalLM``, their Adam and which of them still train."""

    def __init__(self, model: CausalLM, template: CausalLM, *, lr: float, compile: bool) -> None:
        """``model``: the stacked members; ``template``: a single-member LM of the same
        architecture (``template_lm``) that they are called through."""
        self.params = dict(model.named_parameters())
        self.buffers = dict(model.named_buffers())
        self.members = model.embedding.shape[0]
        self.template = template
        self.optimizer = _adam(list(self.params.values()), lr)
        self.compiled = compile
        self.member_losses = _member_losses(self.template, compile)
        self.active = torch.ones(self.members, dtype=torch.bool, device=model.embedding.device)
        self.steps_done = np.zeros(self.members, dtype=int)

    def step(self, inputs: Tensor, targets: Tensor) -> np.ndarray:
        """One Adam step of every member still training; their losses before it (NaN if frozen)."""
        if not self.active.any():
            return np.full(self.members, np.nan)
        try:
            losses = self._gradients(inputs, targets)
        except Exception as error:  # noqa: BLE001 — any compiler failure: train without it
            if not self.compiled:
                raise
            warnings.warn(f"torch.compile failed, training without it: {type(error).__name__}: "
                          f"{str(error)[:200]}", RuntimeWarning, stacklevel=2)
            self.compiled = False
            self.member_losses = _member_losses(self.template, False)
            losses = self._gradients(inputs, targets)
        recorded = torch.where(self.active, losses, torch.nan)
        self.active &= self._finite_gradients()
        if not self.active.all():
            self._freeze(~self.active)
        self.optimizer.step()
        self.steps_done += self.active.cpu().numpy()
        return recorded.double().cpu().numpy()

    @torch.no_grad()
    def evaluate(self, inputs: Tensor, targets: Tensor, batch: int) -> np.ndarray:
        """Mean loss per token of every member on the windows ``inputs`` → ``targets``, ``batch``
        windows per pass (without compilation: evaluation is a few forward passes)."""
        per_member = _member_losses(self.template, False)
        total = torch.zeros(self.members, dtype=torch.float64, device=self.active.device)
        for start in range(0, len(inputs), batch):
            rows = slice(start, start + batch)
            count = len(inputs[rows])
            total += count * per_member(self.params, self.buffers, inputs[rows], targets[rows]).double()
        return (total / len(inputs)).cpu().numpy()

    def _gradients(self, inputs: Tensor, targets: Tensor) -> Tensor:
        """Forward and backward of the masked loss sum; freezes members whose loss is not finite.
        Returns the detached losses."""
        self.optimizer.zero_grad(set_to_none=False)
        losses = self.member_losses(self.params, self.buffers, inputs, targets)
        self.active &= torch.isfinite(losses.detach())
        torch.where(self.active, losses, 0.0).sum().backward()
        return losses.detach()

    def _finite_gradients(self) -> Tensor:
        """Per member: are all its gradients finite? (A sum is NaN/inf if any term is; finite
        gradients whose sum overflows float32 would be a divergence anyway.)"""
        sums = torch.stack([p.grad.reshape(self.members, -1).sum(dim=1) for p in self.params.values()])
        return torch.isfinite(sums.sum(dim=0))

    def _freeze(self, frozen: Tensor) -> None:
        """Zero the gradients and Adam moments of ``frozen`` members, so Adam leaves them."""
        for p in self.params.values():
            mask = frozen.reshape((-1,) + (1,) * (p.dim() - 1))
            p.grad.masked_fill_(mask, 0.0)
            state = self.optimizer.state.get(p, {})
            for name in ("exp_avg", "exp_avg_sq"):
                if name in state:
                    state[name].masked_fill_(mask, 0.0)


@functools.lru_cache(maxsize=None)
def template_lm(structure: tuple, vocab_size: int, depth: int, width: int,
                dtype: torch.dtype, device: torch.device = torch.device("cpu")) -> CausalLM:
    """A single-member LM with the structural options ``structure`` (``Architecture.structure``)
    on ``device`` (one per process and device: the compiled step is keyed on it); its own
    weights are never used."""
    return build_lm(dict(structure), vocab_size, depth=depth, width=width, dtype=dtype).to(device)


@functools.lru_cache(maxsize=None)
def _member_losses(template: CausalLM, compiled: bool) -> Callable[..., Tensor]:
    """(params, buffers, inputs, targets) ↦ every member's loss on the shared batch, shape (S,)."""

    def member_loss(params: dict, buffers: dict, inputs: Tensor, targets: Tensor) -> Tensor:
        return cross_entropy(functional_call(template, (params, buffers), (inputs,)), targets)

    losses = vmap(member_loss, in_dims=(0, 0, None, None))
    return torch.compile(losses, dynamic=False) if compiled else losses


def _adam(params: list[Tensor], lr: float) -> torch.optim.Adam:
    """Adam with the fused kernel (one pass per tensor; 6× faster than ``foreach`` here)."""
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, ValueError):  # a build without the fused CPU kernel
        return torch.optim.Adam(params, lr=lr)

