"""Next-token windows from a split: a random training stream and fixed evaluation windows."""

from __future__ import annotations

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view


class Batches:
    """Deterministic stream of (inputs, targets) windows from one split.

    Each call of :meth:`next` draws ``batch`` window starts uniformly from
    [0, len(tokens) − context − 1] with ``numpy.random.Generator(PCG64(seed))`` and returns the
    int64 ``(batch, context)`` inputs ``tokens[s : s + context]`` and targets
    ``tokens[s + 1 : s + context + 1]``. The same seed gives the same stream.
    """

    def __init__(self, tokens: np.ndarray, batch: int, context: int, seed: int):
        _check_tokens(tokens, context)
        if batch < 1:
            raise ValueError(f"batch must be >= 1; got {batch}")
        self.batch = batch
        self.context = context
        self.seed = seed
        # A view, not a copy: row s is tokens[s : s + context + 1].
        self._windows = sliding_window_view(np.asarray(tokens), context + 1)
        self._rng = np.random.default_rng(seed)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        starts = self._rng.integers(0, len(self._windows), size=self.batch)
        windows = torch.from_numpy(self._windows[starts].astype(np.int64))
        return windows[:, :-1].contiguous(), windows[:, 1:].contiguous()

    def __iter__(self) -> Batches:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.next()


def evaluation_windows(
    tokens: np.ndarray, context: int, max_windows: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed, non-overlapping windows covering the split, for validation and test loss.

    Window i has inputs ``tokens[i c : (i + 1) c]`` and targets shifted by one, for
    i < (len(tokens) − 1) // c (c = context), or only the first ``max_windows``. Every token
    but the first is a target at most once; the last (len(tokens) − 1) mod c are left out.
    Returns int64 tensors of shape ``(windows, context)``.
    """
    _check_tokens(tokens, context)
    count = (len(tokens) - 1) // context
    if max_windows is not None:
        if max_windows < 1:
            raise ValueError(f"max_windows must be >= 1 or None; got {max_windows}")
        count = min(count, max_windows)
    tokens = np.asarray(tokens)
    inputs = tokens[: count * context].reshape(count, context)
    targets = tokens[1 : count * context + 1].reshape(count, context)
    return torch.from_numpy(inputs.astype(np.int64)), torch.from_numpy(targets.astype(np.int64))


def _check_tokens(tokens: np.ndarray, context: int) -> None:
    tokens = np.asarray(tokens)
    if tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(
            f"tokens must be a 1-D integer array; got shape {tokens.shape}, dtype {tokens.dtype}"
        )
    if context < 1:
        raise ValueError(f"context must be >= 1; got {context}")
    if context >= len(tokens):
        raise ValueError(
            f"context must be < len(tokens) = {len(tokens)} (one extra token for the target); "
            f"got {context}"
        )
