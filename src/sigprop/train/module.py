"""Train any ``nn.Module`` on a task (``sigprop.train.tasks``), one model at a time.

``train_module`` is the single-model counterpart of ``train_together`` for models sigprop did
not build (a Hugging Face ``GPT2LMHeadModel``, your own ``nn.Module``, a model rescaled by
``sigprop.apply_init``). Its default task is the causal character LM of ``sigprop sweep``, with
the same data, optimizer and evaluation protocol, so its losses compare with the sweep's:

* training batches: ``task.train_batches(batch, seed)``, the same batches in the same order for
  every model trained with one ``seed`` (common random numbers: models differ only by their
  initialization);
* Adam (fused kernel where the build has it), no clipping, no weight decay; the learning rate
  constant at ``lr``, or with ``warmup`` W > 0 rising linearly over the first W steps,
  lr · min(1, (t + 1)/W), the classical fix for Post-LN transformers (Xiong et al. 2020); one
  update per batch, ``steps`` updates;
* loss: ``task.loss`` of ``model(inputs)``, the mean cross-entropy over the scored positions,
  where the output is either the logits tensor (…, V) or an object with ``.logits`` (Hugging
  Face), or a tuple whose first element is the logits;
* held-out loss and accuracy: ``task.held_out`` of the validation and of the test split (the
  first ``eval_windows`` windows or sequences), in eval mode and without gradients, averaged
  per scored position (as ``train_together`` does).

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

from sigprop.data import CharCorpus
from sigprop.runtime.devices import resolve_device
from sigprop.train.tasks import CharLM, Task

TRAIN_LOSS_SHARE = 0.1  # train_loss: the mean training loss over this last share of the steps


def train_module(
    model: nn.Module,
    *,
    steps: int,
    lr: float = 1e-3,
    task: Task | None = None,
    batch: int = 32,
    seed: int = 0,
    warmup: int = 0,
    eval_windows: int | None = 64,
    context: int = 64,
    corpus: CharCorpus | None = None,
    device: str | torch.device = "cpu",
    on_step: Callable[[int, float], None] | None = None,
) -> dict:
    """Train ``model`` for ``steps`` Adam steps on ``task`` (default: the character LM
    ``CharLM(context, corpus)`` on Shakespeare: int64 token ids (B, T) → logits (B, T, V)),
    then evaluate it.

    ``seed`` sets the order of the training batches only (the model's initialization is
    whatever the caller built). ``warmup``: steps of linear learning-rate warm-up (0: none).
    ``eval_windows``: how many windows (sequences, images) of each held-out split are
    evaluated (None: all). ``device``: "auto", "cpu", "cuda" (``resolve_device``); the model
    is moved there. ``on_step(step, loss)`` is called after every step with the training loss
    of that step's batch (before its update). Returns::

        status            "complete" or "diverged" (a non-finite loss or gradient)
        steps_done        Adam updates applied
        losses            training loss of every step, in order (a diverged run ends with
                          the first non-finite one)
        train_loss        mean training loss over the last 10 % of the steps (NaN if diverged)
        validation_loss   mean loss per scored position on the validation split (NaN if
                          diverged), and validation_accuracy
        test_loss         the same on the test split, and test_accuracy
        seconds           wall time of the training and the evaluation
    """
    _check_positive("steps", steps)
    _check_positive("batch", batch)
    if eval_windows is not None:
        _check_positive("eval_windows", eval_windows)
    for name, value in (("seed", seed), ("warmup", warmup)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer; got {value!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0; got {lr!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    task = CharLM(context, corpus) if task is None else task
    device = resolve_device(device)
    started = time.perf_counter()
    model.to(device)
    was_training = model.training
    model.train()
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = _adam(parameters, lr)
    schedule = (torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup)) if warmup else None)
    batches = task.train_batches(batch, int(seed))
    losses: list[float] = []
    complete = True
    for step in range(steps):
        inputs, targets = (t.to(device) for t in next(batches))
        optimizer.zero_grad(set_to_none=True)
        loss = task.loss(logits_of(model(inputs)), targets)
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
        if schedule is not None:
            schedule.step()
    steps_done = len(losses) - (0 if complete else 1)

    held_out = {f"{split}_{what}": math.nan for split in ("validation", "test")
                for what in ("loss", "accuracy")}
    if complete:
        model.eval()
        for split in ("validation", "test"):
            inputs, targets = task.held_out(split, eval_windows)
            loss, accuracy = evaluate(model, inputs, targets, batch, device, task)
            held_out |= {f"{split}_loss": loss, f"{split}_accuracy": accuracy}
    model.train(was_training)
    tail = losses[-max(1, round(TRAIN_LOSS_SHARE * len(losses))):]
    return {
        "status": "complete" if complete else "diverged",
        "steps_done": steps_done,
        "losses": losses,
        "train_loss": float(np.mean(tail)) if complete else math.nan,
        **held_out,
        "seconds": time.perf_counter() - started,
    }


@torch.no_grad()
def evaluate(model: nn.Module, inputs: Tensor, targets: Tensor, batch: int,
             device: str | torch.device = "cpu", task: Task | None = None
             ) -> tuple[float, float]:
    """(mean loss, accuracy) per scored position of ``model`` on ``inputs`` → ``targets``,
    ``batch`` rows per forward pass; the loss is ``task.loss`` (default: the character LM's
    cross-entropy)."""
    device = resolve_device(device)
    task = task if task is not None else Task()
    total, right, scored = 0.0, 0, 0
    for start in range(0, len(inputs), batch):
        rows = slice(start, start + batch)
        logits = logits_of(model(inputs[rows].to(device)))
        labels = targets[rows].to(device)
        hits, count = task.correct(logits, labels)
        total += count * float(task.loss(logits, labels).double())
        right, scored = right + hits, scored + count
    return total / scored, right / scored


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
