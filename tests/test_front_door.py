"""The library is the front door: one way to name a model, one thread policy, one rule for the
words, and reports that speak the same way everywhere."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from torch import nn

import sigprop
from sigprop.runtime.threads import set_default_threads, torch_threads
from sigprop.theory.regimes import EDGE, angle_regime, gradient_regime

WIDTH, DEPTH = 16, 4


class Stack(nn.Module):
    """A plain stack of Post-LN encoder layers on hidden states (1, n, d)."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(WIDTH, 2, 2 * WIDTH, dropout=0.0, batch_first=True)
            for _ in range(DEPTH))

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class TokenLM(nn.Module):
    """The same stack behind an embedding: it takes token ids."""

    def __init__(self, vocab: int = 11) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, WIDTH)
        self.stack = Stack()
        self.head = nn.Linear(WIDTH, vocab)

    def forward(self, ids):
        return self.head(self.stack(self.embedding(ids)))


def factory(seed: int = 0) -> nn.Module:
    return Stack()


SMALL = dict(seeds=2, n_tokens=4, n_probes=1)


def test_an_instance_is_measured_like_the_model_its_factory_builds():
    torch.manual_seed(0)
    instance = Stack()
    by_instance = sigprop.diagnose(instance, **SMALL)
    by_factory = sigprop.diagnose(lambda seed: copy.deepcopy(instance), **SMALL)
    for name in ("log_gap_L", "log_jac_L"):
        assert getattr(by_instance, name).mean == pytest.approx(getattr(by_factory, name).mean,
                                                                rel=1e-10)
    assert by_instance.depth == DEPTH
    assert list(instance.parameters())[0].dtype == torch.float32  # the instance is untouched


def test_a_token_id_model_is_driven_by_its_vocabulary():
    with pytest.raises(sigprop.DiagnoseError, match="token ids"):
        sigprop.diagnose(lambda seed: TokenLM(), **SMALL)
    result = sigprop.diagnose(lambda seed: TokenLM(), vocab_size=11, **SMALL)
    assert result.depth == DEPTH and np.isfinite(result.log_jac_L.mean)


def test_critical_init_of_an_instance_changes_it_in_place_and_apply_init_repeats_it():
    torch.manual_seed(1)
    instance = Stack()
    fresh = copy.deepcopy(instance)
    init = sigprop.critical_init(instance, search_seeds=1, **SMALL)
    assert init.scales and all(np.isfinite(v) for v in init.scales.values())
    sigprop.apply_init(fresh, init)
    for a, b in zip(instance.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)


def test_one_value_names_the_model_and_bad_names_are_clear():
    source = sigprop.ModelSource.of(factory, blocks="layers")
    assert source.block_path == "layers"
    assert sigprop.ModelSource.of(source) is source
    with pytest.raises(sigprop.DiagnoseError, match="no other model options"):
        sigprop.ModelSource.of(source, layers=3)
    with pytest.raises(sigprop.DiagnoseError, match="give one of"):
        sigprop.diagnose(factory, hf="gpt2")
    with pytest.raises(sigprop.DiagnoseError, match="unknown model option 'depth'"):
        sigprop.diagnose(factory, depth=3)
    with pytest.raises(sigprop.DiagnoseError, match="heads applies to hf models only"):
        sigprop.critical_init(factory, heads=2)


def test_the_verbs_run_with_the_library_thread_policy_and_restore_the_callers():
    seen = []
    before = torch.get_num_threads()
    sigprop.diagnose(factory, prepare=lambda model: seen.append(torch.get_num_threads()),
                     **SMALL)
    assert set(seen) == {1} and torch.get_num_threads() == before
    set_default_threads(2)
    try:
        sigprop.diagnose(factory, prepare=lambda model: seen.append(torch.get_num_threads()),
                         **SMALL)
    finally:
        set_default_threads(None)
    assert seen[-1] == 2 and torch.get_num_threads() == before
    with torch_threads("torch"):
        assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads must be an integer"):
        with torch_threads(0):
            pass


def test_one_rule_one_threshold_for_the_words():
    totals = np.array([-3.0, -EDGE - 1e-9, -EDGE, 0.13, EDGE, EDGE + 1e-9, np.nan])
    assert list(gradient_regime(totals)) == ["vanishing", "vanishing", "near the edge",
                                             "near the edge", "near the edge", "exploding",
                                             "undefined"]
    assert list(angle_regime(totals[[0, 3, 5]])) == ["ordered", "near the edge", "chaotic"]


def test_a_small_total_is_near_the_edge_in_json_text_and_title(tmp_path):
    """The issue's case: L·λ_g = 0.13 is near the edge everywhere, not "exploding"."""
    result = sigprop.diagnose(factory, **SMALL)
    total = result.log_jac_L.mean
    word = str(gradient_regime(total))
    payload = result.to_json()
    assert payload["gradients"] == word == result.gradients
    assert f"Gradients {word}" in result.verdict() or (
        word == "near the edge" and "Gradients near the edge" in result.verdict())
    report = sigprop.exponents("gpt2", depth=12)
    payload = report.to_json()
    assert payload["gradients"] == str(gradient_regime(payload["finite_depth"]["log_jac_L"]))
    assert f"gradients {payload['gradients']}" in report.verdict()


@pytest.mark.parametrize("make", [
    lambda: sigprop.diagnose(factory, **SMALL),
    lambda: sigprop.critical_init(factory, search_seeds=1, **SMALL),
    lambda: sigprop.simulate(sigma_w=1.0, depth=4, width=32, seeds=2, n_tokens=4),
], ids=["diagnose", "critical_init", "simulate"])
def test_measurement_reports_have_a_verdict_a_short_repr_and_json(make):
    report = make()
    shown = repr(report)
    assert "\n" not in shown and len(shown) < 300 and "array(" not in shown
    payload = report.to_json()
    json.dumps(payload, allow_nan=False)
    assert payload["verdict"] == report.verdict()
