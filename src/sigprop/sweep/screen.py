"""Screened search: reject initializations far from criticality before any training step.

The screen itself is generic: a box |a(x)| ≤ τ_a, |g(x)| ≤ τ_g on two scores of a point x (a
block's hyperparameters) computed before training (``BoxScreen``; the scores come from a
subclass's ``totals``). sigprop's screen (``sigprop.Screen``, in the experiment wing:
``sigprop.experiment.screen``) scores x by the theory exponents of its bidirectional block at the
trained depth L (wide limit, n tokens; the code behind the trial columns of every sweep):

    a(x) = L·λ_a^(L) = log((1 − ρ_L)/(1 − ρ_0)),    g(x) = L·λ_g^(L) = log(‖J_L‖_F² / (n d))

over the L layers from nearly collapsed inputs (q0 = 1, ρ0 → 1; ``definition="finite-depth"``),
or L times the asymptotic per-layer exponents (``definition="asymptotic"``, the columns
``sigprop analyze`` scores for blocks with a norm fixed point). Over the network, token
differences change by e^a and squared gradients by e^g. The screen accepts x iff

    |a(x)| ≤ τ_a  and  |g(x)| ≤ τ_g

(a non-finite exponent fails): the box around criticality a = g = 0 outside which training
fails by rank collapse (a ≪ 0), chaos (a ≫ 0), vanishing (g ≪ 0) or exploding (g ≫ 0)
gradients. Computing a and g costs about 20 ms per point on one core; a training run at the
sweep's default scale about 35 CPU-seconds.

Three ways to use it:

* ``screen_trial(trial, screen)`` in an Optuna objective, after the hyperparameters are
  suggested and before training: raises ``optuna.TrialPruned`` for a rejected point (any
  sampler; TPE learns from pruned trials).
* ``ScreenedSampler(screen, search_space, inner)``: proposes only points that pass, by
  rejection sampling from any inner Optuna sampler; no trial is spent on a rejected point.
* ``screen_samples(spec, screen)``: a quasi-random sweep (``SweepSpec``) keeps the first
  ``samples`` points of its Halton sequence that pass (``sigprop sweep … --screen``).

Each reports its cost: per trial the user attributes ``screen_lambda_a``, ``screen_lambda_g``
(a and g of the point), ``screen_candidates`` (points drawn for it) and ``screen_seconds``;
``screen_cost(study)`` sums them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.trial import FrozenTrial, TrialState

import numpy as np

from sigprop.spec import Architecture, InvalidHyperparameter, declaration
from sigprop.spec.declarations import INPUTS
from sigprop.sweep.design import SweepSpec

DEFAULT_TAU = 3.0  # |L·λ| < 3 holds the low-loss region of the four-hyperparameter search
CHUNK = 16  # candidates of a sweep's sequence whose exponents are computed together
MAX_CANDIDATES = 2000  # per proposal of ScreenedSampler
MAX_CANDIDATES_PER_SAMPLE = 50  # screen_samples examines at most this many per point kept


@dataclass(frozen=True)
class Verdict:
    """One point's exponents over the network, a = L·λ_a and g = L·λ_g, and whether it passed."""

    lambda_a: float
    lambda_g: float
    passed: bool


