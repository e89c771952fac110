"""`sigprop predict`: a loss predictor fitted on a finished sweep, saved, reused, and its answers.

The sweep is a fake: its trials store the real theory columns of their configs (the function a
sweep uses, ``theory_at_init``) and a synthetic test loss that depends on L·λ_a and L·λ_g only,
with a little noise, so the predictor has a known answer and nothing is trained.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import zlib

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from sigprop.experiment import loss_model
from sigprop.sweep import storage
from sigprop.sweep.storage import artifact_path, write_artifact
from sigprop.experiment.loss_model import FEATURES, predict
from sigprop.analysis.predictors import FITS, FittedModel
from sigprop.cli import app
from sigprop.experiment.trial import sweep_spec
from sigprop.sweep import config_key, normalize_storage, open_study, run_worker
from sigprop.experiment.init_exponents import theory_at_init
from sigprop.train.model import CONFIG_KEYS

DEPTH = 8
STUDY = "synthetic"
ALPHAS = (0.1, 0.3, 0.5, 0.7, 0.9)
SIGMA_WS = (0.5, 1.5, 2.5, 3.5, 4.5)
FAST = {"heartbeat_interval": 1, "grace_period": 3}
CV = ["--cv-repeats", "1"]


def spec():
    return sweep_spec(None, {"sigma_b": 0.5}, [f"alpha={','.join(map(str, ALPHAS))}",
                                               f"sigma_w={','.join(map(str, SIGMA_WS))}"],
                      [], 0, 0, depth=DEPTH, width=16, context=8, batch=4, steps=10, data="copy",
                      compile=False)


def synthetic_loss(theory: dict, point: dict | None = None) -> float:
    """Two failure modes in the depth-scaled exponents, and noise fixed by the point (none
    without one)."""
    a, g = DEPTH * theory["lambda_a_theory"], DEPTH * theory["lambda_g_theory"]
    noise = 0.0 if point is None else np.random.default_rng(
        zlib.crc32(config_key(point).encode())).normal(0.0, 0.03)
    return float(2.0 + 1.0 / (1.0 + np.exp(a + 4.0)) + 1.0 / (1.0 + np.exp(3.0 - g)) + noise)


def evaluate(configs: list[dict]) -> list[dict]:
    """What a sweep stores, with the synthetic loss instead of training."""
    blocks = [{k: v for k, v in c.items() if k in CONFIG_KEYS} for c in configs]
    results = []
    for config, theory in zip(configs, theory_at_init(blocks, DEPTH)):
        loss = synthetic_loss(theory, {"alpha": config["alpha"], "sigma_w": config["sigma_w"]})
        results.append({"status": "complete", "test_loss": loss, "train_loss": loss,
                        "last_finite_loss": loss, "vocab_size": 20, **theory})
    return results


def evaluate_but_alpha_09(configs: list[dict]) -> list[dict]:
    """The α = 0.9 batch fails: those trials are not finished until the sweep is restarted."""
    if any(config["alpha"] > 0.8 for config in configs):
        raise RuntimeError("not yet")
    return evaluate(configs)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> str:
    """A study of 25 configurations, 20 finished (α ≤ 0.7), and its predictor fitted once."""
    url = normalize_storage(None, tmp_path_factory.mktemp("sweep") / "sweep.sqlite")
    open_study(url, STUDY, spec())
    run_worker(url, STUDY, evaluate_but_alpha_09, 5, **FAST)
    predict(url, alpha=0.4, sigma_w=2.0, cv_repeats=1)
    return url


def copy_of(url: str, tmp_path) -> str:
    """The sweep's database copied (with its predictor file) into ``tmp_path``."""
    source = sqlite3.connect(url.removeprefix("sqlite:///"))
    target = sqlite3.connect(tmp_path / "sweep.sqlite")
    source.backup(target)
    source.close()
    target.close()
    saved = artifact_path(url, STUDY, "predictor")
    (tmp_path / saved.name).write_text(saved.read_text())
    return normalize_storage(None, tmp_path / "sweep.sqlite")


