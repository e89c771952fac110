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
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from sigprop.devices import resolve_device
from sigprop.init.ensemble import Evaluation, ScaledEnsemble
from sigprop.init.knobs import check_knobs
from sigprop.init.result import CriticalInit, apply_init, apply_scales, load_init, summary
from sigprop.init.solve import Solution, solve
from sigprop.init.warm_start import hf_theory_model, theory_start
from sigprop.measure.blocks import DiagnoseError, Run
from sigprop.measure.diagnose import diagnose
from sigprop.measure.ensemble import check_seeds
from sigprop.measure.factories import hf_factory, load_factory
from sigprop.measure.model_probe import build_model

DEFAULT_KNOBS = ("mlp_input", "attn_values")
GRADIENTS = ("raw", "normalized")


def critical_init(
    model: nn.Module | Callable[[int], nn.Module] | str | None = None,
    *,
    hf: str | None = None,
    layers: int = 24,
    width: int | None = None,
    heads: int | None = None,
    knobs: Sequence[str] = DEFAULT_KNOBS,
    gradient: str = "raw",
    tolerance: float = 0.5,
    min_departure: float = 0.25,
    min_branch: float = 1.0,
    min_scale: float = 1 / 16,
    max_scale: float = 16.0,
    n_tokens: int = 16,
    seeds: int | Sequence[int] = 4,
    seed: int = 0,
    search_seeds: int | None = None,
    n_probes: int = 4,
    block_path: str | None = None,
    run: Run | None = None,
    device: str | torch.device = "cpu",
    warm_start: bool = True,
    on_evaluation: Callable[[Evaluation], None] | None = None,
) -> CriticalInit:
    """Find knob factors s (shared by all blocks) with |log_gap_L| and |log_jac_L| ≤
    ``tolerance`` at the model's depth, under the non-identity constraints above.

    ``model``: an ``nn.Module`` (rescaled in place at the end; its seeds vary only the inputs
    and probes), a factory ``factory(seed) -> nn.Module`` or ``"module.path:factory"`` (each
    seed builds a fresh model, as ``diagnose`` does), or ``hf`` = gpt2, bert, llama built from
    a config with ``layers``, ``width`` (default 256) and ``heads``. ``knobs``: names from
    ``sigprop.init.KNOBS``. The search runs on float64 copies of the first ``search_seeds``
    (default 2) seeds' models on ``device``; "before" and "after" are ``diagnose`` on all ``seeds`` (after:
    fresh models with the factors applied). ``on_evaluation`` is called after every evaluation
    (progress). ``warm_start``: start from the theory's answer where the theory describes the
    model (``warm_start.py``: Hugging Face GPT-2 and Llama), else from all factors 1; the
    framework's own init (all factors 1) is always a candidate. ``reached``: both "after" totals
    (all seeds) within ``tolerance``. Returns a ``CriticalInit`` (``to_json``, ``write``,
    ``apply``); raises ``DiagnoseError`` for bad input.
    """
    started = time.perf_counter()
    _check_settings(tolerance, min_departure, min_branch, min_scale, max_scale)
    if gradient not in GRADIENTS:
        raise DiagnoseError(f"gradient must be one of {', '.join(GRADIENTS)}; got {gradient!r}")
    chosen = check_knobs(list(knobs))
    instance = model if isinstance(model, nn.Module) else None
    factory, run = _factory(model, hf, layers, width, heads, run)
    seeds = _seeds(seeds, seed)
    device = resolve_device(device)
    measure = dict(n_tokens=n_tokens, n_probes=n_probes, block_path=block_path, run=run)
    before = diagnose(factory, seeds=seeds, device=device, **measure)
    search_seeds = min(2, len(seeds)) if search_seeds is None else search_seeds
    if isinstance(search_seeds, bool) or not 1 <= search_seeds <= len(seeds):
        raise DiagnoseError(f"search_seeds must be in [1, seeds = {len(seeds)}]; got {search_seeds}")
    searched = seeds[:search_seeds]
    models = [build_model(factory, s, device) for s in searched]
    ensemble = ScaledEnsemble(models, searched, chosen, gradient=gradient,
                              on_evaluation=on_evaluation, **measure)
    bounds = {k.name: ((min_branch if k.kind == "branch" else min_scale), max_scale)
              for k in chosen}
    start = {k.name: float(np.clip(1.0, *bounds[k.name])) for k in chosen}
    settings = dict(min_departure=min_departure, tolerance=tolerance)
    theory = hf_theory_model(models[0], n_tokens) if warm_start else None
    warm = (theory_start(theory, start, bounds, gradient=gradient, **settings)
            if theory is not None else None)
    default = ensemble.evaluate(start)  # the framework's own init (factors 1, within bounds)
    if default.departure >= min_departure and np.abs(default.residual).max() <= tolerance:
        solution = Solution(default, True, "")  # already critical: nothing to fix
    else:
        if warm is not None:
            start = warm.solution.best.scales
        solution = solve(ensemble, start, bounds, **settings)
    scales, parameters = solution.best.scales, ensemble.parameter_names
    after = diagnose(factory, seeds=seeds, device=device,
                     prepare=lambda m: apply_scales(m, scales, parameters, block_path), **measure)
    if instance is not None:
        apply_scales(instance, scales, parameters, block_path)
    jac = after.log_jac_L if gradient == "raw" else after.log_jac_norm_L
    reached = all(abs(total.mean) <= tolerance for total in (after.log_gap_L, jac))
    return CriticalInit(
        scales=scales, parameters=parameters, before=summary(before),
        after=summary(after), evaluations=len(ensemble.history),
        seconds=time.perf_counter() - started, reached=reached,
        reason="" if reached else (solution.reason or _missed(after, tolerance, gradient)),
        constraint=_constraint(chosen, bounds, min_departure), gradient=gradient,
        model=before.description, depth=before.depth,
        input=_input(n_tokens, seeds, searched, n_probes),
        path=[e.to_json() for e in ensemble.history],
        warm_start=None if warm is None else warm.to_json(),
    )


