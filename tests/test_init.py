"""Critical initialization (``sigprop init``, ``sigprop.critical_init``): knobs, search, apply."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sigprop import apply_init, critical_init, load_init
from sigprop.init.knobs import check_knobs, knob_slots
from sigprop.measure.blocks import DiagnoseError, find_blocks
from sigprop.measure.factories import hf_factory

HERE = Path(__file__).parent
SMALL = dict(seeds=2, n_probes=2)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sigprop", *args], capture_output=True,
                          text=True, cwd=HERE)


def test_encoder_factory_reaches_the_targets_and_is_not_the_identity(monkeypatch):
    """PyTorch's default init of an 8-layer pre-LN encoder collapses its tokens (log_gap_L <
    −1.5); the critical factors bring both totals within 0.5 while X_L still departs from X_0."""
    monkeypatch.chdir(HERE)
    result = critical_init("init_models:encoder", **SMALL)
    assert result.before["log_gap_L"] < -1.5
    assert result.reached, result.reason
    for key in ("log_gap_L", "log_jac_L"):
        assert abs(result.after[key]) <= 0.5
        assert result.after[key.replace("log_gap_L", "lambda_a").replace("log_jac_L", "lambda_g")] \
            == pytest.approx(result.after[key] / result.depth)
    assert result.after["departure"] >= 0.25
    assert set(result.scales) == {"mlp_input", "attn_values"}
    assert result.evaluations == len(result.path) > 1


@pytest.mark.parametrize("family", ["gpt2", "llama", "bert"])
def test_cli_json_and_apply_agree_with_diagnose(family, tmp_path):
    """`init --json` has the documented keys; `diagnose --apply FILE` of fresh models measures
    exactly the "after" numbers; `init --apply FILE` reproduces them without a search."""
    model = ["--hf", family, "--layers", "6", "--width", "32", "--heads", "2", "--seeds", "2",
             "--n-probes", "2", "--device", "cpu"]
    saved = tmp_path / "init.json"
    found = run_cli("init", *model, "--json", "--out", str(saved))
    assert found.returncode == 0, found.stderr
    result = json.loads(found.stdout)
    assert {"before", "after", "scales", "evaluations", "seconds"} <= set(result)
    for state in ("before", "after"):
        assert {"lambda_a", "lambda_g", "log_gap_L", "log_jac_L"} <= set(result[state])
        assert result[state]["lambda_g"] == pytest.approx(result[state]["log_jac_L"] / 6)
    assert result["reached"] or result["reason"]
    diagnosed = run_cli("diagnose", *model, "--apply", str(saved), "--json")
    assert diagnosed.returncode == 0, diagnosed.stderr
    measured = json.loads(diagnosed.stdout)
    for key in ("log_gap_L", "log_jac_L"):
        assert measured[key] == pytest.approx(result["after"][key], rel=1e-9, abs=1e-12)
    again = run_cli("init", *model, "--apply", str(saved), "--json")
    assert again.returncode == 0, again.stderr
    reapplied = json.loads(again.stdout)
    assert reapplied["evaluations"] == 0
    assert reapplied["after"]["log_jac_L"] == pytest.approx(result["after"]["log_jac_L"], rel=1e-9)


def test_packed_query_third_is_scaled_alone():
    """attn_logits scales the first third of GPT-2's packed c_attn (a Conv1D: columns) only."""
    factory, _ = hf_factory("gpt2", 2, 32, 2)
    torch.manual_seed(0)
    model = factory(0)
    path, blocks = find_blocks(model)
    slots = knob_slots(model, list(blocks), path, check_knobs(["attn_logits"]))["attn_logits"]
    before = model.h[0].attn.c_attn.weight.detach().clone()
    from sigprop.init.knobs import scale_slots

    scale_slots(model, slots, 3.0)
    after = model.h[0].attn.c_attn.weight.detach()
    assert torch.equal(after[:, :32], 3.0 * before[:, :32])
    assert torch.equal(after[:, 32:], before[:, 32:])


