"""The rescue suite's machinery on tiny networks: the published fixes do what their papers say,
the arms prepare what they name, a run is stored once and the report judges it; and the
initialization features the suite needs (block-relative names, the plain-layer knobs, the
Post-LN skip knob, the coordinate scans)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

import sigprop
from sigprop.experiment.rescue import fixes, models
from sigprop.experiment.rescue import report as report_module
from sigprop.experiment.rescue.report import summarize
from sigprop.experiment.rescue.arms import arms_of, prepared
from sigprop.experiment.rescue.networks import NETWORKS, Network
from sigprop.experiment.rescue.suite import read_runs, rescue
from sigprop.experiment.rescue.trial import left_plateau_at
from sigprop.init.ensemble import Evaluation
from sigprop.init.solve import solve
from sigprop.train.tasks import CharLM, CopyMemory, Digits

VOCAB = 12
SMALL = dict(seeds=2, n_tokens=4, n_probes=1)


def tiny_post_ln(depth: int = 3) -> models.CausalLM:
    return models.encoder_lm(depth, 16, 2, VOCAB)


def test_deepnorm_is_ln_of_alpha_x_plus_f_with_its_gains():
    torch.manual_seed(0)
    model = tiny_post_ln(2)
    block = model.blocks[0]
    for norm in (block.norm1, block.norm2):
        norm.eps = 0.0  # LN(αx + f) = LN(x + f/α) exactly without ε
    fixes.deepnorm(model)
    alpha, beta = 4 ** 0.25, 16 ** -0.25
    x = torch.randn(1, 5, 16)
    with torch.no_grad():
        y = block.norm1(alpha * x + block.self_attn(x, x, x, need_weights=False)[0])
        want = block.norm2(alpha * y + block.linear2(torch.relu(block.linear1(y))))
        got = block(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    value = block.self_attn.in_proj_weight[32:]
    std = math.sqrt(2 / (16 + 16)) * beta  # Xavier-normal of a 16 × 16 matrix, gain β
    assert abs(value.std().item() / std - 1) < 0.2
    assert abs(block.linear1.weight.std().item() / (math.sqrt(2 / 80) * beta) - 1) < 0.2


def test_rezero_starts_every_block_at_the_identity():
    torch.manual_seed(0)
    model = fixes.rezero(models.no_norm_lm(3, 16, 2, VOCAB))
    ids = torch.randint(0, VOCAB, (2, 6))
    with torch.no_grad():
        embedded = model.embedding(ids) + model.positions[:6]
        want = model.head(model.norm(embedded))
        torch.testing.assert_close(model(ids), want)
    alphas = {id(p) for name, p in model.named_parameters() if name.endswith("alpha")}
    assert len(alphas) == 3  # one α per block, shared by its two branches


def test_delta_orthogonal_and_he():
    torch.manual_seed(0)
    model = fixes.delta_orthogonal(models.PlainCNN(2, channels=8))
    weight = model.blocks[0].conv.weight
    centre = weight[:, :, 1, 1]
    torch.testing.assert_close(centre.T @ centre, 2 * torch.eye(8), rtol=1e-5, atol=1e-5)
    assert weight.abs().sum().item() == pytest.approx(centre.abs().sum().item())
    he = fixes.he(models.PlainCNN(40, channels=16))
    stds = [layer.conv.weight.std().item() for layer in he.blocks]
    assert np.mean(stds) == pytest.approx(math.sqrt(2 / (16 * 9)), rel=0.05)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_gate_biases_of_forget_bias_and_chrono(kind):
    torch.manual_seed(0)
    model = fixes.forget_bias(models.SequenceModel(kind, 8, 5))
    rnn = model.rnn
    assert torch.all(rnn.bias_ih_l0[8:16] + rnn.bias_hh_l0[8:16] == 1.0)
    model = fixes.chrono(models.SequenceModel(kind, 8, 5), t_max=100)
    keep = rnn_keep = model.rnn.bias_ih_l0[8:16] + model.rnn.bias_hh_l0[8:16]
    assert torch.all((keep >= 0) & (keep <= math.log(99)))
    if kind == "lstm":
        torch.testing.assert_close(model.rnn.bias_ih_l0[:8] + model.rnn.bias_hh_l0[:8],
                                   -rnn_keep)


def test_every_arm_of_every_network_prepares_a_model_that_runs():
    """All arms but sigprop's (which need the searched initializations) on seed 0."""
    for network in NETWORKS.values():
        task = network.task()
        for arm in arms_of(network):
            if arm.kind in ("sigprop", "control"):
                continue
            model = prepared(network, arm.name, 0, {})
            inputs, targets = next(task.train_batches(2, 0))
            with torch.no_grad():
                output = model(inputs)
            logits = getattr(output, "logits", output)
            assert torch.isfinite(task.loss(logits, targets)), (network.name, arm.name)


