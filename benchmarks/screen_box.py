"""The exponent screen where it matters: a wide box, most of it failing, the learning rate searched.

    python benchmarks/screen_box.py [--out results/screen_box] [--pool 192] [--reps 50]
                                    [--workers 2] [--methods random,screen,…]
    python benchmarks/screen_box.py --plot-only     # no training: searches, summary, figure
                                                    # from the stored pool (complete or not)

The question (after benchmarks/screen_search.py, where the screen needed 0.80 of random
search's trainings in a box that already trains every fourth draw): in a box a user picks
before knowing the answer, does the screen, or a search that ranks inside the region it
passes, reach a good loss with <= 1/3 of random search's trainings?

The box. The paper's reference block (pre-RMSNorm, residuals sqrt(1 − α²) X + α f(N X), one
head, tanh MLP with d_ff = d), the block of screen_search.py and of the README's 48-point
search: the same depth 16 and training scale (`sigprop sweep`'s defaults: d = 64, context 64,
batch 32, 400 Adam steps, compiled), so the two benchmarks differ in the box alone. Every
initialization scale spans two decades, log-uniform: σ_w ∈ [0.1, 10], σ_b ∈ [0.01, 1],
σ_A ∈ [0.03, 3], σ_2 ∈ [0.1, 10] (the MLP readout, fixed at 1 in screen_search); the
residual strength α ∈ [0.05, 0.95] (uniform: it is a mixing fraction, and α = 0.05 is already
a branch 20× below its skip); the Adam learning rate lr ∈ [3e-4, 3e-3], log-uniform. Six
dimensions. The screen does not see lr: it is a knob the theory cannot rank.

1. Pool (the cost). The first ``--pool`` points of the scrambled Halton sequence of the box
   (unit cube, seed 0, log coordinates for the log-uniform knobs; values rounded to 6
   significant digits) are each trained once, one ``sigprop.experiment.trial.evaluate`` call
   per point (exponents at initialization included). ``sweep_spec``/``run_sweep`` cannot do
   it: a sweep samples declared hyperparameters only (not lr) and only uniformly (not log).
   Each training is appended to ``OUT/pool.jsonl`` as it finishes: a killed run restarts where
   it stopped, and a larger ``--pool`` trains only the new points (a longer Halton sequence
   starts with the shorter one). ``OUT/settings.json`` pins the box and the training scale.
   One initialization seed and data order per point (those of a sweep, 0): a point's loss is
   one training run, seed noise included. Cost: about 50 CPU-s per training on this machine
   plus one compilation per worker; 192 points take about 80 minutes on 2 cores (``--pool 160``
   about 65; a larger ``--pool`` later trains only the added points).
2. Searches (free). A tabular benchmark over the pool: every method draws pool points without
   replacement and stops when one reaches the target, best pool loss + 0.05 nats/char (the
   objective of a diverged run is log V, as in a sweep). Trainings to the target are counted,
   ``--reps`` seeds per method:
   * random: the pool in a random order (seed = rep); exact expectation (N+1)/(h+1) for
     N points of which h reach the target;
   * screen: the same order, keeping the points that pass ``sigprop.Screen`` (finite depth,
     |L·λ_a| <= 3 and |L·λ_g| <= 3; rejected points cost no training);
     screen-asymptotic: the screen on L times the asymptotic exponents;
   * tpe: Optuna's ``TPESampler(seed=rep)`` with its defaults over the box (log distributions
     for the log-uniform knobs); its 10 start-up trials are the first 10 points of the random
     order;
   * screen-tpe: ``ScreenedSampler(Screen(), box without lr, TPESampler(seed=rep))``, start-up
     = the first 10 points of the screen's order, suggestions mapped to passing points only;
   * gp: Bayesian optimization on the pool, a Gaussian process (scikit-learn's regressor:
     Matérn 5/2 with one length per input, signal and noise variances, on standardized
     losses, refitted by maximum marginal likelihood after each training)
     on the six unit coordinates, the next point the unused one of highest expected
     improvement; 5 start-up points of the random order;
   * gp-exp: the same with the exponent features s(L·λ_a), s(L·λ_g) as two more inputs,
     s(x) = sign(x) log(1 + |x|) / log(31) (unbounded exponents squashed);
   * screen-gp: gp-exp on the points that pass the screen (5 start-up points of the
     screen's order): rank inside the trainable region.
   A model-based sampler's suggestion (TPE) is mapped to the nearest not yet used pool point
   (Euclidean distance in the unit cube; for screened methods the nearest passing one) and
   the sampler is told that point and its loss, not its own suggestion: the standard
   approximation of a tabular benchmark. The GP needs no mapping: it scores the pool points
   themselves. Within a rep every method starts from the same random order (common random
   numbers). Searches are cached in ``OUT/searches.json`` under a fingerprint of the pool.
3. Summary: ``OUT/summary.md`` and ``OUT/summary.json``: the share of the box that passes the
   screen (theory alone, on 4096 Halton points of the box) and what failing means there, the
   pool's outcomes (diverged, no better than the unigram loss, within 0.05/0.1/0.25 of the
   best) for passing and failing points, per method the trainings (and CPU seconds of the
   trainings) to the target, mean ± standard error over reps and the ratio to random search,
   the exact expectation for random and screened random order with a bootstrap over the pool
   (the uncertainty of the ratio that comes from the pool, not the seeds). The figure
   (``--figure``, default docs/images/screen_box.png): best loss so far against trainings,
   mean over reps, with the target; and the share of reps at the target.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState
from scipy.stats import norm, qmc

from sigprop.experiment.screen import Screen
from sigprop.experiment.trial import sweep_spec
from sigprop.sweep.screen import DEFAULT_TAU, ScreenedSampler

BOX: dict[str, tuple[float, float, bool]] = {  # name: (low, high, log-uniform)
    "alpha": (0.05, 0.95, False),
    "sigma_w": (0.1, 10.0, True),
    "sigma_b": (0.01, 1.0, True),
    "sigma_A": (0.03, 3.0, True),
    "sigma_2": (0.1, 10.0, True),
    "lr": (3e-4, 3e-3, True),
}
INIT = tuple(k for k in BOX if k != "lr")  # what the screen sees
TRAINING = dict(width=64, context=64, batch=32, steps=400, data="shakespeare", compile=True)
DEPTH = 16
MARGIN = 0.05  # nats/char above the best pool loss that count as reached
POOL, POOL_SEED = 192, 0  # 192 trainings of ~50 CPU-s: about 80 min on 2 cores
TAU = DEFAULT_TAU  # the default screen, |L·λ| <= 3
BOX_SAMPLE = 4096  # Halton points of the box for the theory-only pass rate
STARTUP_TPE = 10  # Optuna's default n_startup_trials
STARTUP_GP = 5
SQUASH = math.log(31.0)  # s(x) = sign(x) log(1 + |x|) / log 31: |L·λ| = 30 -> 1
BOOTSTRAP = 2000
METHODS = ("random", "screen", "screen-asymptotic", "tpe", "screen-tpe", "gp", "gp-exp",
           "screen-gp")
SCREENED = {"screen": "finite-depth", "screen-asymptotic": "asymptotic",
            "screen-tpe": "finite-depth", "screen-gp": "finite-depth"}
SEARCH_VERSION = 1  # bump when a method changes: the cached searches are recomputed
ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "screen_box")
    parser.add_argument("--pool", type=int, default=POOL, help="pool points trained")
    parser.add_argument("--reps", type=int, default=50, help="seeds per search method")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--plot-only", action="store_true",
                        help="train nothing: searches, summary and figure from the stored pool")
    parser.add_argument("--figure", type=Path, default=ROOT / "docs" / "images" / "screen_box.png")
    parser.add_argument("--depth", type=int, default=DEPTH, help="(validation at small scale)")
    parser.add_argument("--width", type=int, default=TRAINING["width"])
    parser.add_argument("--steps", type=int, default=TRAINING["steps"])
    args = parser.parse_args()
    methods = args.methods.split(",")
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"--methods: unknown {unknown}; choose from {', '.join(METHODS)}")
    if args.pool < 2 or args.reps < 1 or args.workers < 1:
        parser.error("--pool must be >= 2, --reps and --workers >= 1")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    training = {**TRAINING, "width": args.width, "steps": args.steps}
    settings = {"box": {k: list(v) for k, v in BOX.items()}, "depth": args.depth,
                "training": training, "pool_seed": POOL_SEED}
    args.out.mkdir(parents=True, exist_ok=True)
    check_settings(args.out / "settings.json", settings)
    points = pool_points(args.pool)
    # kill PID stops the workers too: SystemExit leaves the pool's block, which ends them
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    context = multiprocessing.get_context("spawn")
    with context.Pool(args.workers, initializer=_worker_setup) as workers:
        if not args.plot_only:
            train_pool(workers, args.out / "pool.jsonl", points, args.depth, training)
        records = load_pool(args.out / "pool.jsonl", points)
        if len(records) < 2:
            sys.exit(f"{args.out / 'pool.jsonl'}: {len(records)} of {len(points)} pool points "
                     "trained; train the pool first (without --plot-only)")
        pool = pool_data(records, args.depth)
        runs = run_searches(workers, args.out / "searches.json", pool, methods, args.reps,
                            args.depth)
    theory = box_theory(args.out / "box_theory.json", args.depth)
    summary = summarize(pool, runs, methods, theory, settings, len(points))
    (args.out / "summary.json").write_text(json.dumps(_finite(summary), indent=1))
    text = report(summary)
    (args.out / "summary.md").write_text(text + "\n")
    print(text)
    plot(summary, args.figure)
    print(f"wrote {args.figure}, {args.out / 'summary.md'} and {args.out / 'summary.json'}")


def check_settings(path: Path, settings: dict) -> None:
    """Pin the box and the training scale of an output directory (its trainings are reused)."""
    if path.exists():
        stored = json.loads(path.read_text())
        if stored != settings:
            sys.exit(f"{path}: this directory holds trainings of other settings\n  stored: "
                     f"{stored}\n  asked:  {settings}\nchoose another --out")
    else:
        path.write_text(json.dumps(settings, indent=1))


def pool_points(n: int) -> list[dict[str, float]]:
    """The first ``n`` points of the scrambled Halton sequence of the box (log coordinates for
    the log-uniform knobs), values rounded to 6 significant digits and kept inside the box."""
    unit = qmc.Halton(d=len(BOX), scramble=True, seed=POOL_SEED).random(n)
    points = []
    for row in unit:
        point = {}
        for (name, (low, high, log)), u in zip(BOX.items(), row):
            value = math.exp(math.log(low) + u * math.log(high / low)) if log else low + u * (high - low)
            point[name] = min(max(float(f"{value:.6g}"), low), high)
        points.append(point)
    return points


def to_unit(points: list[dict[str, float]]) -> np.ndarray:
    """Coordinates of points in the unit cube of the box (log for the log-uniform knobs)."""
    columns = []
    for name, (low, high, log) in BOX.items():
        values = np.array([p[name] for p in points], dtype=float)
        columns.append(np.log(values / low) / math.log(high / low) if log
                       else (values - low) / (high - low))
    return np.column_stack(columns)


# --- 1. the pool ---------------------------------------------------------------------------

def _worker_setup() -> None:
    import torch

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def train_pool(workers, path: Path, points: list[dict], depth: int, training: dict) -> None:
    """Train the pool points not yet in ``path`` (JSON lines, appended as each finishes)."""
    done = {r["index"] for r in load_pool(path, points)}
    todo = [i for i in range(len(points)) if i not in done]
    print(f"pool: {len(done)} of {len(points)} points trained before, {len(todo)} to train",
          flush=True)
    if not todo:
        return
    sample = [f"{name}={BOX[name][0]}:{BOX[name][1]}" for name in INIT]
    fixed = sweep_spec(None, {}, [], sample, 1, 0, depth=depth, **training).fixed
    jobs = [(i, points[i], fixed) for i in todo]
    start = time.perf_counter()
    if path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
        with path.open("a") as log:  # a line cut by a kill: the next one starts afresh
            log.write("\n")
    with path.open("a") as log:
        for n, record in enumerate(workers.imap_unordered(_train, jobs), 1):
            log.write(json.dumps(record) + "\n")
            log.flush()
            eta = (time.perf_counter() - start) / n * (len(todo) - n)
            print(f"pool {n}/{len(todo)}: point {record['index']} {record['status']} "
                  f"loss {record['value']:.4f} ({record['cpu_seconds']:.0f} CPU-s; "
                  f"{eta / 60:.0f} min left)", flush=True)


def _train(job: tuple) -> dict:
    """One pool point trained: its objective (test loss, or log V if it diverged), outcome,
    exponents at initialization, CPU and wall seconds."""
    from sigprop.experiment.trial import evaluate

    index, point, fixed = job
    cpu, wall = time.process_time(), time.perf_counter()
    result = evaluate([{**fixed, **point}])[0]  # lr is a training setting of the config
    result.pop("loss_curve", None)
    complete = result["status"] == "complete"
    value = float(result["test_loss"] if complete else math.log(result["vocab_size"]))
    attrs = {k: (v if not (isinstance(v, float) and not math.isfinite(v)) else None)
             for k, v in result.items() if isinstance(v, (int, float, str))}
    return {"index": index, "params": point, "value": value, **attrs,
            "cpu_seconds": time.process_time() - cpu, "wall_seconds": time.perf_counter() - wall,
            "pid": os.getpid()}


def load_pool(path: Path, points: list[dict]) -> list[dict]:
    """The stored trainings of the first ``len(points)`` pool points, by index (a line whose
    point differs from the regenerated one is an error: other settings)."""
    if not path.exists():
        return []
    records = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a kill
            continue
        index = record["index"]
        if index >= len(points):
            continue
        if record["params"] != points[index]:
            sys.exit(f"{path}: point {index} is {record['params']}, the pool's is "
                     f"{points[index]}: other settings; choose another --out")
        records[index] = record
    return [records[i] for i in sorted(records)]


def pool_data(records: list[dict], depth: int) -> dict[str, Any]:
    """What the searches need: unit coordinates, objective, screen verdicts and exponents."""
    params = [r["params"] for r in records]
    data: dict[str, Any] = {"index": [r["index"] for r in records], "params": params,
                            "x": to_unit(params), "y": np.array([r["value"] for r in records]),
                            "cpu": np.array([r["cpu_seconds"] for r in records]),
                            "diverged": np.array([r["status"] != "complete" for r in records])}
    for definition in ("finite-depth", "asymptotic"):
        screen = Screen(depth=depth, definition=definition)
        start = time.process_time()
        verdicts = screen.check([{k: p[k] for k in INIT} for p in params])
        data[f"seconds_{definition}"] = (time.process_time() - start) / len(params)
        data[f"passed_{definition}"] = np.array([v.passed for v in verdicts])
        data[f"exponents_{definition}"] = np.array([[v.lambda_a, v.lambda_g] for v in verdicts])
    # the screen's totals against the theory columns stored with each training (same code?)
    stored = np.array([[r.get("lambda_a_depth_theory"), r.get("lambda_g_depth_theory")]
                       for r in records], dtype=float) * depth
    both = np.isfinite(stored) & np.isfinite(data["exponents_finite-depth"])
    data["theory_mismatch"] = float(np.abs(stored - data["exponents_finite-depth"])[both].max(
        initial=0.0))
    return data


# --- 2. the searches ------------------------------------------------------------------------

def run_searches(workers, path: Path, pool: dict, methods: list[str], reps: int,
                 depth: int) -> list[dict]:
    """Every (method, rep) search over the pool, cached in ``path`` under the pool's
    fingerprint (its points and losses, the target margin and the methods' version)."""
    key = _fingerprint(pool, depth)
    cache = json.loads(path.read_text()) if path.exists() else {}
    if cache.get("fingerprint") != key:
        cache = {"fingerprint": key, "runs": {}}
    todo = [(m, r) for m in methods for r in range(reps) if f"{m}/{r}" not in cache["runs"]]
    if todo:
        print(f"searches: {len(todo)} runs over {len(pool['y'])} pool points", flush=True)
        start = time.perf_counter()
        jobs = [(method, rep, pool, depth) for method, rep in todo]
        for n, run in enumerate(workers.imap_unordered(_search, jobs), 1):
            cache["runs"][f"{run['method']}/{run['rep']}"] = run
            if n % 10 == 0 or n == len(todo):
                path.write_text(json.dumps(cache))
                print(f"searches: {n}/{len(todo)} ({time.perf_counter() - start:.0f} s)",
                      flush=True)
    return [cache["runs"][f"{m}/{r}"] for m in methods for r in range(reps)]


def _fingerprint(pool: dict, depth: int) -> str:
    text = json.dumps([pool["params"], [round(v, 6) for v in pool["y"].tolist()], depth, MARGIN,
                       TAU, STARTUP_TPE, STARTUP_GP, SEARCH_VERSION])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _search(job: tuple) -> dict:
    """One search: the pool positions it trains, in order, until one reaches the target."""
    method, rep, pool, depth = job
    target = float(pool["y"].min()) + MARGIN
    order = np.random.default_rng(rep).permutation(len(pool["y"]))  # shared by the methods
    allowed = (pool[f"passed_{SCREENED[method]}"] if method in SCREENED
               else np.ones(len(pool["y"]), dtype=bool))
    stream = [int(i) for i in order if allowed[i]]
    start = time.process_time()
    if method in ("random", "screen", "screen-asymptotic"):
        chosen = _until_target(stream, pool["y"], target)
    elif method in ("tpe", "screen-tpe"):
        chosen = _tpe_search(pool, stream, allowed, target, rep, depth, method == "screen-tpe")
    else:
        chosen = _gp_search(pool, stream, allowed, target, exponents=method != "gp")
    seconds = time.process_time() - start
    losses = [float(pool["y"][i]) for i in chosen]
    reached = bool(losses) and min(losses) <= target
    screened = SCREENED.get(method)
    # the screen's cost: every point of the random order examined up to the last one trained
    examined = (order.tolist().index(chosen[-1]) + 1 if screened and chosen else 0)
    return {"method": method, "rep": rep, "positions": chosen, "losses": losses,
            "reached": reached, "trainings": len(chosen),
            "cpu_seconds": float(pool["cpu"][chosen].sum()),
            "method_seconds": seconds if method not in ("random", "screen", "screen-asymptotic")
            else 0.0,
            "screen_seconds": examined * pool[f"seconds_{screened}"] if screened else 0.0,
            "candidates": len(stream)}


def _until_target(stream: list[int], y: np.ndarray, target: float) -> list[int]:
    for n, i in enumerate(stream, 1):
        if y[i] <= target:
            return stream[:n]
    return list(stream)


def _tpe_search(pool: dict, stream: list[int], allowed: np.ndarray, target: float, rep: int,
                depth: int, screened: bool) -> list[int]:
    """TPE (screened: inside ``ScreenedSampler``) over the box; its start-up trials are the
    first points of ``stream``, each later suggestion is mapped to the nearest unused allowed
    pool point, and the study is told that point and its loss (the suggestion itself fails)."""
    space = {k: FloatDistribution(low, high, log=log) for k, (low, high, log) in BOX.items()}
    sampler: optuna.samplers.BaseSampler = optuna.samplers.TPESampler(seed=rep)
    if screened:
        sampler = ScreenedSampler(Screen(tau_a=TAU, tau_g=TAU, depth=depth),
                                  {k: space[k] for k in INIT}, sampler)
    study = optuna.create_study(sampler=sampler)
    unused = allowed.copy()
    chosen: list[int] = []

    def take(i: int) -> bool:
        chosen.append(i)
        unused[i] = False
        study.add_trial(optuna.trial.create_trial(params=pool["params"][i], distributions=space,
                                                  value=float(pool["y"][i])))
        return pool["y"][i] <= target

    for i in stream[:STARTUP_TPE]:
        if take(i):
            return chosen
    while unused.any():
        trial = study.ask(space)
        suggestion = to_unit([trial.params])[0]
        study.tell(trial, state=TrialState.FAIL)
        candidates = np.flatnonzero(unused)
        nearest = candidates[np.argmin(((pool["x"][candidates] - suggestion) ** 2).sum(axis=1))]
        if take(int(nearest)):
            break
    return chosen


def _features(pool: dict, exponents: bool) -> np.ndarray:
    """The GP's inputs: unit coordinates, and the squashed finite-depth exponents."""
    if not exponents:
        return pool["x"]
    e = pool["exponents_finite-depth"]
    e = np.where(np.isfinite(e), e, np.sign(np.nan_to_num(e, nan=-1.0)) * 1e6)  # NaN: collapse
    return np.column_stack([pool["x"], np.sign(e) * np.log1p(np.abs(e)) / SQUASH])


def _gp_search(pool: dict, stream: list[int], allowed: np.ndarray, target: float,
               exponents: bool) -> list[int]:
    """Bayesian optimization on the allowed pool points: ``STARTUP_GP`` points of ``stream``,
    then the unused point of highest expected improvement under a GP refitted each time."""
    features = _features(pool, exponents)
    unused = allowed.copy()
    chosen: list[int] = []
    for i in stream[:STARTUP_GP]:
        chosen.append(i)
        unused[i] = False
        if pool["y"][i] <= target:
            return chosen
    while unused.any():
        y = pool["y"][chosen]
        gp = _gaussian_process(features[chosen], y)
        candidates = np.flatnonzero(unused)
        mu, sd = gp.predict(features[candidates], return_std=True)
        sd = np.maximum(sd, 1e-12)
        best = y.min()
        z = (best - mu) / sd
        ei = (best - mu) * norm.cdf(z) + sd * norm.pdf(z)
        i = int(candidates[np.argmax(ei)])
        chosen.append(i)
        unused[i] = False
        if pool["y"][i] <= target:
            break
    return chosen


def _gaussian_process(x: np.ndarray, y: np.ndarray):
    """scikit-learn's GP regressor on standardized targets: a Matérn 5/2 kernel with one length
    per input times a signal variance, plus a noise variance, all fitted by maximum marginal
    likelihood (its L-BFGS-B, 2 restarts, seeded)."""
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    kernel = (ConstantKernel(1.0, (0.05, 20.0))
              * Matern(np.full(x.shape[1], 0.5), (0.02, 20.0), nu=2.5)
              + WhiteKernel(0.01, (1e-4, 1.0)))
    return GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=2,
                                    random_state=0).fit(x, y)