def cli(*args: str):
    return CliRunner().invoke(app, ["predict", *args])


def test_prediction_and_saved_predictor(sweep):
    report = predict(sweep, STUDY, alpha=0.4, sigma_w=2.0, cv_repeats=1)
    result = report.to_json()
    assert {"predicted_loss", "low", "high", "extrapolation", "features", "predictor",
            "cv_r2"} <= set(result)
    assert result["low"] < result["predicted_loss"] < result["high"]
    assert result["extrapolation"] is False and result["cv_r2"] > 0.8
    names = tuple(result["features"])
    assert set(names) <= set(FEATURES) | {"alpha", "sigma_w"}  # never measured features
    assert not result["baseline"]  # the exponents cross-validate best on these 20 trials
    # The point's features come from the code that computed the trials'.
    block = {**{k: v for k, v in spec().fixed.items() if k in CONFIG_KEYS}, "alpha": 0.4,
             "sigma_w": 2.0}
    theory = theory_at_init([block], DEPTH)[0]
    assert abs(result["predicted_loss"] - synthetic_loss(theory)) < 0.1

    saved = json.loads(artifact_path(sweep, STUDY, "predictor").read_text())
    assert artifact_path(sweep, STUDY, "predictor").name == f"sweep.{STUDY}.predictor.json"
    assert {"kind", "features", "parameters", "feature_ranges", "cv", "trials", "points",
            "interval", "fingerprint"} <= set(saved)
    assert saved["kind"] in ("saturating", "spline") and tuple(saved["features"]) == names
    assert saved["trials"] == saved["points"] == 20
    assert set(saved["cv"]) >= {"r2", "r2_sd"} and saved["cv"]["r2"] == result["cv_r2"]
    assert set(saved["feature_ranges"]) == set(names)
    interval = saved["interval"]
    assert interval["coverage"] == 0.8 and interval["low"] < 0 < interval["high"]
    assert result["high"] - result["low"] == pytest.approx(interval["high"] - interval["low"])
    needed = {"saturating": {"theta", "centre", "scale"},
              "spline": {"points", "values", "smoothing", "centre", "scale"}}[saved["kind"]]
    assert needed <= set(saved["parameters"])
    assert all(c["features"] != ["depth_lambda_a_measured", "depth_lambda_g_measured"]
               for c in saved["candidates"])


class Refit(Exception):
    """Raised by a stand-in for ``_fit``."""


def test_saved_predictor_is_reused_until_the_study_has_more_finished_trials(sweep, tmp_path,
                                                                            monkeypatch):
    url = copy_of(sweep, tmp_path)
    path = artifact_path(url, STUDY, "predictor")
    before = json.loads(path.read_text())

    def fit(*args):
        raise Refit

    with monkeypatch.context() as patch:
        patch.setattr(loss_model, "_fit", fit)
        predict(url, alpha=0.5, sigma_w=1.0, cv_repeats=1)  # same fingerprint: the saved fit
        with pytest.raises(Refit):  # other fitting settings: another fingerprint
            predict(url, alpha=0.5, sigma_w=1.0, cv_repeats=2)
    open_study(url, STUDY, spec())  # the restart enqueues the α = 0.9 configurations again
    run_worker(url, STUDY, evaluate, 5, **FAST)
    report = predict(url, alpha=0.9, sigma_w=2.5, cv_repeats=1)
    after = json.loads(path.read_text())
    assert after["trials"] == 25 and after["fingerprint"] != before["fingerprint"]
    assert not report.extrapolation  # α = 0.9 is trained now
    # With the collapsed α = 0.9 row the raw hyperparameters cross-validate best here: the
    # baseline is used, and says so.
    assert after["baseline"] and after["features"] == ["alpha", "sigma_w"]
    assert report.baseline and report.predictor.startswith("baseline")
    out = cli("--storage", url, "--alpha", "0.5", "--sigma-w", "1", *CV)
    assert out.exit_code == 0 and "baseline" in out.stdout
    # Its features are the swept values, also when given as what alpha sets ...
    same = predict(url, alpha_A=0.5, alpha_M=0.5, sigma_w=1.0, cv_repeats=1)
    assert same.predicted_loss == pytest.approx(
        predict(url, alpha=0.5, sigma_w=1.0, cv_repeats=1).predicted_loss)
    with pytest.raises(ValueError, match="alpha is not defined"):
        predict(url, alpha_A=0.5, alpha_M=0.3, sigma_w=1.0, cv_repeats=1)
    # ... and it cannot see an unswept hyperparameter: changing one is extrapolation.
    assert "sigma_b" in predict(url, alpha=0.5, sigma_w=1.0, sigma_b=1.5, cv_repeats=1).outside


