"""sigprop diagnose: blocks found in sigprop, GPT-2, BERT, Llama and plain PyTorch models; the
hook-based probes reproduce the specialized ones on the reference model and the exact Jacobian
of a tiny GPT-2; bad input gives errors that name what was wrong."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
import torch
from torch import nn
from torch.autograd.functional import jacobian

from sigprop.spec import reference_layer
from sigprop.measure import empirical_lambda_a, empirical_lambda_g, measure_trajectory
from sigprop.measure.blocks import BlockFunction, DiagnoseError, find_blocks, run_token_ids
from sigprop.measure.factories import hf_factory, load_factory
from sigprop import Diagnosis, diagnose
from sigprop.measure.diagnose import verdict
from sigprop.measure.lyapunov import Estimate
from sigprop.models import build_network

try:
    import transformers
except ImportError:  # Hugging Face tests need it; the rest of diagnose does not
    transformers = None
needs_hf = pytest.mark.skipif(transformers is None, reason="transformers is not installed")

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")

REFERENCE = reference_layer(0.5, 0.5, 0.6, 2.0)


@pytest.fixture(autouse=True)
def _one_thread():
    """These models are tiny: one thread avoids thread-pool overhead that dominates them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_hf(family: str, layers: int = 3) -> nn.Module:
    small = dict(vocab_size=64, bos_token_id=0, eos_token_id=0, pad_token_id=0,
                 attn_implementation="eager")
    if family == "gpt2":
        config = transformers.GPT2Config(n_layer=layers, n_embd=16, n_head=2, **small)
        return transformers.GPT2Model(config)
    if family == "bert":
        config = transformers.BertConfig(num_hidden_layers=layers, hidden_size=16,
                                         num_attention_heads=2, intermediate_size=32, **small)
        return transformers.BertModel(config)
    config = transformers.LlamaConfig(num_hidden_layers=layers, hidden_size=16,
                                      num_attention_heads=2, intermediate_size=32, **small)
    return transformers.LlamaModel(config)


@needs_hf
@pytest.mark.parametrize("family, path", [("gpt2", "h"), ("bert", "encoder.layer"),
                                          ("llama", "layers")])
def test_find_blocks_in_hugging_face_models(family, path):
    model = tiny_hf(family, layers=3)
    found, blocks = find_blocks(model)
    assert found == path and len(blocks) == 3
    assert find_blocks(model, path)[1] is blocks


def test_find_blocks_in_sigprop_and_plain_models():
    assert find_blocks(build_network(REFERENCE, 3, 8))[0] == "blocks"
    # A block with two same-class children must not beat a list of fewer blocks.
    assert find_blocks(build_network(REFERENCE, 1, 8))[0] == "blocks"
    encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 2,
                                    enable_nested_tensor=False)
    assert find_blocks(encoder)[0] == "layers"
    assert find_blocks(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4)))[0] == ""

    class Expert(nn.Module):  # a block holding a list longer than the list of blocks
        def __init__(self):
            super().__init__()
            self.experts = nn.ModuleList(nn.Linear(4, 4) for _ in range(8))

    class MixtureModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.norms = nn.ModuleList(nn.LayerNorm(4) for _ in range(3))
            self.layers = nn.ModuleList(Expert() for _ in range(3))

    assert find_blocks(MixtureModel())[0] == "layers"


@needs_hf
def test_find_blocks_errors_name_the_problem():
    with pytest.raises(DiagnoseError, match="no sequence of blocks found in Linear"):
        find_blocks(nn.Linear(4, 4))
    model = tiny_hf("gpt2")
    with pytest.raises(DiagnoseError, match=r"no submodule 'transformer.h'.*found: h"):
        find_blocks(model, "transformer.h")
    with pytest.raises(DiagnoseError, match="'wte' is a Embedding, not a non-empty"):
        find_blocks(model, "wte")
    with pytest.raises(DiagnoseError, match="no sequence of blocks"):
        diagnose(lambda seed: nn.Linear(4, 4), n_tokens=2, seeds=[0])


def test_hooked_probes_reproduce_measure_trajectory_exactly():
    depth, width, n, seeds = 5, 16, 4, [0, 3]
    result = diagnose(lambda seed: build_network(REFERENCE, depth, width, seed=seed),
                      n_tokens=n, seeds=seeds, n_probes=3, burn_in=2)
    trajectory = measure_trajectory(REFERENCE, depth=depth, width=width, n_tokens=n, q0=1.0,
                                    rho0=0.0, seeds=seeds, n_probes=3)
    assert result.block_path == "blocks" and result.depth == depth and result.width == width
    for name in ("q", "p", "rho", "one_minus_rho", "log_jac"):
        np.testing.assert_allclose(result.layers[name], getattr(trajectory, name),
                                   rtol=1e-12, atol=1e-12, err_msg=name)
    lambda_g = empirical_lambda_g(REFERENCE, depth=depth, width=width, n_tokens=n, seeds=seeds,
                                  burn_in=2, n_probes=3)
    np.testing.assert_allclose(result.lambda_g.per_seed, lambda_g.per_seed, atol=1e-12)
    assert np.allclose(result.layers["effective_rank"][:, 0], n)  # orthogonal inputs
    assert np.allclose(result.layers["cos_max"][:, 0], 0.0, atol=1e-12)


