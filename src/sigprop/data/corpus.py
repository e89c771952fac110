"""The corpus type shared by every data set: a character vocabulary and three token splits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SPLITS = ("train", "validation", "test")


# eq=False: the generated __eq__ would compare numpy arrays, whose truth value is ambiguous.
@dataclass(frozen=True, eq=False)
class CharCorpus:
    """A character-level corpus split three ways; token id = index of the character in ``vocab``.

    ``train``, ``validation`` and ``test`` are read-only 1-D ``uint8`` arrays of token ids (the
    documents of the split concatenated in the order of ``documents[split]``). The vocabulary
    is computed from all splits together, so ids mean the same in every split.
    """

    vocab: str
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    documents: dict[str, tuple[str, ...]]

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def split(self, name: str) -> np.ndarray:
        """The tokens of split ``name`` ("train", "validation" or "test")."""
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}; got {name!r}")
        return getattr(self, name)

    def encode(self, text: str) -> np.ndarray:
        """Token ids of ``text``; every character must be in ``vocab``."""
        index = {char: i for i, char in enumerate(self.vocab)}
        unknown = sorted(set(text) - index.keys())
        if unknown:
            raise ValueError(f"text has characters outside the vocabulary: {unknown!r}")
        return np.array([index[char] for char in text], dtype=np.uint8)

    def decode(self, tokens) -> str:
        """The text of a sequence of token ids (numpy array, tensor or list)."""
        return "".join(self.vocab[int(i)] for i in np.asarray(tokens).reshape(-1))


def make_corpus(
    splits: dict[str, str],
    documents: dict[str, tuple[str, ...]],
    vocab: str | None = None,
) -> CharCorpus:
    """Build a :class:`CharCorpus` from the text of each split.

    The vocab is the sorted union of the characters of all splits unless given.
    """
    present = set().union(*(set(text) for text in splits.values()))
    if vocab is None:
        vocab = "".join(sorted(present))
    elif list(vocab) != sorted(set(vocab)) or not present <= set(vocab):
        raise ValueError("vocab must be sorted, without repeats, and cover every character")
    if len(vocab) > 256:
        raise ValueError(f"a CharCorpus holds at most 256 characters; got {len(vocab)}")
    if any(ord(char) > 255 for char in vocab):
        raise ValueError("a CharCorpus holds only characters with code points below 256")
    # One lookup table from Latin-1 bytes to token ids encodes megabytes in milliseconds.
    table = np.zeros(256, dtype=np.uint8)
    table[[ord(char) for char in vocab]] = np.arange(len(vocab), dtype=np.uint8)
    tokens = {}
    for name in SPLITS:
        ids = table[np.frombuffer(splits[name].encode("latin-1"), dtype=np.uint8)]
        ids.setflags(write=False)  # the corpus is cached and shared between callers
        tokens[name] = ids
    return CharCorpus(vocab=vocab, documents=dict(documents), **tokens)
