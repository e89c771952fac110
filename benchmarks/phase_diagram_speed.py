"""How long a theory phase diagram takes, against one measured exponent of a simulated network.

    python benchmarks/phase_diagram_speed.py [--runs 3]

1. Every preset's phase diagram at its default resolution (120 × 120), and the finite-depth and
   causal ones, as the command a user types (``sigprop phase-diagram …``, a whole process:
   start-up, the grid, the crossings, the figure and the CSV/Parquet files). Target: ≤ 10 s
   each on 2 cores.
2. ``sigprop phase-diagram --resolution 200`` (40,000 points) against one independent empirical
   λ_a: a plain-PyTorch reference transformer (pre-RMSNorm, one head with logits W_Q, W_K ~
   N(0, σ_A/d), tanh MLP, residuals sqrt(1 − α²) X + α f(N X); α = 0.5, σ_A = 0.6, σ_w = 2) at
   d = 512 with 16 tokens, 48 layers from nearly collapsed tokens, λ_a the mean growth per layer
   of the token differences over the last 24 (renormalized each layer, float64), one seed. Neither uses
   sigprop's measurement code. Target: ratio ≤ 1 (the theory of 40,000 initializations costs no
   more than measuring one).

Both sides are timed as whole processes, in turn (A B A B …), the ratio taken pair by pair;
the table gives medians.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIGPROP = str(Path(sys.executable).with_name("sigprop"))
DIAGRAMS = {
    "reference": [],
    "pre-ln": ["--arch", "pre-ln"],
    "post-ln": ["--arch", "post-ln"],
    "gpt2": ["--arch", "gpt2"],
    "llama": ["--arch", "llama"],
    "bert": ["--arch", "bert"],
    "mlp": ["--arch", "mlp"],
    "resmlp": ["--arch", "resmlp"],
    "reference, depth 16": ["--depth", "16"],
    "reference, causal, depth 16": ["--causal", "--depth", "16"],
}

EMPIRICAL = r"""
import math, torch
torch.manual_seed(0)
torch.set_num_threads(1)
torch.set_default_dtype(torch.float64)  # differences of 1e-6 drown in float32 rounding
d, n, depth, alpha, sigma_a, sigma_w = 512, 16, 48, 0.5, 0.6, 2.0
a, b = math.sqrt(1 - alpha ** 2), alpha
def rms(x): return x * math.sqrt(d) / x.norm(dim=-1, keepdim=True)
layers = [(torch.randn(d, d) * math.sqrt(sigma_a / d), torch.randn(d, d) * math.sqrt(sigma_a / d),
           torch.randn(d, d) * sigma_w / math.sqrt(d), torch.randn(d, d) / math.sqrt(d))
          for _ in range(depth)]
def layer(x, w):
    q, k, w1, w2 = w
    y = rms(x)
    attention = torch.softmax((y @ q) @ (y @ k).T / math.sqrt(d), dim=-1) @ y
    x = a * x + b * attention
    return a * x + b * torch.tanh(rms(x) @ w1) @ w2
x = torch.randn(d).expand(n, d).clone()
delta = torch.randn(n, d); delta -= delta.mean(0); delta *= 1e-6 / delta.norm()
logs = []
with torch.no_grad():
    for l, w in enumerate(layers):
        x_next, moved = layer(x, w), layer(x + delta, w)
        diff = moved - x_next
        diff -= diff.mean(0)
        logs.append(math.log(diff.norm() / delta.norm()))
        delta = diff * (1e-6 / diff.norm())
        x = x_next
print(sum(logs[depth // 2:]) / (depth - depth // 2))
"""


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        print(f"{'phase diagram (default resolution)':36s} {'median s':>9s}  (of {args.runs})")
        for name, flags in DIAGRAMS.items():
            command = [SIGPROP, "phase-diagram", *flags, "--out", out]
            timed(command)  # warm-up: tables built and cached once
            times = [timed(command) for _ in range(args.runs)]
            print(f"{name:36s} {statistics.median(times):9.2f}")
        diagram = [SIGPROP, "phase-diagram", "--resolution", "200", "--out", out]
        empirical = [sys.executable, "-c", EMPIRICAL]
        timed(diagram), timed(empirical)
        pairs = [(timed(diagram), timed(empirical)) for _ in range(args.runs)]
    ratios = [a / b for a, b in pairs]
    print(f"\nphase-diagram --resolution 200: {statistics.median(a for a, _ in pairs):.2f} s; one "
          f"empirical λ_a at d = 512: {statistics.median(b for _, b in pairs):.2f} s; ratio "
          f"{statistics.median(ratios):.2f} (pairs {min(ratios):.2f}–{max(ratios):.2f})")


if __name__ == "__main__":
    main()
