"""sigprop.train: stacked training equals training alone, divergence is contained, learning
happens, and the exponents at initialization come from the causal model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from typer.testing import CliRunner

import sigprop.experiment.init_exponents as train_exponents
from sigprop.experiment.init_exponents import exponents_at_init
from sigprop.cli import app
from sigprop.data import Batches, copy_task, evaluation_windows
from sigprop.runtime.devices import resolve_device
from sigprop.experiment.trial import sweep_spec
from sigprop.spec import Residual, SelfAttention, Serial, reference_layer
from sigprop.sweep import load_factory
from sigprop.theory.exponents import compute_exponents
from sigprop.train import (
    TrainSettings,
    build_lm,
    build_stacked_lm,
    cross_entropy,
    lm_layer,
    train_together,
)
from sigprop.train.model import lm_architecture
from sigprop.train.stacked import StackedRun, _member_losses

# raised inside torch.compile itself
pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")

CONFIGS = [
    {"alpha": 0.5, "sigma_w": 1.0, "seed": 0},
    {"alpha_A": 0.3, "alpha_M": 0.8, "sigma_A": 1.5, "sigma_w": 2.5, "sigma_b": 0.3, "seed": 1},
    {"alpha": 0.9, "sigma_w": 0.5, "seed": 2},
]
SMALL = TrainSettings(depth=2, width=16, context=8, batch=4, steps=6, lr=1e-2, eval_windows=4,
                      compile=False, members_per_pass=2, device="cpu")


@pytest.fixture(autouse=True)
def _one_thread():
    # Small models: a second thread only adds synchronization (and stalls on a busy machine).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def corpus():
    return copy_task(n_symbols=4, length=2, n_train=512, n_eval=64)


def _train_alone(config, corpus, settings):
    """The reference: one nn.Module, its own Adam, the same batches."""
    model = build_lm(config, corpus.vocab_size, depth=settings.depth, width=settings.width,
                     dtype=settings.dtype)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    batches = Batches(corpus.train, settings.batch, settings.context, settings.seed)
    losses = []
    for _ in range(settings.steps):
        inputs, targets = batches.next()
        loss = cross_entropy(model(inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    with torch.no_grad():
        test = cross_entropy(model(evaluation_windows(corpus.test, settings.context,
                                                     settings.eval_windows)[0]),
                             evaluation_windows(corpus.test, settings.context,
                                                settings.eval_windows)[1]).item()
    return np.array(losses), test


def test_stacked_members_are_the_models_built_alone(corpus):
    stacked = build_stacked_lm(CONFIGS, corpus.vocab_size, depth=2, width=16)
    for m, config in enumerate(CONFIGS):
        alone = dict(build_lm(config, corpus.vocab_size, depth=2, width=16).state_dict())
        for name, tensor in stacked.state_dict().items():
            assert torch.equal(tensor[m], alone[name]), (m, name)


def test_training_together_equals_training_alone(corpus):
    settings = TrainSettings(**{**vars(SMALL), "dtype": torch.float64})
    per_step = []
    results = train_together(CONFIGS, corpus, settings, on_step=lambda step, l: per_step.append(l))
    together = np.array(per_step)  # (steps, configs); the configs span two stacked groups
    for m, config in enumerate(CONFIGS):
        losses, test = _train_alone(config, corpus, settings)
        np.testing.assert_allclose(together[:, m], losses, rtol=1e-10, atol=0)
        assert results[m]["test_loss"] == pytest.approx(test, rel=1e-10)
        assert results[m]["status"] == "complete" and results[m]["steps_done"] == settings.steps
    assert together[-1].mean() < together[0].mean()  # and they did move


@pytest.mark.parametrize("where", ["gradients", "parameters"])
def test_divergence_is_recorded_and_contained(corpus, monkeypatch, where):
    """Member 1 of the first group goes NaN after step 2: through its gradients (caught before
    Adam applies them) or its parameters (its next loss is NaN). It is frozen with its last
    finite loss; the others' losses are exactly those of a run without it going wrong."""
    clean = []
    train_together(CONFIGS, corpus, SMALL, on_step=lambda step, l: clean.append(l))
    real_gradients, real_step = StackedRun._gradients, torch.optim.Adam.step
    calls = {"n": 0}

    def poisoned_gradients(self, inputs, targets):
        losses = real_gradients(self, inputs, targets)
        if where == "gradients" and self.members == 2:
            calls["n"] += 1
            if calls["n"] == 3:
                self.params["readout"].grad[1, 0, 0] = math.nan
        return losses

    def poisoned_step(self, *args, **kwargs):
        result = real_step(self, *args, **kwargs)
        readout = self.param_groups[0]["params"][-1]
        if where == "parameters" and readout.shape[0] == 2:
            calls["n"] += 1
            if calls["n"] == 3:
                with torch.no_grad():
                    readout[1, 0, 0] = math.inf
        return result

    monkeypatch.setattr(StackedRun, "_gradients", poisoned_gradients)
    monkeypatch.setattr(torch.optim.Adam, "step", poisoned_step)
    per_step = []
    results = train_together(CONFIGS, corpus, SMALL, on_step=lambda step, l: per_step.append(l))
    clean, poisoned = np.array(clean), np.array(per_step)

    bad = results[1]
    assert bad["status"] == "diverged"
    assert math.isnan(bad["test_loss"]) and math.isnan(bad["validation_loss"])
    assert math.isnan(bad["train_loss"])
    last_step = 2  # its loss at step 2 was finite in both cases
    assert bad["last_finite_loss"] == clean[last_step, 1] and math.isfinite(bad["last_finite_loss"])
    assert bad["steps_done"] == (2 if where == "gradients" else 3)
    assert np.isnan(poisoned[last_step + 1 :, 1]).all()
    assert bad["loss_curve"][-1][0] == last_step
    for m in (0, 2):
        assert results[m]["status"] == "complete" and math.isfinite(results[m]["test_loss"])
        np.testing.assert_array_equal(poisoned[:, m], clean[:, m])


