"""A recurrent network unrolled over time: T steps of the user's own ``nn.RNN``/``nn.LSTM``/
``nn.GRU`` as a T-layer network with tied weights (Chen, Pennington & Schoenholz 2018).

``Unrolled(rnn, steps, input_seed)`` drives ``rnn`` with one fixed input sequence x_1 … x_T
(N(0, 1) entries drawn from ``input_seed``, shared by every batch row) and maps initial states
to the state after each step. Its ``steps`` (an ``nn.ModuleList`` of ``Step``) are the layers:
step t calls ``rnn`` itself on the single input x_t, so the module's own weights, biases and
gates are used, and the block machinery of ``sigprop diagnose`` (hooks on every layer) applies
unchanged.

The state is a tensor (batch, n, D): n independent copies per batch row (flattened into the
RNN's batch). For ``nn.RNN`` and ``nn.GRU`` it is h_t (D = hidden_size); for ``nn.LSTM`` it is
the concatenation (h_t, c_t) (D = proj_size or hidden_size, plus hidden_size): the LSTM is a
Markov chain in (h, c), not in h alone, and the gradient through time flows mostly through the
cell c (the constant error carousel), so ∂(h_t, c_t)/∂(h_0, c_0) is the Jacobian whose growth
tells whether gradients vanish or explode. Only single-layer, unidirectional RNNs (the top layer
of a stack is not a Markov chain on its own) are accepted.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def check_recurrent(rnn: nn.Module) -> None:
    """Raise ``ValueError`` unless ``rnn`` is a single-layer, unidirectional nn.RNN/LSTM/GRU."""
    if not isinstance(rnn, nn.RNNBase):
        raise ValueError(f"expected an nn.RNN, nn.LSTM or nn.GRU; got {type(rnn).__name__}")
    if rnn.bidirectional:
        raise ValueError(f"{type(rnn).__name__} is bidirectional: its states at step t depend on "
                         "later inputs, so time steps are not layers; diagnose a unidirectional "
                         "one")
    if rnn.num_layers != 1:
        raise ValueError(f"{type(rnn).__name__} has num_layers={rnn.num_layers}: diagnose "
                         "unrolls single-layer recurrent networks only (build each layer as its "
                         "own num_layers=1 module to diagnose it)")


def state_width(rnn: nn.RNNBase) -> int:
    """D: hidden_size, or for an LSTM (proj_size or hidden_size) + hidden_size (h and c)."""
    if isinstance(rnn, nn.LSTM):
        return (rnn.proj_size or rnn.hidden_size) + rnn.hidden_size
    return rnn.hidden_size


class Step(nn.Module):
    """One time step: state (batch, n, D) and input x_t (input_size,) ↦ next state."""

    def __init__(self, unrolled: Unrolled, index: int) -> None:
        super().__init__()
        self.index = index
        self._owner = (unrolled,)  # not a submodule: the RNN is registered once, on Unrolled

    def forward(self, state: Tensor, x: Tensor) -> Tensor:
        return self._owner[0].step(state, x)


class Unrolled(nn.Module):
    """``rnn`` unrolled over ``steps`` time steps on one input sequence drawn from
    ``input_seed``; ``forward(h0)`` maps initial states (batch, n, D) to the state after the last
    step (``width`` = D, see ``state_width``)."""

    def __init__(self, rnn: nn.RNNBase, steps: int, input_seed: int = 0) -> None:
        super().__init__()
        check_recurrent(rnn)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1; got {steps!r}")
        self.rnn = rnn
        self.width = state_width(rnn)
        self.hidden = (rnn.proj_size or rnn.hidden_size) if isinstance(rnn, nn.LSTM) \
            else rnn.hidden_size
        weight = rnn.weight_ih_l0
        generator = torch.Generator().manual_seed(input_seed)
        inputs = torch.randn(steps, rnn.input_size, generator=generator, dtype=torch.float64)
        self.register_buffer("inputs", inputs.to(dtype=weight.dtype, device=weight.device))
        self.steps = nn.ModuleList(Step(self, t) for t in range(steps))

    def forward(self, state: Tensor) -> Tensor:
        for t, step in enumerate(self.steps):
            state = step(state, self.inputs[t])
        return state

    def step(self, state: Tensor, x: Tensor) -> Tensor:
        """One call of the RNN on a one-step sequence; every row of ``state`` is its own copy."""
        shape = state.shape
        flat = state.reshape(-1, shape[-1])
        rows = flat.shape[0]
        sequence = x.reshape(1, 1, -1).expand(1, rows, x.shape[-1])
        if self.rnn.batch_first:
            sequence = sequence.transpose(0, 1)
        if isinstance(self.rnn, nn.LSTM):
            h, c = flat[:, :self.hidden], flat[:, self.hidden:]
            _, (h, c) = self.rnn(sequence, (h[None].contiguous(), c[None].contiguous()))
            new = torch.cat([h[0], c[0]], dim=-1)
        else:
            _, h = self.rnn(sequence, flat[None].contiguous())
            new = h[0]
        return new.reshape(shape)

    def extra_repr(self) -> str:
        return f"steps={len(self.steps)}, state width={self.width}"