# --- 3. summary -----------------------------------------------------------------------------

def box_theory(path: Path, depth: int) -> dict:
    """The screen's verdicts on ``BOX_SAMPLE`` Halton points of the box (theory only), cached
    in ``path`` for the depth: the share that passes and how the rest fails."""
    if path.exists():
        stored = json.loads(path.read_text())
        if stored.get("depth") == depth and stored.get("points") == BOX_SAMPLE:
            return stored
    unit = qmc.Halton(d=len(INIT), scramble=True, seed=1).random(BOX_SAMPLE)
    points = []
    for row in unit:
        point = {}
        for name, u in zip(INIT, row):
            low, high, log = BOX[name]
            point[name] = math.exp(math.log(low) + u * math.log(high / low)) if log else low + u * (high - low)
        points.append(point)
    result = {"depth": depth, "points": BOX_SAMPLE, "tau": TAU}
    for definition in ("finite-depth", "asymptotic"):
        start = time.process_time()
        verdicts = Screen(depth=depth, definition=definition).check(points)
        a = np.array([v.lambda_a for v in verdicts])
        g = np.array([v.lambda_g for v in verdicts])
        result[definition] = {
            "passed": float(np.mean([v.passed for v in verdicts])),
            "passed_by_tau": {str(t): float(np.mean((np.abs(a) <= t) & (np.abs(g) <= t)))
                              for t in (1, 2, 3, 5, 8)},
            "collapse (L·λ_a < -τ)": float(np.mean(~(a >= -TAU))),
            "chaos (L·λ_a > τ)": float(np.mean(a > TAU)),
            "vanishing (L·λ_g < -τ)": float(np.mean(~(g >= -TAU))),
            "exploding (L·λ_g > τ)": float(np.mean(g > TAU)),
            "ms_per_point": 1000 * (time.process_time() - start) / BOX_SAMPLE}
    path.write_text(json.dumps(result, indent=1))
    return result


