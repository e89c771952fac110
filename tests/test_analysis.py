"""The loss predictors and their cross-validation, on sweeps with a known answer."""

import numpy as np
import pandas as pd
import pytest

from sigprop.analysis import analyze
from sigprop.analysis.predictors import cross_validate, r_squared


def synthetic_trials(loss_of, seeds=2, noise=0.02, seed=0) -> pd.DataFrame:
    """A 6 × 6 grid whose 'exponents' are smooth functions of the two hyperparameters."""
    rng = np.random.default_rng(seed)
    rows = []
    for alpha in np.linspace(0.1, 0.9, 6):
        for sigma_w in np.linspace(0.5, 5.0, 6):
            lam_a = 0.05 * (sigma_w - 3.0) - 0.3 * alpha**2
            lam_g = 0.1 * alpha * sigma_w - 0.15
            for s in range(seeds):
                loss = loss_of(lam_a, lam_g, alpha, sigma_w) + noise * rng.standard_normal()
                rows.append(dict(alpha=alpha, sigma_w=sigma_w, seed=s, status="complete",
                                 test_loss=loss, train_loss=loss, last_finite_loss=loss,
                                 lambda_a_theory=lam_a, lambda_g_theory=lam_g,
                                 log_gap_L_theory=16 * lam_a, log_jac_L_theory=16 * lam_g,
                                 lambda_a_measured=lam_a, lambda_g_measured=lam_g))
    return pd.DataFrame(rows)


def steps(lam_a, lam_g, *_):
    return 2.0 + 1.0 / (1 + np.exp(16 * lam_a + 3)) + 1.0 / (1 + np.exp(-(16 * lam_g - 2)))


def test_exponent_model_recovers_a_loss_that_depends_on_the_exponents():
    analysis = analyze(synthetic_trials(steps), ["alpha", "sigma_w"], depth=16, vocab_size=80,
                       cv_repeats=1)
    scores = {cv.name: cv.r2 for cv in analysis.predictors}
    assert scores["exponents, theory (L·λ_a, L·λ_g), saturating"] > 0.95


def test_baseline_wins_when_the_loss_depends_on_something_else():
    """A loss driven by α alone along a direction the exponents mix up: the exponent models
    must not look good by construction."""
    def other(lam_a, lam_g, alpha, sigma_w):
        return 2.0 + np.sin(6 * alpha) * np.cos(2 * sigma_w)

    analysis = analyze(synthetic_trials(other), ["alpha", "sigma_w"], depth=16, vocab_size=80,
                       cv_repeats=1)
    scores = {cv.name: cv.r2 for cv in analysis.predictors}
    baseline = scores["baseline: raw hyperparameters, smoothing spline"]
    assert baseline > scores["exponents, theory (L·λ_a, L·λ_g), saturating"] + 0.2


def test_held_out_groups_are_never_seen_in_training():
    """Each prediction must come from a model that never saw any seed of that point: a point
    whose seeds all carry an outlying loss cannot be predicted, whichever fold it falls in."""
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(40, 2))
    groups = np.repeat(np.arange(20), 2)
    y = X[:, 0] + X[:, 1]
    y[groups == 7] += 100.0
    cv = cross_validate("t", "spline", X, y, groups, ("a", "b"))
    assert np.all(np.abs(cv.predictions[groups == 7] - y[groups == 7]) > 50)


def test_diverged_runs_count_as_failures():
    trials = synthetic_trials(steps)
    trials.loc[0, ["status", "test_loss", "last_finite_loss"]] = ["diverged", np.nan, 1.0]
    analysis = analyze(trials, ["alpha", "sigma_w"], depth=16, vocab_size=80, cv_repeats=1)
    assert analysis.trials.loc[0, "loss"] == pytest.approx(np.log(80))


def test_r_squared():
    y = np.array([1.0, 2.0, 3.0])
    assert r_squared(y, y) == 1.0 and r_squared(y, np.full(3, 2.0)) == 0.0


def test_more_than_two_swept_hyperparameters(tmp_path):
    """A search over three hyperparameters: the baseline sees all three, the exponent models
    two numbers, and no 2D landscape is drawn (its theory curves would depend on the third)."""
    from sigprop.spec import Architecture
    from sigprop.experiment.reproduce import write_training_figures

    rng = np.random.default_rng(1)
    rows = []
    for alpha, sigma_w, sigma_b in rng.uniform([0.1, 0.5, 0.0], [0.9, 5.0, 2.0], size=(60, 3)):
        lam_a = 0.05 * (sigma_w - 3.0 + sigma_b) - 0.3 * alpha**2
        lam_g = 0.1 * alpha * sigma_w - 0.1 * sigma_b
        loss = steps(lam_a, lam_g) + 0.02 * rng.standard_normal()
        rows.append(dict(alpha=alpha, sigma_w=sigma_w, sigma_b=sigma_b, seed=0, status="complete",
                         test_loss=loss, train_loss=loss, last_finite_loss=loss,
                         lambda_a_theory=lam_a, lambda_g_theory=lam_g,
                         log_gap_L_theory=16 * lam_a, log_jac_L_theory=16 * lam_g,
                         lambda_a_measured=lam_a, lambda_g_measured=lam_g))
    axes = ["alpha", "sigma_w", "sigma_b"]
    analysis = analyze(pd.DataFrame(rows), axes, depth=16, vocab_size=80, cv_repeats=1)
    by_name = {cv.name: cv for cv in analysis.predictors}
    assert by_name["baseline: raw hyperparameters, smoothing spline"].features == tuple(axes)
    assert by_name["exponents, theory (L·λ_a, L·λ_g), saturating"].r2 > 0.95
    assert len(analysis.points) == 60
    figures = write_training_figures(analysis, Architecture.load(), tmp_path)
    assert set(figures) == {"exponents", "predictions"}
    assert all(path.exists() for path in figures.values())


