"""Throughput of ``sigprop.train`` at the reproduction's scale, against a plain loop and the
machine's fp32 matmul peak, all measured in one run.

    python benchmarks/trainer_throughput.py [--configs 8] [--steps 12] [--threads 2]

Model: depth 16, d = d_ff = 64, context T = 64, batch B = 32, Shakespeare's vocabulary
(V = 84; random tokens if the corpus is not installed).

FLOPs per model-step, counted analytically from the matrix products (N = B·T tokens):

    forward  = L · [ 3·2N d²  (W_Q, W_K, W_V)  +  2·2B T² d  (logits, weights·values)
                     + 2·2N d d_ff  (W_1, W_2) ]  +  2N d V  (readout)
    training = 3 · forward      (the backward pass does two products per forward product:
                                 the gradient of its input and of its weight)

Elementwise work, softmax, the embedding lookup and Adam are not counted. At this scale
forward = 1.90 GFLOP and a training step 5.71 GFLOP.

It prints, each as model-steps/s, achieved GFLOP/s and fraction of the peak:

1. the fp32 matmul peak: the best of large square products through ``torch.mm`` (ATen's BLAS,
   MKL in the PyPI build) and through oneDNN (``torch.ops.mkldnn._linear_pointwise``). Both
   are reported: on AMD CPUs MKL does not use AVX-512 and reaches about half what oneDNN does,
   and every fp32 product in PyTorch training (eager or ``torch.compile``) goes through it;
2. ``train_together`` (compiled, and eager) on ``--configs`` configurations, timed per step
   after warm-up (compilation reported separately);
3. a plain loop: one ``nn.Module`` per config (``sigprop.train.build_lm``, the same model and
   initialization) with its own ``torch.optim.Adam``, one config after the other;

and the speed ratio of 2 over 3, with its ceiling: the matmul FLOPs are fixed, so no trainer
whose products run through ATen can beat the loop by more than the torch.mm peak divided by
the loop's GFLOP/s (oneDNN is reached from Python only through inference ops). It checks that the first-step losses of 2 and 3 agree.
Per-step times are medians (the machine may be shared; the best step is shown too).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from sigprop.data import Batches, CharCorpus
from sigprop.train import TrainSettings, build_lm, cross_entropy, train_together

SCALE = dict(depth=16, width=64, context=64, batch=32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", type=int, default=8, help="configs trained together")
    parser.add_argument("--steps", type=int, default=12, help="timed steps (after 3 warm-up)")
    parser.add_argument("--loop-configs", type=int, default=2, help="configs in the plain loop")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--members-per-pass", type=int, default=TrainSettings.members_per_pass)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    corpus = _corpus()
    flops = training_flops(vocab_size=corpus.vocab_size, **SCALE)
    configs = [{"alpha": a, "sigma_w": w, "seed": i}
               for i, (a, w) in enumerate((a, w) for a in (0.3, 0.5, 0.7, 0.9)
                                          for w in (0.5, 1.0, 2.0, 4.0))]
    configs = (configs * (args.configs // len(configs) + 1))[: args.configs]

    print(f"{args.threads} threads; depth {SCALE['depth']}, d = d_ff = {SCALE['width']}, "
          f"T = {SCALE['context']}, B = {SCALE['batch']}, V = {corpus.vocab_size}: "
          f"{flops / 1e9:.2f} GFLOP per model-step (3 × forward matmul FLOPs)")
    peaks = matmul_peaks()
    peak = max(peaks.values())
    for name, value in peaks.items():
        print(f"fp32 matmul peak, {name:<28s} {value:7.1f} GFLOP/s")

    rows = []
    for compiled in (True, False):
        seconds, setup, first = time_trainer(configs, corpus, args, compiled)
        label = f"train_together, {len(configs)} configs, {'compiled' if compiled else 'eager'}"
        rows.append((label, seconds, setup))
        if compiled:
            trainer_first = first
    loop_configs = configs[: args.loop_configs]
    seconds, setup, loop_first = time_loop(loop_configs, corpus, args.steps)
    rows.append((f"plain loop, {len(loop_configs)} configs, nn.Module + Adam each", seconds, setup))

    print(f"\n{'':58s} {'model-steps/s':>13s} {'GFLOP/s':>8s} {'of peak':>8s} "
          f"{'of torch.mm':>11s} {'s/config (400 steps)':>21s}")
    for label, seconds, setup in rows:
        median = np.median(seconds)
        rate = 1.0 / median
        print(f"{label:58s} {rate:13.2f} {rate * flops / 1e9:8.1f} {rate * flops / 1e9 / peak:8.1%} "
              f"{rate * flops / 1e9 / peaks['torch.mm (ATen/MKL)']:11.1%} {400 * median:21.1f}"
              f"   (best step {1 / np.min(seconds):.2f}/s; set-up {setup:.1f} s)")
    loop = 1.0 / np.median(rows[-1][1])
    for label, seconds, _ in rows[:-1]:
        print(f"speed-up over the plain loop, {label}: {1.0 / np.median(seconds) / loop:.2f}×")
    ceiling = peaks["torch.mm (ATen/MKL)"] / (loop * flops / 1e9)
    print(f"upper bound on any speed-up over the loop while the products go through ATen's "
          f"matmul: torch.mm peak / loop GFLOP/s = {ceiling:.2f}×")
    gap = np.max(np.abs(trainer_first[: len(loop_first)] - loop_first))
    print(f"first-step losses, trainer vs loop: max difference {gap:.1e}")


def training_flops(*, vocab_size: int, depth: int, width: int, context: int, batch: int,
                   ff_width: int | None = None) -> float:
    """Matmul FLOPs of one training step of one model (see the module docstring)."""
    d, d_ff, T, B = width, ff_width or width, context, batch
    N = B * T
    layer = 3 * 2 * N * d * d + 2 * 2 * B * T * T * d + 2 * 2 * N * d * d_ff
    return 3.0 * (depth * layer + 2 * N * d * vocab_size)


def matmul_peaks(size: int = 4096, seconds: float = 1.5) -> dict[str, float]:
    """Best GFLOP/s of size × size fp32 products, by ATen's mm and by oneDNN."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    products = {"torch.mm (ATen/MKL)": lambda: torch.mm(a, b)}
    if hasattr(torch.ops.mkldnn, "_linear_pointwise") and torch.backends.mkldnn.is_available():
        products["oneDNN (mkldnn linear)"] = lambda: torch.ops.mkldnn._linear_pointwise(
            a, b, None, "none", [], "")
    peaks = {}
    for name, product in products.items():
        product()
        best, start = np.inf, time.perf_counter()
        while time.perf_counter() - start < seconds:
            tick = time.perf_counter()
            product()
            best = min(best, time.perf_counter() - tick)
        peaks[name] = 2 * size**3 / best / 1e9
    return peaks