def test_extrapolation_is_flagged_not_refused(sweep):
    inside = predict(sweep, alpha=0.3, sigma_w=3.0, cv_repeats=1)
    assert not inside.extrapolation and inside.outside == ()
    far = predict(sweep, alpha=0.9, sigma_w=2.5, cv_repeats=1)  # tokens collapse beyond the range
    assert far.extrapolation and "depth_lambda_a_theory" in far.outside
    assert np.isfinite(far.predicted_loss)
    relu = predict(sweep, alpha=0.3, sigma_w=3.0, activation="relu", cv_repeats=1)
    assert relu.extrapolation and "activation" in relu.outside


def test_interval_holds_most_new_points(sweep):
    """Points the sweep never trained, inside its range: about 80% of their losses (the same
    synthetic law and noise) fall in the interval, and the predictions track the truth."""
    rng = np.random.default_rng(7)
    points = pd.DataFrame({"alpha": rng.uniform(0.1, 0.7, 30),
                           "sigma_w": rng.uniform(0.5, 4.5, 30)})
    table = predict(sweep, STUDY, points, cv_repeats=1)
    blocks = [{**{k: v for k, v in spec().fixed.items() if k in CONFIG_KEYS}, **p}
              for p in points.to_dict("records")]
    truth = np.array([synthetic_loss(t, p) for t, p in
                      zip(theory_at_init(blocks, DEPTH), points.to_dict("records"))])
    inside = (table["low"] <= truth) & (truth <= table["high"])
    assert inside.mean() >= 0.6
    assert np.corrcoef(table["predicted_loss"], truth)[0, 1] > 0.9
    assert list(table.columns[:2]) == ["alpha", "sigma_w"] and len(table) == 30


def test_csv_of_points(sweep, tmp_path):
    points = tmp_path / "points.csv"
    pd.DataFrame({"alpha": [0.2, 0.6], "sigma-w": [1.0, 4.0]}).to_csv(points, index=False)
    out = cli("--storage", sweep, "--csv", str(points), "--sigma-b", "0.5", *CV)
    assert out.exit_code == 0, out.output
    written = pd.read_csv(tmp_path / "points.predicted.csv")
    assert list(written["alpha"]) == [0.2, 0.6] and set(written["sigma_b"]) == {0.5}
    assert {"predicted_loss", "low", "high", "extrapolation"} <= set(written.columns)
    assert "predicted final test loss" in out.stdout
    listed = cli("--storage", sweep, "--csv", str(points), "--json", *CV)
    rows = json.loads(listed.stdout)
    assert [row["hyperparameters"]["alpha"] for row in rows] == [0.2, 0.6]
    assert rows[0]["predicted_loss"] == pytest.approx(written["predicted_loss"][0])


def test_one_point_on_the_command_line(sweep):
    out = cli("--storage", sweep, "--alpha-a", "0.4", "--alpha-m", "0.4", "--sigma-w", "2",
              "--json", *CV)
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert result["predicted_loss"] == pytest.approx(
        predict(sweep, alpha=0.4, sigma_w=2.0, cv_repeats=1).predicted_loss)
    human = cli("--storage", sweep, "--study", STUDY, "--alpha", "0.4", "--sigma-w", "2", *CV)
    assert human.exit_code == 0 and "predicted final test loss" in human.stdout
    assert "interval" in human.stdout and "R²" in human.stdout


