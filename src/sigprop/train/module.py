"""Train any token → logits ``nn.Module`` as a causal character LM, one model at a time.

``train_module`` is the single-model counterpart of ``train_together`` for models sigprop did
not build (a Hugging Face ``GPT2LMHeadModel``, your own ``nn.Module``, a ``CausalLM`` rescaled by
``sigprop.init``): the same data, the same optimizer and the same evaluation protocol, so its
losses compare with those of ``sigprop sweep``:

* training batches: ``sigprop.data.Batches(corpus.train, batch, context, seed)``, i.e. the
  same windows in the same order for every model trained with one ``seed`` (common random
  numbers: models differ only by their initialization);
* Adam at a constant ``lr`` (fused kernel where the build has it), no clipping, no schedule,
  no weight decay: one update per batch, ``steps`` updates;
* loss: mean cross-entropy per target character (nats/char) of ``model(inputs)``, where the
  output is either the logits tensor (…, V) or an object with ``.logits`` (Hugging Face), or a
  tuple whose first element is the logits;
* held-out loss: the first ``eval_windows`` non-overlapping windows of the validation and of
  the test split (``sigprop.data.evaluation_windows``), in eval mode and without gradients,
  averaged per character (as ``train_together`` does).

A loss or gradient that is NaN/inf stops training at once (status "diverged"); nothing is
raised. The model's parameters are trained in place; its initialization is the caller's.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from sigprop.data import Batches, CharCorpus, evaluation_windows, shakespeare
from sigprop.devices import resolve_device
from sigprop.train.model import cross_entropy

TRAIN_LOSS_SHARE = 0.1  # train_loss: the mean training loss over this last share of the steps


def train_module(
    model: nn.Module,
    *,
    steps: int,
    lr: float = 1e-3,
    context: int = 64,
    batch: int = 32,
    seed: int = 0,
    eval_windows: int | None = 64,
    corpus: CharCorpus | None = None,
    device: str | torch.device = "cpu",
    on_step: Callable[[int, float], None] | None = None,
) -> dict:
    """Train ``model`` (int64 token ids (B, T) → logits (B, T, V)) for ``steps`` Adam steps on
    ``corpus.train`` (default: ``sigprop.data.shakespeare()``), then evaluate it.

    ``seed`` sets the order of the training windows only (the model's initialization is
    whatever the caller built). ``eval_windows``: how many windows of each held-out split are
    evaluated (None: all). ``device``: "auto", "cpu", "cuda" (``resolve_device``); the model
    is moved there. ``on_step(step, loss)`` is called after every step with the training loss
    of that step's batch (before its update). Returns::

        status            "complete" or "diverged" (a non-finite loss or gradient)
        steps_done        Adam updates applied
        losses            training loss of every step, in order (a diverged run ends with
                          the first non-finite one)
        train_loss        mean training loss over the last 10 % of the steps (NaN if diverged)
        validation_loss   mean loss per character on the validation windows (NaN if diverged)
        test_loss         the same on the test windows (NaN if diverged)
        seconds           wall time of the training and the evaluation
    """
    _check_positive("steps", steps)
    _check_positive("context", context)
    _check_positive("batch", batch)
    if eval_windows is not None:
        _check_positive("eval_windows", eval_windows)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0; got {lr!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    corpus = shakespeare() if corpus is None else corpus
    device = resolve_device(device)
    started = time.perf_counter()
    model.to(device)
    was_training = model.training
    model.train()
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = _adam(parameters, lr)
    batches = Batches(corpus.train, batch, context, int(seed))
    losses: list[float] = []
    complete = True
    for step in range(steps):
        inputs, targets = (t.to(device) for t in batches.next())
        optimizer.zero_grad(set_to_none=True)
        loss = cross_entropy(logits_of(model(inputs)), targets)
        value = float(loss.detach())
        losses.append(value)
        if on_step is not None:
            on_step(step, value)
        if not math.isfinite(value):
            complete = False
            break
        loss.backward()
        if not _finite_gradients(parameters):
            complete = False
            break
        optimizer.step()
    steps_done = len(losses) - (0 if complete else 1)

    held_out = {"validation": math.nan, "test": math.nan}
    if complete:
        model.eval()
        for split in held_out:
            inputs, targets = evaluation_windows(corpus.split(split), context, eval_windows)
            held_out[split] = evaluate(model, inputs, targets, batch, device)
    model.train(was_training)
    tail = losses[-max(1, round(TRAIN_LOSS_SHARE * len(losses))):]
    return {
        "status": "complete" if complete else "diverged",
        "steps_done": steps_done,
        "losses": losses,
        "train_loss": float(np.mean(tail)) if complete else math.nan,
        "validation_loss": held_out["validation"],
        "test_loss": held_out["test"],
        "seconds": time.perf_counter() - started,
    }


@torch.no_grad()
def evaluate(model: nn.Module, inputs: Tensor, targets: Tensor, batch: int,
             device: str | torch.device = "cpu") -> float:
    """Mean loss per token of ``model`` on the windows ``inputs`` → ``targets`` (int64, shape
    (windows, context)), ``batch`` windows per forward pass."""
    device = resolve_device(device)
    total = 0.0
    for start in range(0, len(inputs), batch):
        rows = slice(start, start + batch)
        count = len(inputs[rows])
        logits = logits_of(model(inputs[rows].to(device)))
        total += count * float(cross_entropy(logits, targets[rows].to(device)).double())
    return total / len(inputs)


def logits_of(output: Any) -> Tensor:
    """The logits in a model's output: the tensor itself, its ``.logits`` (Hugging Face
    ``ModelOutput``) or the first element of a tuple/list."""
    if isinstance(output, Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    raise TypeError(f"cannot find logits in the model's output ({type(output).__name__}): "
                    "return a tensor, an object with .logits, or a tuple starting with them")


def _finite_gradients(parameters: list[Tensor]) -> bool:
    sums = [p.grad.sum() for p in parameters if p.grad is not None]
    return bool(torch.isfinite(torch.stack(sums).sum())) if sums else True


def _adam(parameters: list[Tensor], lr: float) -> torch.optim.Optimizer:
    """Adam with the fused kernel where available (as ``train_together``), else the default."""
    try:
        return torch.optim.Adam(parameters, lr=lr, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.Adam(parameters, lr=lr)


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
