"""Exponent-guided search against random search and TPE: trainings needed to reach a good loss.

    python benchmarks/screen_search.py [--out results/screen_search] [--reps 10] [--cap 48]
                                       [--workers 2] [--best-only] [--methods screen,random,…]
    python benchmarks/screen_search.py --plot-only      # summary and figure from stored runs

The box of README "Beyond one slice": α ∈ [0.05, 0.95], σ_w ∈ [0.3, 6], σ_b ∈ [0, 2],
σ_A ∈ [0.2, 3], the reference block at depth 16, trained at the default scale of `sigprop
sweep` (d = 64, context 64, batch 32, 400 Adam steps, compiled; one trial = one run of
``sigprop.experiment.trial.evaluate``, exponents at initialization included).

1. Target. The 48-point search of the README is the scrambled Halton sequence of
   `--samples 48 --sample-seed 0` (regenerated here with ``sweep_spec``). All 48 are retrained
   on this machine (``--best-only``: only the one nearest the README's reported best); the
   target is the best of them + 0.05 nats/char. The 48 also say what the screen can gain at
   most: with rejection sampling, trainings(screen) / trainings(random) = P(pass) / P(pass |
   hit) in expectation (hit: a loss within the target).
2. Searches, each an Optuna ``study.optimize`` with a plain objective, stopped at the target
   or after ``--cap`` trainings, ``--reps`` seeds per method:
   * screen: ``ScreenedSampler(Screen(), box, RandomSampler(seed))``, the default screen
     (finite depth, |L·λ_a| ≤ 3, |L·λ_g| ≤ 3; rejected points cost no training);
   * random: ``RandomSampler(seed)``;
   * tpe: ``TPESampler(seed)`` with Optuna's defaults (10 random start-up trials);
   * screen-asymptotic: the screen on L times the asymptotic exponents (the columns
     ``sigprop analyze`` scores), |L·λ| ≤ 3.
   Within a repetition every method draws from the same random stream (common random
   numbers: the screen proposes the passing draws of the random search in order, TPE starts
   with its first 10), so their differences are not blurred by luck of the draw; the seeds
   differ between repetitions. A configuration trained once is not trained again: the loss is
   a deterministic function of the configuration on one machine, and a repeated one takes
   the stored result with its CPU seconds (``cached`` in the log).
3. Per run: trainings (and CPU seconds, the screen's own included) to the target; means per
   method; the ratio screen / random. The figure: best loss so far against trainings.

Every training is stored, as it finishes, in ``OUT/screen_search.sqlite`` (the sweep's SQLite
storage; one study per run, the reference and a study of all trainings): a killed benchmark
restarts where it stopped (a training interrupted mid-way is marked FAIL and not counted; the
sampler of a resumed run is reseeded with the number of its trials, so it does not repeat its
first draws, which breaks the common random numbers of that run only). A run that reaches the
cap without the target counts as the cap in the means (flagged ">").
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from sigprop.experiment.trial import sweep_spec
from sigprop.sweep import normalize_storage
from sigprop.experiment.screen import Screen
from sigprop.sweep.screen import ScreenedSampler, screen_cost
from sigprop.sweep.storage import connect

BOX = {"alpha": (0.05, 0.95), "sigma_w": (0.3, 6.0), "sigma_b": (0.0, 2.0), "sigma_A": (0.2, 3.0)}
SAMPLE = [f"{name.replace('_', '-').lower()}={low}:{high}" for name, (low, high) in BOX.items()]
TRAINING = dict(width=64, context=64, batch=32, steps=400, lr=1e-3, data="shakespeare",
                compile=True)  # the defaults of `sigprop sweep`
DEPTH = 16
MARGIN = 0.05  # nats/char above the reference loss that count as reached
README_BEST = {"alpha": 0.32, "sigma_w": 1.73, "sigma_b": 0.31, "sigma_A": 2.54}  # loss 2.618
METHODS = ("random", "screen", "tpe", "screen-asymptotic")  # in the order they run
ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "screen_search")
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--cap", type=int, default=48, help="trainings per run at most")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--best-only", action="store_true",
                        help="retrain only the README's best of the 48 Halton points")
    parser.add_argument("--plot-only", action="store_true")
    parser.add_argument("--figure", type=Path,
                        default=ROOT / "docs" / "images" / "screen_search.png")
    args = parser.parse_args()
    methods = args.methods.split(",")
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"--methods: unknown {unknown}; choose from {', '.join(METHODS)}")
    url = normalize_storage(None, args.out / "screen_search.sqlite")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    fixed = sweep_spec(None, {}, [], SAMPLE, 48, 0, depth=DEPTH, **TRAINING).fixed
    runs = [(method, rep) for method in methods for rep in range(args.reps)]
    if not args.plot_only:
        # kill PID stops the workers too: SystemExit leaves the pool's block, which ends them
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        context = multiprocessing.get_context("spawn")
        with context.Pool(args.workers, initializer=_worker_setup) as pool:
            points = reference_points(not args.best_only)
            print(f"reference: training {len(points)} of the 48 Halton points", flush=True)
            for line in pool.imap_unordered(_train_reference, [(url, fixed, p) for p in points]):
                print(line, flush=True)
            target = reference_loss(url) + MARGIN
            print(f"target: test loss <= {target:.4f}", flush=True)
            jobs = [(url, fixed, method, rep, target, args.cap) for method, rep in runs]
            for line in pool.imap_unordered(_search, jobs):
                print(line, flush=True)
    summary = summarize(url, runs, args.cap)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(report(summary))
    plot(summary, args.figure)
    print(f"wrote {args.figure} and {args.out / 'summary.json'}")


def reference_points(full: bool) -> list[dict]:
    """The 48 Halton points of the README's search, or the one nearest its reported best."""
    points = sweep_spec(None, {}, [], SAMPLE, 48, 0, depth=DEPTH).sample_points()
    if full:
        return points
    scale = {k: high - low for k, (low, high) in BOX.items()}
    best = min(points, key=lambda p: sum(((p[k] - v) / scale[k]) ** 2
                                         for k, v in README_BEST.items()))
    assert all(abs(best[k] - v) < 0.01 for k, v in README_BEST.items()), best
    return [best]


