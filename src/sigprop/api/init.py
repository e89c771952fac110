"""``critical_init``: per-block scale factors that put a model at the edge of both transitions at
its own depth, without touching its code.

The targets are the measured whole-model totals of ``sigprop.diagnose`` at the model's depth L,

    L·λ_a^(L) = log_gap_L = log D_L   and   L·λ_g^(L) = log_jac_L,

both driven into [−tolerance, tolerance] (default 0.5: a factor e^0.5 ≈ 1.6 over the whole
network). The input geometry is stated with the result: λ_a^(L) from nearly collapsed tokens
(ρ0 → 1) at the norm q_in of the model's own embeddings, λ_g^(L) from those embeddings of
uniformly random tokens (or orthogonal unit tokens for plain modules).

``gradient="normalized"`` targets log_jac_norm_L instead: the gradient total of the token
directions, which is what reaches the loss through a final norm. Through unit residuals the
tokens' squared norm grows by q_L/q_0 and the raw total grows with it,
log_jac_L ≈ log(q_L/q_0) + log_jac_norm_L (measured within 0.03 on GPT-2 and Llama at depth
48), while the departure of the output from the input is about 1 − q_0/q_L. So in Pre-LN models
the raw target |log_jac_L| ≤ 0.5 caps the departure near 1 − e^−0.5 ≈ 0.4: it can only be met by
blocks close to the identity. The normalized target has no such tie (docs/theory.md §10).

The trivial answer is excluded by a stated constraint. Branch multipliers → 0 make every block
the identity, and then both totals vanish for free (ReZero starts there on purpose). So

* ``weight`` knobs (weight-variance multipliers) range over [``min_scale``, ``max_scale``] =
  [1/16, 16] by default;
* ``branch`` knobs (residual branch multipliers) are bounded below by ``min_branch`` (default 1:
  never weaker than the framework's own initialization);
* the result must move its input: departure = sin²∠(X_L, X_0) ≥ ``min_departure`` (default
  0.25; the identity has 0), measured on the model's own forward pass.

Other families (``sigprop.measure.families``) are searched the same way on their own knobs
(``knobs.py``: ``FAMILY_DEFAULTS`` are searched when none is named) and their own tokens and
layers, and "reached" means, in their words (``MEANING``):

* convolutional (ResNets; L residual blocks, tokens = spatial positions): spatial positions
  neither merge nor scatter over the blocks and ‖∂X_L/∂X_0‖² per entry changes by at most
  e^τ. The departure is that of the stages together (blocks with an identity shortcut, the
  ones that can become the identity): γ of the branches' last BatchNorm → 0 is this
  family's trivial answer, so ``branch_gamma`` (set, not multiplied: a branch initialized at
  γ = 0 can be revived) ranges over [``min_scale``, ``max_scale``];
* recurrent (nn.RNN/LSTM/GRU unrolled over T = ``layers`` steps, tokens = copies from
  different initial states): |T·λ_a| ≤ τ, the state still tells where it started after T
  steps without scrambling it; |T·λ_g| ≤ τ, gradients through time neither vanish nor explode
  over the unrolled horizon: long-range memory over T steps is available. ``shift`` knobs (the
  forget-gate bias) range over [``min_shift``, ``max_shift``];
* graph (GCN; L message-passing layers, tokens = nodes): node features neither over-smooth nor
  scatter and gradients reach the input features. A non-residual GCN over-smooths at the rate
  of its graph's spectral gap whatever σ_w (for ReLU σ_w does not turn the features at all):
  the search ends "closest" and the reason says so, advising a residual connection.

The framework's own initialization (all factors 1) is evaluated first; if it already meets the
targets and the constraint, it is returned unchanged ("already critical": nothing to fix).
Otherwise, where no point meets the targets under the constraints, the closest one is returned
with the reason (``solve.py``). Where the theory describes the model, the search starts from the
theory's answer to the same problem (``warm_start.py``); the probe evaluations are counted
separately from the theory's.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from torch import nn
from typing_extensions import Unpack

from sigprop.init.ensemble import Evaluation, ScaledEnsemble
from sigprop.init.explain import MEANING, advice, caveat, constraint, input_geometry, missed
from sigprop.init.knobs import (FAMILY_DEFAULTS, PLAIN_DEFAULTS, POST_LN_DEFAULTS, Knob,
                                 check_knobs, family_knobs, knob_slots, slot_mean)
from sigprop.init.result import CriticalInit, apply_init, apply_scales, load_init, summary
from sigprop.init.solve import Solution, solve
from sigprop.init.warm_start import hf_theory_model, theory_start
from sigprop.measure.blocks import DiagnoseError
from sigprop.measure.diagnose import measure_diagnosis, seed_list
from sigprop.measure.families import detect_family
from sigprop.measure.source import Model, ModelSource, Which
from sigprop.runtime.devices import resolve_device
from sigprop.runtime.threads import torch_threads
from sigprop.theory.regimes import EDGE

SPREAD_FAMILIES = ("recurrent", "graph")
"""Families searched on all seeds by default: each seed draws its own input sequence (a
recurrent network) or graph (a GCN), and near the edge their totals spread between seeds by
about the tolerance (docs/init_families.md)."""
GRADIENTS = ("raw", "normalized")




def critical_init(
    model: Model | ModelSource | None = None,
    *,
    knobs: Sequence[str] | None = None,
    gradient: str = "raw",
    tolerance: float = EDGE,
    min_departure: float = 0.25,
    min_branch: float = 1.0,
    min_scale: float = 1 / 16,
    max_scale: float = 16.0,
    min_shift: float = -8.0,
    max_shift: float = 8.0,
    n_tokens: int = 16,
    seeds: int | Sequence[int] = 4,
    seed: int = 0,
    search_seeds: int | None = None,
    n_probes: int = 4,
    device: str = "auto",
    warm_start: bool = True,
    on_evaluation: Callable[[Evaluation], None] | None = None,
    threads: int | str | None = None,
    **which: Unpack[Which],
) -> CriticalInit:
    """Find knob values s (shared by all blocks) with |log_gap_L| and |log_jac_L| ≤
    ``tolerance`` at the model's depth, under the non-identity constraints above.

    Which model: as ``sigprop.diagnose`` (an ``nn.Module``, a factory or
    ``"module.path:factory"``, a ``ModelSource``, or ``hf=``/``net=`` with the options of
    ``sigprop.measure.source.Which``). An ``nn.Module`` instance is changed in place at the
    end (its seeds vary only the inputs and probes); a factory builds a fresh model per seed.
    ``knobs``: names from ``sigprop.init.KNOBS`` of the model's family (default: the skip
    weight of Post-LN blocks, else ``FAMILY_DEFAULTS`` of the family, else the weights and
    biases of plain layers; ``_knobs``). The search runs on float64 copies of the first
    ``search_seeds`` (default 2; all seeds for the families of ``SPREAD_FAMILIES``) seeds'
    models on ``device``; "before" and "after" are ``diagnose`` on all ``seeds`` (after: fresh
    models with the values applied). ``on_evaluation`` is called after every evaluation
    (progress). ``warm_start``: start from the theory's answer where the theory describes the
    model (``warm_start.py``: Hugging Face GPT-2 and Llama), else from the framework's own
    initialization (factors 1, shifts 0, set knobs at their mean initial value), which is
    always a candidate. ``reached``: both "after" totals (all seeds) within ``tolerance``
    (what that means for the family: ``MEANING``, in the result's ``meaning``). ``threads``:
    torch threads (default: the library's policy). Returns a ``CriticalInit`` (``to_json``,
    ``write``, ``verdict``); raises ``DiagnoseError`` for bad input.
    """
    started = time.perf_counter()
    _check_settings(tolerance, min_departure, min_branch, min_scale, max_scale, min_shift,
                    max_shift)
    if gradient not in GRADIENTS:
        raise DiagnoseError(f"gradient must be one of {', '.join(GRADIENTS)}; got {gradient!r}")
    source = ModelSource.of(model, n_tokens=n_tokens, **which)
    seeds = seed_list(seeds, seed)
    device = resolve_device(device)
    with torch_threads(threads):
        first = source.probe_model(seeds[0], device)
        source = dataclasses.replace(source, family=detect_family(first, source.family))
        family = source.family
        if search_seeds is None:  # every seed draws its own input sequence or graph: all
            search_seeds = len(seeds) if family in SPREAD_FAMILIES else min(2, len(seeds))
        if isinstance(search_seeds, bool) or not 1 <= search_seeds <= len(seeds):
            raise DiagnoseError(f"search_seeds must be in [1, seeds = {len(seeds)}]; got "
                                f"{search_seeds}")
        searched = seeds[:search_seeds]
        models = [first, *(source.probe_model(s, device) for s in searched[1:])]
        chosen = _knobs(knobs, family, models[0], source.block_path)
        measure = dict(n_tokens=n_tokens, n_probes=n_probes, seeds=seeds, device=device)
        before = measure_diagnosis(source, **measure)
        ensemble = ScaledEnsemble(models, searched, chosen, gradient=gradient,
                                  on_evaluation=on_evaluation, n_tokens=n_tokens,
                                  n_probes=n_probes, block_path=source.block_path,
                                  run=source.run, family=family, image_size=source.image_size)
        bounds = {k.name: _bounds(k, min_branch, min_scale, max_scale, min_shift, max_shift)
                  for k in chosen}
        start = {k.name: float(np.clip(_own_value(k, models[0], ensemble.slots[0][k.name]),
                                       *bounds[k.name])) for k in chosen}
        additive = {k.name for k in chosen if k.kind == "shift"}
        settings = dict(min_departure=min_departure, tolerance=tolerance)
        theory = hf_theory_model(models[0], n_tokens) if warm_start else None
        warm = (theory_start(theory, start, bounds, gradient=gradient, **settings)
                if theory is not None else None)
        default = ensemble.evaluate(start)  # the framework's own init (within bounds)
        if not np.all(np.isfinite(default.residual)):
            raise DiagnoseError(
                f"the totals of the model at its own initialization are not finite (log_gap_L "
                f"{default.log_gap_L:.3g}, log_jac_L {default.log_jac_L:.3g}): run `sigprop "
                "diagnose` on it for the warnings (too few tokens or positions, e.g. a small "
                "--image-size, or an over- or underflow)")
        if default.departure >= min_departure and np.abs(default.residual).max() <= tolerance:
            solution = Solution(default, True, "")  # already critical: nothing to fix
        else:
            if warm is not None:
                start = warm.solution.best.scales
            solution = solve(ensemble, start, bounds, additive=additive, **settings)
        scales, parameters = solution.best.scales, ensemble.parameter_names
        after = measure_diagnosis(
            source, prepare=lambda m: apply_scales(m, scales, parameters, source.block_path),
            **measure)
    if source.instance is not None:
        apply_scales(source.instance, scales, parameters, source.block_path)
    jac = after.log_jac_L if gradient == "raw" else after.log_jac_norm_L
    departure = summary(after)["departure"]
    reached = (all(abs(total.mean) <= tolerance for total in (after.log_gap_L, jac))
               and departure is not None and departure >= min_departure)
    meaning = MEANING[family].format(tol=tolerance)
    if reached:
        reason = f"reached: {meaning}"
    else:
        reason = "; ".join(filter(None, (solution.reason or missed(after, tolerance, gradient,
                                                                    min_departure),
                                         advice(family, chosen, models[0], summary(after),
                                                gradient, tolerance))))
    reason = "; ".join(filter(None, (reason, caveat(summary(after), gradient, tolerance))))
    return CriticalInit(
        scales=scales, parameters=parameters, before=summary(before),
        after=summary(after), evaluations=len(ensemble.history),
        seconds=time.perf_counter() - started, reached=reached, reason=reason,
        constraint=constraint(chosen, bounds, min_departure, family), gradient=gradient,
        model=before.description, depth=before.depth,
        input=input_geometry(family, n_tokens, seeds, searched, n_probes, before),
        path=[e.to_json() for e in ensemble.history],
        warm_start=None if warm is None else warm.to_json(), family=family, meaning=meaning,
    )


def measure_init(
    model: Model | ModelSource | None,
    init: str | Path | dict | CriticalInit,
    *,
    n_tokens: int = 16,
    seeds: int | Sequence[int] = 4,
    seed: int = 0,
    n_probes: int = 4,
    device: str = "auto",
    threads: int | str | None = None,
    **which: Unpack[Which],
) -> CriticalInit:
    """A saved critical initialization applied to fresh models of this architecture and
    measured: "before" (default init) and "after" (values applied) by ``diagnose`` on
    ``seeds``; nothing is searched (0 evaluations). The model as in ``critical_init``."""
    started = time.perf_counter()
    saved = load_init(init)
    source = ModelSource.of(model, n_tokens=n_tokens, **which)
    seeds = seed_list(seeds, seed)
    measure = dict(n_tokens=n_tokens, n_probes=n_probes, seeds=seeds,
                   device=resolve_device(device))
    with torch_threads(threads):
        before = measure_diagnosis(source, **measure)
        after = measure_diagnosis(
            source, prepare=lambda m: apply_init(m, saved, source.block_path), **measure)
    return dataclasses.replace(
        saved, before=summary(before), after=summary(after), evaluations=0,
        seconds=time.perf_counter() - started, model=before.description, depth=before.depth,
        input=input_geometry(before.family, n_tokens, seeds, seeds, n_probes, before), path=[],
        family=before.family)


def initialized_model(
    model: Model | ModelSource | None,
    init: str | Path | dict | CriticalInit,
    *,
    seed: int = 0,
    n_tokens: int = 16,
    **which: Unpack[Which],
) -> nn.Module:
    """Seed ``seed``'s model (``torch.manual_seed(seed)``, then the factory; its own dtype and
    device) with a critical initialization applied: ready to train (a recurrent network as the
    nn.RNN/LSTM/GRU itself, not unrolled). Save it with ``torch.save(model.state_dict(), …)``."""
    source = ModelSource.of(model, n_tokens=n_tokens, **which)
    return apply_init(source.build(seed), init, source.block_path)


def _knobs(names: Sequence[str] | None, family: str, model: nn.Module,
           block_path: str | None) -> tuple[Knob, ...]:
    """The named knobs (checked against the family); else, in this order, the first of these
    sets with a knob that fits ``model`` (its fitting knobs): ``POST_LN_DEFAULTS`` (Post-LN
    blocks), the family's defaults, ``PLAIN_DEFAULTS`` (plain layers h ← φ(W h + b))."""
    if names is not None:
        return check_knobs(list(names), family)
    reasons = []
    post_ln = POST_LN_DEFAULTS if family == "transformer" else ()
    for defaults in filter(None, (post_ln, FAMILY_DEFAULTS[family], PLAIN_DEFAULTS)):
        chosen = []
        for knob in check_knobs(list(defaults), family):
            try:
                knob_slots(model, None, block_path, (knob,))
            except DiagnoseError as error:  # e.g. forget_bias of a vanilla nn.RNN
                reasons.append(str(error))
                continue
            chosen.append(knob)
        if chosen:
            return tuple(chosen)
    raise DiagnoseError(f"no default knob fits this model ({reasons[0]}); name the knobs "
                        f"(knobs=…, --knob) among {', '.join(family_knobs(family))}")