@pytest.mark.parametrize("waiting, args, words", [
    (False, ["--study", "nope", "--alpha", "0.5", "--sigma-w", "1"], ["nope", STUDY]),
    (False, ["--alpha", "1.5", "--sigma-w", "1"], ["alpha", "[0, 1]"]),
    (False, ["--alpha", "0.5"], ["sigma_w", "--sigma-w"]),
    (False, ["--csv", "{tmp}/bad.csv"], ["unknown column", "'foo'"]),
    (True, ["--alpha", "0.5", "--sigma-w", "1"], ["no finished trials"]),
])
def test_bad_input_is_one_line_with_exit_code_2(sweep, tmp_path, waiting, args, words):
    """``waiting``: a study whose trials have not run."""
    pd.DataFrame({"alpha": [0.5], "foo": [1]}).to_csv(tmp_path / "bad.csv", index=False)
    storage = sweep
    if waiting:
        storage = normalize_storage(None, tmp_path / "waiting.sqlite")
        open_study(storage, "waiting", spec())
    out = cli("--storage", storage, *(a.format(tmp=tmp_path) for a in args), *CV)
    assert out.exit_code == 2, out.output
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr
    assert all(word in lines[0] for word in words), lines[0]


def test_predictor_in_the_study_for_databases_other_than_sqlite(sweep, tmp_path, monkeypatch):
    """Without a file beside the database (PostgreSQL), the same JSON is a user attribute of
    the study, and is reused from there."""
    url = copy_of(sweep, tmp_path)
    saved = json.loads(artifact_path(url, STUDY, "predictor").read_text())
    monkeypatch.setattr(storage, "artifact_path", lambda url, study, name: None)
    write_artifact(url, STUDY, "predictor", saved)
    assert open_study(url, STUDY, None).user_attrs["predictor"] == saved
    monkeypatch.setattr(loss_model, "_fit", lambda *args: pytest.fail("refitted"))
    model = loss_model.loss_model(url, cv_repeats=1)
    assert model.to_json() == saved


@pytest.mark.parametrize("kind, spanning", [("saturating", True), ("spline", True),
                                            ("spline", False)])
def test_saved_parameters_rebuild_the_fitted_model(kind, spanning):
    """The JSON form of each model (the spline falls back to a constant on features that do
    not span their space) predicts what the fit does, also away from the training points."""
    rng = np.random.default_rng(1)
    X = rng.uniform(-3.0, 3.0, size=(24, 2))
    if not spanning:
        X[:, 0] = 1.0
    y = 2.0 + 1.0 / (1.0 + np.exp(X[:, 0] + X[:, 1])) + 0.02 * rng.standard_normal(24)
    fitted = FITS[kind](X, y, np.arange(24))
    assert fitted.kind == (kind if spanning else "constant")
    parameters = json.loads(json.dumps(fitted.parameters))
    new = rng.uniform(-4.0, 4.0, size=(10, 2))
    np.testing.assert_allclose(FittedModel.from_parameters(fitted.kind, parameters)(new),
                               fitted(new), rtol=1e-9)


def test_python_api_is_lazy_and_takes_many_points(sweep):
    code = ("import sys, sigprop; print('predict' in dir(sigprop), 'torch' in sys.modules, "
            "'optuna' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         check=False)
    assert out.stdout.split() == ["True", "False", "False"], out.stderr
    import sigprop

    table = sigprop.predict(sweep, points=[{"alpha": 0.3, "sigma_w": 1.0},
                                           {"alpha": 0.5, "sigma-w": 3.0, "sigma_b": 0.2}],
                            cv_repeats=1)
    assert isinstance(table, pd.DataFrame) and len(table) == 2
    assert table["sigma_b"].isna().tolist() == [True, False]
    one = sigprop.predict(sweep, alpha=0.3, sigma_w=1.0, cv_repeats=1)
    assert one.predicted_loss == pytest.approx(table["predicted_loss"][0])
