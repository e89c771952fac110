"""The command line contract: JSON fields, output files, and one-line errors with exit code 2."""

import json
import subprocess
import sys

import pandas as pd
import pytest


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sigprop", *args], capture_output=True, text=True, timeout=300
    )


def test_exponents_json():
    out = run("exponents", "--alpha-a", "0.5", "--alpha-m", "0.5", "--sigma-a", "0.6",
              "--sigma-w", "2.0", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    for key in ("lambda_a", "lambda_g", "q_star", "rho_star", "phase", "gradients"):
        assert key in result
    assert result["phase"] == "ordered" and result["lambda_a"] < 0
    assert result["gradients"] == "exploding" and result["lambda_g"] > 0
    assert result["rho_star"] == 1.0


def test_exponents_chaotic_point():
    out = run("exponents", "--alpha-a", "0.3", "--alpha-m", "0.3", "--sigma-w", "5",
              "--activation", "erf", "--n-tokens", "4", "--json")
    result = json.loads(out.stdout)
    assert result["phase"] == "chaotic" and 0 < result["rho_star"] < 1


def test_trajectory_json():
    out = run("trajectory", "--sigma-w", "1.5", "--depth", "6", "--q0", "1.2", "--rho0", "0.1",
              "--json")
    assert out.returncode == 0, out.stderr
    layers = json.loads(out.stdout)["layers"]
    assert [row["l"] for row in layers] == list(range(7))
    assert layers[0] == pytest.approx({"l": 0, "q": 1.2, "p": 0.12, "rho": 0.1, "log_jac": 0.0})
    assert all(set(row) >= {"l", "q", "rho", "log_jac"} for row in layers)


def test_human_readable_output():
    out = run("exponents")
    assert out.returncode == 0 and "λ_a" in out.stdout and "ordered" in out.stdout


@pytest.mark.parametrize(
    "args, names",
    [
        (["exponents", "--alpha-a", "1.5"], ["alpha_A", "[0, 1]"]),
        (["exponents", "--alpha-m", "-0.1"], ["alpha_M", "[0, 1]"]),
        (["exponents", "--sigma-w", "0"], ["sigma_w", "(0"]),
        (["exponents", "--sigma-a", "-1"], ["sigma_A", "(0"]),
        (["exponents", "--activation", "swish"], ["activation", "tanh"]),
        (["exponents", "--n-tokens", "1"], ["n_tokens", "[2, 4096]"]),
        (["trajectory", "--depth", "0"], ["depth", "[1, 100000]"]),
        (["trajectory", "--rho0", "1.5"], ["rho0", "[0, 1]"]),
        (["phase-diagram", "--resolution", "1"], ["at least 2 points"]),
        (["phase-diagram", "--x-range", "0.5", "1.5"], ["--alpha", "[0, 1]"]),
        (["phase-diagram", "--x", "depth"], ["axis must be one of"]),
        (["critical", "--y-range", "3", "1"], ["--sigma-w", "low < high"]),
    ],
)
def test_invalid_input_is_one_line_with_exit_code_2(args, names):
    out = run(*args)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr
    for name in names:
        assert name in lines[0]


def test_phase_diagram_writes_figure_and_grid(tmp_path):
    out = run("phase-diagram", "--resolution", "12", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    png = (tmp_path / "phase_diagram.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    grid = pd.read_parquet(tmp_path / "phase_diagram.parquet")
    assert len(grid) == 144
    assert {"alpha", "sigma-w", "lambda_a", "lambda_g", "phase", "gradients"} <= set(grid.columns)
    assert pd.read_csv(tmp_path / "phase_diagram.csv").shape == grid.shape


def test_critical_json_finds_the_edge_of_chaos():
    out = run("critical", "--x", "none", "--y", "sigma-w", "--y-range", "1", "6",
              "--alpha-a", "0.3", "--alpha-m", "0.3", "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    (edge,) = summary["lambda_a_zero"]
    check = run("exponents", "--alpha-a", "0.3", "--alpha-m", "0.3", "--sigma-w",
                repr(edge["y"]), "--json")
    assert abs(json.loads(check.stdout)["lambda_a"]) < 1e-8


def test_simulate_json_measures_one_point():
    out = run("simulate", "--alpha-a", "0.6", "--alpha-m", "0.6", "--sigma-w", "1.0", "--depth",
              "12", "--width", "128", "--seeds", "3", "--seed", "5", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert [row["l"] for row in result["layers"]] == list(range(13))
    assert result["layers"][0]["q"] == pytest.approx(1.0) and result["layers"][0]["rho"] == pytest.approx(0.0, abs=1e-12)
    for key in ("lambda_a", "lambda_a_se", "lambda_g", "lambda_g_se"):
        assert isinstance(result[key], float)
    assert result["settings"]["seeds"] == [5, 6, 7]
    assert abs(result["lambda_a"] - result["theory"]["lambda_a"]) < 0.05 + 0.1 * abs(result["theory"]["lambda_a"]) + 3 * result["lambda_a_se"]


def test_simulate_several_points_writes_figure_and_table(tmp_path):
    out = run("simulate", "--sigma-w", "1", "--sigma-w", "5", "--depth", "6", "--width", "64",
              "--seeds", "2", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    table = pd.read_parquet(tmp_path / "simulation.parquet")
    assert sorted(table["point"].unique()) == [0, 1] and len(table) == 14
    assert {"q_theory", "q_mean", "q_se", "rho_mean", "log_jac_theory"} <= set(table.columns)
    assert (tmp_path / "simulation.png").stat().st_size > 10_000


def test_simulate_json_rejects_several_points():
    out = run("simulate", "--sigma-w", "1", "--sigma-w", "2", "--json")
    assert out.returncode == 2 and "exactly one" in out.stderr


def test_phase_diagram_with_measured_overlay(tmp_path):
    out = run("phase-diagram", "--resolution", "10", "--empirical", "--empirical-points", "2",
              "--depth", "6", "--width", "64", "--seeds", "2", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    measured = pd.read_csv(tmp_path / "phase_diagram_measured.csv")
    assert len(measured) == 4 and measured["lambda_a"].notna().all()


USER_MODELS = '''
import torch
from torch import nn
from sigprop.spec import reference_layer
from sigprop.models import build_network


def reference(seed=0):
    return build_network(reference_layer(0.5, 0.5, 0.6, 2.0), depth=6, width=32, seed=seed)


def flat():
    return nn.Linear(32, 32)
'''


def run_in(directory, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sigprop", *args], capture_output=True,
                          text=True, timeout=300, cwd=directory)


def test_diagnose_hugging_face_gpt2_json():
    out = run("diagnose", "--hf", "gpt2", "--layers", "4", "--width", "64", "--heads", "2",
              "--seeds", "2", "--n-probes", "2", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["depth"] == 4 and result["width"] == 64 and result["blocks"] == "h"
    assert isinstance(result["lambda_a"], float) and isinstance(result["lambda_g"], float)
    assert [row["l"] for row in result["layers"]] == list(range(5))


def test_diagnose_user_factory_with_plot(tmp_path):
    (tmp_path / "user_models.py").write_text(USER_MODELS)
    out = run_in(tmp_path, "diagnose", "user_models:reference", "--seeds", "2", "--plot",
                 "diagnosis.png")
    assert out.returncode == 0, out.stderr
    assert "λ_a" in out.stdout and (tmp_path / "diagnosis.png").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["user_models:missing"], "no attribute"),
        (["no_such_module_xyz:make"], "cannot import"),
        (["user_models:flat"], "block"),
        (["user_models:reference", "--width", "64"], "width"),
        (["--hf", "gpt5"], "gpt2"),
    ],
)
def test_diagnose_bad_input(tmp_path, args, message):
    (tmp_path / "user_models.py").write_text(USER_MODELS)
    out = run_in(tmp_path, "diagnose", *args)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1
