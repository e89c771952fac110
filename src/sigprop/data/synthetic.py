"""Synthetic algorithmic tasks: small, exactly understood, fast to learn."""

from __future__ import annotations

import math

import numpy as np

from sigprop.data.corpus import SPLITS, CharCorpus, make_corpus

SYMBOLS = "abcdefghijklmnopqrstuvwxyz"
SEPARATOR = "|"


def copy_task(
    n_symbols: int = 8,
    length: int = 16,
    n_train: int = 4096,
    n_eval: int = 512,
    seed: int = 0,
) -> CharCorpus:
    """Copy task: sequences ``x_1..x_L | x_1..x_L`` concatenated, x_i uniform over the symbols.

    The symbols are the first ``n_symbols`` lowercase letters (ids 0..n_symbols − 1) and the
    separator ``|`` has id ``n_symbols``. Train holds ``n_train`` sequences, validation and test
    ``n_eval`` each, drawn from independent streams of ``seed``. The copy half and the separator
    are determined by what came before, so a model that sees a whole sequence (context ≥
    2L + 1) can reach :func:`copy_task_entropy` ≈ log(n_symbols) / 2 per token, far below the
    log(n_symbols) of guessing.
    """
    if not 2 <= n_symbols <= len(SYMBOLS):
        raise ValueError(f"n_symbols must be in [2, {len(SYMBOLS)}]; got {n_symbols}")
    if length < 1:
        raise ValueError(f"length must be >= 1; got {length}")
    if n_train < 1:
        raise ValueError(f"n_train must be >= 1; got {n_train}")
    if n_eval < 1:
        raise ValueError(f"n_eval must be >= 1; got {n_eval}")
    counts = {"train": n_train, "validation": n_eval, "test": n_eval}
    streams = np.random.SeedSequence(seed).spawn(len(SPLITS))
    alphabet = np.array(list(SYMBOLS[:n_symbols]))
    splits = {}
    for name, stream in zip(SPLITS, streams):
        indices = np.random.default_rng(stream).integers(n_symbols, size=(counts[name], length))
        draws = alphabet[indices]
        separator = np.full((counts[name], 1), SEPARATOR)
        splits[name] = "".join(np.concatenate([draws, separator, draws], axis=1).reshape(-1))
    tag = f"copy(n_symbols={n_symbols}, length={length}, seed={seed})"
    documents = {name: (f"{tag}/{name}",) for name in SPLITS}
    # The vocab is fixed rather than read from the text: a tiny split can miss a symbol.
    return make_corpus(splits, documents, vocab=SYMBOLS[:n_symbols] + SEPARATOR)


def copy_task_entropy(n_symbols: int, length: int) -> float:
    """Least mean cross-entropy per token (nats) on the copy task: L log(n_symbols) / (2L + 1).

    Only the L random symbols of each 2L + 1 tokens are unpredictable; a model that does not
    yet know where a sequence starts (the first tokens of a window) does worse.
    """
    return length * math.log(n_symbols) / (2 * length + 1)