def test_tasks_score_what_they_name():
    memory = CopyMemory(lag=5, length=2)
    inputs, targets = next(memory.train_batches(3, 0))
    assert inputs.shape == targets.shape == (3, 9)
    assert torch.all(targets[:, -2:] == inputs[:, :2]) and torch.all(targets[:, :-2] == -100)
    assert torch.all(inputs[:, 6] == memory.symbols + 1)  # the delimiter: recall now
    assert memory.chance == pytest.approx(math.log(8))
    splits = {name: Digits().held_out(name) for name in ("validation", "test")}
    assert len(splits["test"][1]) == 500 and len(splits["validation"][1]) == 200
    images, _ = next(Digits().train_batches(4, 0))
    assert images.shape == (4, 1, 8, 8)
    assert 3.0 < CharLM().chance < 3.6  # the unigram entropy of Shakespeare


def test_left_the_plateau_at():
    losses = [3.3] * 20 + [2.0] * 20
    # the window ending at step 23 holds three steps at 2.0: its mean 2.91 < 3.3 − 0.3
    assert left_plateau_at(losses, chance=3.3) == 23
    assert left_plateau_at([3.3] * 40, chance=3.3) is None


def tiny_network(name: str = "tiny-post-ln") -> Network:
    return Network(name, "a tiny Post-LN LM", "lm", lambda: tiny_post_ln(3), CharLM,
                   ("deepnorm", "warmup"), steps=3, reference=lambda: models.encoder_lm(
                       3, 16, 2, CharLM().corpus.vocab_size, norm_first=True),
                   reference_title="Pre-LN")


def test_the_suite_stores_each_run_once_and_reports_it(tmp_path, monkeypatch):
    vocab = CharLM().corpus.vocab_size
    network = tiny_network()
    network = Network(network.name, network.title, "lm",
                      lambda: models.encoder_lm(3, 16, 2, vocab), CharLM, network.fixes, steps=3,
                      reference=network.reference, reference_title="Pre-LN")
    monkeypatch.setitem(NETWORKS, network.name, network)
    report = rescue(tmp_path, networks=[network.name], seeds=1, workers=1, log=lambda _: None)
    runs = read_runs(tmp_path / "runs.jsonl")
    assert {r["arm"] for r in runs} == {a.name for a in arms_of(network)}
    assert all(r["steps_done"] == 3 and len(r["losses"]) == 3 for r in runs)
    again = rescue(tmp_path, networks=[network.name], seeds=1, workers=1, log=lambda _: None)
    assert len(read_runs(tmp_path / "runs.jsonl")) == len(runs)  # nothing trained twice
    assert again.table() == report.table()
    exponents = json.loads((tmp_path / "exponents" / f"{network.name}.json").read_text())
    assert set(exponents) == {a.name for a in arms_of(network)}
    assert (tmp_path / "report.md").exists() and (tmp_path / "rescue.png").exists()
    json.dumps(report.to_json(), allow_nan=False)
    assert report.verdict() and "RescueReport(" in repr(report)
    with pytest.raises(ValueError, match="arms must be among"):
        rescue(tmp_path, networks=[network.name], arms=["nonsense"], log=lambda _: None)


def test_the_figure_averages_seeds_that_diverged_early(tmp_path):
    """A diverged run stops early, so its loss curve is shorter than the others'."""
    runs = [{"network": "post-ln-32", "arm": "default", "seed": seed, "status": status,
             "steps_done": steps, "losses": [3.5] * steps, "test_loss": 3.5,
             "test_accuracy": 0.1, "test_chance": 4.2, "left_plateau_at": None}
            for seed, (status, steps) in enumerate([("complete", 200), ("diverged", 37)])]
    report = summarize(runs, {}, ["post-ln-32"])
    assert report.figure(tmp_path / "rescue.png").exists()
    curve = report_module._mean_curve([np.ones(5), np.full(2, 3.0)])
    np.testing.assert_array_equal(curve, [2.0, 2.0, 1.0, 1.0, 1.0])


# ------------------------------------------------------------------ the initialization's growth