@dataclass(frozen=True)
class BoxScreen:
    """The box |a| ≤ ``tau_a``, |g| ≤ ``tau_g`` on two scores of points of the block ``arch``
    with the fixed ``values`` (any declared hyperparameter or option; formulas in L are
    resolved at the trained ``depth`` L); ``n_tokens``: tokens n the scores are computed for.
    A subclass computes the scores (``totals``). Every argument is checked here
    (``ValueError`` naming it and its allowed range)."""

    tau_a: float = DEFAULT_TAU
    tau_g: float = DEFAULT_TAU
    depth: int = 16
    arch: Architecture | str | None = None
    values: Mapping[str, Any] = field(default_factory=dict)
    n_tokens: int = 16

    def __post_init__(self) -> None:
        for name in ("tau_a", "tau_g"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name}: must be a finite number >= 0 (a bound on "
                                 f"|L·λ_{name[-1]}|); got {value!r}")
        for name, low in (("depth", 1), ("n_tokens", 2)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name}: must be an integer >= {low}; got {value!r}")
        block = Architecture.load(self.arch).with_values(**dict(self.values))
        object.__setattr__(self, "_block", block)

    def totals(self, configs: list[dict[str, Any]]) -> np.ndarray:
        """The scores (a, g) of each config (every declared value of its block at ``depth``),
        shape (len(configs), 2); NaN or ±∞ where undefined (the point fails)."""
        raise NotImplementedError("a BoxScreen subclass computes the scores")

    def describe(self) -> dict[str, Any]:
        """The screen's settings as plain JSON (what a sweep stores with its study)."""
        return {"tau_a": float(self.tau_a), "tau_g": float(self.tau_g), "depth": self.depth,
                "n_tokens": self.n_tokens}

    def check(self, points: Sequence[Mapping[str, Any]]) -> list[Verdict]:
        """The verdict on each point (a dict of declared hyperparameters and options over the
        screen's block); ``InvalidHyperparameter`` (a ``ValueError``) for an unknown name or a
        value out of its range."""
        if not points:
            return []
        totals = self.totals([self._config(p) for p in points])
        return [Verdict(float(a), float(g), self.passes(a, g)) for a, g in totals]

    def passes(self, a: float, g: float) -> bool:
        """Whether exponents a = L·λ_a, g = L·λ_g lie in the box (NaN and ±∞ do not)."""
        return bool(abs(a) <= self.tau_a and abs(g) <= self.tau_g)

    def reason(self, verdict: Verdict) -> str:
        """Why a point failed, in words."""
        parts = [f"L·λ_{name} = {value:+.2f} outside ±{tau:g}"
                 for name, value, tau in (("a", verdict.lambda_a, self.tau_a),
                                          ("g", verdict.lambda_g, self.tau_g))
                 if not abs(value) <= tau]
        return "; ".join(parts) or "passes"

    def _config(self, point: Mapping[str, Any]) -> dict[str, Any]:
        """Every declared value of the point's block at the screen's depth (bidirectional)."""
        values = self._block.with_values(**dict(point)).resolved(self.depth).values
        return {k: v for k, v in values.items()
                if k != "causal" and not (k == "sigma_2" and values["tied_readout"])}


def screen_trial(trial: optuna.Trial, screen: BoxScreen, ignore: Sequence[str] = ()) -> Verdict:
    """Screen an Optuna trial before training: call it in the objective once the hyperparameters
    are suggested. Every parameter of the trial must be a declared hyperparameter or option
    (``sigma_w``, ``alpha``, ``activation`` …) or be named in ``ignore`` (``("lr",)``).

    Records ``screen_lambda_a``, ``screen_lambda_g`` and ``screen_seconds`` as user attributes
    and returns the verdict; raises ``optuna.TrialPruned`` if the point is outside the box.
    """
    start = time.perf_counter()
    point = {}
    for name, value in trial.params.items():
        if name in ignore:
            continue
        try:
            declaration(name)
        except InvalidHyperparameter as error:
            raise ValueError(f"screen_trial: trial parameter {name!r} is not a declared "
                             f"hyperparameter or option; pass ignore=({name!r},) to leave it "
                             f"out ({error})") from None
        point[name] = value
    verdict = screen.check([point])[0]
    trial.set_user_attr("screen_lambda_a", verdict.lambda_a)
    trial.set_user_attr("screen_lambda_g", verdict.lambda_g)
    trial.set_user_attr("screen_seconds", time.perf_counter() - start)
    if not verdict.passed:
        raise optuna.TrialPruned(f"screened out before training: {screen.reason(verdict)}")
    return verdict