def test_lambda_a_agrees_with_renormalized_estimate():
    """One jvp pass keeps the norm differences that Benettin's per-layer projection drops; they
    feed back into angles only at O(1/d), well inside the seed spread at d = 128."""
    depth, width, n, seeds = 8, 128, 8, [0, 1, 2, 3]
    result = diagnose(lambda seed: build_network(REFERENCE, depth, width, seed=seed),
                      n_tokens=n, seeds=seeds, n_probes=1)
    reference = empirical_lambda_a(REFERENCE, depth=depth, width=width, n_tokens=n, seeds=seeds,
                                   burn_in=depth // 2)
    assert result.burn_in == depth // 2
    assert abs(result.lambda_a.mean - reference.mean) < reference.stderr
    np.testing.assert_allclose(result.lambda_a.per_seed, reference.per_seed, atol=0.02)
    assert result.layers["log_spread"][:, 0] == pytest.approx(0.0, abs=1e-12)


@needs_hf
def test_probe_jacobian_norm_matches_exact_jacobian_of_tiny_gpt2():
    factory, run = hf_factory("gpt2", layers=2, width=8, heads=2)
    n_tokens, n_probes = 4, 400
    result = diagnose(factory, run=run, n_tokens=n_tokens, seeds=[0], n_probes=n_probes)
    torch.manual_seed(0)
    model = factory(0).double().eval()
    _, blocks = find_blocks(model)
    with BlockFunction(model, blocks, run, n_tokens=n_tokens, seed=0) as function:
        x0 = function.natural_input()
        exact = [jacobian(lambda x, l=l: function(x)[l], x0) for l in range(len(blocks))]
    size = x0.numel()
    grams = [j.reshape(size, size).T @ j.reshape(size, size) for j in exact]  # M = JᵀJ
    exact_log_jac = np.array([math.log(float(m.trace()) / size) for m in grams])
    # For v uniform on |v|² = N: Var(vᵀMv) = 2N/(N + 2) (tr M² − (tr M)²/N); allow 4 σ.
    variance = [2 * size / (size + 2) * float(torch.trace(m @ m) - m.trace() ** 2 / size)
                for m in grams]
    sigma = np.array([math.sqrt(v / n_probes) / float(m.trace()) for v, m in zip(variance, grams)])
    error = np.abs(result.layers["log_jac"][0, 1:] - exact_log_jac)
    assert np.all(error < 4 * sigma), (error, sigma)
    assert abs(result.layers["log_jac"][0, 0]) < 1e-12


@needs_hf
def test_hugging_face_collapsed_state_is_invariant_and_diagnosis_runs():
    """Identical tokens stay identical through causal attention and rotary encodings (to the
    float32 rounding of Llama's softmax)."""
    factory, run = hf_factory("llama", layers=2, width=16, heads=2)
    torch.manual_seed(0)
    model = factory(0).double().eval()
    _, blocks = find_blocks(model)
    with BlockFunction(model, blocks, run, n_tokens=5, seed=0) as function:
        x0 = function.natural_input()
        collapsed = torch.randn(16, dtype=torch.float64).expand_as(x0).contiguous()
        for state in function(collapsed):
            spread = (state - state.mean(-2, keepdim=True)).abs().max()
            assert spread < 1e-8 * state.abs().max()
    result = diagnose(factory, run=run, n_tokens=5, seeds=[0, 1], n_probes=2)
    assert result.description.startswith("llama") and result.block_path == "layers"
    assert np.isfinite(result.lambda_a.mean) and np.isfinite(result.lambda_g.mean)
    assert result.lambda_a.stderr > 0


def test_json_and_plot(tmp_path):
    from sigprop.plots.diagnose import plot_diagnosis

    result = diagnose(lambda seed: build_network(REFERENCE, 4, 16, seed=seed), n_tokens=4,
                      seeds=[0, 1], n_probes=2)
    payload = json.loads(json.dumps(result.to_json()))
    assert {"lambda_a", "lambda_g", "layers", "phase", "gradients", "verdict"} <= set(payload)
    assert len(payload["layers"]) == 5 and payload["layers"][0]["l"] == 0
    assert {"q", "rho", "one_minus_rho", "effective_rank", "cos_min", "cos_max", "log_jac",
            "q_stderr"} <= set(payload["layers"][1])
    path = plot_diagnosis(result, tmp_path / "figs" / "diagnose.png")
    assert path.exists() and path.stat().st_size > 10_000


def test_verdict_says_how_deep():
    ordered = reference_layer(0.9, 0.3, 0.6, 0.5)  # λ_a ≈ log(1 − 0.81) per layer
    result = diagnose(lambda seed: build_network(ordered, 8, 32, seed=seed), n_tokens=4,
                      seeds=[0, 1], n_probes=1)
    text = verdict(result)
    assert "Ordered phase (rank collapse)" in text and "over the 8 layers" in text
    exploding = _synthetic(lambda_a=0.01, lambda_g=0.38, depth=24, log_jac_last=9.1)
    text = verdict(exploding)
    assert ("Gradients exploding: ‖∂X_L/∂X_0‖²/(n d) grows by e^{9.1} ≈ 8.96e+03× over the 24 "
            "layers (λ_g = +0.380 ± 0.010 per layer after layer 12)") in text
    assert "Near the edge of chaos (chaotic side)" in text
    assert "e^{38.0} ≈ 3.19e+16× over 100 layers (extrapolated" in verdict(exploding, depth=100)
    vanishing = _synthetic(lambda_a=-0.3, lambda_g=0.01, depth=24, log_jac_last=-4.0)
    assert "Gradients vanishing" in verdict(vanishing)
    assert exploding.gradients == "exploding" and vanishing.gradients == "vanishing"


def test_bad_factories_and_widths_raise_clear_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "diagnose_user_models.py").write_text(
        "import torch\n"
        "from sigprop.spec import reference_layer\n"
        "from sigprop.models import build_network\n"
        "WIDTH = 16\n"
        "def network(seed=0):\n"
        "    return build_network(reference_layer(0.5, 0.5, 0.6, 2.0), 3, WIDTH, seed=seed)\n"
        "def no_seed():\n"
        "    linear = lambda: torch.nn.Linear(WIDTH, WIDTH)\n"
        "    return torch.nn.Sequential(linear(), linear())\n"
        "def not_a_module(seed=0):\n"
        "    return 'model'\n"
    )
    with pytest.raises(DiagnoseError, match="'module.path:factory'"):
        load_factory("diagnose_user_models")
    with pytest.raises(DiagnoseError, match="cannot import module 'no_such_module_xyz'"):
        load_factory("no_such_module_xyz:make")
    with pytest.raises(DiagnoseError, match="has no attribute 'missing'"):
        load_factory("diagnose_user_models:missing")
    with pytest.raises(DiagnoseError, match="is a int, not a callable"):
        load_factory("diagnose_user_models:WIDTH")
    with pytest.raises(DiagnoseError, match="not_a_module returned a str, not a torch.nn.Module"):
        diagnose(load_factory("diagnose_user_models:not_a_module"), n_tokens=4, seeds=[0])

    network = load_factory("diagnose_user_models:network")
    assert torch.equal(network(seed=2).blocks[0][0].branch[1].W_Q,
                       build_network(REFERENCE, 3, 16, seed=2).blocks[0][0].branch[1].W_Q)
    assert diagnose(network, n_tokens=4, seeds=[0], width=16).width == 16
    assert diagnose(load_factory("diagnose_user_models:no_seed"), n_tokens=4, seeds=[0]).depth == 2
    with pytest.raises(DiagnoseError, match="width 24 does not match the model"):
        diagnose(network, n_tokens=4, seeds=[0], width=24)
    with pytest.raises(DiagnoseError, match=r"width 24 does not match.*tokens of shape \(1, 4, 24\)"
                                            r".*its blocks look like width 16"):
        diagnose(load_factory("diagnose_user_models:no_seed"), n_tokens=4, seeds=[0], width=24)


