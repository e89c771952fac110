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

import copy
import dataclasses
import math
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from sigprop.devices import resolve_device
from sigprop.init.ensemble import Evaluation, ScaledEnsemble
from sigprop.init.knobs import FAMILY_DEFAULTS, Knob, check_knobs, knob_slots, slot_mean
from sigprop.init.result import CriticalInit, apply_init, apply_scales, load_init, summary
from sigprop.init.solve import Solution, solve
from sigprop.init.warm_start import hf_theory_model, theory_start
from sigprop.measure.blocks import DiagnoseError, Run
from sigprop.measure.diagnose import RECURRENT_STEPS, diagnose
from sigprop.measure.ensemble import check_seeds, stream_seed
from sigprop.measure.factories import hf_factory, load_factory, net_factory
from sigprop.measure.families import IMAGE_SIZE, detect_family
from sigprop.measure.model_probe import build_model

DEFAULT_KNOBS = FAMILY_DEFAULTS["transformer"]
SPREAD_FAMILIES = ("recurrent", "graph")
"""Families searched on all seeds by default: each seed draws its own input sequence (a
recurrent network) or graph (a GCN), and near the edge their totals spread between seeds by
about the tolerance (docs/init_families.md)."""
GRADIENTS = ("raw", "normalized")

MEANING = {
    "transformer": "over the model's L blocks |L·λ_a^(L)| and |L·λ_g^(L)| are at most {tol:g}: "
                   "near collapse the tokens' differences change by at most e^{tol:g} (they "
                   "neither collapse nor scatter), and gradients neither vanish nor explode "
                   "through the whole model",
    "convolutional": "over the L residual blocks |L·λ_a^(L)| and |L·λ_g^(L)| are at most "
                     "{tol:g}: spatial positions neither merge (loss of spatial information) "
                     "nor scatter, and ‖∂X_L/∂X_0‖² per entry changes by at most e^{tol:g}: "
                     "gradients reach the stem",
    "recurrent": "over the T = L time steps |T·λ_a| and |T·λ_g| are at most {tol:g}: the state "
                 "still tells (without scrambling) where it started T steps ago, and gradients "
                 "through time neither vanish nor explode over the unrolled horizon: long-range "
                 "memory over T steps is available",
    "graph": "over the L message-passing layers |L·λ_a^(L)| and |L·λ_g^(L)| are at most "
             "{tol:g}: node features neither over-smooth nor scatter, and gradients reach the "
             "input features",
}
"""What reaching both targets means, per family (``CriticalInit.meaning``)."""