def test_r_squared_is_averaged_over_fold_assignments():
    """The score is the mean over repeated random fold assignments; its spread is reported, and
    the predictions shown are those of the first assignment."""
    from sigprop.analysis.predictors import held_out_predictions

    rng = np.random.default_rng(3)
    X = rng.uniform(size=(30, 2))
    y = np.sin(4 * X[:, 0]) + X[:, 1] + 0.1 * rng.standard_normal(30)
    groups = np.arange(30)
    cv = cross_validate("t", "spline", X, y, groups, ("a", "b"), repeats=6)
    scores = [r_squared(y, held_out_predictions("spline", X, y, groups, seed)) for seed in range(6)]
    assert cv.r2 == pytest.approx(np.mean(scores)) and cv.r2_sd == pytest.approx(np.std(scores))
    assert cv.r2_sd > 0
    np.testing.assert_array_equal(cv.predictions, held_out_predictions("spline", X, y, groups, 0))


def test_spline_on_a_training_set_that_does_not_span_the_features_predicts_the_mean():
    """A fold that left a single value of one axis cannot determine the spline's slope along
    it: the predictor falls back to the training mean instead of failing."""
    from sigprop.analysis.predictors import fit_spline

    X = np.column_stack([np.full(6, 0.5), np.linspace(1.0, 3.0, 6)])
    y = np.linspace(2.0, 3.0, 6)
    predict = fit_spline(X, y, np.arange(6))
    np.testing.assert_allclose(predict(np.array([[0.9, 2.0], [0.1, 1.0]])), y.mean())
    spanning = fit_spline(np.column_stack([np.linspace(0, 1, 6) ** 2, X[:, 1]]), y, np.arange(6))
    assert np.ptp(spanning(np.array([[0.2, 1.0], [0.8, 3.0]]))) > 0.1


def test_every_definition_of_the_exponents_is_scored_from_the_hyperparameters():
    """With the study's block, ``analyze`` computes each theory definition at every trained
    point (the values the theory gives directly) and scores all of them and the measured
    exponents; a loss made of the causal finite-depth exponents is predicted by them."""
    import sigprop
    from sigprop.analysis.definitions import DEFINITIONS, columns
    from sigprop.theory.depth import depth_profile

    base = sigprop.Architecture.load("reference").with_values(sigma_b=1.0)
    trials = synthetic_trials(steps, seeds=1)
    trials = trials[trials["alpha"] < 0.7]  # 24 points
    grid = base.with_values(alpha=trials["alpha"].to_numpy(), causal=True,
                            sigma_w=trials["sigma_w"].to_numpy())
    profile = depth_profile(grid.theory_layer(16), 16, 16)
    trials = trials.assign(test_loss=steps(profile.lambda_a, profile.lambda_g))
    analysis = analyze(trials, ["alpha", "sigma_w"], depth=16, vocab_size=80, cv_repeats=1,
                       arch=base)
    scored = {s.definition.key: s for s in analysis.definitions}
    assert set(scored) == {d.key for d in DEFINITIONS}
    point = analysis.trials.iloc[0]
    at = base.with_values(alpha=point["alpha"], sigma_w=point["sigma_w"], causal=True)
    direct = sigprop.exponents(at, depth=16).to_json()
    a_col, g_col = columns(next(d for d in DEFINITIONS if d.key == "causal_finite_depth"))
    assert point[a_col] == pytest.approx(direct["lambda_a_depth"], rel=1e-9)
    assert point[g_col] == pytest.approx(direct["lambda_g_depth"], rel=1e-9)
    bidirectional = sigprop.exponents(at.with_values(causal=False)).to_json()
    assert point["lambda_a_asymptotic"] == pytest.approx(bidirectional["lambda_a"], rel=1e-9)
    # In a two-parameter slice every definition is a change of coordinates, so all may fit;
    # the one the loss is made of must.
    assert max(scored["causal_finite_depth"].r2_saturating,
               scored["causal_finite_depth"].r2_spline) > 0.9


def test_saturating_fit_on_fewer_points_than_parameters_predicts_the_mean():
    """Six parameters cannot be fitted to five distinct points: the training mean instead."""
    from sigprop.analysis.predictors import fit_saturating

    X = np.column_stack([np.linspace(-5, 0, 5), np.linspace(0, 3, 5)])
    y = np.array([3.0, 2.8, 2.7, 2.65, 2.9])
    fitted = fit_saturating(X, y)
    assert fitted.kind == "constant"
    assert fitted(np.zeros((3, 2))) == pytest.approx(np.full(3, y.mean()))
