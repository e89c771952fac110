"""The exponent screen: it rejects far-from-critical initializations before any training, the
screened sampler proposes only passing points (the passing draws of its inner sampler, in
order), a screened sweep keeps only passing Halton points and resumes, and bad input exits 2."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import FloatDistribution
from typer.testing import CliRunner

import sweep_fakes
from sigprop.cli import app
from sigprop.experiment.trial import sweep_spec
from sigprop.spec import Architecture
from sigprop.sweep import SweepSpec, normalize_storage, open_study, run_worker, trials_frame
from sigprop.experiment.screen import Screen
from sigprop.sweep.screen import DEFAULT_TAU, ScreenedSampler, screen_cost, screen_trial
from sigprop.experiment.init_exponents import theory_at_init

NEAR = {"alpha": 0.322, "sigma_w": 1.733, "sigma_b": 0.314, "sigma_A": 2.545}  # L·λ ≈ (−1.5, −1.4)
FAR = {"alpha": 0.9, "sigma_w": 0.5, "sigma_b": 0.3, "sigma_A": 1.0}  # tokens collapse: L·λ_a ≈ −40
BOX = {"alpha": FloatDistribution(0.05, 0.95), "sigma_w": FloatDistribution(0.3, 6.0),
       "sigma_b": FloatDistribution(0.0, 2.0), "sigma_A": FloatDistribution(0.2, 3.0)}


@pytest.fixture(autouse=True)
def _quiet_optuna():
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield
    optuna.logging.set_verbosity(verbosity)


def test_screen_trial_prunes_a_far_point_before_training_and_trains_a_near_one():
    screen = Screen(depth=16)
    trained = []

    def objective(trial: optuna.Trial) -> float:
        point = NEAR if trial.number == 0 else FAR
        for name, value in point.items():
            trial.suggest_float(name, value, value)
        trial.suggest_float("lr", 1e-3, 1e-3)
        screen_trial(trial, screen, ignore=("lr",))
        trained.append(trial.number)
        return 1.0

    study = optuna.create_study()
    study.optimize(objective, n_trials=2)
    near, far = study.trials
    assert trained == [0]
    assert near.state == optuna.trial.TrialState.COMPLETE
    assert far.state == optuna.trial.TrialState.PRUNED
    # The screen's exponents are the sweep's trial columns: L times the finite-depth theory.
    for trial, point in ((near, NEAR), (far, FAR)):
        columns = theory_at_init([point], 16)[0]
        assert trial.user_attrs["screen_lambda_a"] == pytest.approx(
            16 * columns["lambda_a_depth_theory"], rel=1e-12)
        assert trial.user_attrs["screen_lambda_g"] == pytest.approx(
            16 * columns["lambda_g_depth_theory"], rel=1e-12)
    assert max(abs(near.user_attrs["screen_lambda_a"]), abs(near.user_attrs["screen_lambda_g"])) < 3
    assert far.user_attrs["screen_lambda_a"] < -30
    assert screen_cost(study)["pruned"] == 1 and screen_cost(study)["trials"] == 2
    asymptotic = Screen(depth=16, definition="asymptotic").check([NEAR])[0]
    columns = theory_at_init([NEAR], 16)[0]
    assert asymptotic.lambda_a == pytest.approx(16 * columns["lambda_a_theory"], rel=1e-12)
    assert asymptotic.lambda_g == pytest.approx(16 * columns["lambda_g_theory"], rel=1e-12)


def test_sampler_proposes_the_passing_draws_of_its_inner_sampler_in_order():
    screen = Screen(depth=8)
    screened = optuna.create_study(sampler=ScreenedSampler(
        screen, BOX, optuna.samplers.RandomSampler(seed=3)))
    plain = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))

    def objective(trial: optuna.Trial) -> float:
        return sum(trial.suggest_float(name, d.low, d.high) for name, d in BOX.items())

    screened.optimize(objective, n_trials=6)
    plain.optimize(objective, n_trials=int(screen_cost(screened)["candidates"]))
    proposed = [t.params for t in screened.trials]
    verdicts = screen.check([t.params for t in plain.trials])
    assert proposed == [t.params for t, v in zip(plain.trials, verdicts) if v.passed]
    assert any(not v.passed for v in verdicts)  # something was rejected, at no trial's cost
    for trial in screened.trials:
        check = screen.check([trial.params])[0]
        assert check.passed and trial.user_attrs["screen_lambda_a"] == check.lambda_a
    cost = screen_cost(screened)
    assert cost["trials"] == 6 and cost["pruned"] == 0 and cost["seconds"] > 0


def test_screen_inputs_are_checked():
    for kwargs, named in [(dict(tau_a=-1.0), "tau_a"), (dict(tau_g=float("nan")), "tau_g"),
                          (dict(depth=0), "depth"), (dict(definition="causal"), "definition"),
                          (dict(values={"sigma_w": -1.0}), "sigma_w")]:
        with pytest.raises(ValueError, match=named):
            Screen(**kwargs)
    with pytest.raises(ValueError, match="sigmaw"):
        ScreenedSampler(Screen(), {"sigmaw": FloatDistribution(0.3, 6.0)})
    with pytest.raises(ValueError, match="seed"):
        ScreenedSampler(Screen(), BOX, optuna.samplers.TPESampler(seed=0), seed=1)
    with pytest.raises(ValueError, match="lr"):
        study = optuna.create_study()
        trial = study.ask({"alpha": FloatDistribution(0.1, 0.9), "lr": FloatDistribution(0.1, 1)})
        screen_trial(trial, Screen())
    # Nothing passes a zero box around a collapsing block: the trial fails, naming the box.
    sampler = ScreenedSampler(Screen(tau_a=0.0, tau_g=0.0), {"alpha": FloatDistribution(0.8, 0.9)},
                              seed=0, max_candidates=8)
    study = optuna.create_study(sampler=sampler)
    with pytest.raises(ValueError, match="none of 8 candidates"):
        study.optimize(lambda t: t.suggest_float("alpha", 0.8, 0.9), n_trials=1)
    # A suggestion with another range than the sampler's is an error, not an unscreened draw.
    study = optuna.create_study(sampler=ScreenedSampler(Screen(), BOX, seed=0))
    with pytest.raises(ValueError, match="same distribution"):
        study.optimize(lambda t: t.suggest_float("alpha", 0.1, 0.2), n_trials=1)


def test_a_screened_sweep_keeps_only_passing_points_and_resumes(tmp_path):
    sample = ["alpha=0.05:0.95", "sigma-w=0.3:6"]
    plain = sweep_spec(None, {}, ["seed=0,1"], sample, 6, 0, depth=8, steps=2)
    screened = sweep_spec(None, {}, ["seed=0,1"], sample, 6, 0, depth=8, steps=2,
                          screen={"tau_a": 2.0, "tau_g": 2.0})
    assert screened.screen["tau_a"] == 2.0 and screened.screen["candidates"] > 6
    assert len(screened.configurations()) == 12
    positions = screened.sample_positions
    sequence = plain.sequence(positions[-1] + 1)
    verdicts = Screen(2.0, 2.0, depth=8).check(
        [{**{k: v for k, v in plain.fixed.items() if k in Architecture.load(None).values}, **p}
         for p in sequence])
    assert [i for i, v in enumerate(verdicts) if v.passed][:6] == positions
    assert screened.sample_points() == [sequence[i] for i in positions]
    assert SweepSpec.from_json(screened.to_json()) == screened
    url = normalize_storage(None, tmp_path / "s.db")
    study = open_study(url, "s", screened)
    assert len(study.trials) == 12
    again = sweep_spec(None, {}, ["seed=0,1"], sample, 6, 0, depth=8, steps=2,
                       screen={"tau_a": 2.0, "tau_g": 2.0})
    assert len(open_study(url, "s", again).trials) == 12  # the same command resumes
    with pytest.raises(ValueError, match="already holds a different sweep"):
        open_study(url, "s", plain)
    run_worker(url, "s", sweep_fakes.instant_evaluate(), 12, heartbeat_interval=1, grace_period=3)
    assert set(trials_frame(url, "s")["state"]) == {"COMPLETE"}
    with pytest.raises(ValueError, match="grid may only vary the seed"):
        sweep_spec(None, {}, ["sigma-b=0,1"], sample, 6, 0, depth=8, screen={})
    with pytest.raises(ValueError, match="--sample"):
        sweep_spec(None, {}, ["alpha=0.1,0.2"], [], 0, 0, depth=8, screen={})


def _sigprop(*args: str, cwd, monkeypatch):
    """The command in this process (the sweep still starts its worker processes)."""
    monkeypatch.chdir(cwd)
    return CliRunner().invoke(app, list(args))


def test_sweep_screen_flag_trains_only_points_inside_the_box(tmp_path, monkeypatch):
    command = ["sweep", "--sample", "alpha=0.05:0.95", "--sample", "sigma-w=0.3:6",
               "--samples", "3", "--screen", "--screen-lambda-a", "0.5",
               "--screen-lambda-g", "0.5", "--data", "copy", "--depth", "4", "--width", "8",
               "--context", "8", "--batch", "2", "--steps", "2", "--workers", "1",
               "--batch-size", "3", "--no-compile", "--out", "sweep"]
    out = _sigprop(*command, cwd=tmp_path, monkeypatch=monkeypatch)
    assert out.exit_code == 0, out.stderr
    assert "screen: kept 3 of the first" in out.stdout
    url = normalize_storage(None, tmp_path / "sweep" / "sweep.sqlite")
    trials = trials_frame(url, "sweep")
    assert len(trials) == 3 and set(trials["status"]) <= {"complete", "diverged"}
    assert (4 * trials["lambda_a_depth_theory"]).abs().max() <= 0.5
    assert (4 * trials["lambda_g_depth_theory"]).abs().max() <= 0.5
    assert set(trials["device"]) == {"cpu"}  # --device auto, on this machine
    # The same sweep goes on with another --device: the device is not part of the study.
    out = _sigprop(*command, "--device", "cpu", cwd=tmp_path, monkeypatch=monkeypatch)
    assert out.exit_code == 0, out.stderr
    assert list(trials_frame(url, "sweep")["number"]) == list(trials["number"])


@pytest.mark.parametrize("args, named", [
    (("--screen", "--screen-lambda-a", "-1"), "--screen-lambda-a"),
    (("--screen", "--screen-lambda-g", "inf"), "--screen-lambda-g"),
    (("--screen-lambda-g", "2"), "(--screen-lambda-g): only with screen=True (--screen)"),
])
def test_bad_screen_thresholds_exit_2_with_one_line(tmp_path, monkeypatch, args, named):
    out = _sigprop("sweep", "--sample", "alpha=0.1:0.9", "--samples", "2", *args, cwd=tmp_path,
                   monkeypatch=monkeypatch)
    assert out.exit_code == 2 and named in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "results").exists()  # nothing was started


def test_the_cli_states_the_screen_defaults():
    help_text = CliRunner().invoke(app, ["sweep", "--help"], env={"COLUMNS": "200"}).stdout
    assert help_text.count(f"(default {DEFAULT_TAU:g})") == 2
    assert (Screen().tau_a, Screen().tau_g) == (DEFAULT_TAU, DEFAULT_TAU)