def critical_init(
    model: nn.Module | Callable[[int], nn.Module] | str | None = None,
    *,
    hf: str | None = None,
    net: str | None = None,
    family: str | None = None,
    layers: int | None = None,
    width: int | None = None,
    heads: int | None = None,
    knobs: Sequence[str] | None = None,
    gradient: str = "raw",
    tolerance: float = 0.5,
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
    block_path: str | None = None,
    run: Run | None = None,
    device: str | torch.device = "cpu",
    image_size: int = IMAGE_SIZE,
    warm_start: bool = True,
    on_evaluation: Callable[[Evaluation], None] | None = None,
) -> CriticalInit:
    """Find knob values s (shared by all blocks) with |log_gap_L| and |log_jac_L| ≤
    ``tolerance`` at the model's depth, under the non-identity constraints above.

    ``model``: an ``nn.Module`` (changed in place at the end; its seeds vary only the inputs
    and probes), a factory ``factory(seed) -> nn.Module`` or ``"module.path:factory"`` (each
    seed builds a fresh model, as ``diagnose`` does), or ``hf`` = gpt2, bert, llama built from
    a config with ``layers`` (default 24), ``width`` (default 256) and ``heads``, or ``net`` =
    resnet18, lstm, gru, rnn, gcn (``sigprop.measure.factories.net_factory``: ``layers`` is
    the unrolled horizon T of a recurrent network, default 64, and the depth of a GCN, default
    24). A factory returning an nn.RNN/LSTM/GRU is unrolled over T = ``layers`` steps (default
    64), as ``diagnose`` does. ``family``: as ``diagnose`` (detected when None). ``knobs``:
    names from ``sigprop.init.KNOBS`` of the model's family (default: ``FAMILY_DEFAULTS`` of
    the family). The search runs on float64 copies of the first ``search_seeds`` (default 2;
    all seeds for the families of ``SPREAD_FAMILIES``) seeds' models on ``device``; "before" and "after" are ``diagnose`` on all ``seeds``
    (after: fresh models with the values applied). ``on_evaluation`` is called after every
    evaluation (progress). ``warm_start``: start from the theory's answer where the theory
    describes the model (``warm_start.py``: Hugging Face GPT-2 and Llama), else from the
    framework's own initialization (factors 1, shifts 0, set knobs at their mean initial
    value), which is always a candidate. ``reached``: both "after" totals (all seeds) within
    ``tolerance`` (what that means for the family: ``MEANING``, in the result's ``meaning``).
    Returns a ``CriticalInit`` (``to_json``, ``write``, ``apply``); raises ``DiagnoseError``
    for bad input.
    """
    started = time.perf_counter()
    _check_settings(tolerance, min_departure, min_branch, min_scale, max_scale, min_shift,
                    max_shift)
    if gradient not in GRADIENTS:
        raise DiagnoseError(f"gradient must be one of {', '.join(GRADIENTS)}; got {gradient!r}")
    instance = model if isinstance(model, nn.Module) else None
    factory, run, family = _factory(model, hf, net, layers, width, heads, run, n_tokens,
                                    image_size, family)
    seeds = _seeds(seeds, seed)
    device = resolve_device(device)
    steps = RECURRENT_STEPS if layers is None else layers
    first = _probe_model(factory, seeds[0], device, family, steps)
    family = detect_family(first, family)
    if search_seeds is None:  # every seed draws its own input sequence or graph: search on all
        search_seeds = len(seeds) if family in SPREAD_FAMILIES else min(2, len(seeds))
    if isinstance(search_seeds, bool) or not 1 <= search_seeds <= len(seeds):
        raise DiagnoseError(f"search_seeds must be in [1, seeds = {len(seeds)}]; got {search_seeds}")
    searched = seeds[:search_seeds]
    models = [first, *(_probe_model(factory, s, device, family, steps) for s in searched[1:])]
    chosen = _knobs(knobs, family, models[0], block_path)
    measure = dict(n_tokens=n_tokens, n_probes=n_probes, block_path=block_path, run=run,
                   family=family, layers=steps, image_size=image_size)
    before = diagnose(factory, seeds=seeds, device=device, **measure)
    probe_measure = {k: v for k, v in measure.items() if k != "layers"}
    ensemble = ScaledEnsemble(models, searched, chosen, gradient=gradient,
                              on_evaluation=on_evaluation, **probe_measure)
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
    after = diagnose(factory, seeds=seeds, device=device,
                     prepare=lambda m: apply_scales(m, scales, parameters, block_path), **measure)
    if instance is not None:
        apply_scales(instance, scales, parameters, block_path)
    jac = after.log_jac_L if gradient == "raw" else after.log_jac_norm_L
    reached = all(abs(total.mean) <= tolerance for total in (after.log_gap_L, jac))
    meaning = MEANING[family].format(tol=tolerance)
    if reached:
        reason = f"reached: {meaning}"
    else:
        reason = "; ".join(filter(None, (solution.reason or _missed(after, tolerance, gradient),
                                         _advice(family, chosen, models[0], summary(after),
                                                 gradient, tolerance))))
    return CriticalInit(
        scales=scales, parameters=parameters, before=summary(before),
        after=summary(after), evaluations=len(ensemble.history),
        seconds=time.perf_counter() - started, reached=reached, reason=reason,
        constraint=_constraint(chosen, bounds, min_departure, family), gradient=gradient,
        model=before.description, depth=before.depth,
        input=_input(family, n_tokens, seeds, searched, n_probes, before),
        path=[e.to_json() for e in ensemble.history],
        warm_start=None if warm is None else warm.to_json(), family=family, meaning=meaning,
    )


def reapply(
    model: nn.Module | Callable[[int], nn.Module] | str | None,
    init: str | Path | dict | CriticalInit,
    *,
    hf: str | None = None,
    net: str | None = None,
    family: str | None = None,
    layers: int | None = None,
    width: int | None = None,
    heads: int | None = None,
    n_tokens: int = 16,
    seeds: int | Sequence[int] = 4,
    seed: int = 0,
    n_probes: int = 4,
    block_path: str | None = None,
    run: Run | None = None,
    device: str | torch.device = "cpu",
    image_size: int = IMAGE_SIZE,
) -> CriticalInit:
    """A saved critical initialization applied to fresh models of this architecture and
    measured: "before" (default init) and "after" (values applied) by ``diagnose`` on
    ``seeds``; nothing is searched (0 evaluations)."""
    started = time.perf_counter()
    saved = load_init(init)
    factory, run, family = _factory(model, hf, net, layers, width, heads, run, n_tokens,
                                    image_size, family)
    seeds = _seeds(seeds, seed)
    measure = dict(n_tokens=n_tokens, n_probes=n_probes, block_path=block_path, run=run,
                   seeds=seeds, device=resolve_device(device), family=family,
                   layers=RECURRENT_STEPS if layers is None else layers, image_size=image_size)
    before = diagnose(factory, **measure)
    after = diagnose(factory, prepare=lambda m: apply_init(m, saved, block_path), **measure)
    return dataclasses.replace(
        saved, before=summary(before), after=summary(after), evaluations=0,
        seconds=time.perf_counter() - started, model=before.description, depth=before.depth,
        input=_input(before.family, n_tokens, seeds, seeds, n_probes, before), path=[],
        family=before.family)