def unigram_loss() -> float:
    """Cross-entropy (nats/char) on the test split of the training split's character
    frequencies: what a model that learned nothing but them scores."""
    from sigprop.data import shakespeare

    corpus = shakespeare()
    counts = np.bincount(corpus.train, minlength=corpus.vocab_size) + 1.0
    return float(-np.log(counts / counts.sum())[corpus.test].mean())


def summarize(pool: dict, runs: list[dict], methods: list[str], theory: dict, settings: dict,
              pool_size: int) -> dict:
    y, cpu = pool["y"], pool["cpu"]
    best = int(np.argmin(y))
    target = float(y[best]) + MARGIN
    unigram = unigram_loss()
    summary: dict[str, Any] = {
        "settings": settings, "margin": MARGIN, "tau": TAU, "target": target,
        "pool": {"size": pool_size, "trained": len(y), "best": float(y[best]),
                 "best_params": pool["params"][best], "unigram_loss": unigram,
                 "cpu_seconds": float(cpu.sum()), "cpu_seconds_mean": float(cpu.mean()),
                 "cpu_seconds_median": float(np.median(cpu))},
        "theory": theory, "theory_mismatch": pool["theory_mismatch"], "code": _code_version(),
        "groups": {}, "expected": {}, "methods": {}, "runs": runs}
    diverged = pool["diverged"]
    groups = {"all": np.ones(len(y), dtype=bool),
              "passes (finite depth)": pool["passed_finite-depth"],
              "fails (finite depth)": ~pool["passed_finite-depth"],
              "passes (asymptotic)": pool["passed_asymptotic"]}
    for name, mask in groups.items():
        n = int(mask.sum())
        summary["groups"][name] = {
            "points": n, "diverged": int((diverged & mask).sum()),
            "unigram_or_worse": int(((y >= unigram) & mask).sum()),
            **{f"within_{m}": int(((y <= y[best] + m) & mask).sum()) for m in (0.05, 0.1, 0.25)},
            "median_loss": float(np.median(y[mask])) if n else float("nan"),
            "cpu_seconds_mean": float(cpu[mask].mean()) if n else float("nan")}
    hits = y <= target
    for name, mask in (("random", groups["all"]), ("screen", pool["passed_finite-depth"]),
                       ("screen-asymptotic", pool["passed_asymptotic"])):
        summary["expected"][name] = _expected(mask, hits)
    ratios = []
    rng = np.random.default_rng(0)
    for _ in range(BOOTSTRAP):
        sample = rng.integers(0, len(y), len(y))
        boot_hits = y[sample] <= y[sample].min() + MARGIN
        screen = _expected(pool["passed_finite-depth"][sample], boot_hits)["trainings"]
        ratios.append(screen / _expected(np.ones(len(y), bool), boot_hits)["trainings"])
    ratios = np.array(ratios)
    summary["expected"]["screen_over_random_bootstrap"] = {
        "median": float(np.median(ratios)), "q05": float(np.quantile(ratios, 0.05)),
        "q95": float(np.quantile(ratios, 0.95)), "share_infinite": float(np.mean(~np.isfinite(ratios)))}
    for method in methods:
        mine = [r for r in runs if r["method"] == method]
        trainings = np.array([r["trainings"] for r in mine], dtype=float)
        summary["methods"][method] = {
            "runs": len(mine), "reached": int(sum(r["reached"] for r in mine)),
            "trainings_mean": float(trainings.mean()),
            "trainings_se": float(trainings.std(ddof=1) / math.sqrt(len(mine))) if len(mine) > 1 else float("nan"),
            "trainings_median": float(np.median(trainings)),
            "cpu_seconds_mean": float(np.mean([r["cpu_seconds"] for r in mine])),
            "overhead_seconds_mean": float(np.mean([r["method_seconds"] + r["screen_seconds"]
                                                    for r in mine])),
            "candidates": mine[0]["candidates"] if mine else 0}
    expected_random = summary["expected"]["random"]["trainings"]
    base = {r["rep"]: r for r in runs if r["method"] == "random"}
    for method, stats in summary["methods"].items():
        stats["ratio_to_random_expected"] = stats["trainings_mean"] / expected_random
        if not base:
            continue
        stats["ratio_to_random"] = stats["trainings_mean"] / summary["methods"]["random"]["trainings_mean"]
        stats["cpu_ratio_to_random"] = (stats["cpu_seconds_mean"]
                                        / summary["methods"]["random"]["cpu_seconds_mean"])
        pairs = np.array([(r["trainings"], base[r["rep"]]["trainings"]) for r in runs
                          if r["method"] == method and r["rep"] in base], dtype=float)
        boot = pairs[rng.integers(0, len(pairs), (BOOTSTRAP, len(pairs)))]  # reps resampled
        boot_ratio = boot[..., 0].mean(axis=1) / boot[..., 1].mean(axis=1)
        stats["ratio_to_random_q05"] = float(np.quantile(boot_ratio, 0.05))
        stats["ratio_to_random_q95"] = float(np.quantile(boot_ratio, 0.95))
    return summary


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (plain JSON)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _code_version() -> str:
    """The commit the summary was made with (``-dirty``: with uncommitted changes)."""
    import subprocess

    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, text=True,
                              capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _expected(candidates: np.ndarray, hits: np.ndarray) -> dict:
    """Trainings to the first hit of a random order over the candidates: (n+1)/(h+1) for n
    candidates of which h hit (infinite when none does)."""
    n, h = int(candidates.sum()), int((candidates & hits).sum())
    return {"candidates": n, "hits": h, "trainings": (n + 1) / (h + 1) if h else math.inf}


