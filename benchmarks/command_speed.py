"""Speed of the theory commands, as ratios against baselines timed in the same run.

    python benchmarks/command_speed.py [--repeats 5]

1. ``sigprop exponents --json`` against ``python -c "import numpy, scipy"`` (target: within 3×).
2. ``sigprop phase-diagram --resolution 200`` (start-up, 200×200 grid, crossings, PNG, CSV,
   Parquet) against a fresh process measuring ONE empirical λ_a at d = 512, the estimate the
   tests use (reference transformer, 4 seeds, depth 40, n = 16) (target: ratio < 1).

Every time is the median over ``--repeats`` fresh processes. The theory keeps its tables in an
on-disk cache, so both commands are timed *warm* (the cache filled by an earlier run, as for a
user running a command again) and *cold* (an empty cache folder each time).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EMPIRICAL = """
import torch
torch.set_num_threads(2)
from sigprop.spec import reference_layer
from sigprop.measure import empirical_lambda_a
empirical_lambda_a(reference_layer(0.5, 0.5, 0.6, 2.0), depth=40, width=512, n_tokens=16,
                   seeds=[0, 1, 2, 3], burn_in=10)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    sigprop = [sys.executable, "-m", "sigprop"]
    with tempfile.TemporaryDirectory() as folder:
        out = str(Path(folder) / "diagram")
        warm_cache = str(Path(folder) / "cache")
        baseline = _median([sys.executable, "-c", "import numpy, scipy"], args.repeats)
        exponents = {kind: _median([*sigprop, "exponents", "--json"], args.repeats, cache)
                     for kind, cache in (("warm", warm_cache), ("cold", None))}
        empirical = _median([sys.executable, "-c", EMPIRICAL], args.repeats)
        command = [*sigprop, "phase-diagram", "--resolution", "200", "--out", out]
        diagram = {kind: _median(command, args.repeats, cache)
                   for kind, cache in (("warm", warm_cache), ("cold", None))}
    print(f'python -c "import numpy, scipy":              {baseline:6.2f} s')
    for kind, seconds in exponents.items():
        print(f"sigprop exponents --json ({kind} cache):        {seconds:6.2f} s   "
              f"ratio {seconds / baseline:.2f} (target ≤ 3)")
    print(f"one empirical λ_a, d = 512 (fresh process):    {empirical:6.2f} s")
    for kind, seconds in diagram.items():
        print(f"sigprop phase-diagram --resolution 200 ({kind}): {seconds:6.2f} s   "
              f"ratio {seconds / empirical:.2f} (target < 1)")


def _median(command: list[str], repeats: int, cache: str | None = "") -> float:
    """Median wall time of ``command`` in fresh processes. ``cache``: the table-cache folder
    (kept across repeats, warmed by one untimed run), None for a new empty folder each time,
    "" for the user's own setting."""
    times = []
    environment = dict(os.environ)
    if cache:
        environment["SIGPROP_CACHE"] = cache
        subprocess.run(command, env=environment, check=True, capture_output=True)
    for _ in range(repeats):
        if cache is None:
            environment["SIGPROP_CACHE"] = tempfile.mkdtemp()
        start = time.perf_counter()
        subprocess.run(command, env=environment, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


if __name__ == "__main__":
    main()
