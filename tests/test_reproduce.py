"""The whole pipeline at toy scale: sweep, resume, analysis and report, through the CLI too."""

import subprocess
import sys

import pandas as pd

from sigprop.experiment.reproduce import Scale, reproduce

TOY = Scale(depth=3, width=16, context=16, batch=4, steps=8, alphas=(0.3, 0.8),
            sigma_ws=(0.5, 2.0, 5.0), seeds=(0,), sigma_b=1.0, workers=1, batch_size=3,
            simulation_width=32, simulation_depth=4, simulation_seeds=2, compile=False,
            cv_repeats=2)


def test_reproduce_writes_a_complete_report_and_resumes(tmp_path):
    report = reproduce(tmp_path, TOY, log=lambda _: None)
    text = report.read_text()
    for heading in ("## 1. Theory", "## 2. Theory against simulation", "## 3. Training sweep",
                    "cross-validated R²", "Where the minimum lies"):
        assert heading in text
    for link in [line.split("](")[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]:
        assert (tmp_path / link).is_file(), link
    trials = pd.read_csv(tmp_path / "training" / "trials.csv")
    assert len(trials) == 6 and set(trials["status"]) <= {"complete", "diverged"}
    for column in ("lambda_a_theory", "lambda_g_theory", "lambda_a_measured", "lambda_g_measured",
                   "test_loss", "train_loss"):
        assert trials[column].notna().all(), column
    # A second run finds every trial finished and trains nothing again.
    numbers = sorted(trials["number"])
    reproduce(tmp_path, TOY, log=lambda _: None)
    assert sorted(pd.read_csv(tmp_path / "training" / "trials.csv")["number"]) == numbers


def test_sweep_and_analyze_commands(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "sigprop", *args], capture_output=True,
                              text=True, timeout=600, cwd=tmp_path)

    out = run("sweep", "--grid", "alpha=0.2,0.8", "--grid", "sigma-w=0.5,1.5,4", "--data", "copy",
              "--depth", "2", "--width", "16", "--context", "40", "--batch", "4", "--steps", "5",
              "--workers", "1", "--batch-size", "6", "--sigma-b", "1", "--no-compile", "--out", "sweep")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "sweep" / "sweep.sqlite").exists()
    out = run("analyze", "--storage", "sweep/sweep.sqlite", "--out", "analysis", "--cv-repeats", "2")
    assert out.returncode == 0, out.stderr
    assert "R²" in out.stdout and (tmp_path / "analysis" / "loss_landscape.png").exists()
    bad = run("sweep", "--grid", "depth=1,2")
    assert bad.returncode == 2 and "--grid" in bad.stderr
    for args, named in [(("--sample", "alpha=0.9:0.1", "--samples", "4"), "--sample alpha"),
                        (("--sample", "alpha=0.1:0.9"), "--samples"),
                        (("--sample", "alpha=0.1:1.5", "--samples", "4"), "alpha"),
                        ((), "--grid")]:
        bad = run("sweep", *args)
        assert bad.returncode == 2 and named in bad.stderr, (args, bad.stderr)


def test_quasi_random_sweep_and_its_analysis(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "sigprop", "sweep", "--sample", "alpha=0.1:0.9",
         "--sample", "sigma-w=0.5:4", "--samples", "6", "--data", "copy", "--depth", "2",
         "--width", "16", "--context", "40", "--batch", "4", "--steps", "5", "--workers", "1",
         "--batch-size", "6", "--sigma-b", "1", "--no-compile", "--out", "sweep"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    out = subprocess.run([sys.executable, "-m", "sigprop", "analyze", "--storage",
                          "sweep/sweep.sqlite", "--out", "analysis", "--cv-repeats", "2"],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    points = pd.read_csv(tmp_path / "analysis" / "points.csv")
    assert len(points) == 6 and points["alpha"].nunique() == 6
    assert (tmp_path / "analysis" / "loss_landscape.png").exists()