def reference_loss(url: str) -> float:
    study = optuna.load_study(study_name="reference", storage=connect(url))
    return min(t.value for t in study.get_trials(states=(TrialState.COMPLETE,)))


def _worker_setup() -> None:
    import torch

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _train(url: str, fixed: dict, params: dict) -> tuple[float, dict]:
    """One trial of the sweep: the objective value (test loss, or log V if the run diverged)
    and everything it recorded, with its CPU and wall seconds; a configuration trained before
    (in any run) is not trained again (``cached``)."""
    from sigprop.experiment.trial import evaluate

    log = optuna.create_study(study_name="trainings", storage=connect(url), load_if_exists=True)
    for trial in log.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if trial.params == params:
            return float(trial.value), {**trial.user_attrs, "cached": True}
    cpu, wall = time.process_time(), time.perf_counter()
    result = evaluate([{**fixed, **params}])[0]
    result.pop("loss_curve", None)
    result.update(cpu_seconds=time.process_time() - cpu, wall_seconds=time.perf_counter() - wall,
                  pid=os.getpid())
    complete = result["status"] == "complete"
    value = float(result["test_loss"] if complete else math.log(result["vocab_size"]))
    attrs = {k: v for k, v in result.items()
             if isinstance(v, (int, float, str)) and not (isinstance(v, float) and math.isnan(v))}
    log.add_trial(optuna.trial.create_trial(
        params=params, distributions={k: FloatDistribution(*BOX[k]) for k in params},
        value=value, user_attrs=attrs))
    return value, {**attrs, "cached": False}


def _train_reference(job: tuple) -> str:
    url, fixed, params = job
    study = optuna.create_study(study_name="reference", storage=connect(url), load_if_exists=True)
    done = [t.params for t in study.get_trials(states=(TrialState.COMPLETE,))]
    if params in done:
        return f"reference {_point(params)}: done before"
    value, attrs = _train(url, fixed, params)
    study.add_trial(optuna.trial.create_trial(
        params=params, distributions={k: FloatDistribution(*BOX[k]) for k in params},
        value=value, user_attrs=attrs))
    return f"reference {_point(params)}: test loss {value:.4f} ({attrs['cpu_seconds']:.0f} CPU-s)"


def _point(params: dict) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in params.items())