class Stack(nn.Module):
    """A user's Post-LN stack on hidden states."""

    def __init__(self, depth: int = 3) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.TransformerEncoderLayer(16, 2, 64, dropout=0.0,
                                                               batch_first=True)
                                    for _ in range(depth))

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def test_an_init_found_on_a_stack_applies_to_the_model_built_around_it():
    init = sigprop.critical_init(lambda seed: Stack(), search_seeds=1, **SMALL)
    assert all(name.split(".")[0].isdigit() for names in init.parameters.values()
               for name in names)
    torch.manual_seed(3)
    lm, stack = tiny_post_ln(3), Stack()
    for block, layer in zip(lm.blocks, stack.layers):
        block.load_state_dict(layer.state_dict())
    sigprop.apply_init(lm, init)
    sigprop.apply_init(stack, init)
    for block, layer in zip(lm.blocks, stack.layers):
        for a, b in zip(block.state_dict().values(), layer.state_dict().values()):
            torch.testing.assert_close(a, b)
    with pytest.raises(sigprop.DiagnoseError, match="same architecture"):
        sigprop.apply_init(Stack(depth=4), init)


def test_plain_layers_get_the_weights_and_biases_knobs():
    init = sigprop.critical_init(lambda seed: models.TanhMLP(6, width=16), search_seeds=1,
                                 **SMALL)
    assert set(init.scales) == {"weights", "biases"}
    assert init.parameters["weights"] == sorted(f"{i}.linear.weight" for i in range(6))


def test_the_skip_knob_is_deepnorms_alpha_and_apply_init_repeats_it(tmp_path):
    init = sigprop.critical_init(lambda seed: Stack(), knobs=["attn_values", "skip"],
                                 search_seeds=1, **SMALL)
    assert init.scales["skip"] >= 1.0
    again = sigprop.diagnose(lambda seed: Stack(), init=init, **SMALL)
    assert again.log_gap_L.mean == pytest.approx(init.after["log_gap_L"], rel=1e-9)
    forced = init.scales | {"skip": 3.0}
    torch.manual_seed(0)
    stack = Stack(1)
    x = torch.randn(1, 4, 16)
    layer = stack.layers[0]
    for norm in (layer.norm1, layer.norm2):
        norm.eps = 0.0
    with torch.no_grad():
        y = layer.norm1(3.0 * x + layer.self_attn(x, x, x, need_weights=False)[0])
        want = layer.norm2(3.0 * y + layer.linear2(torch.relu(layer.linear1(y))))
    one = sigprop.critical_init(lambda seed: Stack(1), knobs=["skip"], search_seeds=1, **SMALL)
    sigprop.apply_init(stack, sigprop.load_init({**one.to_json(), "scales": {"skip": 3.0}}))
    with torch.no_grad():
        torch.testing.assert_close(stack(x), want, rtol=1e-5, atol=1e-5)
    with pytest.raises(sigprop.DiagnoseError, match="state dict cannot carry"):
        init.save_model(lambda seed: Stack(), tmp_path / "model.pt")
    assert forced["skip"] == 3.0


class Valley:
    """A stand-in for the measured ensemble: totals with a false valley along the first knob.
    From the start (1, 1) a local search slides to s_1 ≈ 4 (|r| = 1); the root is at
    s_2 = 1/10, which only a scan of the second knob finds."""

    def __init__(self) -> None:
        self.history: list[Evaluation] = []

    def evaluate(self, scales: dict[str, float]) -> Evaluation:
        u1, u2 = math.log(scales["a"]), math.log(scales["b"])
        gap = (u1 - math.log(4)) ** 2 * 0.3 + 1.0 if u2 > math.log(0.3) else u2 + math.log(10)
        jac = u2 + math.log(10) if u2 <= math.log(0.3) else 1.0
        evaluation = Evaluation(dict(scales), gap, jac, jac, 1.0, "raw")
        self.history.append(evaluation)
        return evaluation


def test_the_solver_scans_each_knob_when_the_local_search_misses():
    ensemble = Valley()
    ensemble.evaluate({"a": 1.0, "b": 1.0})
    found = solve(ensemble, {"a": 1.0, "b": 1.0}, {"a": (1 / 16, 16), "b": (1 / 16, 16)},
                  min_departure=0.25, tolerance=0.5)
    assert found.reached  # |log(10 b)| ≤ 0.5: within the tolerance of the root b = 1/10
    assert abs(math.log(10 * found.best.scales["b"])) <= 0.5
