"""What a model is trained on: a training stream, held-out data, and the loss it is scored by.

A ``Task`` gives training batches from a seed (the same seed, the same batches in the same
order: models differ only by their initialization), fixed held-out splits, and the loss: the
mean cross-entropy (nats) over the scored positions of ``model(inputs)`` (targets equal to
``IGNORE`` are not scored), and the accuracy over the same positions. ``chance`` is the loss of
the best prediction that ignores the input on the training stream, the plateau a model that
does not train stays on; ``held_out_chance`` is that prediction's loss on a held-out split
(for Shakespeare's test windows 3.61 nats/char against 3.34 in training: the splits are other
plays).

* ``CharLM``: next-character prediction on a ``CharCorpus`` (default Shakespeare) in windows of
  ``context`` characters; chance is the unigram entropy of the training split.
* ``CopyMemory``: recall 10 symbols after a lag of ``lag`` steps (``sigprop.data.memory``);
  chance log 8 per recalled symbol.
* ``Digits``: classify 8 × 8 handwritten digits (``sigprop.data.digits``); chance log 10.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from sigprop.data import Batches, CharCorpus, evaluation_windows, shakespeare
from sigprop.data.memory import IGNORE, copy_memory_batch, memory_chance

HELD_OUT = ("validation", "test")


class Task:
    """The interface every task implements (module docstring)."""

    name: str = "task"

    @property
    def chance(self) -> float:
        raise NotImplementedError

    def train_batches(self, batch: int, seed: int) -> Iterator[tuple[Tensor, Tensor]]:
        raise NotImplementedError

    def held_out(self, split: str, limit: int | None = None) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        raise NotImplementedError

    def held_out_chance(self, split: str, limit: int | None = None) -> float:
        """The loss on ``held_out(split, limit)`` of the input-independent prediction behind
        ``chance`` (the training stream's frequencies of the targets)."""
        _, targets = self.held_out(split, limit)
        scored = targets[targets != IGNORE].numpy()
        frequencies = self._target_frequencies()
        return float(-np.log(frequencies[scored]).mean())

    def _target_frequencies(self) -> np.ndarray:
        raise NotImplementedError

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Mean cross-entropy over the scored positions (targets ≠ ``IGNORE``)."""
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                               ignore_index=IGNORE)

    def correct(self, logits: Tensor, targets: Tensor) -> tuple[int, int]:
        """(right answers, scored positions): the accuracy's numerator and denominator."""
        scored = targets != IGNORE
        right = (logits.argmax(dim=-1) == targets) & scored
        return int(right.sum()), int(scored.sum())


@dataclass(frozen=True, eq=False)
class CharLM(Task):
    """Next-character prediction on ``corpus`` (default: ``sigprop.data.shakespeare()``) in
    windows of ``context`` characters; training windows by ``sigprop.data.Batches``, held-out
    windows the first non-overlapping ones of each split (``evaluation_windows``)."""

    context: int = 64
    corpus: CharCorpus | None = None
    name: str = "shakespeare"

    def __post_init__(self) -> None:
        if isinstance(self.context, bool) or not isinstance(self.context, int) or self.context < 1:
            raise ValueError(f"context must be an integer >= 1; got {self.context!r}")
        if self.corpus is None:
            object.__setattr__(self, "corpus", shakespeare())

    @property
    def chance(self) -> float:
        """The unigram entropy of the training split (nats/char)."""
        counts = np.bincount(self.corpus.train, minlength=self.corpus.vocab_size)
        p = counts[counts > 0] / counts.sum()
        return float(-(p * np.log(p)).sum())

    def _target_frequencies(self) -> np.ndarray:
        counts = np.bincount(self.corpus.train, minlength=self.corpus.vocab_size)
        return counts / counts.sum()

    def train_batches(self, batch: int, seed: int) -> Iterator[tuple[Tensor, Tensor]]:
        return iter(Batches(self.corpus.train, batch, self.context, int(seed)))

    def held_out(self, split: str, limit: int | None = None) -> tuple[Tensor, Tensor]:
        return evaluation_windows(self.corpus.split(_split(split)), self.context, limit)

    def describe(self) -> dict[str, Any]:
        return {"task": self.name, "context": self.context, "vocab_size": self.corpus.vocab_size,
                "chance": self.chance}


@dataclass(frozen=True)
class CopyMemory(Task):
    """Recall ``length`` symbols of ``symbols`` after ``lag`` steps (``sigprop.data.memory``);
    held-out sets of ``held_out_size`` sequences from their own fixed streams."""

    lag: int = 128
    symbols: int = 8
    length: int = 10
    held_out_size: int = 512
    name: str = "copy-memory"

    @property
    def chance(self) -> float:
        return memory_chance(self.symbols)

    @property
    def vocab_size(self) -> int:
        """Blank, the data symbols and the delimiter."""
        return self.symbols + 2

    def _target_frequencies(self) -> np.ndarray:
        frequencies = np.zeros(self.vocab_size)
        frequencies[1:self.symbols + 1] = 1 / self.symbols  # the recalled symbols, uniform
        return frequencies

    def train_batches(self, batch: int, seed: int) -> Iterator[tuple[Tensor, Tensor]]:
        rng = np.random.default_rng([int(seed), 0])
        while True:
            yield copy_memory_batch(rng, batch, self.lag, self.symbols, self.length)

    def held_out(self, split: str, limit: int | None = None) -> tuple[Tensor, Tensor]:
        rng = np.random.default_rng([HELD_OUT.index(_split(split)), 1])
        count = self.held_out_size if limit is None else min(limit, self.held_out_size)
        return copy_memory_batch(rng, count, self.lag, self.symbols, self.length)

    def describe(self) -> dict[str, Any]:
        return {"task": self.name, "lag": self.lag, "symbols": self.symbols,
                "length": self.length, "chance": self.chance}


@dataclass(frozen=True)
class Digits(Task):
    """Classify 8 × 8 digits (``sigprop.data.digits``): images (B, 1, 8, 8) → logits (B, 10).
    Training batches draw images with replacement from the seed's generator."""

    name: str = "digits"

    @property
    def chance(self) -> float:
        return math.log(10)

    def _splits(self) -> dict:
        from sigprop.data.digits import digits

        return digits()

    def _target_frequencies(self) -> np.ndarray:
        labels = self._splits()["train"][1].numpy()
        return np.bincount(labels, minlength=10) / labels.size

    def train_batches(self, batch: int, seed: int) -> Iterator[tuple[Tensor, Tensor]]:
        images, labels = self._splits()["train"]
        generator = torch.Generator().manual_seed(int(seed))
        while True:
            rows = torch.randint(0, len(labels), (batch,), generator=generator)
            yield images[rows], labels[rows]

    def held_out(self, split: str, limit: int | None = None) -> tuple[Tensor, Tensor]:
        images, labels = self._splits()[_split(split)]
        return (images, labels) if limit is None else (images[:limit], labels[:limit])

    def describe(self) -> dict[str, Any]:
        return {"task": self.name, "classes": 10, "chance": self.chance}


def _split(split: str) -> str:
    if split not in HELD_OUT:
        raise ValueError(f"split must be one of {', '.join(HELD_OUT)}; got {split!r}")
    return split