def reapply(
    model: nn.Module | Callable[[int], nn.Module] | str | None,
    init: str | Path | dict | CriticalInit,
    *,
    hf: str | None = None,
    layers: int = 24,
    width: int | None = None,
    heads: int | None = None,
    n_tokens: int = 16,
    seeds: int | Sequence[int] = 4,
    seed: int = 0,
    n_probes: int = 4,
    block_path: str | None = None,
    run: Run | None = None,
    device: str | torch.device = "cpu",
) -> CriticalInit:
    """A saved critical initialization applied to fresh models of this architecture and
    measured: "before" (default init) and "after" (factors applied) by ``diagnose`` on
    ``seeds``; nothing is searched (0 evaluations)."""
    started = time.perf_counter()
    saved = load_init(init)
    factory, run = _factory(model, hf, layers, width, heads, run)
    seeds = _seeds(seeds, seed)
    measure = dict(n_tokens=n_tokens, n_probes=n_probes, block_path=block_path, run=run,
                   seeds=seeds, device=resolve_device(device))
    before = diagnose(factory, **measure)
    after = diagnose(factory, prepare=lambda m: apply_init(m, saved, block_path), **measure)
    return dataclasses.replace(
        saved, before=summary(before), after=summary(after), evaluations=0,
        seconds=time.perf_counter() - started, model=before.description, depth=before.depth,
        input=_input(n_tokens, seeds, seeds, n_probes), path=[])


def build_initialized(
    model: Callable[[int], nn.Module] | str | None,
    init: str | Path | dict | CriticalInit,
    *,
    hf: str | None = None,
    layers: int = 24,
    width: int | None = None,
    heads: int | None = None,
    seed: int = 0,
    block_path: str | None = None,
) -> nn.Module:
    """Seed ``seed``'s model (``torch.manual_seed(seed)``, then the factory; its own dtype and
    device) with a critical initialization applied: ready to train."""
    factory, _ = _factory(model, hf, layers, width, heads, None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        built = factory(seed)
    return apply_init(built, init, block_path)


def _missed(after, tolerance: float, gradient: str) -> str:
    jac = after.log_jac_L if gradient == "raw" else after.log_jac_norm_L
    return (f"on all seeds the totals ({after.log_gap_L.mean:+.3f}, {jac.mean:+.3f}) miss "
            f"±{tolerance:g}, although the searched seeds met it: the seed spread is comparable "
            "to the tolerance (more --search-seeds)")


def _input(n_tokens: int, seeds: Sequence[int], searched: Sequence[int], n_probes: int) -> str:
    return (f"λ_a^(L): nearly collapsed tokens (ρ0 → 1) at the embeddings' norm; λ_g^(L): the "
            f"model's embeddings of {n_tokens} random tokens; seeds {list(seeds)} (searched on "
            f"{list(searched)}), {n_probes} probes each")


def _factory(model, hf, layers, width, heads, run) -> tuple[Callable[[int], nn.Module], Run | None]:
    if (model is None) == (hf is None):
        raise DiagnoseError("give either a model (an nn.Module, a factory or 'module.path:factory')"
                            " or hf=FAMILY (--hf)")
    if hf is not None:
        return hf_factory(hf, layers, 256 if width is None else width, heads)
    if isinstance(model, nn.Module):
        template = copy.deepcopy(model)
        return (lambda seed: copy.deepcopy(template)), run
    return (load_factory(model) if isinstance(model, str) else model), run


def _seeds(seeds: int | Sequence[int], seed: int) -> tuple[int, ...]:
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        if seeds < 1:
            raise DiagnoseError(f"seeds must be an integer >= 1; got {seeds}")
        seeds = tuple(range(seed, seed + int(seeds)))
    seeds = tuple(int(s) for s in seeds)
    check_seeds(seeds)
    return seeds


def _check_settings(tolerance: float, min_departure: float, min_branch: float,
                    min_scale: float, max_scale: float) -> None:
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


def _constraint(knobs, bounds, min_departure) -> str:
    ranges = ", ".join(f"{k.name} ({k.kind}) in [{bounds[k.name][0]:.3g}, {bounds[k.name][1]:.3g}]"
                       for k in knobs)
    return (f"factors {ranges}, shared by all blocks; departure sin²∠(X_L, X_0) ≥ "
            f"{min_departure:g} (the identity has 0)")

