"""The training experiment behind a sweep: what one batch of trials does.

A sweep configuration is one flat dict (grid point merged with the study's fixed settings). Its
keys split into the initialization of one LM (``sigprop.train.model.CONFIG_KEYS``: the reference
hyperparameters, "alpha" for α_A = α_M, and the initialization "seed") and the settings every
trial of the study shares (``TrainSettings`` fields, the data "data_seed" order, the corpus, and
how the exponents at initialization are measured).
"""

from __future__ import annotations

from dataclasses import fields

from sigprop.data import copy_task, shakespeare
from sigprop.sweep import Evaluate
from sigprop.train import TrainSettings, exponents_at_init, train_together
from sigprop.train.model import CONFIG_KEYS

CORPORA = {"shakespeare": shakespeare, "copy": copy_task}
_SETTINGS = {f.name for f in fields(TrainSettings)} - {"seed", "dtype"}
# Settings of the measurement of the exponents at initialization, not of training.
_MEASURE = {"measure_tokens": 16, "measure_seeds": 2, "measure_width": 128}


def make_evaluate() -> Evaluate:
    """The ``Evaluate`` of training sweeps (named "sigprop.experiment:make_evaluate" in
    ``run_sweep``, which imports it in every worker process)."""
    return evaluate


def evaluate(configs: list[dict]) -> list[dict]:
    """Exponents at initialization and training outcome of each config, trained together.

    Per config: the theory exponents (bidirectional maps) and those measured on the causal LM's
    layers at init (``exponents_at_init``), then ``train_together``'s status and losses.
    Configs with different activations are trained in separate stacks (one template each).
    """
    shared = _shared_settings(configs)
    settings = TrainSettings(**{k: v for k, v in shared.items() if k in _SETTINGS},
                             seed=int(shared.get("data_seed", 0)))
    corpus = CORPORA[shared.get("data", "shakespeare")]()
    points = [{k: v for k, v in config.items() if k in CONFIG_KEYS} for config in configs]
    at_init = exponents_at_init(
        points, settings, n_tokens=int(shared.get("measure_tokens", _MEASURE["measure_tokens"])),
        seeds=int(shared.get("measure_seeds", _MEASURE["measure_seeds"])),
        width=int(shared.get("measure_width", _MEASURE["measure_width"])),
    )
    trained: list[dict] = [{} for _ in points]
    for activation in dict.fromkeys(p.get("activation", "tanh") for p in points):
        members = [i for i, p in enumerate(points) if p.get("activation", "tanh") == activation]
        for i, outcome in zip(members, train_together([points[i] for i in members], corpus, settings)):
            trained[i] = outcome
    return [{**exponents, **outcome, "vocab_size": corpus.vocab_size}
            for exponents, outcome in zip(at_init, trained)]


def _shared_settings(configs: list[dict]) -> dict:
    """The non-initialization keys, which must agree across the batch."""
    shared = {k: v for k, v in configs[0].items() if k not in CONFIG_KEYS}
    for config in configs[1:]:
        other = {k: v for k, v in config.items() if k not in CONFIG_KEYS}
        if other != shared:
            raise ValueError("configs trained together must share every training setting")
    unknown = sorted(set(shared) - _SETTINGS - set(_MEASURE) - {"data", "data_seed"})
    if unknown:
        raise ValueError(f"unknown sweep settings {unknown}; allowed: "
                         f"{sorted(_SETTINGS | set(_MEASURE) | {'data', 'data_seed'})}")
    if shared.get("data", "shakespeare") not in CORPORA:
        raise ValueError(f"data must be one of {', '.join(CORPORA)}; got {shared['data']!r}")
    return shared
