"""What final test loss will a new initialization reach? A predictor fitted on a finished sweep.

``predict(storage, study, alpha=0.4, sigma_w=1.75)`` answers from the study's finished trials:

1. Features. Only what can be computed for a new point from its hyperparameters counts: the
   theory columns of ``sigprop.experiment.init_exponents.theory_at_init`` (the function that computes
   them for every trial of a sweep) and the swept hyperparameters themselves. Each trial's
   theory columns are recomputed from its config by that function, so trials and new points
   get their features from the same code; the columns measured on the LM at initialization
   are blanked, and the analysis skips the predictors that need them. ``FEATURES`` says how
   each feature column of the analysis is computed for an ``Initialization`` (declared values,
   theory columns, depth, n): a new feature column needs one entry there (each fit checks the
   entries against the analysis' columns).
2. Choice. ``sigprop.analysis.analyze`` cross-validates every candidate (K-fold grouped by
   hyperparameter point, R² averaged over ``cv_repeats`` fold assignments); the one of highest
   mean R² is refitted on all finished trials. The baseline on the raw hyperparameters is
   chosen only if it scores strictly best, and every prediction then says so (``baseline``).
3. Interval. Each trial predicted out of fold (by the model fitted without its hyperparameter
   point, the first fold assignment) leaves a residual r = loss − prediction; the interval is
   [ŷ + q_0.1(r), ŷ + q_0.9(r)], nominally covering 80 % (``COVERAGE``) of single training
   runs at points like the trained ones. It is not widened elsewhere: a point whose features
   leave the training range, or whose block differs from the study's in what the predictor
   does not see, is flagged ``extrapolation`` (and still predicted).
4. Storage. The fit is plain JSON (``LossModel.to_json``): beside a SQLite file ``X.sqlite`` as
   ``X.<study>.predictor.json``, in the study's user attribute "predictor" for other
   databases. It is reused while the fingerprint of the finished trials (their numbers and
   losses) and of the fitting settings is unchanged, and refitted when it changes, e.g. when
   the study has more finished trials.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from sigprop.analysis import analyze
from sigprop.analysis.outcomes import EXPONENT_COLUMNS, trial_outcomes
from sigprop.analysis.predictors import FITS, REPEATS, FittedModel
from sigprop.experiment.trial import MEASUREMENT, study_architecture
from sigprop.runtime.values import finite_or_none
from sigprop.spec import (
    ALIASES,
    HYPERPARAMETERS,
    OPTIONS,
    InvalidHyperparameter,
    axis,
    canonical_names,
    declaration,
)
from sigprop.spec.expressions import DepthFormula
from sigprop.sweep import SweepSpec, trials_frame
from sigprop.sweep.storage import existing_storage, find_study, read_artifact, write_artifact
from sigprop.experiment.init_exponents import theory_at_init

__all__ = ["COVERAGE", "FEATURES", "Initialization", "LossModel", "LossPrediction", "loss_model",
           "predict", "predictions", "predictions_frame"]

FORMAT = 2  # version of the saved JSON and its features; another version is refitted
COVERAGE = 0.8  # nominal coverage of the interval: the 10th to 90th percentile of the residuals
_QUANTILES = ((1.0 - COVERAGE) / 2.0, (1.0 + COVERAGE) / 2.0)
_ARTIFACT = "predictor"  # X.<study>.predictor.json beside SQLite X, else a user attribute
_BLOCK = tuple(d.name for d in (*HYPERPARAMETERS, *OPTIONS) if d.name != "causal")
_GIVEN = {d.name for d in (*HYPERPARAMETERS, *ALIASES, *OPTIONS) if d.name != "causal"}
_NUMERIC = {d.name for d in (*HYPERPARAMETERS, *ALIASES)}


@dataclass(frozen=True)
class Initialization:
    """What a feature is computed from: an initialization's declared values (``block``: every
    hyperparameter and structural option, formulas resolved), its theory columns as the
    analysis uses them (``theory_at_init``, see ``_as_analysed``), the trained depth L and the
    number of tokens n of the study's theory."""

    block: Mapping[str, Any]
    theory: Mapping[str, float]
    depth: int
    n_tokens: int