class ScreenedSampler(BaseSampler):
    """An Optuna sampler that proposes only points passing ``screen``.

    ``search_space`` maps declared hyperparameters or options to Optuna distributions; the
    objective must suggest them with exactly these distributions. For each new trial the
    sampler draws candidates x_1, x_2, … from ``inner`` (default ``RandomSampler(seed)``)
    as that sampler would propose them on its own (its relative proposal where it makes one,
    its independent one otherwise), one at a time, and proposes the first x_k that passes; no
    draw is wasted, so the proposals are exactly the passing draws of the inner sampler, in
    order. They follow the inner sampler's distribution restricted to the box
    B = {|L·λ_a| ≤ τ_a, |L·λ_g| ≤ τ_g} (with a random inner sampler, uniform on B), and a
    search needs, in expectation, P(x ∈ B) times the trainings of the unscreened one to reach a
    loss that only points inside B reach. Parameters outside ``search_space`` (a learning rate)
    come from ``inner``; ``seed`` seeds the default inner sampler.

    Why the first passing candidate and not the one nearest a = g = 0: the nearest are those
    with the weakest residual branches (α → 0, nearly the identity at every depth), which train
    measurably worse (docs/sweeps.md, "Is the loss lowest at the crossing?").

    Each proposal stores ``screen_lambda_a``, ``screen_lambda_g``, ``screen_candidates`` and
    ``screen_seconds`` as user attributes. If none of ``max_candidates`` draws passes, the
    trial fails with a ``ValueError`` naming the thresholds.
    """

    def __init__(
        self,
        screen: BoxScreen,
        search_space: Mapping[str, BaseDistribution],
        inner: BaseSampler | None = None,
        *,
        seed: int | None = None,
        max_candidates: int = MAX_CANDIDATES,
    ) -> None:
        if not search_space:
            raise ValueError("search_space: give at least one hyperparameter and its "
                             "distribution")
        for name, distribution in search_space.items():
            declaration(name)  # InvalidHyperparameter listing the declared names
            if not isinstance(distribution, BaseDistribution):
                raise ValueError(f"search_space[{name!r}]: must be an Optuna distribution; "
                                 f"got {distribution!r}")
        if isinstance(max_candidates, bool) or not isinstance(max_candidates, int) \
                or max_candidates < 1:
            raise ValueError(f"max_candidates: must be an integer >= 1; got {max_candidates!r}")
        if inner is not None and seed is not None:
            raise ValueError("seed: seeds the default inner sampler; seed the inner sampler "
                             "you give instead")
        self.screen = screen
        self.search_space = dict(search_space)
        self.inner = inner if inner is not None else RandomSampler(seed=seed)
        self.max_candidates = max_candidates

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial
                                    ) -> dict[str, BaseDistribution]:
        """The screened search space, and whatever else the inner sampler samples jointly."""
        return {**self.inner.infer_relative_search_space(study, trial), **self.search_space}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not search_space or "fixed_params" in trial.system_attrs:
            return {}  # an enqueued trial keeps its given point (screen_trial can check it)
        start = time.perf_counter()
        relative = {k: v for k, v in self.inner.infer_relative_search_space(study, trial).items()
                    if k in search_space}
        for drawn in range(1, self.max_candidates + 1):
            candidate = self._draw(study, trial, relative)
            verdict = self.screen.check([{k: candidate[k] for k in self.search_space}])[0]
            if verdict.passed:
                attrs = {"screen_lambda_a": verdict.lambda_a, "screen_lambda_g": verdict.lambda_g,
                         "screen_candidates": drawn, "screen_seconds": time.perf_counter() - start}
                for key, value in attrs.items():
                    study._storage.set_trial_user_attr(trial._trial_id, key, value)
                return candidate
        raise ValueError(f"ScreenedSampler: none of {self.max_candidates} candidates passes "
                         f"|L·λ_a| <= {self.screen.tau_a:g} and |L·λ_g| <= "
                         f"{self.screen.tau_g:g}; widen tau_a, tau_g or the search space")

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        if param_name in self.search_space and "fixed_params" not in trial.system_attrs:
            raise ValueError(f"ScreenedSampler: {param_name!r} was suggested with "
                             f"{param_distribution}, not the sampler's "
                             f"{self.search_space[param_name]}: suggest it with the same "
                             "distribution")
        return self.inner.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.inner.before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self.inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()

    def _draw(self, study: optuna.Study, trial: FrozenTrial,
              relative: dict[str, BaseDistribution]) -> dict[str, Any]:
        """One candidate, as the inner sampler would propose it for this trial: its joint
        proposal over ``relative`` (its own relative search space), the rest of the screened
        space drawn independently."""
        point = self.inner.sample_relative(study, trial, relative) if relative else {}
        for name, distribution in self.search_space.items():
            if name not in point:
                point[name] = self.inner.sample_independent(study, trial, name, distribution)
        return point


