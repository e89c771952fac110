"""The Python API against the command line for the same work, with a second busy process.

    python benchmarks/api_speed.py [--runs 5] [--no-busy]

Each pair is timed as whole processes, A and B in turn (A B A B …), so that a drift of the
machine's speed hits both; the table gives each side's median wall time and the median of the
pairwise ratios API / CLI. A second process spinning on one core (``--no-busy`` turns it off)
plays the other busy process of a shared 2-core machine: that is where torch's default of one
thread per core used to make the API several times slower than the CLI (the thread policy now
lives in the library: ``sigprop.runtime.threads``).

Pairs (the same model and settings on both sides):

* ``diagnose``: Hugging Face GPT-2, 24 layers, width 256 (``sigprop.diagnose(hf="gpt2", …)``
  against ``sigprop diagnose --hf gpt2 … --json``);
* ``init``: Hugging Face GPT-2, 24 layers, width 128, 4 heads (``sigprop.critical_init`` against
  ``sigprop init … --json``).
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import subprocess
import sys
import time
from pathlib import Path

SIGPROP = str(Path(sys.executable).with_name("sigprop"))
PAIRS = {
    "diagnose": (
        "import sigprop; sigprop.diagnose(hf='gpt2', layers=24, width=256)",
        [SIGPROP, "diagnose", "--hf", "gpt2", "--layers", "24", "--width", "256", "--json"],
    ),
    "init": (
        "import sigprop; sigprop.critical_init(hf='gpt2', layers=24, width=128, heads=4)",
        [SIGPROP, "init", "--hf", "gpt2", "--layers", "24", "--width", "128", "--heads", "4",
         "--json"],
    ),
}


def spin(stop: multiprocessing.Event) -> None:
    """A busy process: one core at 100 % until ``stop`` is set."""
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed pairs per row")
    parser.add_argument("--no-busy", action="store_true", help="no second busy process")
    args = parser.parse_args()
    stop = multiprocessing.Event()
    busy = None if args.no_busy else multiprocessing.Process(target=spin, args=(stop,))
    if busy is not None:
        busy.start()
    try:
        print(f"{'work':10s} {'API median s':>13s} {'CLI median s':>13s} {'ratio API/CLI':>14s}"
              f"  (median of {args.runs} pairs; {'with' if busy else 'without'} a busy process)")
        for name, (code, cli) in PAIRS.items():
            api_command = [sys.executable, "-c", code]
            timed(api_command), timed(cli)  # warm-up: caches, page cache, compiled kernels
            api, command_line = [], []
            for _ in range(args.runs):
                api.append(timed(api_command))
                command_line.append(timed(cli))
            ratios = [a / c for a, c in zip(api, command_line)]
            print(f"{name:10s} {statistics.median(api):13.2f} {statistics.median(command_line):13.2f}"
                  f" {statistics.median(ratios):14.2f}  (ratios {min(ratios):.2f}–{max(ratios):.2f})")
    finally:
        stop.set()
        if busy is not None:
            busy.join()


if __name__ == "__main__":
    main()