# Each feature column of the analysis that can be computed for a new point, and how. The swept
# hyperparameters (the baseline's features) are read from the block (``_hyperparameter``).
FEATURES: dict[str, Callable[[Initialization], float]] = {
    "depth_lambda_a_theory": lambda i: i.depth * i.theory["lambda_a_theory"],
    "depth_lambda_g_theory": lambda i: i.depth * i.theory["lambda_g_theory"],
    "log_gap_L_theory": lambda i: i.theory["log_gap_L_theory"],
    "log_jac_L_theory": lambda i: i.theory["log_jac_L_theory"],
}


@dataclass(frozen=True)
class LossPrediction:
    """The predicted final test loss of one initialization (nats per character), the interval
    [low, high] of nominal ``coverage`` for one training run, and the predictor's features at
    the point. ``outside`` names the features beyond the training range and the block's values
    that differ from the study's where the predictor cannot see them; ``extrapolation`` is
    whether there are any. Non-finite features (λ_a = −∞ without a skip path) leave the loss
    undefined (NaN; null in JSON)."""

    hyperparameters: dict[str, Any]
    predicted_loss: float
    low: float
    high: float
    extrapolation: bool
    outside: tuple[str, ...]
    features: dict[str, float]
    predictor: str
    baseline: bool
    cv_r2: float
    cv_r2_sd: float
    coverage: float

    def to_json(self) -> dict[str, Any]:
        """{"predicted_loss", "low", "high", "extrapolation", "features", "outside",
        "predictor", "baseline", "cv_r2", "cv_r2_sd", "coverage", "hyperparameters"}."""
        return {
            "predicted_loss": finite_or_none(self.predicted_loss),
            "low": finite_or_none(self.low),
            "high": finite_or_none(self.high),
            "extrapolation": self.extrapolation,
            "features": {k: finite_or_none(v) for k, v in self.features.items()},
            "outside": list(self.outside),
            "predictor": self.predictor,
            "baseline": self.baseline,
            "cv_r2": self.cv_r2,
            "cv_r2_sd": self.cv_r2_sd,
            "coverage": self.coverage,
            "hyperparameters": self.hyperparameters,
            "verdict": self.verdict(),
        }

    def verdict(self) -> str:
        """The prediction, its interval and the predictor, in one or two sentences."""
        at = ", ".join(f"{k} = {v}" for k, v in self.hyperparameters.items())
        if np.isnan(self.predicted_loss):
            text = f"No prediction at {at}: a feature is not finite."
        else:
            text = (f"Predicted final test loss at {at}: {self.predicted_loss:.3f} nats/char "
                    f"({self.coverage:.0%} interval {self.low:.3f}–{self.high:.3f}).")
        if self.extrapolation:
            text += " Extrapolation: outside what the study trained in " + ", ".join(self.outside) + "."
        kind = " (the baseline on the raw hyperparameters)" if self.baseline else ""
        return text + (f" Predictor: {self.predictor}{kind}, cross-validated R² "
                       f"{self.cv_r2:.2f} ± {self.cv_r2_sd:.2f}.")

    def __repr__(self) -> str:
        return (f"LossPrediction({self.hyperparameters}, predicted_loss="
                f"{self.predicted_loss:.4g}, interval=({self.low:.4g}, {self.high:.4g}), "
                f"extrapolation={self.extrapolation})")

    def row(self) -> dict[str, Any]:
        """One flat row (a CSV line): the given hyperparameters, the prediction and interval,
        ``extrapolation``, ``outside`` (names joined by ";") and one column per feature."""
        return {**self.hyperparameters, "predicted_loss": self.predicted_loss, "low": self.low,
                "high": self.high, "extrapolation": self.extrapolation,
                "outside": ";".join(self.outside), **self.features}


