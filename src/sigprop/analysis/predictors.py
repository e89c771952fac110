"""Predicting final test loss from initialization, judged by grouped cross-validation.

Two smooth models are compared on the same trials:

* ``saturating``: loss = a + b·[1 − (1 − σ_1)(1 − σ_2)], σ_i a logistic step in feature i: two
  failure modes combined as a noisy OR. At finite depth L what the model sees is the state the
  maps predict at the last layer (docs/theory.md §8), and the loss is step-like in it: tokens collapsed
  below a threshold (1 − ρ_L ≲ 10⁻³) leave nothing but character frequencies to learn, and
  gradients grown beyond a threshold stall training; either failure is enough. With the
  depth-scaled exponents z = (L·λ_a, L·λ_g) the steps sit at fixed values of those products.
* ``smoothing spline``: a thin-plate spline with smoothing (scipy's RBFInterpolator) on
  standardized features: a generic smooth surface, used for the exponents and, as the baseline,
  for the raw hyperparameters.

Every model is scored by K-fold cross-validation grouped by hyperparameter point (all seeds of a
point are held out together, so no point is predicted from its own repeats); R² = 1 − SSE/SST on
the held-out predictions. With a few dozen points one assignment of points to folds moves R² by
a few hundredths, enough to reorder close predictors: the score is the mean over ``REPEATS``
random assignments (the same ones for every model), reported with its standard deviation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.interpolate import RBFInterpolator
from scipy.optimize import least_squares

_FOLDS = 5
REPEATS = 10
_SATURATING_PARAMETERS = 6  # a, b and a step position and steepness per feature
_SMOOTHING = (1e-3, 1e-2, 1e-1, 1.0)


@dataclass(frozen=True)
class CrossValidation:
    """One model and feature set: the mean and standard deviation of its grouped K-fold R²
    over repeated fold assignments, and the held-out predictions of the first assignment."""

    name: str
    features: tuple[str, ...]
    r2: float
    r2_sd: float
    predictions: np.ndarray
    model: str  # "saturating" or "spline": the key of ``FITS``


@dataclass(frozen=True)
class FittedModel:
    """A fitted loss model as plain data: ``kind`` ("saturating", "spline", or "constant", the
    spline's fallback) and JSON-able ``parameters``; calling it predicts the loss at rows of
    features. ``from_parameters`` rebuilds it from the saved form."""

    kind: str
    parameters: dict[str, Any]
    _evaluate: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def from_parameters(cls, kind: str, parameters: dict[str, Any]) -> FittedModel:
        p = parameters
        if kind == "constant":
            value = float(p["value"])
            evaluate = lambda Z: np.full(len(Z), value)  # noqa: E731
        elif kind == "saturating":
            theta = np.asarray(p["theta"], float)
            evaluate = lambda Z: _saturating(theta, Z)  # noqa: E731
        elif kind == "spline":
            evaluate = RBFInterpolator(np.asarray(p["points"], float),
                                       np.asarray(p["values"], float), kernel=p["kernel"],
                                       epsilon=p["epsilon"], smoothing=np.asarray(p["smoothing"]))
        else:
            raise ValueError(f"unknown model kind {kind!r}")
        return cls(kind, parameters, evaluate)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, float)
        if self.kind == "constant":
            return self._evaluate(X)
        centre, scale = (np.asarray(self.parameters[k], float) for k in ("centre", "scale"))
        return self._evaluate((X - centre) / scale)


def cross_validate(name: str, model: str, X: np.ndarray, y: np.ndarray, groups: np.ndarray,
                   features: tuple[str, ...], repeats: int = REPEATS) -> CrossValidation:
    """Grouped K-fold R² of ``model`` ("saturating" or "spline") predicting y from X, over
    ``repeats`` fold assignments (seeds 0 … repeats − 1)."""
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an integer >= 1; got {repeats!r}")
    runs = [held_out_predictions(model, X, y, groups, seed) for seed in range(repeats)]
    scores = [r_squared(y, predictions) for predictions in runs]
    return CrossValidation(name, features, float(np.mean(scores)), float(np.std(scores)), runs[0],
                           model)


def held_out_predictions(model: str, X: np.ndarray, y: np.ndarray, groups: np.ndarray,
                         seed: int) -> np.ndarray:
    """Every point predicted by ``model`` fitted on the other folds of assignment ``seed``."""
    fit = FITS[model]
    predictions = np.full(y.shape, np.nan)
    for test_groups in _folds(np.unique(groups), seed):
        held_out = np.isin(groups, test_groups)
        predictor = fit(X[~held_out], y[~held_out], groups[~held_out])
        predictions[held_out] = predictor(X[held_out])
    return predictions


def r_squared(y: np.ndarray, predictions: np.ndarray) -> float:
    return float(1.0 - np.sum((y - predictions) ** 2) / np.sum((y - np.mean(y)) ** 2))


def fit_saturating(X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None
                   ) -> FittedModel:
    """Least-squares fit of the two-failure-mode model.

        loss = a + b · [1 − (1 − σ(k_1 (z_1 − c_1))) (1 − σ(k_2 (z_2 − c_2)))]

    Training fails (the loss saturates at a + b, about what character frequencies give) when
    either mode is on: tokens collapsed (z_1 = L·λ_a far below 0) or gradients exploded or
    vanished (z_2 = L·λ_g far from 0); σ(k(z − c)) is a logistic step of signed steepness k at
    c. A noisy OR of the two, so one failure is enough and two do not fail more.

    Features are standardized, and the fit kept physical so that a held-out point is never sent
    outside the losses seen: a and a + b within the range of the training losses, step positions
    within the training features (± one standard deviation), |k| in [0.1, 20] per standard
    deviation. Started from several step positions and both directions; the best fit is kept.
    """
    X = np.asarray(X, float)
    if len(np.unique(X, axis=0)) <= _SATURATING_PARAMETERS:
        # Fewer distinct points than parameters: the fit is not determined (and the solver
        # wanders); predict the training mean, as the spline does on degenerate features.
        return FittedModel.from_parameters("constant", {"value": float(np.mean(y))})
    centre, scale = X.mean(axis=0), X.std(axis=0) + 1e-12
    Z = (X - centre) / scale
    low_y, high_y = float(y.min()), float(y.max())
    span = high_y - low_y + 1e-12

    def jacobian(theta: np.ndarray, Z: np.ndarray) -> np.ndarray:
        """∂model/∂θ: with s_i = σ(k_i (z_i − c_i)) and u_i = 1 − s_i, the model is
        a + b (1 − u_1 u_2), and ∂u_i/∂c_i = k_i s_i u_i, ∂u_i/∂k_i = −(z_i − c_i) s_i u_i."""
        a, b, c1, k1, c2, k2 = theta
        s1, s2 = _sigmoid(k1 * (Z[:, 0] - c1)), _sigmoid(k2 * (Z[:, 1] - c2))
        u1, u2 = 1.0 - s1, 1.0 - s2
        slope1, slope2 = s1 * u1, s2 * u2
        return np.column_stack([
            np.ones_like(s1), 1.0 - u1 * u2,
            -b * u2 * k1 * slope1, b * u2 * (Z[:, 0] - c1) * slope1,
            -b * u1 * k2 * slope2, b * u1 * (Z[:, 1] - c2) * slope2,
        ])

    low = np.array([low_y, -span, Z[:, 0].min() - 1, -20.0, Z[:, 1].min() - 1, -20.0])
    high = np.array([high_y, span, Z[:, 0].max() + 1, 20.0, Z[:, 1].max() + 1, 20.0])
    best = None
    for q1 in (0.25, 0.5, 0.75):
        for q2 in (0.25, 0.5, 0.75):
            for k1, k2 in ((-2.0, 2.0), (-2.0, -2.0), (2.0, 2.0), (2.0, -2.0)):
                start = np.array([low_y, span, np.quantile(Z[:, 0], q1), k1,
                                  np.quantile(Z[:, 1], q2), k2])
                result = least_squares(lambda t: _saturating(t, Z) - y, np.clip(start, low, high),
                                       jac=lambda t: jacobian(t, Z), method="trf",
                                       bounds=(low, high))
                if best is None or result.cost < best.cost:
                    best = result
    return FittedModel.from_parameters("saturating", {
        "theta": best.x.tolist(), "centre": centre.tolist(), "scale": scale.tolist()})


def _saturating(theta: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """The two-failure-mode model on standardized features Z (``fit_saturating``)."""
    a, b, c1, k1, c2, k2 = theta
    ok = (1.0 - _sigmoid(k1 * (Z[:, 0] - c1))) * (1.0 - _sigmoid(k2 * (Z[:, 1] - c2)))
    return a + b * (1.0 - ok)


def fit_spline(X: np.ndarray, y: np.ndarray, groups: np.ndarray) -> FittedModel:
    """Thin-plate smoothing spline on standardized features, its smoothing chosen by an inner
    grouped cross-validation on the training part only.

    The spline's linear part needs training points that span the feature space (d + 1 of them
    affinely independent). A small training set can fail that (a fold that left one value of a
    grid axis): the surface is then undetermined, and the predictor is the training mean."""
    X = np.asarray(X, float)
    centre, scale = X.mean(axis=0), X.std(axis=0) + 1e-12
    Z = (X - centre) / scale
    if not _spans(Z):
        return FittedModel.from_parameters("constant", {"value": float(np.mean(y))})
    smoothing = _inner_smoothing(Z, y, groups) * len(y)
    return FittedModel.from_parameters("spline", {
        "points": Z.tolist(), "values": np.asarray(y, float).tolist(),
        "smoothing": float(smoothing), "kernel": "thin_plate_spline", "epsilon": 1.0,
        "centre": centre.tolist(), "scale": scale.tolist()})


FITS = {"saturating": fit_saturating, "spline": fit_spline}


def _inner_smoothing(Z: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    """The smoothing of _SMOOTHING with the least inner held-out error (inner folds whose
    training part does not span the features are skipped; the first candidate if none does)."""
    folds = [np.isin(groups, test) for test in _folds(np.unique(groups), seed=1)]
    folds = [held_out for held_out in folds if _spans(Z[~held_out])]
    scores = []
    for smoothing in _SMOOTHING:
        errors = []
        for held_out in folds:
            spline = RBFInterpolator(Z[~held_out], y[~held_out], kernel="thin_plate_spline",
                                     smoothing=smoothing * np.count_nonzero(~held_out))
            errors.append(np.sum((spline(Z[held_out]) - y[held_out]) ** 2))
        scores.append(np.sum(errors))
    return _SMOOTHING[int(np.argmin(scores))]


def _spans(Z: np.ndarray) -> bool:
    """Do the rows of Z contain d + 1 affinely independent points?"""
    return np.linalg.matrix_rank(np.column_stack([np.ones(len(Z)), Z])) == Z.shape[1] + 1


def _folds(unique_groups: np.ndarray, seed: int) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(unique_groups)
    return [fold for fold in np.array_split(order, min(_FOLDS, len(order))) if fold.size]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))