def build_initialized(
    model: Callable[[int], nn.Module] | str | None,
    init: str | Path | dict | CriticalInit,
    *,
    hf: str | None = None,
    net: str | None = None,
    layers: int | None = None,
    width: int | None = None,
    heads: int | None = None,
    seed: int = 0,
    block_path: str | None = None,
    n_tokens: int = 16,
) -> nn.Module:
    """Seed ``seed``'s model (``torch.manual_seed(seed)``, then the factory; its own dtype and
    device) with a critical initialization applied: ready to train (a recurrent network as
    the nn.RNN/LSTM/GRU itself, not unrolled)."""
    factory, _, _ = _factory(model, hf, net, layers, width, heads, None, n_tokens,
                             IMAGE_SIZE, None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        built = factory(seed)
    return apply_init(built, init, block_path)


def _probe_model(factory: Callable[[int], nn.Module], seed: int, device: torch.device,
                 family: str | None, steps: int) -> nn.Module:
    """Seed ``seed``'s model as ``diagnose`` measures it: float64, eval mode, and an
    nn.RNN/LSTM/GRU unrolled over ``steps`` on the seed's input sequence."""
    from sigprop.models.recurrent import Unrolled

    model = build_model(factory, seed, device)
    if isinstance(model, nn.RNNBase) and family in (None, "recurrent"):
        try:
            model = Unrolled(model, steps, input_seed=stream_seed(seed, "input sequence")).eval()
        except ValueError as error:
            raise DiagnoseError(str(error)) from None
    return model


def _knobs(names: Sequence[str] | None, family: str, model: nn.Module,
           block_path: str | None) -> tuple[Knob, ...]:
    """The named knobs (checked against the family), or the family's defaults that match
    something in ``model``."""
    if names is not None:
        return check_knobs(list(names), family)
    chosen = []
    for knob in check_knobs(list(FAMILY_DEFAULTS[family]), family):
        try:
            knob_slots(model, None, block_path, (knob,))
        except DiagnoseError:
            continue  # e.g. forget_bias of a vanilla nn.RNN
        chosen.append(knob)
    if not chosen:
        knob_slots(model, None, block_path, check_knobs(list(FAMILY_DEFAULTS[family]), family))
    return tuple(chosen)


def _bounds(knob: Knob, min_branch: float, min_scale: float, max_scale: float,
            min_shift: float, max_shift: float) -> tuple[float, float]:
    if knob.kind == "branch":
        return min_branch, max_scale
    if knob.kind == "shift":
        return min_shift, max_shift
    return min_scale, max_scale  # weight factors; set values (a BatchNorm γ kept alive)


def _own_value(knob: Knob, model: nn.Module, slots) -> float:
    """The value that is the framework's own initialization: 1 (factors), 0 (shifts), the
    mean initial value (set)."""
    return slot_mean(model, slots) if knob.kind == "set" else knob.neutral


def _advice(family: str, chosen: tuple[Knob, ...], model: nn.Module, after: dict,
            gradient: str, tolerance: float) -> str:
    """What the family's knobs cannot do, and what would (appended to an unreached reason)."""
    names = {k.name for k in chosen}
    gap_missed = abs(after["log_gap_L"] or 0.0) > tolerance
    notes = []
    if family == "graph":
        residual = [getattr(m, "residual", None) for m in model.modules()
                    if hasattr(m, "residual")]
        if gap_missed and not any(residual):
            notes.append(
                "over-smoothing is set by the graph: every layer Â shrinks the nodes' "
                "differences by its spectral gap, and σ_w cannot undo that (for a positively "
                "homogeneous φ such as ReLU, σ_w rescales the features without turning them, "
                "so log_gap_L does not depend on it); the fix is a residual connection "
                "X ← X + φ(Â X W) (sigprop.models.graph.GCN(..., residual=True)), with which "
                "weights becomes the residual branch multiplier")
    if family == "convolutional":
        if "conv" in names:
            notes.append("conv cannot move the totals: every convolution is followed by a "
                         "BatchNorm that divides by the batch's statistics, so its gain cancels")
        if "branch_gamma" in names:
            notes.append("branch_gamma → 0 leaves the stem, the downsampling shortcuts "
                         "(1×1 convolution and BatchNorm) and the final ReLUs, whose own totals "
                         "remain; a smaller branch_gamma also brings the identity-shortcut "
                         "blocks towards the identity (the departure constraint)")
    if family == "recurrent" and gap_missed and "forget_bias" not in names:
        kind = type(getattr(model, "rnn", model)).__name__
        if kind in ("LSTM", "GRU"):
            notes.append(f"an {kind}'s memory is set by the gate that keeps the old state: add "
                         "the forget_bias knob")
    return "; ".join(notes)


def _missed(after, tolerance: float, gradient: str) -> str:
    jac = after.log_jac_L if gradient == "raw" else after.log_jac_norm_L
    return (f"on all seeds the totals ({after.log_gap_L.mean:+.3f}, {jac.mean:+.3f}) miss "
            f"±{tolerance:g}, although the searched seeds met it: the seed spread is comparable "
            "to the tolerance (more --search-seeds)")


def _input(family: str, n_tokens: int, seeds: Sequence[int], searched: Sequence[int],
           n_probes: int, diagnosis=None) -> str:
    where = (f"seeds {list(seeds)} (searched on {list(searched)}), {n_probes} probes each")
    n = diagnosis.n_tokens if diagnosis is not None else n_tokens
    if family == "convolutional":
        return ("λ_a^(L): identical spatial positions (ρ0 → 1; circular padding); λ_g^(L): the "
                "stem's feature map of an image of N(0, 1) pixels, BatchNorm at the statistics of "
                f"the seed's batch; {where}")
    if family == "recurrent":
        return ("λ_a^(L): copies started from identical states (ρ0 → 1); λ_g^(L): "
                f"{n} copies from orthogonal initial states, driven by one N(0, 1) input "
                f"sequence; {where}")
    if family == "graph":
        return ("λ_a^(L): the smooth state (every node token equal, ρ0 → 1); λ_g^(L): "
                f"orthogonal node features on the graph's {n} nodes; {where}")
    return (f"λ_a^(L): nearly collapsed tokens (ρ0 → 1) at the embeddings' norm; λ_g^(L): the "
            f"model's embeddings of {n_tokens} random tokens; {where}")


def _factory(model, hf, net, layers, width, heads, run, n_tokens, image_size, family
             ) -> tuple[Callable[[int], nn.Module], Run | None, str | None]:
    """(factory, run, family when known)."""
    if sum(x is not None for x in (model, hf, net)) != 1:
        raise DiagnoseError("give one of a model (an nn.Module, a factory or "
                            "'module.path:factory'), hf=FAMILY (--hf) or net=NAME (--net)")
    if hf is not None:
        factory, run = hf_factory(hf, 24 if layers is None else layers,
                                  256 if width is None else width, heads)
        return factory, run, family
    if net is not None:
        factory, net_family = net_factory(net, layers, width, n_tokens, image_size)
        return factory, run, net_family if family is None else family
    if isinstance(model, nn.Module):
        template = copy.deepcopy(model)
        return (lambda seed: copy.deepcopy(template)), run, family
    return (load_factory(model) if isinstance(model, str) else model), run, family


def _seeds(seeds: int | Sequence[int], seed: int) -> tuple[int, ...]:
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        if seeds < 1:
            raise DiagnoseError(f"seeds must be an integer >= 1; got {seeds}")
        seeds = tuple(range(seed, seed + int(seeds)))
    seeds = tuple(int(s) for s in seeds)
    check_seeds(seeds)
    return seeds


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


def _constraint(knobs, bounds, min_departure, family: str = "transformer") -> str:
    ranges = ", ".join(f"{k.name} ({k.kind}) in [{bounds[k.name][0]:.3g}, {bounds[k.name][1]:.3g}]"
                       for k in knobs)
    shared = "shared by all time steps" if family == "recurrent" else "shared by all blocks"
    departure = ("departure 1 − Π_stages cos²∠(X_end, X_start) over the stages of one shape"
                 if family == "convolutional" else "departure sin²∠(X_L, X_0)")
    values = "factors" if all(k.multiplicative for k in knobs) else "values"
    return f"{values} {ranges}, {shared}; {departure} ≥ {min_departure:g} (the identity has 0)"