def _bounds(knob: Knob, min_branch: float, min_scale: float, max_scale: float,
            min_shift: float, max_shift: float) -> tuple[float, float]:
    if knob.kind == "branch":
        return min_branch, max_scale
    if knob.kind == "skip":
        return 1.0, max_scale  # never a weaker skip than the framework's own
    if knob.kind == "shift":
        return min_shift, max_shift
    return min_scale, max_scale  # weight factors; set values (a BatchNorm γ kept alive)


def _own_value(knob: Knob, model: nn.Module, slots) -> float:
    """The value that is the framework's own initialization: 1 (factors), 0 (shifts), the
    mean initial value (set)."""
    return slot_mean(model, slots) if knob.kind == "set" else knob.neutral


def _check_settings(tolerance: float, min_departure: float, min_branch: float,
                    min_scale: float, max_scale: float, min_shift: float = -8.0,
                    max_shift: float = 8.0) -> None:
    if not 0 < tolerance <= 10:
        raise DiagnoseError(f"tolerance must be in (0, 10]; got {tolerance}")
    if not 0 < min_departure < 1:
        raise DiagnoseError(f"min_departure must be in (0, 1); got {min_departure}")
    if not 0 < min_branch <= 16:
        raise DiagnoseError(f"min_branch must be in (0, 16]; got {min_branch}")
    if not 1e-3 <= min_scale < 1:
        raise DiagnoseError(f"min_scale must be in [0.001, 1); got {min_scale}")
    if not max(1.0, min_branch) < max_scale <= 1e3:
        raise DiagnoseError(f"max_scale must be in ({max(1.0, min_branch)}, 1000]; got {max_scale}")
    if not (math.isfinite(min_shift) and math.isfinite(max_shift)
            and -50 <= min_shift <= 0 <= max_shift <= 50 and min_shift < max_shift):
        raise DiagnoseError(f"shift bounds must satisfy -50 <= min_shift <= 0 <= max_shift <= 50"
                            f" (not both 0); got [{min_shift}, {max_shift}]")


