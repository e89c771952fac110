"""The open-architecture contract of the command line and of ``import sigprop``."""

import json
import subprocess
import sys

import pandas as pd
import pytest

BLOCK_FLAGS = ["--block", "post", "--norm", "rms", "--skip-a", "1", "--branch-a", "0.7",
               "--skip-m", "1", "--branch-m", "0.7", "--heads", "4", "--out-proj",
               "--activation", "gelu", "--sigma-a", "1", "--sigma-w", "1.2", "--sigma-b", "0.1",
               "--n-tokens", "16"]


def run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sigprop", *args], capture_output=True,
                          text=True, timeout=600, cwd=cwd)


def test_trajectory_takes_every_block_flag():
    out = run("trajectory", *BLOCK_FLAGS, "--depth", "24", "--q0", "1", "--rho0", "0.3", "--json")
    assert out.returncode == 0, out.stderr
    layers = json.loads(out.stdout)["layers"]
    assert [row["l"] for row in layers] == list(range(25))
    assert all(set(row) == {"l", "q", "p", "rho", "log_jac"} for row in layers)
    assert layers[0]["rho"] == pytest.approx(0.3)
    assert all(row["q"] == pytest.approx(1.0) for row in layers[1:])  # a post-norm block


def test_the_same_flags_on_exponents_critical_and_phase_diagram(tmp_path):
    out = run("exponents", *BLOCK_FLAGS, "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["hyperparameters"]["block"] == "post" and result["lambda_a"] < 0
    out = run("critical", *BLOCK_FLAGS, "--x", "none", "--y", "sigma-w", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["y_axis"] == "sigma-w"
    out = run("phase-diagram", *BLOCK_FLAGS, "--x", "branch-m", "--y", "sigma-b",
              "--resolution", "8", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    grid = pd.read_parquet(tmp_path / "phase_diagram.parquet")
    assert {"branch-m", "sigma-b", "lambda_a", "lambda_g"} <= set(grid.columns)


def test_presets_without_a_fixed_point_report_finite_depth():
    out = run("exponents", "--arch", "gpt2", "--depth", "48", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    finite = result["finite_depth"]
    # the words are those of the totals over the network's own depth (its only exponents)
    assert result["lambda_a"] is None and result["words_depth"] == 48
    assert result["phase"] == finite["phase"] and result["gradients"] == finite["gradients"]
    assert result["phase"] in ("ordered", "chaotic", "near the edge")
    assert finite["depth"] == 48 and finite["q_L"] > 1 and finite["lambda_g"] is not None
    assert result["hyperparameters"]["branch_a"] == pytest.approx(1 / 96**0.5)


def test_description_file(tmp_path):
    (tmp_path / "block.json").write_text(json.dumps(
        {"preset": "gpt2", "name": "wide gated", "gated": True, "activation": "silu",
         "branch-m": "0.5/sqrt(L)", "depth": 16}))
    out = run("trajectory", "--arch", str(tmp_path / "block.json"), "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert len(result["layers"]) == 17 and result["architecture"].startswith("wide gated")
    assert result["hyperparameters"]["branch_m"] == pytest.approx(0.125)


def test_simulate_and_sweep_take_block_flags(tmp_path):
    out = run("simulate", "--arch", "pre-ln", "--heads", "2", "--causal", "--depth", "3",
              "--width", "32", "--seeds", "2", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["theory"] is not None and "causal" in result["architecture"]
    out = run("sweep", "--arch", "pre-ln", "--causal", "--heads", "2", "--grid", "branch=0.3,1",
              "--grid", "sigma-w=0.5,1.5", "--data", "copy", "--depth", "2", "--width", "16",
              "--context", "8", "--batch", "4", "--steps", "3", "--workers", "1",
              "--batch-size", "4", "--no-compile", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize(
    "args, names",
    [
        (["exponents", "--alpha-a", "0.3", "--skip-a", "1"], ["alpha_A", "skip_a"]),
        (["exponents", "--alpha", "0.3", "--branch-m", "1"], ["alpha", "branch_m"]),
        (["phase-diagram", "--causal", "--depth", "8", "--rho0", "0.9", "--resolution", "8"],
         ["Monte Carlo", "ρ0 = 1"]),
        (["trajectory", "--block", "post", "--norm", "dyt"], ["post-norm DyT"]),
        (["exponents", "--arch", "gpt3"], ["gpt3", "gpt2"]),
        (["exponents", "--skip-a", "-1"], ["skip_a", "[0, 1e+06]"]),
        (["exponents", "--branch", "2*"], ["branch", "formula"]),
        (["simulate", "--heads", "3", "--width", "64"], ["heads", "64"]),
        (["exponents", "--norm", "batch"], ["norm", "rms"]),
        (["sweep", "--grid", "sigma-w=1,2", "--no-causal"], ["causal"]),
        (["phase-diagram", "--x", "sigma-w", "--y", "sigma-w"], ["different"]),
        (["exponents", "--sigma-a"], ["--sigma-a"]),
    ],
)
def test_bad_input_is_one_line_with_exit_code_2(args, names):
    out = run(*args)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr
    for name in names:
        assert name in lines[0], lines[0]


@pytest.mark.parametrize("content, named", [
    ("{not json", "not valid JSON"),
    ('{"preset": "gpt2", "sigma_q": 1}', "unknown key 'sigma_q'"),
    ('{"skip": -0.5}', "skip"),
    ("[1, 2]", "JSON object"),
])
def test_bad_description_file_is_one_line(tmp_path, content, named):
    (tmp_path / "block.json").write_text(content)
    out = run("exponents", "--arch", str(tmp_path / "block.json"))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0] and "block.json" in lines[0]


def test_import_and_theory_leave_torch_unimported():
    code = ("import sys, sigprop; e = sigprop.exponents(); t = sigprop.trajectory('pre-ln', "
            "depth=5); d = sigprop.phase_diagram(resolution=4); "
            "print(e.to_json()['lambda_a'], 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lam, torch_loaded = out.stdout.split()
    assert torch_loaded == "False" and float(lam) < 0


def test_python_api_defaults_equal_the_command_line():
    import sigprop

    out = run("exponents", "--json")
    assert json.loads(out.stdout) == json.loads(json.dumps(sigprop.exponents().to_json()))