def _search(job: tuple) -> str:
    """Run (or resume) one search until its best loss reaches ``target`` or ``cap`` trainings."""
    url, fixed, method, rep, target, cap = job
    name = f"{method}-{rep}"
    storage = connect(url)
    probe = optuna.create_study(study_name=name, storage=storage, load_if_exists=True)
    for trial in probe.get_trials(states=(TrialState.RUNNING,)):  # killed mid-training
        probe.tell(trial.number, state=TrialState.FAIL)
    trials = probe.get_trials(states=(TrialState.COMPLETE,))
    if len(trials) >= cap or any(t.value <= target for t in trials):
        return f"{name}: already finished ({len(trials)} trainings)"
    seed = 1000 * rep + len(probe.get_trials())  # reseeded on resume
    study = optuna.load_study(study_name=name, storage=storage, sampler=_sampler(method, seed))
    space = {k: FloatDistribution(*bounds) for k, bounds in BOX.items()}

    def objective(trial: optuna.Trial) -> float:
        params = {k: trial.suggest_float(k, d.low, d.high) for k, d in space.items()}
        value, attrs = _train(url, fixed, params)
        for key, attr in attrs.items():
            trial.set_user_attr(key, attr)
        n = len(study.get_trials(states=(TrialState.COMPLETE,))) + 1
        print(f"{name} training {n}: loss {value:.4f} at {_point(params)} "
              f"({attrs['cpu_seconds']:.0f} CPU-s{', cached' if attrs['cached'] else ''})",
              flush=True)
        return value

    def stop(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        done = study.get_trials(states=(TrialState.COMPLETE,))
        if len(done) >= cap or min(t.value for t in done) <= target:
            study.stop()

    study.optimize(objective, n_trials=cap - len(trials), callbacks=[stop])
    done = study.get_trials(states=(TrialState.COMPLETE,))
    return f"{name}: best {min(t.value for t in done):.4f} after {len(done)} trainings"


def _sampler(method: str, seed: int) -> optuna.samplers.BaseSampler:
    if method.startswith("screen"):
        space = {k: FloatDistribution(*bounds) for k, bounds in BOX.items()}
        definition = "asymptotic" if method == "screen-asymptotic" else "finite-depth"
        return ScreenedSampler(Screen(depth=DEPTH, definition=definition), space,
                               optuna.samplers.RandomSampler(seed))
    if method == "random":
        return optuna.samplers.RandomSampler(seed)
    return optuna.samplers.TPESampler(seed=seed)


def summarize(url: str, runs: list[tuple[str, int]], cap: int) -> dict:
    """Per run: losses in training order, trainings and CPU seconds to the target."""
    storage = connect(url)
    reference = optuna.load_study(study_name="reference", storage=storage)
    ref_trials = reference.get_trials(states=(TrialState.COMPLETE,))
    best_ref = min(ref_trials, key=lambda t: t.value)
    target = best_ref.value + MARGIN
    trainings = optuna.load_study(study_name="trainings", storage=storage)
    result = {"reference": {"points": len(ref_trials), "loss": best_ref.value,
                            "params": best_ref.params}, "target": target, "cap": cap,
              "halton": _halton_gain(ref_trials, target), "runs": [],
              "cpu_seconds_spent": float(sum(t.user_attrs["cpu_seconds"] for t in
                                             trainings.get_trials(states=(TrialState.COMPLETE,))))}
    for method, rep in runs:
        try:
            study = optuna.load_study(study_name=f"{method}-{rep}", storage=storage)
        except KeyError:
            continue
        trials = sorted(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.number)
        if not trials:
            continue
        losses = [t.value for t in trials]
        cpu = np.cumsum([t.user_attrs["cpu_seconds"] for t in trials])
        hit = next((i for i, loss in enumerate(losses) if loss <= target), None)
        cost = screen_cost(study)
        result["runs"].append({
            "method": method, "rep": rep, "losses": losses,
            "reached": hit is not None, "finished": hit is not None or len(losses) >= cap,
            "trainings": (hit + 1) if hit is not None else len(losses),
            "cpu_seconds": float(cpu[hit if hit is not None else -1]) + cost["seconds"],
            "screen_seconds": cost["seconds"], "screen_candidates": cost["candidates"]})
    return result


def _halton_gain(trials: list, target: float) -> dict:
    """On the retrained Halton points, per screen: the share that passes, the share of the
    hits (loss within the target) that passes, and the expected trainings ratio screen / random
    of rejection sampling, P(pass) / P(pass | hit)."""
    hits = np.array([t.value <= target for t in trials])
    gain = {"points": len(trials), "hits": int(hits.sum())}
    for definition in ("finite-depth", "asymptotic"):
        verdicts = Screen(depth=DEPTH, definition=definition).check([t.params for t in trials])
        passed = np.array([v.passed for v in verdicts])
        share = float(passed.mean())
        of_hits = float(passed[hits].mean()) if hits.any() else float("nan")
        gain[definition] = {"passed": int(passed.sum()), "hits_passed": int(passed[hits].sum()),
                            "expected_ratio": share / of_hits if of_hits else float("nan"),
                            "mean_loss_passed": float(np.mean([t.value for t, ok in
                                                               zip(trials, passed) if ok]))}
    return gain


def report(summary: dict) -> str:
    ref = summary["reference"]
    lines = [f"reference: best of {ref['points']} retrained Halton point(s) {ref['loss']:.4f} at "
             + ", ".join(f"{k} {v:.3f}" for k, v in ref["params"].items())
             + f"; target {summary['target']:.4f}", "",
             *_halton_lines(summary["halton"]), "",
             f"{'method':17s} {'rep':>3s} {'trainings':>10s} {'CPU-s':>8s} {'screen s':>9s} "
             f"{'candidates':>10s} {'best':>7s}"]
    means = {}
    for run in summary["runs"]:
        mark = "" if run["reached"] else (">" if run["finished"] else "…")
        lines.append(f"{run['method']:17s} {run['rep']:3d} {mark + str(run['trainings']):>10s} "
                     f"{run['cpu_seconds']:8.0f} {run['screen_seconds']:9.2f} "
                     f"{run['screen_candidates']:10d} {min(run['losses']):7.4f}")
        means.setdefault(run["method"], []).append(run)
    lines.append("")
    for method, runs in means.items():
        trainings = np.mean([r["trainings"] for r in runs])
        cpu = np.mean([r["cpu_seconds"] for r in runs])
        censored = sum(not r["reached"] for r in runs)
        lines.append(f"{method:17s} mean {trainings:5.1f} trainings, {cpu:6.0f} CPU-s over "
                     f"{len(runs)} runs" + (f" ({censored} without the target: counted as "
                                            "their trainings so far)" if censored else ""))
    if "screen" in means and "random" in means:
        ratio = (np.mean([r["trainings"] for r in means["screen"]])
                 / np.mean([r["trainings"] for r in means["random"]]))
        cpu_ratio = (np.mean([r["cpu_seconds"] for r in means["screen"]])
                     / np.mean([r["cpu_seconds"] for r in means["random"]]))
        lines.append(f"screen / random: {ratio:.2f} of the trainings, {cpu_ratio:.2f} of the CPU "
                     "seconds (target <= 0.33)")
    lines.append(f"CPU seconds actually spent on trainings (repeats not retrained): "
                 f"{summary['cpu_seconds_spent']:.0f}")
    return "\n".join(lines)


def _halton_lines(gain: dict) -> list[str]:
    lines = [f"{gain['hits']} of the {gain['points']} retrained Halton points reach the target"]
    for definition in ("finite-depth", "asymptotic"):
        g = gain[definition]
        lines.append(f"  screen ({definition}, |L·λ| <= 3): passes {g['passed']} of "
                     f"{gain['points']} (mean loss {g['mean_loss_passed']:.3f}) and "
                     f"{g['hits_passed']} of the {gain['hits']} hits: expected trainings ratio "
                     f"screen / random {g['expected_ratio']:.2f}")
    return lines


def plot(summary: dict, path: Path) -> None:
    """Left: best loss so far against trainings, per run (thin) and the mean over runs
    (thick; a run that stopped keeps its last value). Right: the share of runs that have
    reached the target after n trainings."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {"random": ("tab:gray", "--"), "tpe": ("tab:blue", ":"),
              "screen": ("tab:green", "-"), "screen-asymptotic": ("tab:olive", "-.")}
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    length = max(len(r["losses"]) for r in summary["runs"])
    steps = np.arange(1, length + 1)
    for method, (color, style) in styles.items():
        runs = [r for r in summary["runs"] if r["method"] == method]
        if not runs:
            continue
        curves = []
        for run in runs:
            best = np.minimum.accumulate(run["losses"])
            left.step(np.arange(1, len(best) + 1), best, where="post", color=color, ls=style,
                      alpha=0.3, lw=0.8)
            curves.append(np.concatenate([best, np.full(length - len(best), best[-1])]))
        mean_trainings = np.mean([r["trainings"] for r in runs])
        left.step(steps, np.mean(curves, axis=0), where="post", color=color, ls=style, lw=2.2,
                  label=f"{method}: {mean_trainings:.1f} trainings to target (mean of {len(runs)})")
        reached = [np.mean([r["reached"] and r["trainings"] <= n for r in runs]) for n in steps]
        right.step(steps, reached, where="post", color=color, ls=style, lw=2.2, label=method)
    left.axhline(summary["target"], color="k", lw=0.8,
                 label=f"target: best of the Halton 48, {summary['reference']['loss']:.3f}, "
                       f"+ {MARGIN}")
    left.set_ylim(summary["target"] - 0.08, summary["target"] + 0.35)
    left.set_xlabel("trainings")
    left.set_ylabel("best test loss so far (nats/char)")
    left.legend(fontsize=7)
    right.set_xlabel("trainings")
    right.set_ylabel("share of runs at the target")
    right.set_ylim(-0.02, 1.02)
    right.legend(fontsize=8, loc="lower right")
    reps = len({r["rep"] for r in summary["runs"]})
    fig.suptitle(f"α, σ_w, σ_b, σ_A at depth 16: searches until within {MARGIN} nats/char of the "
                 f"best, {reps} seeds per method", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)


if __name__ == "__main__":
    main()
