"""The training experiment behind a sweep: what it trains, and what one batch of trials does.

A sweep configuration is one flat dict (grid point merged with the study's fixed settings). Its
keys split into the initialization of one LM (``sigprop.train.model.CONFIG_KEYS``: every
declared hyperparameter, alias and option, and the initialization "seed") and the settings every
trial of the study shares (``TrainSettings`` fields, the data "data_seed" order, the corpus, and
how the exponents at initialization are measured). ``sweep_spec`` writes the block's every value
into the fixed settings, with formulas in L resolved at the trained depth, so that a stored
study describes its models completely.
"""

from __future__ import annotations

import functools
import math
from dataclasses import fields
from typing import Any, Callable, Mapping

import torch

from sigprop.data import copy_task, shakespeare
from sigprop.runtime.devices import resolve_device
from sigprop.spec import Architecture, InvalidHyperparameter, axis, canonical_names, depth_or
from sigprop.spec.declarations import HYPERPARAMETERS, OPTIONS
from sigprop.sweep import Evaluate, SweepSpec
from sigprop.experiment.screen import Screen
from sigprop.sweep.screen import DEFAULT_TAU, screen_samples
from sigprop.experiment.init_exponents import exponents_at_init
from sigprop.train import TrainSettings, train_together
from sigprop.train.model import CONFIG_KEYS, lm_architecture

CORPORA = {"shakespeare": shakespeare, "copy": copy_task}
# The device is not a setting of the study: the same study may go on on another machine.
_SETTINGS = {f.name for f in fields(TrainSettings)} - {"seed", "dtype", "device"}
# Settings of the measurement of the exponents at initialization, not of training.
MEASUREMENT = {"measure_tokens": 16, "measure_seeds": 2, "measure_width": 128}
DEFAULT_DEPTH = 16


def sweep_spec(
    arch: Architecture | str | None,
    values: dict[str, Any],
    grid: list[str],
    sample: list[str],
    samples: int,
    sample_seed: int,
    *,
    depth: int | None = None,
    screen: Mapping[str, Any] | None = None,
    on_screen: Callable[[int, int], None] | None = None,
    **training: Any,
) -> SweepSpec:
    """The ``SweepSpec`` of a training sweep of the block ``arch`` (with ``values``): ``grid``
    entries "NAME=v1,v2,…" (any numeric hyperparameter or alias, or seed) crossed with
    ``samples`` quasi-random points of the ``sample`` box "NAME=LOW:HIGH"; ``training``:
    ``TrainSettings`` fields and "data". Every value is checked before any work.

    ``screen``: keep only sampled points whose theory exponents at the trained depth pass
    ``sigprop.sweep.screen.Screen(**screen)`` ({} for its defaults, or "tau_a", "tau_g",
    "definition"): |L·λ_a| ≤ τ_a and |L·λ_g| ≤ τ_g, the first ``samples`` points of the Halton
    sequence that do (``screen_samples``; ``on_screen(examined, kept)`` reports progress)."""
    if values.get("causal") is False:
        raise InvalidHyperparameter("a sweep trains causal language models: drop --no-causal")
    block = Architecture.load(arch).with_values(**values)
    depth = depth_or(block, depth, DEFAULT_DEPTH)
    swept = dict(_entry("--grid", "NAME=v1,v2,…", e, seeds=True) for e in grid)
    ranges = dict(_entry("--sample", "NAME=LOW:HIGH", e, seeds=False) for e in sample)
    if not swept and not ranges:
        raise InvalidHyperparameter("give at least one --grid NAME=v1,v2,… or --sample "
                                    "NAME=LOW:HIGH")
    if ranges and samples < 1:
        raise InvalidHyperparameter(f"--samples: must be >= 1 with --sample; got {samples}")
    if samples and not ranges:
        raise InvalidHyperparameter("--samples: needs at least one --sample NAME=LOW:HIGH")
    if sample_seed < 0:
        raise InvalidHyperparameter(f"--sample-seed: must be >= 0; got {sample_seed}")
    both = sorted(set(swept) & set(ranges))
    if both:
        raise InvalidHyperparameter(f"--grid and --sample: {', '.join(both)} given in both")
    names = [*swept, *ranges]
    sets = {name: set(canonical_names(name)) if name != "seed" else {"seed"} for name in names}
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            if sets[first] & sets[second]:
                raise InvalidHyperparameter(f"swept {first} and {second} both set "
                                            f"{', '.join(sorted(sets[first] & sets[second]))}")
    covered = set().union(*sets.values())
    for name, entries in [*swept.items(), *ranges.items()]:
        if name != "seed":
            for value in entries:
                block.with_values(**{name: value}).resolved(depth).layer()
    fixed = {k: v for k, v in block.resolved(depth).values.items()
             if k not in covered and k != "causal" and not (k == "sigma_2" and block["tied_readout"])}
    _check_training({"depth": depth, **training})
    fixed |= {"depth": depth, **training}
    if "seed" not in swept:
        fixed["seed"] = 0
    spec = SweepSpec(grid=swept, fixed=_plain(fixed), sampled=ranges, samples=samples,
                     sample_seed=sample_seed)
    if screen is None:
        return spec
    for key, flag in (("tau_a", "--screen-lambda-a"), ("tau_g", "--screen-lambda-g")):
        tau = screen.get(key, DEFAULT_TAU)
        if not (isinstance(tau, (int, float)) and math.isfinite(tau) and tau >= 0):
            raise InvalidHyperparameter(f"{flag}: must be a finite number >= 0 (a bound on "
                                        f"|L·λ| at the trained depth); got {tau}")
    if not ranges:
        raise InvalidHyperparameter("--screen: screens the points of a search; give --sample "
                                    "NAME=LOW:HIGH and --samples N")
    screener = Screen(**screen, depth=depth,
                      n_tokens=int(training.get("measure_tokens", MEASUREMENT["measure_tokens"])))
    return screen_samples(spec, screener, on_screen)


