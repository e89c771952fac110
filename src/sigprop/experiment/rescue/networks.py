"""The networks of the rescue suite: deep networks whose framework defaults do not train, each
with its task, its training budget, its arms and its measure of success.

Each network is built by ``build(seed)`` exactly as a user builds it (``torch.manual_seed(seed)``
first: PyTorch's or Hugging Face's default initialization), trained by
``sigprop.train.train_module`` on its task with Adam at ``lr`` for ``steps`` steps on batches
of ``batch`` (the same batches in the same order for every arm and seed), and scored on the
task's test split: the loss (nats per scored position) and the accuracy.

``reference`` is a well-conditioned network of the same size (a Pre-LN transformer for the
transformers, a residual network with normalization for the deep MLP and CNN); a network is
rescued by an arm when the arm's mean test loss comes within ``margin`` of the reference's
(0.1 nats for the language models and the classifiers). The recurrent networks have no
such reference: their task has a known solution, recall at accuracy 1, and an arm rescues
them when its mean recall accuracy reaches ``SOLVED``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from sigprop.experiment.rescue import models
from sigprop.train.tasks import CharLM, CopyMemory, Digits, Task

SOLVED = 0.95  # recall accuracy at which a memory task counts as solved
MARGIN = 0.1  # nats of test loss from the reference that count as trained
WIDTH, HEADS = 64, 4


@dataclass(frozen=True)
class Network:
    """One network of the suite (module docstring). ``fixes``: the published fixes for its
    failure (names of ``sigprop.experiment.rescue.arms.FIX_ARMS``); ``kind``: "lm",
    "classifier" or "recurrent" (how it is measured: token ids, images' hidden states, or the
    recurrent layer unrolled over ``lag`` + 2 steps)."""

    name: str
    title: str
    kind: str
    build: Callable[[], nn.Module]
    task: Callable[[], Task]
    fixes: tuple[str, ...]
    steps: int
    lr: float = 1e-3
    batch: int = 32
    reference: Callable[[], nn.Module] | None = None
    reference_title: str = ""
    lag: int = 0
    tags: tuple[str, ...] = field(default=())

    def model(self, seed: int) -> nn.Module:
        """Seed ``seed``'s network at its framework's default initialization."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.build()


@functools.lru_cache(maxsize=1)
def _vocabulary() -> int:
    return CharLM().corpus.vocab_size


def _encoder(depth: int, norm_first: bool) -> Callable[[], nn.Module]:
    return lambda: models.encoder_lm(depth, WIDTH, HEADS, _vocabulary(), norm_first=norm_first)


def _hf(kind: str, depth: int) -> Callable[[], nn.Module]:
    return lambda: models.hf_lm(kind, depth, WIDTH, HEADS, _vocabulary())


def _pre_ln(depth: int) -> str:
    return f"the same stack with norm_first=True (Pre-LN), {depth} layers"


NETWORKS: dict[str, Network] = {n.name: n for n in (
    Network("post-ln-32", "Post-LN transformer LM, 32 × nn.TransformerEncoderLayer(64, 4, 256)",
            "lm", _encoder(32, False), CharLM, ("deepnorm", "admin", "warmup"), steps=200,
            reference=_encoder(32, True), reference_title=_pre_ln(32)),
    Network("post-ln-64", "Post-LN transformer LM, 64 × nn.TransformerEncoderLayer(64, 4, 256)",
            "lm", _encoder(64, False), CharLM, ("deepnorm", "admin", "warmup"), steps=150,
            reference=_encoder(64, True), reference_title=_pre_ln(64)),
    Network("bert-64", "Hugging Face BertLMHeadModel (causal) from a config, 64 layers, d = 64",
            "lm", _hf("bert", 64), CharLM, ("deepnorm", "admin", "warmup"), steps=150,
            reference=_encoder(64, True), reference_title=_pre_ln(64)),
    Network("no-norm-32", "transformer LM without normalization (x + SA(x), x + MLP(x)), 32 "
            "blocks", "lm", lambda: models.no_norm_lm(32, WIDTH, HEADS, _vocabulary()),
            CharLM, ("rezero", "fixup", "tfixup", "dyt"), steps=200,
            reference=_encoder(32, True), reference_title=_pre_ln(32)),
    Network("gpt2-48", "Hugging Face GPT2LMHeadModel from a config, 48 layers, d = 64", "lm",
            _hf("gpt2", 48), CharLM, ("warmup",), steps=150,
            reference=_encoder(48, True), reference_title=_pre_ln(48)),
    Network("tanh-mlp-100", "deep tanh MLP on 8 × 8 digits, 100 layers of nn.Linear(64, 64)",
            "classifier", lambda: models.TanhMLP(100), Digits, ("orthogonal",), steps=500,
            lr=1e-4, batch=128, reference=lambda: models.ResidualMLP(100),
            reference_title="the same layers with Pre-LayerNorm residuals, "
                            "h ← h + tanh(W LN(h) + b)"),
    Network("relu-cnn-40", "deep ReLU CNN on 8 × 8 digits, 40 × nn.Conv2d(16, 16, 3), no "
            "normalization, no skips", "classifier", lambda: models.PlainCNN(40), Digits,
            ("he", "delta-orthogonal"), steps=500, batch=128,
            reference=lambda: models.ResidualCNN(40),
            reference_title="the same convolutions with BatchNorm and identity skips"),
    Network("lstm-128", "nn.LSTM(64, 64) recalling a symbol after 128 steps", "recurrent",
            lambda: models.SequenceModel("lstm", 64, CopyMemory(128, length=1).vocab_size),
            lambda: CopyMemory(128, length=1), ("forget-bias", "chrono"), steps=500, batch=64,
            lag=128),
    Network("gru-128", "nn.GRU(64, 64) recalling a symbol after 128 steps", "recurrent",
            lambda: models.SequenceModel("gru", 64, CopyMemory(128, length=1).vocab_size),
            lambda: CopyMemory(128, length=1), ("forget-bias", "chrono"), steps=500, batch=64,
            lag=128),
)}
"""Every network of the suite, by name, in the order of the report."""
