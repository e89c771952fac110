"""sigprop init beyond transformers: knobs of ResNets (branch_gamma, conv), recurrent networks
(recurrent, input, forget_bias over the unrolled horizon) and GCNs (weights); the same search,
JSON and --out/--apply round trips. Small sizes: the whole file runs in well under a minute."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from sigprop import KNOBS, critical_init
from sigprop.init.ensemble import ScaledEnsemble
from sigprop.init.knobs import FAMILY_DEFAULTS, check_knobs, family_knobs, knob_slots
from sigprop.init.result import apply_scales
from sigprop.measure.blocks import DiagnoseError
from sigprop.measure.model_probe import build_model
from sigprop.models.recurrent import Unrolled
from sigprop.models.vision import resnet18

RECURRENT = dict(layers=16, width=16, n_tokens=4, seeds=2, n_probes=2)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _cli(*args: str):
    from sigprop.cli.app import app

    return CliRunner().invoke(app, list(args))


def _names(model: nn.Module, knobs: list[str], family: str) -> dict[str, list[str]]:
    slots = knob_slots(model, None, None, check_knobs(knobs, family))
    return {k: sorted({s.name for s in found}) for k, found in slots.items()}


# ---------------------------------------------------------------- knobs hit their slices

@pytest.mark.parametrize("kind, gates", [(nn.LSTM, 4), (nn.GRU, 3)])
def test_recurrent_knobs_change_exactly_their_slices(kind, gates):
    """recurrent × s on weight_hh_l0, input × s on weight_ih_l0, forget_bias + t on rows
    [H, 2H) of bias_ih_l0 only (the LSTM's forget gate, the GRU's update gate); the raw module
    and its unrolled copy record the same names."""
    torch.manual_seed(0)
    rnn = kind(6, 5)
    original = {n: p.detach().clone() for n, p in rnn.named_parameters()}
    knobs = ["recurrent", "input", "forget_bias"]
    names = _names(rnn, knobs, "recurrent")
    assert names == _names(Unrolled(rnn, 3), knobs, "recurrent")
    assert names == {"recurrent": ["weight_hh_l0"], "input": ["weight_ih_l0"],
                     "forget_bias": ["bias_ih_l0"]}
    apply_scales(rnn, {"recurrent": 2.0, "input": 0.5, "forget_bias": 1.5}, names)
    assert torch.equal(rnn.weight_hh_l0, 2.0 * original["weight_hh_l0"])
    assert torch.equal(rnn.weight_ih_l0, 0.5 * original["weight_ih_l0"])
    assert torch.equal(rnn.bias_hh_l0, original["bias_hh_l0"])
    bias, before = rnn.bias_ih_l0.detach(), original["bias_ih_l0"]
    assert bias.shape[0] == gates * 5
    assert torch.equal(bias[5:10], before[5:10] + 1.5)
    assert torch.equal(bias[:5], before[:5]) and torch.equal(bias[10:], before[10:])


def test_resnet_branch_gamma_sets_the_last_batch_norm_of_each_branch_only():
    """branch_gamma sets bn2.weight of every BasicBlock (not bn1, not the shortcut's BN, not
    the stem's), also reviving a zero_init_residual network; conv scales every convolution
    of the blocks (shortcuts included) and nothing else."""
    model = resnet18(width=4, zero_init_residual=True)
    names = _names(model, ["branch_gamma", "conv"], "convolutional")
    assert names["branch_gamma"] == sorted(f"layer{s}.{b}.bn2.weight" for s in range(1, 5)
                                           for b in range(2))
    assert "layer2.0.downsample.0.weight" in names["conv"] and "conv1.weight" not in names["conv"]
    assert len(names["conv"]) == 8 * 2 + 3
    original = {n: p.detach().clone() for n, p in model.named_parameters()}
    apply_scales(model, {"branch_gamma": 0.3}, {"branch_gamma": names["branch_gamma"]})
    for name, parameter in model.named_parameters():
        if name in names["branch_gamma"]:
            assert torch.all(parameter == 0.3), name
        else:
            assert torch.equal(parameter, original[name]), name


def test_knob_families_and_defaults():
    for family, defaults in FAMILY_DEFAULTS.items():
        assert set(defaults) <= set(family_knobs(family))
    assert KNOBS["forget_bias"].kind == "shift" and KNOBS["branch_gamma"].kind == "set"
    with pytest.raises(DiagnoseError, match="recurrent, input, forget_bias"):
        check_knobs(["attn_values"], "recurrent")
    with pytest.raises(DiagnoseError, match="matches no parameter"):
        _names(nn.RNN(4, 4), ["forget_bias"], "recurrent")  # a vanilla RNN has no gates


# ---------------------------------------------------------------- the search per family

def test_lstm_advice_brings_the_gradient_total_through_time_towards_zero():
    """PyTorch's default LSTM forgets within a step or two (T·λ_g ≪ 0 over T = 16 steps);
    the advice (recurrent scale, input scale, forget-gate bias) brings both totals near 0."""
    result = critical_init(net="lstm", **RECURRENT)
    assert result.family == "recurrent" and result.depth == 16
    assert result.before["log_jac_L"] < -8 and result.before["log_gap_L"] < -8
    assert set(result.scales) == {"recurrent", "input", "forget_bias"}
    assert abs(result.after["log_jac_L"]) < 1.0 and abs(result.after["log_gap_L"]) < 1.0
    assert result.scales["forget_bias"] > 0.5  # remember longer: a larger forget-gate bias
    assert result.after["departure"] >= 0.25
    payload = result.to_json()
    assert payload["knobs"]["forget_bias"]["kind"] == "shift"
    assert "time steps" in payload["meaning"]
    assert result.reached == (payload["reason"].startswith("reached"))


def test_vanilla_rnn_defaults_leave_out_the_gate_and_move_to_the_edge_of_chaos():
    result = critical_init(net="rnn", **RECURRENT)
    assert set(result.scales) == {"recurrent", "input"}
    assert result.before["log_jac_L"] < -10
    assert abs(result.after["log_jac_L"]) < 1.5
    assert result.scales["recurrent"] > 1.5  # PyTorch's U(±1/√H) is σ_w = 1/√3: far below 1


def test_resnet_conv_gain_cancels_and_branch_gamma_moves_both_totals():
    torch.manual_seed(0)
    models = [build_model(lambda seed: resnet18(width=4), 0)]
    ensemble = ScaledEnsemble(models, [0], check_knobs(["branch_gamma", "conv"],
                                                       "convolutional"),
                              n_tokens=16, n_probes=1)
    default = ensemble.evaluate({"branch_gamma": 1.0, "conv": 1.0})
    louder = ensemble.evaluate({"branch_gamma": 1.0, "conv": 4.0})
    weaker = ensemble.evaluate({"branch_gamma": 0.25, "conv": 1.0})
    for a, b in ((default.log_gap_L, louder.log_gap_L), (default.log_jac_L, louder.log_jac_L)):
        assert a == pytest.approx(b, abs=1e-3)  # BatchNorm divides the gain out
    assert weaker.log_jac_L < default.log_jac_L - 0.5
    assert weaker.log_gap_L < default.log_gap_L
    assert 0 < weaker.departure < default.departure  # towards the identity


def test_gcn_weights_cannot_undo_over_smoothing_and_the_reason_says_so():
    result = critical_init(net="gcn", layers=8, width=16, n_tokens=8, seeds=2, n_probes=2)
    assert not result.reached
    assert "residual" in result.reason and "over-smoothing" in result.reason
    assert result.after["log_gap_L"] == pytest.approx(result.before["log_gap_L"], abs=1e-6)
    assert abs(result.after["log_jac_L"]) < abs(result.before["log_jac_L"])


# ---------------------------------------------------------------- command line

@pytest.mark.parametrize("net, size", [
    ("lstm", ["--layers", "8", "--width", "12", "--n-tokens", "4"]),
    ("resnet18", ["--width", "4"]),
])
def test_cli_out_then_diagnose_apply_reproduces_after(net, size, tmp_path):
    common = ["--net", net, *size, "--seeds", "2", "--n-probes", "1", "--device", "cpu"]
    saved = tmp_path / "init.json"
    found = _cli("init", *common, "--json", "--out", str(saved))
    assert found.exit_code == 0, found.output
    result = json.loads(found.stdout)
    assert {"before", "after", "scales", "reached", "reason", "family", "meaning"} <= set(result)
    assert result["family"] == {"lstm": "recurrent", "resnet18": "convolutional"}[net]
    assert result["reached"] or result["reason"]
    diagnosed = _cli("diagnose", *common, "--apply", str(saved), "--json")
    assert diagnosed.exit_code == 0, diagnosed.output
    measured = json.loads(diagnosed.stdout)
    for key in ("log_gap_L", "log_jac_L"):
        assert measured[key] == pytest.approx(result["after"][key], rel=1e-9, abs=1e-12)
    again = _cli("init", *common, "--apply", str(saved), "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["after"]["log_jac_L"] == pytest.approx(
        result["after"]["log_jac_L"], rel=1e-9)


def test_cli_unknown_knob_for_the_family_exits_2_with_one_line():
    out = _cli("init", "--net", "lstm", "--layers", "4", "--width", "8", "--n-tokens", "2",
               "--seeds", "1", "--n-probes", "1", "--device", "cpu", "--knob", "attn_values")
    assert out.exit_code == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "recurrent, input, forget_bias" in lines[0]
    assert "attn_values" in lines[0]