def _check_training(training: Mapping[str, Any]) -> None:
    """The settings every trial trains with, checked as the workers will read them
    (``ValueError`` naming the setting): a bad one fails here, not in every trial."""
    TrainSettings(**{k: v for k, v in training.items() if k in _SETTINGS}, device="cpu")
    data = training.get("data", "shakespeare")
    if data not in CORPORA:
        raise InvalidHyperparameter(f"data must be one of {', '.join(CORPORA)}; got {data!r}")


def make_evaluate(device: str = "auto") -> Evaluate:
    """The ``Evaluate`` of training sweeps on ``device`` (named
    "sigprop.experiment.trial:make_evaluate" in ``run_study``, which imports it in every worker
    process and passes the device as a factory argument). ``ValueError`` for a bad device."""
    return functools.partial(evaluate, device=resolve_device(device))


def evaluate(configs: list[dict], device: str | torch.device = "auto") -> list[dict]:
    """Exponents at initialization and training outcome of each config, trained together.

    Per config: the theory exponents (bidirectional maps) and those measured on the causal LM's
    layers at init (``exponents_at_init``), then ``train_together``'s status and losses, both
    on ``device``, and the "device" itself. Configs with different structural
    options are trained in separate stacks (one template each).
    """
    shared = _shared_settings(configs)
    settings = TrainSettings(**{k: v for k, v in shared.items() if k in _SETTINGS},
                             seed=int(shared.get("data_seed", 0)), device=device)
    corpus = CORPORA[shared.get("data", "shakespeare")]()
    points = [{k: v for k, v in config.items() if k in CONFIG_KEYS} for config in configs]
    at_init = exponents_at_init(
        points, settings, n_tokens=int(shared.get("measure_tokens", MEASUREMENT["measure_tokens"])),
        seeds=int(shared.get("measure_seeds", MEASUREMENT["measure_seeds"])),
        width=int(shared.get("measure_width", MEASUREMENT["measure_width"])),
    )
    trained: list[dict] = [{} for _ in points]
    structures = [lm_architecture(p).structure for p in points]
    for structure in dict.fromkeys(structures):
        members = [i for i, s in enumerate(structures) if s == structure]
        for i, outcome in zip(members, train_together([points[i] for i in members], corpus, settings)):
            trained[i] = outcome
    return [{**exponents, **outcome, "vocab_size": corpus.vocab_size,
             "device": str(settings.device)} for exponents, outcome in zip(at_init, trained)]


def study_architecture(attrs: dict) -> Architecture:
    """The block a study trained, with its fixed values (bidirectional: for the theory)."""
    fixed = attrs["fixed"]
    declared = {d.name for d in (*HYPERPARAMETERS, *OPTIONS)}
    return Architecture("study").with_values(
        **{k: v for k, v in fixed.items() if k in declared and k != "causal"})


def _entry(option: str, form: str, entry: str, seeds: bool) -> tuple[str, list]:
    """'sigma-w=1,2' → ("sigma_w", [1.0, 2.0]); 'alpha=0.1:0.9' → ("alpha", [0.1, 0.9])."""
    name, _, text = entry.partition("=")
    name = name.strip()
    try:
        name = "seed" if (seeds and name == "seed") else axis(name).name
    except InvalidHyperparameter:
        allowed = "any numeric hyperparameter or alias" + (", or seed" if seeds else "")
        raise InvalidHyperparameter(f"{option} takes {form} with NAME {allowed}; got "
                                    f"{entry!r}") from None
    if not text:
        raise InvalidHyperparameter(f"{option} takes {form}; got {entry!r}")
    if option == "--grid":
        try:
            numbers = [float(v) for v in text.split(",")]
        except ValueError:
            raise InvalidHyperparameter(f"--grid {name}: values must be numbers; got {text!r}") from None
        return name, [int(v) for v in numbers] if name == "seed" else numbers
    try:
        low, high = (float(b) for b in text.split(":"))
    except ValueError:
        raise InvalidHyperparameter(f"--sample {name}: takes LOW:HIGH (two numbers); got "
                                    f"{text!r}") from None
    if not low < high:
        raise InvalidHyperparameter(f"--sample {name}: LOW must be below HIGH; got {text!r}")
    return name, [low, high]


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """JSON-able scalars: numpy numbers become floats."""
    return {k: (v if isinstance(v, (bool, str, int)) else float(v)) for k, v in values.items()}


def _shared_settings(configs: list[dict]) -> dict:
    """The non-initialization keys, which must agree across the batch."""
    shared = {k: v for k, v in configs[0].items() if k not in CONFIG_KEYS}
    for config in configs[1:]:
        other = {k: v for k, v in config.items() if k not in CONFIG_KEYS}
        if other != shared:
            raise ValueError("configs trained together must share every training setting")
    unknown = sorted(set(shared) - _SETTINGS - set(MEASUREMENT) - {"data", "data_seed"})
    if unknown:
        raise ValueError(f"unknown sweep settings {unknown}; allowed: "
                         f"{sorted(_SETTINGS | set(MEASUREMENT) | {'data', 'data_seed'})}")
    if shared.get("data", "shakespeare") not in CORPORA:
        raise ValueError(f"data must be one of {', '.join(CORPORA)}; got {shared['data']!r}")
    return shared