def test_every_member_diverging_stops_early_without_raising(corpus, monkeypatch):
    real_gradients = StackedRun._gradients

    def all_nan(self, inputs, targets):
        real_gradients(self, inputs, targets)
        for p in self.params.values():
            p.grad.fill_(math.nan)
        return torch.full((self.members,), 2.0, dtype=torch.float64)

    monkeypatch.setattr(StackedRun, "_gradients", all_nan)
    steps = []
    results = train_together(CONFIGS, corpus, SMALL, on_step=lambda step, l: steps.append(step))
    assert steps == [0]
    assert all(r["status"] == "diverged" and r["last_finite_loss"] == 2.0 and r["steps_done"] == 0
               for r in results)


def test_training_learns_the_copy_task(corpus):
    """Copy task, 4 symbols, sequences of 2: log 5 = 1.61 nats for unigram guessing, 0.55 at
    best. 400 steps of a 2-layer LM get well below both the start and the unigram level."""
    settings = TrainSettings(depth=2, width=32, context=10, batch=16, steps=400, lr=1e-2,
                             eval_windows=16, compile=False)
    configs = [{"alpha": 0.5, "sigma_w": 1.0, "seed": 0}, {"alpha": 0.7, "sigma_w": 1.0, "seed": 1}]
    results = train_together(configs, corpus, settings)
    for result in results:
        initial = result["loss_curve"][0][1]
        assert result["status"] == "complete"
        assert result["test_loss"] < min(0.75 * initial, math.log(5) - 0.3)
        assert len(result["loss_curve"]) == 20
        assert result["train_loss"] == pytest.approx(result["loss_curve"][-1][1], abs=0.2)


def test_mixed_activations_and_bad_configs_are_rejected(corpus):
    with pytest.raises(ValueError, match="activation"):
        train_together([CONFIGS[0], {**CONFIGS[0], "activation": "relu"}], corpus, SMALL)
    with pytest.raises(ValueError, match="sigma_W"):
        lm_layer({"sigma_W": 1.0})
    with pytest.raises(ValueError, match="alpha_M"):
        lm_layer({"alpha": 0.5, "alpha_M": 0.5})
    with pytest.raises(ValueError, match="alpha_A"):
        lm_layer({"alpha_A": 1.5})
    with pytest.raises(ValueError, match="steps"):
        TrainSettings(steps=0)


def test_lm_layer_is_the_causal_reference_layer():
    layer = lm_layer({"alpha": 0.4, "sigma_w": 1.5, "sigma_A": 0.8})
    assert layer == reference_layer(0.4, 0.4, 0.8, 1.5, causal=True)


def _attention(layer: Serial) -> list[SelfAttention]:
    found = []
    for component in layer.components:
        if isinstance(component, SelfAttention):
            found.append(component)
        elif isinstance(component, Residual):
            found.extend(_attention(component.branch))
        elif isinstance(component, Serial):
            found.extend(_attention(component))
    return found


def test_exponents_at_init_measure_the_causal_model(monkeypatch):
    seen = []
    for name in ("measure_points", "empirical_lambda_a_points"):
        real = getattr(train_exponents, name)

        def spy(layers, *args, _real=real, **kwargs):
            seen.extend(layers)
            return _real(layers, *args, **kwargs)

        monkeypatch.setattr(train_exponents, name, spy)
    settings = TrainSettings(depth=4, width=32)
    configs = CONFIGS + [{"alpha": 0.5, "sigma_w": 1.0, "activation": "relu"}]
    results = exponents_at_init(configs, settings, n_tokens=8, seeds=2)

    assert seen and all(a.causal for layer in seen for a in _attention(layer))
    keys = {"lambda_a_theory", "lambda_g_theory", "log_gap_L_theory", "log_jac_L_theory",
            "lambda_a_measured", "lambda_a_measured_se", "lambda_g_measured",
            "lambda_g_measured_se"}
    for config, result in zip(configs, results):
        assert keys <= set(result)
        assert all(math.isfinite(value) for value in result.values()), result
        bidirectional = lm_architecture(config).with_values(causal=False)
        theory = compute_exponents(bidirectional.theory_layer(), 8)
        assert result["lambda_a_theory"] == pytest.approx(float(theory.lambda_a), rel=1e-9)
        assert result["lambda_g_theory"] == pytest.approx(float(theory.lambda_g), rel=1e-9)