def test_instance_is_rescaled_in_place_and_apply_checks_the_architecture(tmp_path):
    from init_models import Encoder

    torch.manual_seed(1)
    model = Encoder()
    original = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = critical_init(model, **SMALL)
    factor = result.scales["mlp_input"]
    assert abs(factor - 1.0) > 0.05  # the encoder's default is far from critical
    for name, parameter in model.named_parameters():
        expected = original[name] * (factor if name.endswith("linear1.weight") else 1.0)
        if name.endswith("in_proj_weight"):
            expected[64:] *= result.scales["attn_values"]  # the value third (rows 2d..3d)
        if name.endswith("in_proj_bias"):
            expected[64:] *= result.scales["attn_values"]
        assert torch.allclose(parameter, expected, rtol=1e-6), name
    with pytest.raises(DiagnoseError, match="same architecture"):
        apply_init(Encoder(layers=6), result)
    assert load_init(result.write(tmp_path / "i.json")).scales == result.scales


def test_a_model_already_critical_is_left_alone():
    """A 12-layer GPT-2 at its default init already meets the targets: factors 1, one
    evaluation."""
    result = critical_init(hf="gpt2", layers=12, width=64, heads=2, **SMALL)
    assert result.before["departure"] >= 0.25
    assert abs(result.before["log_gap_L"]) <= 0.5 and abs(result.before["log_jac_L"]) <= 0.5
    assert result.scales == {"mlp_input": 1.0, "attn_values": 1.0}
    assert result.evaluations == 1 and result.reached


def test_unreachable_target_gives_the_closest_point_and_why(monkeypatch):
    """The logits alone cannot undo the encoder's collapse: the closest point, and why."""
    monkeypatch.chdir(HERE)
    result = critical_init("init_models:encoder", knobs=["attn_logits"], **SMALL)
    assert not result.reached
    assert "one knob" in result.reason
    assert abs(result.after["log_gap_L"]) > 0.5


def test_normalized_gradient_target(monkeypatch):
    """With the gradient of the token directions as the target, the encoder reaches both
    totals; the raw gradient total is then free to follow the residual stream's growth."""
    monkeypatch.chdir(HERE)
    result = critical_init("init_models:encoder", gradient="normalized", **SMALL)
    assert result.reached, result.reason
    assert abs(result.after["log_gap_L"]) <= 0.5
    assert abs(result.after["log_jac_norm_L"]) <= 0.5
    assert result.to_json()["gradient"] == "normalized"


def test_raw_gradient_total_of_pre_ln_is_the_stream_growth():
    """Through unit residuals, log_jac_L ≈ log(q_L/q_0) + log_jac_norm_L (the norm of each
    token grows, its direction's Jacobian does not), which ties the raw target to the
    departure 1 − q_0/q_L."""
    import numpy as np

    from sigprop import diagnose

    result = diagnose(hf="gpt2", layers=12, width=64, heads=2, seeds=2, n_probes=4)
    q = result.layers["q"]
    growth = np.log(q[:, -1] / q[:, 0]).mean()
    assert growth > 0.3
    assert result.log_jac_L.mean == pytest.approx(growth + result.log_jac_norm_L.mean, abs=0.1)


@pytest.mark.parametrize("args, message", [
    (["init_models:no_blocks"], "no sequence of blocks"),
    (["init_models:mlp_stack", "--knob", "attn_values"], "matches no parameter"),
    (["--hf", "gpt2", "--layers", "2", "--width", "32", "--knob", "gain"], "knobs must be among"),
    (["--hf", "gpt2", "--layers", "2", "--width", "32", "--tolerance", "0"], "tolerance"),
    (["--hf", "gpt2", "--layers", "2", "--width", "32", "--device", "tpu"], "device"),
    (["--hf", "gpt2", "--layers", "2", "--width", "32", "--gradient", "log"], "gradient must be"),
])
def test_bad_input_exits_2_with_one_line(args, message):
    result = run_cli("init", *args, "--seeds", "1", "--n-probes", "1")
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
