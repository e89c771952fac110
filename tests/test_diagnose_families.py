"""sigprop diagnose beyond transformers: ResNets (tokens = spatial positions, layers = residual
blocks), unrolled RNNs (tokens = initial states, layers = time steps) and GCNs (tokens = nodes,
layers = message passing). Small sizes: the whole file runs in well under a minute."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.autograd.functional import jacobian
from torch.autograd.functional import jvp as autograd_jvp
from typer.testing import CliRunner

from sigprop.measure.blocks import DiagnoseError, find_blocks
from sigprop import diagnose
from sigprop.measure.diagnose import verdict
from sigprop.measure.ensemble import stream_seed
from sigprop.measure.families import calibrate_batch_norm, perron_vector
from sigprop.measure.geometry import simplex_tokens
from sigprop.measure.trajectory import sphere_probes
from sigprop.models.graph import GCN, random_graph
from sigprop.models.recurrent import Unrolled
from sigprop.models.vision import resnet18


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _built(factory, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return factory(seed).double().eval().requires_grad_(False)


# ---------------------------------------------------------------- convolutional: ResNet-18

def test_resnet18_replica_matches_torchvision_structure_and_size():
    model = resnet18(num_classes=1000)
    assert sum(p.numel() for p in model.parameters()) == 11_689_512  # torchvision's count
    names = dict(model.named_modules())
    for name in ("conv1", "bn1", "relu", "maxpool", "layer1.0.conv1", "layer1.1.bn2",
                 "layer2.0.downsample.0", "layer2.0.downsample.1", "layer4.1.conv2", "avgpool",
                 "fc"):
        assert name in names, name
    assert "layer1.0.downsample" not in names or names["layer1.0.downsample"] is None
    assert names["layer3.0.conv1"].stride == (2, 2) and names["fc"].in_features == 512
    conv = names["layer2.1.conv2"].weight.detach()  # Kaiming normal, fan_out = 128 · 9
    assert abs(float(conv.std()) - math.sqrt(2 / (128 * 9))) < 0.05 * math.sqrt(2 / (128 * 9))
    small = resnet18(width=8, zero_init_residual=True)
    assert all(float(m.bn2.weight.abs().sum()) == 0 for m in small.modules()
               if type(m).__name__ == "BasicBlock")
    path, blocks = find_blocks(small)
    assert path == "layer1+layer2+layer3+layer4" and len(blocks) == 8


def test_resnet18_equals_torchvision_when_importable():
    try:
        import torchvision
    except Exception:  # noqa: BLE001 - absent, or a CUDA build that fails at import
        pytest.skip("torchvision is not importable")
    torch.manual_seed(0)
    theirs = torchvision.models.resnet18(num_classes=10)
    torch.manual_seed(0)
    ours = resnet18(num_classes=10)
    assert list(theirs.state_dict()) == list(ours.state_dict())
    for (name, a), b in zip(theirs.state_dict().items(), ours.state_dict().values()):
        assert torch.equal(a, b), name
    kwargs = dict(seeds=[0], n_probes=1, image_size=32)
    mine = diagnose(lambda seed: resnet18(num_classes=10), **kwargs)
    real = diagnose(lambda seed: torchvision.models.resnet18(num_classes=10), **kwargs)
    assert real.family == "convolutional" and real.depth == 8
    np.testing.assert_allclose(real.layers["log_jac"], mine.layers["log_jac"], atol=1e-10)


def test_batch_norm_calibration_is_the_training_pass():
    model = _built(lambda seed: resnet18(width=8), 0)
    images = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    train = _built(lambda seed: resnet18(width=8), 0).train()
    calibrate_batch_norm(model, images)
    assert torch.allclose(model(images), train(images), atol=1e-10)
    assert not model.training


def test_resnet_diagnosis_per_layer_and_gradient_gain_per_entry():
    factory = lambda seed: resnet18(width=8)  # noqa: E731
    result = diagnose(factory, seeds=[0, 1], n_probes=2)
    assert result.family == "convolutional" and result.depth == 8
    for name, values in result.layers.items():
        assert values.shape == (2, 9), name
    assert result.tokens_per_layer == (256, 256, 256, 64, 64, 16, 16, 4, 4)  # 64×64 input
    assert result.widths_per_layer == (8, 8, 8, 16, 16, 32, 32, 64, 64)
    assert np.all(np.isfinite(result.layers["rho"])) and np.isfinite(result.lambda_a.mean)
    assert not any("rounding pushed" in w for w in result.warnings)  # circular padding
    payload = json.loads(json.dumps(result.to_json()))
    assert payload["family"] == "convolutional" and payload["token"] == "spatial position"
    assert payload["layer"] == "residual block" and "spatial positions" in payload["tokens_are"]
    assert "spatial positions" in verdict(result)

    # Independent: the stem and blocks called directly, J v by autograd's double-backward jvp.
    model = _built(factory, 0)
    generator = torch.Generator().manual_seed(stream_seed(0, "images"))
    images = torch.randn(8, 3, 64, 64, generator=generator, dtype=torch.float64)
    calibrate_batch_norm(model, images)
    x0 = model.maxpool(model.relu(model.bn1(model.conv1(images[:1]))))
    blocks = [b for stage in (model.layer1, model.layer2, model.layer3, model.layer4)
              for b in stage]
    probes = sphere_probes(2, 256, 8, seed=stream_seed(0, "probes"))
    probes = probes.transpose(1, 2).reshape(2, 8, 16, 16)  # tokens (H·W, C) → (C, H, W)
    for l in range(1, 9):
        def through(x, l=l):
            for block in blocks[:l]:
                x = block(x)
            return x
        pushed = [autograd_jvp(through, x0, v[None])[1] for v in probes]
        # ‖J‖_F² / numel(X_0): the per-entry gain of back-propagated gradients.
        expected = math.log(np.mean([float(t.square().sum()) for t in pushed]) / x0.numel())
        assert result.layers["log_jac"][0, l] == pytest.approx(expected, abs=1e-8), l
    tokens = x0.flatten(2).transpose(1, 2)
    assert result.layers["q"][0, 0] == pytest.approx(float(tokens.square().mean()), rel=1e-12)


def test_small_input_has_no_geometry_where_one_position_is_left():
    result = diagnose(lambda seed: resnet18(width=4), seeds=[0], n_probes=1, image_size=32)
    assert result.tokens_per_layer[-1] == 1 and math.isnan(result.layers["rho"][0, -1])
    assert any("fewer than 2 spatial positions" in w for w in result.warnings)


# ---------------------------------------------------------------- recurrent: unrolled RNNs

@pytest.mark.parametrize("batch_first", [False, True])
def test_unrolled_lstm_reproduces_the_full_sequence(batch_first):
    torch.manual_seed(0)
    rnn = nn.LSTM(5, 6, batch_first=batch_first).double()
    unrolled = Unrolled(rnn, 9, input_seed=3)
    assert unrolled.width == 12 and len(unrolled.steps) == 9
    h0 = torch.randn(2, 3, 12, dtype=torch.float64)
    rows = h0.reshape(6, 12)
    sequence = unrolled.inputs[:, None, :].expand(9, 6, 5)
    if batch_first:
        sequence = sequence.transpose(0, 1)
    _, (h, c) = rnn(sequence, (rows[None, :, :6].contiguous(), rows[None, :, 6:].contiguous()))
    out = unrolled(h0).reshape(6, 12)
    assert torch.allclose(out[:, :6], h[0], atol=1e-10, rtol=0)
    assert torch.allclose(out[:, 6:], c[0], atol=1e-10, rtol=0)


def test_lstm_diagnosis_and_jacobian_through_time():
    steps, hidden, n = 6, 10, 4
    factory = lambda seed: nn.LSTM(hidden, hidden)  # noqa: E731
    result = diagnose(factory, layers=steps, n_tokens=n, seeds=[0, 1], n_probes=2)
    assert result.family == "recurrent" and result.depth == steps and result.width == 2 * hidden
    assert result.layers["log_jac"].shape == (2, steps + 1)
    assert result.to_json()["token"] == "initial state"

    # Independent: nn.LSTM over the whole prefix, the exact Jacobian of (h_t, c_t) w.r.t. (h_0, c_0).
    rnn = _built(factory, 0)
    generator = torch.Generator().manual_seed(stream_seed(0, "input sequence"))
    inputs = torch.randn(steps, hidden, generator=generator, dtype=torch.float64)
    x0 = simplex_tokens(n, 2 * hidden, 1.0, 0.0, seed=stream_seed(0, "input tokens"))
    probes = sphere_probes(2, n, 2 * hidden, seed=stream_seed(0, "probes")).reshape(2, -1)
    for t in range(1, steps + 1):
        def state(x, t=t):
            x = x.reshape(n, 2 * hidden)
            _, (h, c) = rnn(inputs[:t, None].expand(t, n, hidden),
                            (x[None, :, :hidden].contiguous(), x[None, :, hidden:].contiguous()))
            return torch.cat([h[0], c[0]], -1).reshape(-1)
        full = jacobian(state, x0.reshape(-1))
        expected = math.log(float((probes @ full.T).square().sum(-1).mean()) / x0.numel())
        assert result.layers["log_jac"][0, t] == pytest.approx(expected, abs=1e-9), t


def test_recurrent_weight_scale_moves_the_exponents():
    def scaled(kind, factor):
        def factory(seed):
            rnn = kind(16, 16)
            with torch.no_grad():
                rnn.weight_hh_l0.mul_(factor)
            return rnn
        return factory

    settings = dict(layers=12, n_tokens=4, seeds=[0, 1], n_probes=2)
    contracting = diagnose(scaled(nn.LSTM, 0.3), **settings)
    assert contracting.lambda_a.mean < 0 and contracting.lambda_g.mean < 0
    text = verdict(contracting)
    assert "memory" in text and "Gradients through time vanish" in text
    small = diagnose(scaled(nn.RNN, 0.3), **settings)
    large = diagnose(scaled(nn.RNN, 3.0), **settings)
    assert large.lambda_g.mean > small.lambda_g.mean + 1.0
    assert large.lambda_a.mean > small.lambda_a.mean + 1.0


def test_gru_and_rnn_run_and_bad_recurrent_networks_are_refused():
    for kind in (nn.GRU, nn.RNN):
        result = diagnose(lambda seed, kind=kind: kind(8, 12, batch_first=True), layers=4,
                          n_tokens=3, seeds=[0], n_probes=1)
        assert result.family == "recurrent" and result.depth == 4 and result.width == 12
    with pytest.raises(DiagnoseError, match="bidirectional"):
        diagnose(lambda seed: nn.GRU(4, 8, bidirectional=True), layers=3, n_tokens=2, seeds=[0])
    with pytest.raises(DiagnoseError, match="num_layers=2"):
        diagnose(lambda seed: nn.LSTM(4, 8, num_layers=2), layers=3, n_tokens=2, seeds=[0])


# ---------------------------------------------------------------- graph: GCN

def test_random_graph_is_normalized_and_connected():
    adjacency = random_graph(12, 3.0, seed=5)
    assert torch.allclose(adjacency, adjacency.T)
    degrees = (adjacency > 0).sum(1) - 1
    assert 0 < float(degrees.float().mean()) < 8 and int(degrees.min()) >= 1
    u = perron_vector(adjacency)
    assert torch.allclose(adjacency @ u, u, atol=1e-10)
    assert torch.allclose(u / u[0], torch.sqrt((degrees + 1.0) / (degrees[0] + 1.0)).double())


def test_gcn_over_smooths_at_small_weights():
    factory = lambda seed: GCN(16, 24, random_graph(12, 3.0, seed=seed), sigma_w=1.0)  # noqa: E731
    result = diagnose(factory, seeds=[0, 1], n_probes=2)
    assert result.family == "graph" and result.n_tokens == 12 and result.depth == 16
    rho = result.mean("rho")
    assert rho[0] == pytest.approx(0.0, abs=1e-12) and rho[-1] > 0.99
    assert result.lambda_a.mean < 0 and result.warnings == ()  # the smooth line is invariant
    text = verdict(result)
    assert "Over-smoothing" in text and "message-passing layers" in text
    assert result.to_json()["token"] == "node"


def test_gcn_with_tanh_has_no_angle_exponent():
    """tanh(u_i z) ≠ u_i tanh(z): the smooth state u xᵀ is not invariant, so there is no
    collapsed line to linearize around; λ_a is reported undefined, with the reason."""
    factory = lambda seed: GCN(12, 24, random_graph(12, 3.0, seed=seed),  # noqa: E731
                               activation="tanh", sigma_w=4.0)
    result = diagnose(factory, seeds=[0], n_probes=1)
    assert math.isnan(result.lambda_a.mean)
    assert any("does not stay collapsed" in w for w in result.warnings)
    assert "λ_a could not be measured" in verdict(result)
    assert np.isfinite(result.lambda_g.mean)


# ---------------------------------------------------------------- command line

def _cli(*args: str):
    from sigprop.cli.app import app

    return CliRunner().invoke(app, ["diagnose", *args])


def test_cli_nets(tmp_path):
    out = _cli("--net", "lstm", "--layers", "8", "--width", "16", "--n-tokens", "4",
               "--seeds", "2", "--n-probes", "1", "--device", "cpu", "--json")
    assert out.exit_code == 0, out.output
    payload = json.loads(out.stdout)
    assert payload["family"] == "recurrent" and payload["depth"] == 8
    assert payload["layer"] == "time step" and len(payload["layers"]) == 9
    out = _cli("--net", "resnet18", "--width", "8", "--seeds", "1", "--n-probes", "1",
               "--device", "cpu", "--plot", str(tmp_path / "resnet.png"))
    assert out.exit_code == 0, out.output
    assert "residual block" in out.stdout and (tmp_path / "resnet.png").stat().st_size > 10_000
    out = _cli("--net", "gcn", "--layers", "4", "--width", "16", "--n-tokens", "8",
               "--seeds", "1", "--n-probes", "1", "--device", "cpu", "--json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["token"] == "node"


def test_cli_model_without_layers_exits_2_with_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "families_bad_models.py").write_text(
        "import torch\n"
        "def linear(seed=0):\n"
        "    return torch.nn.Linear(8, 8)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    out = _cli("families_bad_models:linear", "--seeds", "1", "--device", "cpu")
    assert out.exit_code == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.output
    assert "no sequence of blocks found in Linear" in lines[0]
    for hint in ("--blocks", "--family", "nn.RNN/LSTM/GRU", "adjacency"):
        assert hint in lines[0]
    (tmp_path / "families_failing.py").write_text(
        "def broken(seed=0):\n"
        "    raise RuntimeError('no such checkpoint')\n"
    )
    out = _cli("families_failing:broken", "--seeds", "1", "--device", "cpu")
    assert out.exit_code == 2 and "Traceback" not in out.output
    assert out.stderr.strip() == ("error: families_failing:broken failed when called with seed=: "
                                  "RuntimeError: no such checkpoint")