@dataclass(frozen=True)
class LossModel:
    """A fitted predictor of the final test loss (module docstring), as saved in JSON.

    ``kind`` is "saturating", "spline" or "constant" (a spline whose training features do not
    span their space); ``parameters`` rebuild it (``surface``); ``ranges`` are the training
    features' (min, max); ``residuals`` the out-of-fold residual quantiles giving the interval
    and their root mean square."""

    study: str
    predictor: str
    kind: str
    features: tuple[str, ...]
    parameters: dict[str, Any]
    ranges: dict[str, tuple[float, float]]
    cv_r2: float
    cv_r2_sd: float
    cv_repeats: int
    candidates: list[dict[str, Any]]
    trials: int
    points: int
    residuals: dict[str, float]
    axes: tuple[str, ...]
    theory: str
    depth: int
    n_tokens: int
    fingerprint: str

    @property
    def baseline(self) -> bool:
        """Whether the predictor is the baseline on the raw swept hyperparameters."""
        return all(name in self.axes for name in self.features)

    def surface(self, X: np.ndarray) -> np.ndarray:
        """The predicted loss at each row of features ``X`` (n × len(features))."""
        return FittedModel.from_parameters(self.kind, self.parameters)(X)

    def to_json(self) -> dict[str, Any]:
        """The saved form (module docstring): plain JSON types only."""
        return {
            "format": FORMAT,
            "study": self.study,
            "predictor": self.predictor,
            "baseline": self.baseline,
            "kind": self.kind,
            "features": list(self.features),
            "parameters": self.parameters,
            "feature_ranges": {k: {"min": lo, "max": hi} for k, (lo, hi) in self.ranges.items()},
            "cv": {"r2": self.cv_r2, "r2_sd": self.cv_r2_sd, "repeats": self.cv_repeats},
            "candidates": self.candidates,
            "trials": self.trials,
            "points": self.points,
            "interval": {"coverage": COVERAGE, "quantiles": list(_QUANTILES), **self.residuals,
                         "residuals": "out of fold: loss minus the prediction of the model "
                                      "fitted without the trial's point (first fold "
                                      "assignment)"},
            "axes": list(self.axes),
            "theory": self.theory,
            "depth": self.depth,
            "n_tokens": self.n_tokens,
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LossModel:
        """The model ``to_json`` saved."""
        interval = data["interval"]
        return cls(
            study=data["study"], predictor=data["predictor"], kind=data["kind"],
            features=tuple(data["features"]), parameters=data["parameters"],
            ranges={k: (r["min"], r["max"]) for k, r in data["feature_ranges"].items()},
            cv_r2=data["cv"]["r2"], cv_r2_sd=data["cv"]["r2_sd"],
            cv_repeats=data["cv"]["repeats"], candidates=data["candidates"],
            trials=data["trials"], points=data["points"],
            residuals={k: interval[k] for k in ("low", "high", "rmse")},
            axes=tuple(data["axes"]), theory=data["theory"], depth=data["depth"],
            n_tokens=data["n_tokens"], fingerprint=data["fingerprint"])

    def predict(self, points: list[dict[str, Any]], fixed: Mapping[str, Any]
                ) -> list[LossPrediction]:
        """Predictions at ``points`` (given hyperparameters by declared name) of a study whose
        fixed settings are ``fixed``; unspecified values are the study's."""
        blocks = [_block(fixed, given, self.depth) for given in points]
        theory = theory_at_init(blocks, self.depth, self.n_tokens)
        features = [_features(self.features, Initialization(
            block, _as_analysed(columns, self.theory), self.depth, self.n_tokens))
            for block, columns in zip(blocks, theory)]
        X = np.array([[row[name] for name in self.features] for row in features],
                     dtype=float).reshape(len(features), len(self.features))
        finite = np.all(np.isfinite(X), axis=1)
        losses = np.full(len(X), np.nan)
        if finite.any():
            losses[finite] = self.surface(X[finite])
        reports = []
        for given, block, row, loss in zip(points, blocks, features, losses):
            outside = [name for name, value in row.items() if not self._inside(name, value)]
            outside += _unseen(block, fixed, self.axes if self.baseline else None)
            reports.append(LossPrediction(
                hyperparameters={k: _plain(v) for k, v in given.items()},
                predicted_loss=float(loss), low=float(loss + self.residuals["low"]),
                high=float(loss + self.residuals["high"]), extrapolation=bool(outside),
                outside=tuple(outside), features=row, predictor=self.predictor,
                baseline=self.baseline, cv_r2=self.cv_r2, cv_r2_sd=self.cv_r2_sd,
                coverage=COVERAGE))
        return reports

    def _inside(self, name: str, value: float) -> bool:
        """Within the training range (a relative 1e-9 of it is rounding, not extrapolation)."""
        low, high = self.ranges[name]
        slack = 1e-9 * max(high - low, abs(low), abs(high), 1.0)
        return bool(low - slack <= value <= high + slack)


DEFAULT_STORAGE = Path("results/sweep/sweep.sqlite")  # where ``sigprop sweep`` writes by default


def predict(storage: str | Path | None = None, study: str | None = None,
            points: pd.DataFrame | list[Mapping[str, Any]] | None = None, *,
            cv_repeats: int = REPEATS, refit: bool = False,
            **hyperparameters: Any) -> LossPrediction | pd.DataFrame:
    """The final test loss the initialization ``hyperparameters`` will reach, predicted from the
    finished trials of ``study`` in ``storage`` (a SQLite path or database URL, default
    ``DEFAULT_STORAGE``; the study may be omitted when the storage holds one). Hyperparameters not given take the study's fixed
    values; every swept one must be given (an alias such as alpha, or what it sets).

    With ``points`` (a DataFrame or a list of dicts, columns or keys hyperparameter names) one
    row per point comes back as a DataFrame (``LossPrediction.row``); ``hyperparameters`` then
    apply to every point. ``cv_repeats`` fold assignments score each candidate; ``refit`` fits
    again even if the saved predictor matches. Raises ``InvalidHyperparameter`` for an unknown
    study or name, a value out of range, a missing swept hyperparameter or a study without
    finished trials."""
    reports = predictions(storage, study, points, cv_repeats=cv_repeats, refit=refit,
                          **hyperparameters)
    return reports[0] if points is None else predictions_frame(reports)


def predictions(storage: str | Path | None = None, study: str | None = None,
                points: pd.DataFrame | list[Mapping[str, Any]] | None = None, *,
                cv_repeats: int = REPEATS, refit: bool = False,
                **hyperparameters: Any) -> list[LossPrediction]:
    """``predict``'s reports, one per point (one without ``points``). Every point is checked
    before the predictor is loaded or fitted."""
    url = existing_storage(DEFAULT_STORAGE if storage is None else storage)
    name, attrs = find_study(url, study)
    common = _named(hyperparameters, "hyperparameter")
    given = [common] if points is None else _points(points, common)
    axes = _axes(attrs)
    for index, values in enumerate(given):
        where = "" if points is None else f"point {index + 1}: "
        _check_swept(values, axes, name, where)
        try:
            _block(attrs["fixed"], values, int(attrs["fixed"]["depth"]))
        except InvalidHyperparameter as error:
            raise InvalidHyperparameter(f"{where}{error}") from None
    model = _loaded_or_fitted(url, name, attrs, cv_repeats, refit)
    return model.predict(given, attrs["fixed"])


def predictions_frame(reports: list[LossPrediction]) -> pd.DataFrame:
    """One row per report (``LossPrediction.row``), the given hyperparameters first."""
    frame = pd.DataFrame([report.row() for report in reports])
    first = list(dict.fromkeys(name for report in reports for name in report.hyperparameters))
    return frame[first + [c for c in frame.columns if c not in first]]


def loss_model(storage: str | Path, study: str | None = None, *, cv_repeats: int = REPEATS,
               refit: bool = False) -> LossModel:
    """The study's saved predictor if its fingerprint matches the finished trials and
    ``cv_repeats``, else (or with ``refit``) a new fit, which is saved."""
    url = existing_storage(storage)
    name, attrs = find_study(url, study)
    return _loaded_or_fitted(url, name, attrs, cv_repeats, refit)


def _loaded_or_fitted(url: str, name: str, attrs: Mapping[str, Any], cv_repeats: int,
                      refit: bool) -> LossModel:
    """``loss_model`` for the study ``name`` with user attributes ``attrs``."""
    if isinstance(cv_repeats, bool) or not isinstance(cv_repeats, int) or cv_repeats < 1:
        raise InvalidHyperparameter(f"cv_repeats must be an integer >= 1; got {cv_repeats!r}")
    trials = trials_frame(url, name)
    finished = trials[trials["status"].isin(["complete", "diverged"])] if len(trials) else trials
    if finished.empty:
        raise InvalidHyperparameter(f"study {name!r} has no finished trials yet")
    outcomes = trial_outcomes(finished, int(finished["vocab_size"].dropna().iloc[0]))
    fingerprint = _fingerprint(outcomes, cv_repeats)
    saved = None if refit else read_artifact(url, name, attrs, _ARTIFACT)
    if saved and saved.get("format") == FORMAT and saved.get("fingerprint") == fingerprint:
        return LossModel.from_json(saved)
    model = _fit(name, attrs, finished, fingerprint, cv_repeats)
    write_artifact(url, name, _ARTIFACT, model.to_json())
    return model


def _fit(name: str, attrs: Mapping[str, Any], finished: pd.DataFrame, fingerprint: str,
         cv_repeats: int) -> LossModel:
    """Cross-validate the candidates computable at a new point, refit the best on all finished
    trials, and collect what the JSON holds (module docstring)."""
    fixed, axes = attrs["fixed"], _axes(attrs)
    depth = int(fixed["depth"])
    n_tokens = int(fixed.get("measure_tokens", MEASUREMENT["measure_tokens"]))
    if not axes:
        raise InvalidHyperparameter(f"study {name!r} swept no hyperparameter: there is nothing "
                                    "to predict from")
    swept = SweepSpec.from_json(attrs).swept()
    points = [{k: row[k] for k in swept if k != "seed"} for _, row in finished.iterrows()]
    blocks = [_block(fixed, point, depth) for point in points]
    theory = pd.DataFrame(theory_at_init(blocks, depth, n_tokens), index=finished.index)
    measured = [c for c in EXPONENT_COLUMNS if c not in theory]
    trials = finished.assign(**theory, **{c: np.nan for c in measured})
    analysis = analyze(trials, list(axes), depth, int(finished["vocab_size"].dropna().iloc[0]),
                       cv_repeats)
    eligible = [cv for cv in analysis.predictors if set(cv.features) <= set(FEATURES) | set(axes)]
    if not eligible:
        raise InvalidHyperparameter(
            f"study {name!r}: no predictor could be cross-validated from its "
            f"{len(analysis.points)} hyperparameter points (it needs at least 5 with finite "
            "features)")
    best = max(eligible, key=lambda cv: (cv.r2, not set(cv.features) <= set(axes)))
    X = analysis.trials[list(best.features)].to_numpy(float)
    y = analysis.trials["loss"].to_numpy(float)
    groups = analysis.trials.groupby(list(axes), sort=True).ngroup().to_numpy()
    _check_features(best.features, X, [
        Initialization(block, _as_analysed(columns, analysis.theory), depth, n_tokens)
        for block, columns in zip(blocks, theory.to_dict("records"))])
    fitted = FITS[best.model](X, y, groups)
    kind, parameters = fitted.kind, fitted.parameters
    residuals = y - best.predictions
    low, high = np.quantile(residuals, _QUANTILES)
    model = LossModel(
        study=name, predictor=best.name, kind=kind, features=tuple(best.features),
        parameters=parameters,
        ranges={f: (float(low), float(high))
                for f, low, high in zip(best.features, X.min(axis=0), X.max(axis=0))},
        cv_r2=best.r2, cv_r2_sd=best.r2_sd, cv_repeats=cv_repeats,
        candidates=[{"predictor": cv.name, "features": list(cv.features), "r2": cv.r2,
                     "r2_sd": cv.r2_sd} for cv in eligible],
        trials=len(y), points=len(analysis.points),
        residuals={"low": float(low), "high": float(high),
                   "rmse": float(np.sqrt(np.mean(residuals**2)))},
        axes=tuple(axes), theory=analysis.theory, depth=depth, n_tokens=n_tokens,
        fingerprint=fingerprint)
    if not np.allclose(model.surface(X), fitted(X), rtol=1e-9, atol=1e-12):
        raise RuntimeError(f"the saved form of {best.name!r} does not reproduce its fit: "
                           "sigprop.analysis.predictors changed, update loss_model")
    return model


def _check_features(names: tuple[str, ...], X: np.ndarray,
                    trials: list[Initialization]) -> None:
    """The features ``FEATURES`` gives for the trials must be the analysis' columns ``X``."""
    ours = np.array([[row[name] for name in names]
                     for row in (_features(names, trial) for trial in trials)])
    for i, name in enumerate(names):
        if not np.allclose(ours[:, i], X[:, i], rtol=1e-12, atol=1e-12):
            raise RuntimeError(f"feature {name!r}: FEATURES in {__name__} disagrees with "
                               "sigprop.analysis.analyze; update its entry")


def _features(names: tuple[str, ...], init: Initialization) -> dict[str, float]:
    """The named features of an initialization: registered ones, or swept hyperparameters."""
    return {name: float(FEATURES[name](init)) if name in FEATURES
            else _hyperparameter(init.block, name) for name in names}


def _as_analysed(theory: dict[str, float], mode: str) -> dict[str, float]:
    """The theory columns as ``analyze`` uses them: when it works at finite depth (blocks
    without a norm fixed point, ``Analysis.theory``) λ_a and λ_g are the finite-depth ones."""
    if mode == "asymptotic":
        return theory
    return {**theory, "lambda_a_theory": theory["lambda_a_depth_theory"],
            "lambda_g_theory": theory["lambda_g_depth_theory"]}


def _hyperparameter(block: Mapping[str, Any], name: str) -> float:
    """The value of a swept hyperparameter at a block of declared values; an alias (alpha)
    only if the values it sets are of its form (a = sqrt(1 − α²), b = α, both branches)."""
    decl = axis(name)
    if decl.expands is None:
        return float(block[decl.name])
    targets = list(decl.expands(0.5))
    for candidate in (block[t] for t in targets):
        try:
            decl.check(candidate)
        except InvalidHyperparameter:
            continue
        if all(np.isclose(v, block[k], rtol=0, atol=1e-12)
               for k, v in decl.expands(candidate).items()):
            return float(candidate)
    values = ", ".join(f"{t} = {block[t]:g}" for t in targets)
    raise InvalidHyperparameter(f"{name} is not defined at this point ({values}), and the "
                                "predictor, the baseline on the raw hyperparameters, needs it: "
                                f"give {decl.flag}")


def _unseen(block: Mapping[str, Any], fixed: Mapping[str, Any],
            axes: tuple[str, ...] | None) -> list[str]:
    """Values of the block that differ from the study's where the predictor cannot see them:
    structural options always, and, for the raw-hyperparameter baseline (``axes``), every
    unswept hyperparameter."""
    unseen = [o.name for o in OPTIONS if o.name in fixed and block[o.name] != fixed[o.name]]
    if axes is not None:
        covered = {c for name in axes for c in canonical_names(name)}
        unseen += [h.name for h in HYPERPARAMETERS if h.name in fixed and h.name not in covered
                   and not np.isclose(block[h.name], fixed[h.name], rtol=1e-12, atol=0)]
    return unseen


def _block(fixed: Mapping[str, Any], given: Mapping[str, Any], depth: int) -> dict[str, Any]:
    """Every declared value of the study's block with ``given`` over its fixed values, formulas
    in L resolved at the trained depth; ``InvalidHyperparameter`` names a value out of range."""
    arch = study_architecture({"fixed": dict(fixed)}).with_values(**given).resolved(depth)
    return {name: arch.values[name] for name in _BLOCK}


def _check_swept(given: Mapping[str, Any], axes: tuple[str, ...], study: str, where: str) -> None:
    """Every swept hyperparameter must be given: it has no fixed value in the study."""
    covered = {c for name in given if name in _NUMERIC for c in canonical_names(name)}
    missing = [name for name in axes if not set(canonical_names(name)) <= covered]
    if missing:
        raise InvalidHyperparameter(
            f"{where}study {study!r} swept {', '.join(axes)}: give "
            f"{', '.join(f'{m} ({axis(m).flag})' for m in missing)} or the hyperparameters "
            f"{'it sets' if len(missing) == 1 else 'they set'}")


def _named(values: Mapping[str, Any], what: str) -> dict[str, Any]:
    """Values keyed by declared name (any spelling: sigma-w, sigma_w); unknown names raise."""
    names = _names(list(values), what)
    return {names[key]: value for key, value in values.items()}


def _names(keys: list[str], what: str) -> dict[str, str]:
    """Each key's declared name; ``InvalidHyperparameter`` listing the unknown keys, or naming
    two keys that spell one name."""
    names, unknown = {}, []
    for key in keys:
        try:
            name = declaration(str(key)).name
        except InvalidHyperparameter:
            name = None
        if name == "causal":
            raise InvalidHyperparameter("causal: the trained LMs are causal and their theory "
                                        "features bidirectional; drop --causal/--no-causal")
        if name in _GIVEN:
            names[key] = name
        else:
            unknown.append(str(key))
    if unknown:
        raise InvalidHyperparameter(
            f"unknown {what}{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"use the names of hyperparameters and options: {', '.join(sorted(_GIVEN))}")
    if len(set(names.values())) < len(names):
        twice = sorted({n for n in names.values() if list(names.values()).count(n) > 1})
        raise InvalidHyperparameter(f"{', '.join(twice)} given twice (as "
                                    f"{', '.join(repr(k) for k in names if names[k] in twice)})")
    return names


def _points(points: pd.DataFrame | list[Mapping[str, Any]],
            common: dict[str, Any]) -> list[dict[str, Any]]:
    """One dict of declared values per point (empty cells left out), with ``common`` added;
    a name given both ways raises."""
    if isinstance(points, pd.DataFrame):
        names = _names(list(points.columns), "column")
        rows = [{names[c]: v for c, v in row.items()} for row in points.to_dict("records")]
    else:
        rows = [_named(point, "name") for point in points]
    both = sorted({name for row in rows for name in row} & set(common))
    if both:
        raise InvalidHyperparameter(f"{', '.join(both)} given both for every point and in the "
                                    "points: give one")
    return [{**{k: _scalar(v) for k, v in row.items() if not _missing(v)}, **common}
            for row in rows]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _scalar(value: Any) -> Any:
    """numpy scalars from a DataFrame as Python ones."""
    return value.item() if isinstance(value, np.generic) else value


def _plain(value: Any) -> Any:
    """A given value as JSON: numbers, strings, booleans; formulas in L as their text."""
    if isinstance(value, DepthFormula):
        return str(value)
    return _scalar(value)


def _axes(attrs: Mapping[str, Any]) -> tuple[str, ...]:
    """The study's swept hyperparameters (more than one value), as ``analyze_study`` takes them."""
    spec = SweepSpec.from_json(attrs)
    return tuple(k for k in spec.swept()
                 if k != "seed" and (k in spec.sampled or len(spec.grid[k]) > 1))


def _fingerprint(outcomes: pd.DataFrame, cv_repeats: int) -> str:
    """SHA-256 of the finished trials (number, status, loss) and of the fitting settings."""
    trials = sorted((int(n), str(s), float(loss)) for n, s, loss in
                    zip(outcomes["number"], outcomes["status"], outcomes["loss"]))
    text = json.dumps({"format": FORMAT, "cv_repeats": cv_repeats, "trials": trials})
    return hashlib.sha256(text.encode()).hexdigest()
