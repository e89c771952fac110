"""The copy-memory task (Hochreiter & Schmidhuber 1997; Arjovsky, Shah & Bengio 2016): recall a
few symbols after a long lag, the test of long-range memory for recurrent networks.

A sequence of ``lag + 2 k`` steps over ``symbols + 2`` tokens: k data symbols drawn uniformly
from 1..symbols, then ``lag − 1`` blanks (token 0), a delimiter (token symbols + 1) and k
blanks. The targets are "ignore" (``IGNORE``) everywhere but the last k steps, which must
reproduce the k data symbols in order. A network that forgets them can do no better than
guessing: log(symbols) nats per recalled symbol (``memory_chance``); one that remembers reaches
0. Data are drawn on the fly from a seeded generator, so a seed fixes the training stream.
"""

from __future__ import annotations

import math

import numpy as np
import torch

IGNORE = -100  # the target of a step that is not scored (torch's cross-entropy ignore_index)


def copy_memory_batch(rng: np.random.Generator, batch: int, lag: int, symbols: int = 8,
                      length: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch: inputs (batch, lag + 2 length) int64 and targets of the same shape (``IGNORE``
    but at the last ``length`` steps), drawn from ``rng``."""
    _check(lag, symbols, length)
    steps = lag + 2 * length
    data = rng.integers(1, symbols + 1, size=(batch, length))
    inputs = np.zeros((batch, steps), dtype=np.int64)
    inputs[:, :length] = data
    inputs[:, lag + length - 1] = symbols + 1  # the delimiter: recall now
    targets = np.full((batch, steps), IGNORE, dtype=np.int64)
    targets[:, -length:] = data
    return torch.from_numpy(inputs), torch.from_numpy(targets)


def memory_chance(symbols: int = 8) -> float:
    """The loss per recalled symbol of a network that has forgotten them: log(symbols)."""
    return math.log(symbols)


def _check(lag: int, symbols: int, length: int) -> None:
    for name, value, low in (("lag", lag, 1), ("symbols", symbols, 2), ("length", length, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")