def screen_samples(spec: SweepSpec, screen: BoxScreen,
                   on_chunk: Callable[[int, int], None] | None = None) -> SweepSpec:
    """``spec`` with its ``spec.samples`` quasi-random points replaced by the first ones of its
    scrambled Halton sequence that pass ``screen`` (``SweepSpec.sample_positions``), the screen
    and the number of candidates it examined up to the last point kept recorded in
    ``SweepSpec.screen``. Each point is screened merged with the spec's
    fixed block values (the screen's own ``values`` underneath). ``on_chunk(examined, kept)``
    reports progress. Raises ``ValueError`` if the grid varies anything but the seed (the
    exponents of a point must not depend on it), or if fewer than ``samples`` points pass among
    ``MAX_CANDIDATES_PER_SAMPLE`` × ``samples`` candidates."""
    if not spec.sampled:
        raise ValueError("screen: screens the quasi-random points of a search; give --sample "
                         "NAME=LOW:HIGH and --samples N")
    varied = sorted(set(spec.grid) - {"seed"})
    if varied:
        raise ValueError(f"screen: the grid may only vary the seed, since a sampled point is "
                         f"kept or dropped whatever the grid holds; got --grid {', '.join(varied)}")
    if spec.fixed.get("depth", screen.depth) != screen.depth:
        raise ValueError(f"screen: depth {screen.depth} differs from the sweep's depth "
                         f"{spec.fixed['depth']}")
    fixed = {k: v for k, v in spec.fixed.items() if _is_declared(k)}
    limit = MAX_CANDIDATES_PER_SAMPLE * spec.samples
    kept, examined = [], 0
    step = max(CHUNK, spec.samples)  # the cost is linear in the points: chunks only save calls
    while len(kept) < spec.samples and examined < limit:
        count = min(step, limit - examined)
        points = spec.sequence(examined + count)[examined:]
        for offset, verdict in enumerate(screen.check([{**fixed, **p} for p in points])):
            if verdict.passed and len(kept) < spec.samples:
                kept.append(examined + offset)
        examined += count
        if on_chunk is not None:
            on_chunk(examined, len(kept))
    if len(kept) < spec.samples:
        raise ValueError(f"screen: only {len(kept)} of {examined} candidates pass |L·λ_a| <= "
                         f"{screen.tau_a:g} and |L·λ_g| <= {screen.tau_g:g}, fewer than the "
                         f"{spec.samples} samples asked for; widen the thresholds or the box")
    return replace(spec, sample_positions=kept,
                   screen={**screen.describe(), "candidates": kept[-1] + 1})


def screen_cost(study: optuna.Study) -> dict[str, float]:
    """What screening cost a study: ``trials`` (trials screened), ``pruned`` (rejected by
    ``screen_trial``), ``candidates`` (drawn by ``ScreenedSampler``) and ``seconds``."""
    trials = [t for t in study.get_trials(deepcopy=False) if "screen_seconds" in t.user_attrs]
    return {"trials": len(trials),
            "pruned": sum(t.state == TrialState.PRUNED for t in trials),
            "candidates": sum(t.user_attrs.get("screen_candidates", 1) for t in trials),
            "seconds": float(sum(t.user_attrs["screen_seconds"] for t in trials))}


def _is_declared(name: str) -> bool:
    """Whether ``name`` is a hyperparameter or option of a block (not an input setting)."""
    try:
        return declaration(name).name not in INPUTS
    except InvalidHyperparameter:
        return False