@needs_hf
def test_hf_factory_validates_and_builds_the_named_family():
    factory, run = hf_factory("gpt2", layers=2, width=256)
    assert factory.heads == 4 and run is run_token_ids
    with pytest.raises(DiagnoseError, match="unknown Hugging Face family 'gpt3'"):
        hf_factory("gpt3", 2, 64)
    with pytest.raises(DiagnoseError, match="heads must be a positive divisor of width 64"):
        hf_factory("bert", 2, 64, heads=5)
    with pytest.raises(DiagnoseError, match="n_tokens 600 exceeds the model's 512 positions"):
        diagnose(hf_factory("bert", 1, 16, 2)[0], n_tokens=600, seeds=[0])
    with pytest.raises(DiagnoseError, match="width 24 does not match the model: its config has "
                                            "hidden size 16"):
        diagnose(lambda seed: tiny_hf("gpt2"), n_tokens=4, seeds=[0], width=24)


def test_hugging_face_without_transformers_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # makes the import fail
    with pytest.raises(DiagnoseError, match="need the `transformers` package"):
        hf_factory("gpt2", 2, 64)


def _synthetic(lambda_a: float, lambda_g: float, depth: int, log_jac_last: float) -> Diagnosis:
    layers = {name: np.zeros((2, depth + 1)) for name in
              ("q", "p", "rho", "effective_rank", "cos_min", "cos_max", "log_jac", "log_spread")}
    layers["one_minus_rho"] = np.full((2, depth + 1), 0.5)
    layers["log_jac"][:, -1] = log_jac_last
    layers["log_spread"][:, -1] = lambda_a * depth
    estimate = lambda value: Estimate(value, 0.01, np.array([value - 0.01, value + 0.01]))
    return Diagnosis("synthetic", "blocks", depth, 16, 4, (0, 1), depth // 2, layers,
                     estimate(lambda_a), estimate(lambda_g))