def test_compiled_step_matches_eager(corpus):
    """The default path (torch.compile of the stacked step) trains the same models; float32
    rounding differs with the order of the fused operations only."""
    settings = TrainSettings(depth=1, width=16, context=8, batch=4, steps=4, eval_windows=4,
                             members_per_pass=2)
    assert settings.compile
    losses = {}
    for compiled in (True, False):
        per_step = []
        train_together(CONFIGS[:2], corpus, TrainSettings(**{**vars(settings), "compile": compiled}),
                       on_step=lambda step, l: per_step.append(l))
        losses[compiled] = np.array(per_step)
    np.testing.assert_allclose(losses[True], losses[False], rtol=1e-4)


def test_a_failing_compiler_falls_back_to_eager(corpus, monkeypatch):
    def broken_compile(fn, **kwargs):
        def fail(*args):
            raise RuntimeError("no C++ compiler")
        return fail

    monkeypatch.setattr(torch, "compile", broken_compile)
    _member_losses.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
            results = train_together(CONFIGS[:1], corpus, TrainSettings(**{**vars(SMALL), "compile": True}))
    finally:
        _member_losses.cache_clear()
    expected = train_together(CONFIGS[:1], corpus, SMALL)
    assert results[0]["loss_curve"] == expected[0]["loss_curve"]


def test_settings_take_a_device_and_training_runs_there(corpus):
    assert TrainSettings(device="cpu").device == torch.device("cpu")
    assert TrainSettings().device == resolve_device("auto")  # the default: CUDA when available
    for bad in ("tpu", "cuda:x", 3):
        with pytest.raises(ValueError, match="device"):
            TrainSettings(device=bad)
    # Everything a step touches is on the settings' device (on a CPU-only machine this runs
    # the device path; the CUDA test below checks the moves themselves).
    seen = []
    real_step = StackedRun.step

    def spy(self, inputs, targets):
        seen.append({inputs.device, targets.device, self.active.device,
                     *(p.device for p in self.params.values())})
        return real_step(self, inputs, targets)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(StackedRun, "step", spy)
        results = train_together(CONFIGS, corpus, SMALL)
    assert seen and all(devices == {SMALL.device} for devices in seen)
    assert all(math.isfinite(r["test_loss"]) for r in results)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_matches_the_cpu_from_the_same_draws(corpus):
    """Initialization and data are drawn on the CPU and moved: on CUDA the same models train
    on the same batches, and only the arithmetic rounds differently (compiled there too)."""
    runs = {}
    for device in ("cpu", "cuda"):
        settings = TrainSettings(**{**vars(SMALL), "device": device, "compile": True})
        per_step = []
        train_together(CONFIGS, corpus, settings, on_step=lambda step, l: per_step.append(l))
        runs[device] = np.array(per_step)
    np.testing.assert_allclose(runs["cuda"][0], runs["cpu"][0], rtol=1e-5)
    np.testing.assert_allclose(runs["cuda"], runs["cpu"], rtol=1e-3)


def test_sweeps_train_on_a_device_that_is_not_part_of_the_study():
    evaluate = load_factory("sigprop.experiment.trial:make_evaluate", device="cpu")
    assert evaluate.keywords["device"] == torch.device("cpu")
    with pytest.raises(ValueError, match="device"):
        load_factory("sigprop.experiment.trial:make_evaluate", device="tpu")
    spec = sweep_spec(None, {}, ["alpha=0.2,0.5"], [], 0, 0, depth=2, steps=2, data="copy")
    assert "device" not in spec.fixed  # the same study goes on on any machine
    config = {**spec.fixed, "alpha": 0.2, "width": 8, "context": 8, "batch": 2,
              "compile": False, "measure_width": 32, "measure_seeds": 1}
    result = evaluate([config])[0]
    assert result["device"] == "cpu" and math.isfinite(result["test_loss"])
    with pytest.raises(ValueError, match="unknown sweep settings"):
        evaluate([{**config, "device": "cpu"}])


@pytest.mark.parametrize("command", [["sweep", "--grid", "alpha=0.2,0.5"], ["reproduce"],
                                     ["focus"]])
def test_a_bad_device_exits_2_with_one_line_before_any_work(tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    for device in ("tpu", *(() if torch.cuda.is_available() else ("cuda",))):
        out = CliRunner().invoke(app, [*command, "--device", device, "--out", "out"])
        assert out.exit_code == 2 and "device" in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