def report(summary: dict) -> str:
    pool, theory, settings = summary["pool"], summary["theory"], summary["settings"]
    box = ", ".join(f"{k} ∈ [{lo:g}, {hi:g}]{' log' if log else ''}"
                    for k, (lo, hi, log) in settings["box"].items())
    t = settings["training"]
    lines = [
        "# The exponent screen in a wide box", "",
        f"Reference block at depth {settings['depth']}, d = {t['width']}, {t['steps']} Adam "
        f"steps; box: {box}.", "",
        "## The box in theory", "",
        f"Of {theory['points']} Halton points of the box (initialization knobs only; the screen "
        f"does not see lr):", ""]
    for definition in ("finite-depth", "asymptotic"):
        th = theory[definition]
        fails = ", ".join(f"{k} {v:.0%}" for k, v in th.items()
                          if k not in ("passed", "passed_by_tau", "ms_per_point"))
        by_tau = ", ".join(f"τ = {k}: {v:.0%}" for k, v in th["passed_by_tau"].items())
        lines.append(f"* {definition}: **{th['passed']:.1%} pass** |L·λ| <= {theory['tau']:g} "
                     f"({fails}; {th['ms_per_point']:.1f} ms per point). Pass rate by τ: {by_tau}.")
    lines += ["", "## The pool", "",
              f"{pool['trained']} of {pool['size']} Halton points trained "
              f"({pool['cpu_seconds']:.0f} CPU-s, {pool['cpu_seconds_mean']:.1f} per training, "
              f"median {pool['cpu_seconds_median']:.1f}). Best test loss {pool['best']:.4f} at "
              + ", ".join(f"{k} {v:.4g}" for k, v in pool["best_params"].items())
              + f"; target {summary['target']:.4f}. Unigram loss {pool['unigram_loss']:.3f}.",
              "", _shares(summary), "",
              "| points | n | diverged | >= unigram | within 0.05 (hits) | within 0.1 | "
              "within 0.25 | median loss | CPU-s per training |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, g in summary["groups"].items():
        lines.append(f"| {name} | {g['points']} | {g['diverged']} | {g['unigram_or_worse']} | "
                     f"{g['within_0.05']} | {g['within_0.1']} | {g['within_0.25']} | "
                     f"{g['median_loss']:.3f} | {g['cpu_seconds_mean']:.1f} |")
    expected = summary["expected"]
    boot = expected["screen_over_random_bootstrap"]
    lines += ["", "Exact expectation over random orders of the pool, (n+1)/(h+1) for n "
              "candidates with h hits:", ""]
    for name in ("random", "screen", "screen-asymptotic"):
        e = expected[name]
        lines.append(f"* {name}: {e['hits']} hits in {e['candidates']} candidates: "
                     f"{e['trainings']:.1f} trainings")
    lines.append(f"* screen / random {expected['screen']['trainings'] / expected['random']['trainings']:.2f}; "
                 f"bootstrap over the pool ({BOOTSTRAP}×): median {boot['median']:.2f}, "
                 f"90 % interval {boot['q05']:.2f}–{boot['q95']:.2f}"
                 + (f", the screen misses every hit in {boot['share_infinite']:.0%}"
                    if boot["share_infinite"] else ""))
    lines += ["", "## Searches", "",
              "Trainings until a training reaches the target (a run that exhausts its "
              "candidates without it counts its trainings and is flagged).", "",
              "| method | runs | reached | trainings, mean ± se | median | / random (90 % over "
              "reps) | / random's expectation | CPU-s of trainings | / random | method's own s |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    nan = float("nan")
    for method, m in summary["methods"].items():
        lines.append(f"| {method} | {m['runs']} | {m['reached']} | {m['trainings_mean']:.1f} ± "
                     f"{m['trainings_se']:.1f} | {m['trainings_median']:.0f} | "
                     f"{m.get('ratio_to_random', nan):.2f} ({m.get('ratio_to_random_q05', nan):.2f}"
                     f"–{m.get('ratio_to_random_q95', nan):.2f}) | "
                     f"{m['ratio_to_random_expected']:.2f} | {m['cpu_seconds_mean']:.0f} | "
                     f"{m.get('cpu_ratio_to_random', nan):.2f} | "
                     f"{m['overhead_seconds_mean']:.1f} |")
    lines += ["", f"Target: <= 0.33 of random search's trainings. \"/ random's expectation\": "
              f"over the exact mean of a random order, {expected['random']['trainings']:.1f}. A "
              "run that did not reach the target (a screen that rejects every hit) counts all "
              "its candidates. TPE's suggestions are mapped to the nearest unused (allowed) pool "
              "point and TPE is told that point (tabular benchmark); the GP scores the pool "
              "points themselves."]
    return "\n".join(lines)


def _shares(summary: dict) -> str:
    """The pool's headline shares: passes, diverged, no better than unigram, hits."""
    g = summary["groups"]
    n = g["all"]["points"]
    passes = g["passes (finite depth)"]
    mismatch = summary["theory_mismatch"]
    return (f"Of the pool: {passes['points'] / n:.0%} pass the screen, "
            f"{g['all']['diverged'] / n:.0%} diverged, {g['all']['unigram_or_worse'] / n:.0%} "
            f"end no better than the unigram loss, {g['all']['within_0.25'] / n:.0%} within 0.25 "
            f"of the best, {g['all']['within_0.05'] / n:.0%} within 0.05 (hits; "
            f"{passes['within_0.05']} of the {g['all']['within_0.05']} pass the screen). "
            f"Screen totals vs the theory columns stored with the trainings: max difference "
            f"{mismatch:.2g}; code {summary['code']}.")


def plot(summary: dict, path: Path) -> None:
    """Left: best loss so far against trainings, mean over reps (a run that stopped keeps its
    last value). Right: the share of reps at the target after n trainings."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {"random": ("tab:gray", "--"), "screen": ("tab:green", "-"),
              "screen-asymptotic": ("tab:olive", "-."), "tpe": ("tab:blue", ":"),
              "screen-tpe": ("tab:cyan", "-"), "gp": ("tab:red", ":"),
              "gp-exp": ("tab:orange", "--"), "screen-gp": ("tab:purple", "-")}
    runs = [r for r in summary["runs"] if r["losses"]]  # a screen may pass no pool point
    length = max(len(r["losses"]) for r in runs)
    steps = np.arange(1, length + 1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4))
    for method, stats in summary["methods"].items():
        color, style = styles[method]
        mine = [r for r in runs if r["method"] == method]
        if not mine:
            continue
        curves = []
        for run in mine:
            best = np.minimum.accumulate(run["losses"])
            curves.append(np.concatenate([best, np.full(length - len(best), best[-1])]))
        ratio = stats.get("ratio_to_random", float("nan"))
        left.step(steps, np.mean(curves, axis=0), where="post", color=color, ls=style, lw=2,
                  label=f"{method}: {stats['trainings_mean']:.1f} trainings ({ratio:.2f} of random)")
        reached = [np.mean([r["reached"] and r["trainings"] <= n for r in mine]) for n in steps]
        right.step(steps, reached, where="post", color=color, ls=style, lw=2, label=method)
    target = summary["target"]
    left.axhline(target, color="k", lw=0.8,
                 label=f"target: best of the pool {summary['pool']['best']:.3f} + {MARGIN}")
    left.set_ylim(target - 0.1, target + 0.6)
    for axis in (left, right):
        axis.set_xscale("log")
        axis.set_xlabel("trainings")
    left.set_ylabel("best test loss so far (nats/char), mean over reps")
    left.legend(fontsize=7)
    right.set_ylabel("share of reps at the target")
    right.set_ylim(-0.02, 1.02)
    right.legend(fontsize=7, loc="upper left")
    s = summary["settings"]
    reps = len({r["rep"] for r in runs})
    fig.suptitle(f"Reference block, depth {s['depth']}: α, σ_w, σ_b, σ_A, σ_2 (scales over two "
                 f"decades), lr (a decade); pool of {summary['pool']['trained']}, {reps} reps; "
                 f"screen passes {summary['groups']['passes (finite depth)']['points']}",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)


if __name__ == "__main__":
    main()
