"""sigprop.train.module.train_module: any token → logits module learns, deterministically, and
the loss protocol matches train_together's."""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from sigprop.data import copy_task
from sigprop.train import TrainSettings, build_lm, train_together
from sigprop.train.module import logits_of, train_module

CORPUS = copy_task(n_symbols=4, length=4, n_train=256, n_eval=32)
CONFIG = {"alpha": 0.5, "sigma_w": 1.0, "seed": 0}
RUN = dict(steps=30, lr=1e-2, context=9, batch=8, seed=3, eval_windows=8, corpus=CORPUS)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one thread is fastest, and stays fast on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_lm() -> nn.Module:
    return build_lm(CONFIG, CORPUS.vocab_size, depth=2, width=16)


class HFStyle(nn.Module):
    """A model whose output carries the logits as ``.logits`` (like Hugging Face's)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, ids):
        return SimpleNamespace(logits=self.inner(ids))


def test_loss_decreases_and_is_deterministic_given_seed():
    first = train_module(tiny_lm(), **RUN)
    again = train_module(tiny_lm(), **RUN)
    assert first["status"] == "complete" and first["steps_done"] == RUN["steps"]
    losses = first["losses"]
    assert len(losses) == RUN["steps"]
    assert sum(losses[-5:]) / 5 < losses[0] - 0.2
    assert first["test_loss"] < losses[0] and first["validation_loss"] < losses[0]
    assert losses == again["losses"]
    assert first["test_loss"] == again["test_loss"]
    other = train_module(tiny_lm(), **{**RUN, "seed": 4, "steps": 1})
    assert other["losses"] != losses[:1]  # another seed, another data order


def test_hugging_face_outputs_and_train_together_agree():
    """The same initial model trains to the same losses through .logits, and train_module
    matches train_together (same batches, Adam, evaluation) to float tolerance."""
    model = tiny_lm()
    plain = train_module(copy.deepcopy(model), **RUN)
    wrapped = train_module(HFStyle(copy.deepcopy(model)), **{**RUN, "steps": 5})
    assert wrapped["losses"] == pytest.approx(plain["losses"][:5], abs=1e-6)
    settings = TrainSettings(depth=2, width=16, context=9, batch=8, steps=RUN["steps"],
                             lr=RUN["lr"], eval_windows=8, seed=RUN["seed"], compile=False,
                             members_per_pass=1)
    together = train_together([CONFIG], CORPUS, settings)[0]
    assert together["test_loss"] == pytest.approx(plain["test_loss"], abs=1e-4)
    assert together["train_loss"] == pytest.approx(plain["train_loss"], abs=1e-4)


def test_divergence_stops_without_raising():
    class Exploding(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.tensor(1.0))

        def forward(self, ids):
            return self.scale * torch.full((*ids.shape, CORPUS.vocab_size), math.nan)

    result = train_module(Exploding(), **RUN)
    assert result["status"] == "diverged" and result["steps_done"] == 0
    assert math.isnan(result["test_loss"]) and len(result["losses"]) == 1


def test_logits_of_rejects_outputs_without_logits():
    assert logits_of((torch.zeros(1), None)).shape == (1,)
    with pytest.raises(TypeError, match="logits"):
        logits_of({"hidden": torch.zeros(1)})