def time_trainer(configs, corpus, args, compiled: bool, warm_up: int = 3):
    """Seconds per model-step of each timed step, set-up time (building, compiling, warm-up)
    and the first step's losses."""
    settings = TrainSettings(**SCALE, steps=warm_up + args.steps, eval_windows=1,
                             compile=compiled, members_per_pass=args.members_per_pass)
    stamps, losses = [], []

    def on_step(step, step_losses):
        stamps.append(time.perf_counter())
        losses.append(step_losses)

    start = time.perf_counter()
    train_together(configs, corpus, settings, on_step=on_step)
    per_step = np.diff(stamps[warm_up - 1 :]) / len(configs)
    return per_step, stamps[warm_up - 1] - start, losses[0]


def time_loop(configs, corpus, steps: int, warm_up: int = 2):
    """The same per-step numbers for one nn.Module and one Adam per config, one at a time."""
    seconds, losses, setup = [], [], 0.0
    for config in configs:
        tick = time.perf_counter()
        model = build_lm(config, corpus.vocab_size, depth=SCALE["depth"], width=SCALE["width"])
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        batches = Batches(corpus.train, SCALE["batch"], SCALE["context"], seed=0)
        setup += time.perf_counter() - tick
        for step in range(warm_up + steps):
            tick = time.perf_counter()
            inputs, targets = batches.next()
            loss = cross_entropy(model(inputs), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step == 0:
                losses.append(loss.item())
            (seconds if step >= warm_up else []).append(time.perf_counter() - tick)
    return np.array(seconds), setup, np.array(losses)


def _corpus() -> CharCorpus:
    try:
        from sigprop.data import shakespeare

        return shakespeare()
    except ModuleNotFoundError:
        rng = np.random.default_rng(0)
        tokens = {split: rng.integers(0, 84, size=200_000).astype(np.uint8)
                  for split in ("train", "validation", "test")}
        return CharCorpus(vocab="".join(chr(32 + i) for i in range(84)), documents={}, **tokens)


if __name__ == "__main__":
    main()
