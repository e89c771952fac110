"""Time of ``sigprop init`` on a 48-layer Hugging Face GPT-2 (width 128, 4 heads), against the
issue's target of 60 s on a 2-core CPU, with one ``diagnose`` of the same model as the baseline
measured in the same run.

    python benchmarks/critical_init_speed.py [--family gpt2] [--layers 48] [--width 128]

Prints the seconds, the number of probe evaluations, the ratio to one diagnose, and the
exponents before and after. One torch thread, as the CLI uses.
"""

from __future__ import annotations

import argparse
import time

import torch

from sigprop import critical_init, diagnose


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="gpt2", choices=("gpt2", "llama", "bert"))
    parser.add_argument("--layers", type=int, default=48)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = dict(hf=args.family, layers=args.layers, width=args.width, heads=args.heads)
    diagnose(**model, seeds=1)  # warm-up: imports and first-call costs
    started = time.perf_counter()
    diagnose(**model)
    baseline = time.perf_counter() - started
    started = time.perf_counter()
    result = critical_init(**model)
    seconds = time.perf_counter() - started
    print(f"{args.family}, {args.layers} layers, width {args.width}, {args.heads} heads")
    print(f"one diagnose (4 seeds × 4 probes): {baseline:.1f} s")
    print(f"sigprop init: {seconds:.1f} s, {result.evaluations} evaluations "
          f"({seconds / baseline:.1f}× one diagnose; target ≤ 60 s: "
          f"{'met' if seconds <= 60 else 'missed'})")
    for state in ("before", "after"):
        row = getattr(result, state)
        print(f"{state:>6}: log_gap_L {row['log_gap_L']:+.3f}, log_jac_L {row['log_jac_L']:+.3f}, "
              f"departure {row['departure']:.3f}")
    print("factors: " + ", ".join(f"{k} × {v:.3f}" for k, v in result.scales.items()),
          "(reached)" if result.reached else f"(closest: {result.reason})")


if __name__ == "__main__":
    main()
