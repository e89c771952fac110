"""Trainable depth: does the reference transformer train iff L ≲ c·ξ (Schoenholz et al. 2017)?

    python benchmarks/trainable_depth.py [--out results/trainable_depth] [--depths 8,16,32,64,128]
        [--width 32] [--steps 200] [--batch 16] [--workers 2]
        [--alphas 0.1,0.3,0.5,0.7,0.9] [--sigma-ws 0.5,1,2,3,4,6,8] [--sigma-b 1]
    python benchmarks/trainable_depth.py --plot-only   # summary and figure from the stored studies

Run on demand (not in CI): estimated 85 CPU-minutes, about 45 minutes on 2 idle cores, from
timed steps (CPU s per configuration and Adam step at width 32, batch 16 × 64, one thread:
0.024, 0.047, 0.094, 0.18, 0.36 at L = 8, 16, 32, 64, 128, plus about 3 CPU s per
configuration for the exponents each trial measures at initialization).

Schoenholz, Gilmer, Ganguli and Sohl-Dickstein ("Deep Information Propagation", ICLR 2017)
found that deep tanh networks train iff L ≲ 6 ξ_c, ξ_c = −1/log χ_1. Here the same test for
transformers, with the depth scales of the two exponents of Cowsik et al. (2024) from the
wide-limit theory (``sigprop.exponents``: the reference block, bidirectional maps, n = 16
tokens, asymptotic per-layer rates):

    ξ_a = 1/|λ_a|   (token differences near collapse grow like e^{λ_a L}),
    ξ_g = 1/|λ_g|   (squared gradients grow like e^{λ_g L}),   ξ = min(ξ_a, ξ_g).

Training. The reference block (pre-RMSNorm, residuals sqrt(1 − α²) X + α f(N X), tanh MLP) at
σ_b fixed, over the grid --alphas × --sigma-ws, 1 seed, is trained as a causal character LM on
Shakespeare at each depth of --depths by ``sigprop.run_sweep`` (one Optuna study per depth in
--out/sweep.sqlite, named after the settings; a rerun resumes, and finished depths are kept):
width --width, context --context, batch --batch, --steps Adam steps at --lr, no compile, the
same data order for every configuration. The default σ_w grid has 8 rather than 0.25 (which
differs little from 0.5): at σ_b = 1 only σ_w ≳ 4 is chaotic (λ_a > 0). Each trial also
stores the exponents sigprop measured on the causal LM's layers at initialization (d = 128,
2 seeds), used as a second predictor.

"Trains". The loss a model reaches without using its input is the unigram cross-entropy: on the
test windows sigprop evaluates (the first 64 windows of the test split) that is the cross-entropy
of their targets under the training split's character frequencies, 3.61 nats/char at context 64
(not the split's unigram entropy 3.34 = ``CharLM().chance``: those 4 096 characters are not
typical of the corpus). A configuration trains iff its final test loss is at least --margin
(0.3) nats/char below that plateau; with ``--criterion train`` the training loss (mean over the
last 10 % of the steps) is compared with ``CharLM().chance`` instead. A diverged run does not
train. The summary reports how far the losses are from the threshold (is it a clean split?) and
how often the two criteria agree.

The rule. "Trains iff L ≤ c·ξ" is "trains iff L·|λ| ≤ c": one threshold on the total exponent.
For each predictor c is the threshold of maximal accuracy over all (configuration, depth) points
(the widest interval of best thresholds, its geometric middle), with false positives (predicted
to train, did not) and negatives, a bootstrap interval over points (--bootstrap resamples) and
leave-one-depth-out (c fitted on four depths, accuracy on the fifth). Against: Schoenholz's
c = 6, the majority class, and the best depth-only rule "trains iff L ≤ L0". Separately for the
two sides of each exponent (ordered/chaotic, vanishing/exploding), and the two-threshold rule
"L·|λ_a| ≤ c_a and L·|λ_g| ≤ c_g". ξ = ∞ (λ = 0) always predicts "trains"; undefined exponents
(NaN) are left out of that predictor and counted.

Writes --out/summary.md, --out/summary.json, --out/timings.json (wall and CPU seconds per depth)
and the figure --image (default docs/images/trainable_depth.png): one panel per depth over
(α, σ_w), each configuration marked trained or not (colour: final test loss), with the curves
L = c·ξ_a and L = c·ξ_g (the contours |λ| = c/L of a dense ``sigprop.phase_diagram`` grid) for
the fitted c and for c = 6; the last panel is the accuracy against c.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SCHOENHOLZ_C = 6.0
EVAL_WINDOWS = 64       # TrainSettings.eval_windows: the held-out windows a sweep evaluates
PREDICTORS = {          # name: (columns of λ, label)
    "xi_a": (("lambda_a",), "ξ_a = 1/|λ_a| (theory)"),
    "xi_g": (("lambda_g",), "ξ_g = 1/|λ_g| (theory)"),
    "xi_min": (("lambda_a", "lambda_g"), "ξ = min(ξ_a, ξ_g) (theory)"),
    "xi_a_depth": (("lambda_a_depth_theory",), "ξ_a from λ_a^(L) (finite-depth theory)"),
    "xi_g_depth": (("lambda_g_depth_theory",), "ξ_g from λ_g^(L) (finite-depth theory)"),
    "xi_a_measured": (("lambda_a_measured",), "ξ_a measured on the causal LM at init"),
    "xi_g_measured": (("lambda_g_measured",), "ξ_g measured on the causal LM at init"),
}
SIDES = {"lambda_a": ("ordered (λ_a < 0)", "chaotic (λ_a > 0)"),
         "lambda_g": ("vanishing (λ_g < 0)", "exploding (λ_g > 0)")}


# ----------------------------------------------------------------------------- settings

@dataclass(frozen=True)
class Settings:
    """What every training of the benchmark shares (a study per depth is named after it)."""

    width: int
    context: int
    batch: int
    steps: int
    lr: float
    sigma_b: float
    alphas: tuple[float, ...]
    sigma_ws: tuple[float, ...]

    def study(self, depth: int) -> str:
        return (f"trainable-depth-L{depth}-d{self.width}-T{self.context}-B{self.batch}"
                f"-S{self.steps}-lr{self.lr:g}-sb{self.sigma_b:g}")

    def grid(self) -> list[str]:
        return [f"alpha={','.join(f'{a:g}' for a in self.alphas)}",
                f"sigma_w={','.join(f'{w:g}' for w in self.sigma_ws)}", "seed=0"]

    @property
    def configurations(self) -> int:
        return len(self.alphas) * len(self.sigma_ws)


def numbers(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(","))


# ------------------------------------------------------------------------ theory, chance

def theory(settings: Settings) -> dict[tuple[float, float], dict[str, float]]:
    """λ_a, λ_g (asymptotic, per layer) of each grid point; NaN where undefined."""
    import sigprop

    table = {}
    for alpha in settings.alphas:
        for sigma_w in settings.sigma_ws:
            e = sigprop.exponents(alpha=alpha, sigma_w=sigma_w, sigma_b=settings.sigma_b).asymptotic
            table[alpha, sigma_w] = {"lambda_a": float(e.lambda_a), "lambda_g": float(e.lambda_g)}
    return table


def plateaus(context: int) -> dict[str, float]:
    """The losses of the best input-blind prediction (the training split's unigram):
    "train" on the training split (``CharLM().chance``), "test" on the evaluated test windows."""
    from sigprop.data import evaluation_windows, shakespeare
    from sigprop.train.tasks import CharLM

    corpus = shakespeare()
    counts = np.bincount(corpus.train, minlength=corpus.vocab_size).astype(float)
    log_p = np.log(np.maximum(counts / counts.sum(), 1e-300))
    _, targets = evaluation_windows(corpus.split("test"), context, EVAL_WINDOWS)
    return {"train": CharLM(context=context, corpus=corpus).chance,
            "test": float(-log_p[targets.numpy().ravel()].mean())}


# ------------------------------------------------------------------------------ training

def finished(settings: Settings, depth: int, out: Path) -> bool:
    """Whether this depth's study holds a finished trial for every configuration."""
    from sigprop.sweep import normalize_storage, sweep_counts

    try:
        url = normalize_storage(str(out / "sweep.sqlite"), out)
        counts = sweep_counts(url, settings.study(depth))
    except ValueError:  # no such study yet
        return False
    return counts["total"] == settings.configurations == counts["complete"]


def train_depth(settings: Settings, depth: int, out: Path, workers: int) -> dict[str, float]:
    """One depth's sweep (resumes a stored one); its wall and CPU seconds (worker processes)."""
    import sigprop

    n = settings.configurations
    rounds = math.ceil(n / (workers * 8))            # batches of ≤ 8 trials, even over workers
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    sweep = sigprop.run_sweep(
        None, grid=settings.grid(), depth=depth, width=settings.width, context=settings.context,
        batch=settings.batch, steps=settings.steps, lr=settings.lr, data="shakespeare",
        compile=False, storage=str(out / "sweep.sqlite"), study=settings.study(depth),
        out=out, workers=workers, batch_size=math.ceil(n / (workers * rounds)),
        sigma_b=settings.sigma_b, device="cpu")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": sweep.seconds, "cpu_s": cpu, "configurations": sweep.configurations}


def collect(settings: Settings, depths: list[int], out: Path, lambdas: dict,
            plateau: dict[str, float], criterion: str, margin: float) -> list[dict]:
    """One row per finished (configuration, depth): losses, exponents, whether it trained."""
    from sigprop.sweep import normalize_storage, trials_frame

    url = normalize_storage(str(out / "sweep.sqlite"), out / "sweep.sqlite")
    rows = []
    for depth in depths:
        try:
            frame = trials_frame(url, settings.study(depth))
        except ValueError:
            continue  # this depth was not trained yet
        for record in frame.to_dict("records"):
            if record.get("state") != "COMPLETE" or record.get("status") not in ("complete",
                                                                                   "diverged"):
                continue
            key = (float(record["alpha"]), float(record["sigma_w"]))
            row = {"depth": depth, "alpha": key[0], "sigma_w": key[1], **lambdas[key],
                   "status": record["status"]}
            for name in ("train_loss", "test_loss", "lambda_a_theory", "lambda_g_theory",
                         "lambda_a_depth_theory", "lambda_g_depth_theory",
                         "lambda_a_measured", "lambda_g_measured"):
                row[name] = _float(record.get(name))
            loss = row["test_loss"] if criterion == "test" else row["train_loss"]
            row["gap"] = plateau[criterion] - loss            # NaN if diverged
            row["trains"] = bool(row["status"] == "complete" and row["gap"] >= margin)
            other = "train" if criterion == "test" else "test"
            other_loss = row[f"{other}_loss"]
            row["trains_other"] = bool(row["status"] == "complete"
                                       and plateau[other] - other_loss >= margin)
            rows.append(row)
    return rows


def _float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


# -------------------------------------------------------------------------- the rule's fit

def totals(rows: list[dict], predictor: str) -> np.ndarray:
    """L·|λ| = L/ξ of each row for a predictor (the largest |λ| of its columns; NaN if any
    column is undefined; λ = ±∞ gives ∞)."""
    columns = PREDICTORS[predictor][0]
    values = np.array([[abs(r[c]) for c in columns] for r in rows], dtype=float)
    depth = np.array([r["depth"] for r in rows], dtype=float)
    return depth * values.max(axis=1) if len(rows) else np.zeros(0)


def fit_threshold(t: np.ndarray, trained: np.ndarray) -> dict:
    """The threshold c of "trains iff t ≤ c" with the best accuracy: of the intervals between
    consecutive distinct values of t with the best accuracy, the widest in log t; c is its
    geometric middle (an end if the interval is open: everything, or nothing, predicted to
    train)."""
    keep = ~np.isnan(t)
    t, trained = t[keep], trained[keep]
    if not t.size:
        return {"c": math.nan, "points": 0}
    edges = np.unique(t[np.isfinite(t)])
    bounds = np.unique(np.concatenate([[0.0], edges, [math.inf]]))
    best, choice = -1.0, None
    for low, high in zip(bounds[:-1], bounds[1:]):        # c anywhere in [low, high)
        accuracy = float(np.mean((t <= low) == trained))  # t = 0 (ξ = ∞) always "trains"
        # ties go to the widest finite interval (the largest margin), open ones last
        width = math.log(high / low) if 0 < low and math.isfinite(high) else -1.0
        if accuracy > best + 1e-12 or (abs(accuracy - best) <= 1e-12 and width > choice[2]):
            best, choice = accuracy, (low, high, width)
    low, high, _ = choice
    if low == 0:
        c = high / 2                      # nothing predicted to train
    elif not math.isfinite(high):
        c = low                           # everything (finite) predicted to train
    else:
        c = math.sqrt(low * high)
    return {"c": c, "interval": [low, high], **confusion(t, trained, c)}


def confusion(t: np.ndarray, trained: np.ndarray, c: float) -> dict:
    keep = ~np.isnan(t)
    predicted, trained = t[keep] <= c, trained[keep]
    return {"accuracy": float(np.mean(predicted == trained)) if predicted.size else math.nan,
            "false_positives": int(np.sum(predicted & ~trained)),
            "false_negatives": int(np.sum(~predicted & trained)),
            "points": int(predicted.size), "left_out": int(np.sum(~keep))}


def bootstrap(t: np.ndarray, trained: np.ndarray, repeats: int, seed: int = 0) -> list[float]:
    """2.5, 50 and 97.5 percentiles of the fitted c over resamples of the points."""
    keep = ~np.isnan(t)
    t, trained = t[keep], trained[keep]
    if not t.size or repeats < 1:
        return [math.nan] * 3
    generator = np.random.default_rng(seed)
    fits = []
    for _ in range(repeats):
        pick = generator.integers(0, t.size, t.size)
        fits.append(fit_threshold(t[pick], trained[pick])["c"])
    return [float(np.nanpercentile(fits, q)) for q in (2.5, 50, 97.5)]


def leave_one_depth_out(t: np.ndarray, trained: np.ndarray, depth: np.ndarray) -> dict:
    """c fitted without each depth, and its accuracy on that depth."""
    folds = {}
    for held in np.unique(depth):
        fit = fit_threshold(t[depth != held], trained[depth != held])
        test = confusion(t[depth == held], trained[depth == held], fit["c"])
        folds[int(held)] = {"c": fit["c"], "accuracy": test["accuracy"], "points": test["points"]}
    right = sum(f["accuracy"] * f["points"] for f in folds.values() if f["points"])
    points = sum(f["points"] for f in folds.values())
    return {"folds": folds, "accuracy": right / points if points else math.nan,
            "c_range": [min(f["c"] for f in folds.values()), max(f["c"] for f in folds.values())]
            if folds else [math.nan, math.nan]}


def two_thresholds(rows: list[dict]) -> dict:
    """The best "L·|λ_a| ≤ c_a and L·|λ_g| ≤ c_g": its accuracy and the ranges of the tied
    best (c_a, c_g)."""
    a, g = totals(rows, "xi_a"), totals(rows, "xi_g")
    trained = np.array([r["trains"] for r in rows])
    keep = ~(np.isnan(a) | np.isnan(g))
    a, g, trained = a[keep], g[keep], trained[keep]
    if not a.size:
        return {"accuracy": math.nan}
    candidates = [np.concatenate([[0.0], np.unique(v[np.isfinite(v)]), [math.inf]]) for v in (a, g)]
    scores = np.array([[np.mean(((a <= ca) & (g <= cg)) == trained) for cg in candidates[1]]
                       for ca in candidates[0]])
    best = scores.max()
    ia, ig = np.nonzero(scores >= best - 1e-12)
    return {"accuracy": float(best),
            "c_a_range": [float(candidates[0][ia.min()]), float(candidates[0][ia.max()])],
            "c_g_range": [float(candidates[1][ig.min()]), float(candidates[1][ig.max()])],
            "points": int(a.size)}


def depth_only(rows: list[dict]) -> dict:
    """The best "trains iff L ≤ L0" (the exponents' baseline), and the majority class."""
    t = np.array([r["depth"] for r in rows], dtype=float)
    trained = np.array([r["trains"] for r in rows])
    fit = fit_threshold(t, trained)
    majority = float(max(trained.mean(), 1 - trained.mean())) if rows else math.nan
    return {"L0": fit["c"], "accuracy": fit.get("accuracy", math.nan),
            "majority_accuracy": majority}


def analyse(rows: list[dict], repeats: int) -> dict:
    trained = np.array([r["trains"] for r in rows])
    depth = np.array([r["depth"] for r in rows], dtype=float)
    fits = {}
    for name, (_, label) in PREDICTORS.items():
        t = totals(rows, name)
        fit = fit_threshold(t, trained)
        fits[name] = {"label": label, **fit,
                      "schoenholz": confusion(t, trained, SCHOENHOLZ_C),
                      "bootstrap_c": bootstrap(t, trained, repeats),
                      "leave_one_depth_out": leave_one_depth_out(t, trained, depth)}
    sides = {}
    for column, (negative, positive) in SIDES.items():
        sign = np.array([np.sign(r[column]) for r in rows])
        t = totals(rows, "xi_a" if column == "lambda_a" else "xi_g")
        for label, mask in ((negative, sign < 0), (positive, sign > 0)):
            fit = fit_threshold(t[mask], trained[mask])
            sides[label] = {**fit, "trained": int(trained[mask].sum()),
                            "bootstrap_c": bootstrap(t[mask], trained[mask], repeats)}
    return {"fits": fits, "sides": sides, "two_thresholds": two_thresholds(rows),
            "depth_only": depth_only(rows)}


def accuracy_curve(rows: list[dict], predictor: str, cs: np.ndarray) -> np.ndarray:
    t = totals(rows, predictor)
    trained = np.array([r["trains"] for r in rows])
    return np.array([confusion(t, trained, c)["accuracy"] for c in cs])


# ------------------------------------------------------------------------ summary, figure

def criterion_check(rows: list[dict], margin: float) -> dict:
    """Is the split clean? How many gaps are near the threshold, how the criteria agree."""
    gaps = np.array([r["gap"] for r in rows if r["status"] == "complete"])
    return {"points": len(rows), "trained": int(sum(r["trains"] for r in rows)),
            "diverged": int(sum(r["status"] == "diverged" for r in rows)),
            "within_0.1_of_threshold": int(np.sum(np.abs(gaps - margin) < 0.1)),
            "gap_quantiles": [float(q) for q in np.quantile(gaps, [0, 0.25, 0.5, 0.75, 1])]
            if gaps.size else [],
            "agreement_with_other_criterion": float(np.mean([r["trains"] == r["trains_other"]
                                                             for r in rows])) if rows else math.nan}


def summary_markdown(result: dict) -> str:
    s, plateau, crit = result["settings"], result["plateaus"], result["criterion"]
    check, analysis = result["check"], result["analysis"]
    loss = "final test loss" if crit["name"] == "test" else "training loss (last 10 % of steps)"
    lines = [
        "# Trainable depth: does the reference transformer train iff L ≲ c·ξ?",
        "",
        f"Reference block (pre-RMSNorm, tanh MLP), σ_b = {s['sigma_b']:g}, α ∈ {s['alphas']}, "
        f"σ_w ∈ {s['sigma_ws']}, seed 0; causal character LM on Shakespeare, width "
        f"{s['width']}, context {s['context']}, batch {s['batch']}, {s['steps']} Adam steps at lr "
        f"{s['lr']:g}; depths {result['depths_trained']} (asked: {result['depths']}). ξ from the "
        "wide-limit theory (`sigprop.exponents`, asymptotic, n = 16, bidirectional maps).",
        "",
        f"**Trains** := {loss} ≤ plateau − {crit['margin']:g} nats/char, plateau = "
        f"{plateau[crit['name']]:.3f} (unigram cross-entropy of the "
        f"{'evaluated test windows' if crit['name'] == 'test' else 'training split'}; the "
        f"other plateau: {plateau['train' if crit['name'] == 'test' else 'test']:.3f}). "
        f"{check['trained']} of {check['points']} points train ({check['diverged']} diverged). "
        f"Distance below the plateau, quantiles 0/25/50/75/100 %: "
        f"{', '.join(f'{q:.2f}' for q in check['gap_quantiles'])}; "
        f"{check['within_0.1_of_threshold']} points within ±0.1 of the threshold. The other "
        f"criterion agrees on {check['agreement_with_other_criterion']:.0%} of the points.",
        "",
        "## The rule \"trains iff L ≤ c·ξ\" (= L·|λ| ≤ c)",
        "",
        "| predictor | best c | accuracy | false pos. | false neg. | bootstrap c (2.5–50–97.5 %) "
        "| leave-one-depth-out: accuracy, c range | at c = 6: accuracy, FP, FN | left out |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f in analysis["fits"].values():
        if not f.get("points"):
            lines.append(f"| {_cell(f['label'])} | n/a | | | | | | | |")
            continue
        lodo, sch = f["leave_one_depth_out"], f["schoenholz"]
        lines.append(
            f"| {_cell(f['label'])} | {f['c']:.3g} "
            f"(ties {f['interval'][0]:.3g}–{f['interval'][1]:.3g}) "
            f"| {f['accuracy']:.0%} | {f['false_positives']} | {f['false_negatives']} "
            f"| {' – '.join(f'{v:.3g}' for v in f['bootstrap_c'])} "
            f"| {lodo['accuracy']:.0%}, {lodo['c_range'][0]:.3g}–{lodo['c_range'][1]:.3g} "
            f"| {sch['accuracy']:.0%}, {sch['false_positives']}, {sch['false_negatives']} "
            f"| {f['left_out']} |")
    base, two = analysis["depth_only"], analysis["two_thresholds"]
    lines += [
        "",
        f"Baselines: majority class {base['majority_accuracy']:.0%}; depth alone (trains iff "
        f"L ≤ {base['L0']:.3g}) {base['accuracy']:.0%}. Two thresholds (L·|λ_a| ≤ c_a and "
        f"L·|λ_g| ≤ c_g): {two['accuracy']:.0%}"
        + (f" with c_a ∈ [{two['c_a_range'][0]:.3g}, {two['c_a_range'][1]:.3g}], c_g ∈ "
           f"[{two['c_g_range'][0]:.3g}, {two['c_g_range'][1]:.3g}] (tied best)."
           if "c_a_range" in two else "."),
        "",
        "## Each side of each exponent",
        "",
        "| side | points (trained) | best c | accuracy | FP | FN | bootstrap c (2.5–50–97.5 %) |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, f in analysis["sides"].items():
        if not f.get("points"):
            lines.append(f"| {label} | 0 | | | | | |")
            continue
        lines.append(f"| {label} | {f['points']} ({f['trained']}) | {f['c']:.3g} "
                     f"| {f['accuracy']:.0%} | {f['false_positives']} | {f['false_negatives']} "
                     f"| {' – '.join(f'{v:.3g}' for v in f['bootstrap_c'])} |")
    lines += ["", "## Every point", "",
              "Per depth: the distance below the plateau (nats/char; ✓ trains, ✗ does not, "
              "div = diverged).", "",
              "| α | σ_w | λ_a | λ_g | ξ_a | ξ_g | "
              + " | ".join(f"L = {d}" for d in result["depths_trained"]) + " |",
              "|---|---|---|---|---|---|" + "---|" * len(result["depths_trained"])]
    by_point: dict[tuple, dict] = {}
    for r in result["rows"]:
        by_point.setdefault((r["alpha"], r["sigma_w"]), {})[r["depth"]] = r
    for (alpha, sigma_w), per_depth in sorted(by_point.items()):
        first = next(iter(per_depth.values()))
        cells = []
        for d in result["depths_trained"]:
            r = per_depth.get(d)
            cells.append("—" if r is None else "div" if r["status"] == "diverged"
                         else f"{r['gap']:+.2f} {'✓' if r['trains'] else '✗'}")
        lines.append(f"| {alpha:g} | {sigma_w:g} | {first['lambda_a']:+.3f} "
                     f"| {first['lambda_g']:+.3f} | {_xi(first['lambda_a'])} "
                     f"| {_xi(first['lambda_g'])} | " + " | ".join(cells) + " |")
    lines += ["", "Cost per depth: " + ", ".join(
        f"L = {d}: {t['wall_s'] / 60:.1f} min wall, {t['cpu_s'] / 60:.1f} CPU-min"
        for d, t in sorted(result["timings"].items(), key=lambda kv: int(kv[0])))
        + " (this benchmark's runs; the workers' CPU time).", ""]
    return "\n".join(lines)


def _padded(values: list[float]) -> tuple[float, float]:
    """The range of ``values`` widened by 5 % on each side."""
    span = (max(values) - min(values)) or 1.0
    return min(values) - 0.05 * span, max(values) + 0.05 * span


def _cell(text: str) -> str:
    """Text for a Markdown table cell (a bare | would split it)."""
    return text.replace("|", "\\|")


def _xi(lam: float) -> str:
    if math.isnan(lam):
        return "n/a"
    return "∞" if lam == 0 else f"{1 / abs(lam):.3g}"


def figure(result: dict, image: Path, resolution: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    import sigprop

    s, rows = result["settings"], result["rows"]
    depths = result["depths_trained"]
    fits = result["analysis"]["fits"]
    x_range, y_range = _padded(s["alphas"]), _padded(s["sigma_ws"])
    x_range = (max(x_range[0], 0.01), min(x_range[1], 0.99))
    y_range = (max(y_range[0], 0.05), y_range[1])
    diagram = sigprop.phase_diagram("alpha", "sigma-w", x_range=x_range, y_range=y_range,
                                    resolution=resolution, sigma_b=s["sigma_b"])
    X, Y = np.meshgrid(diagram.x, diagram.y)
    abs_a, abs_g = (np.abs(diagram.values[k]) for k in ("lambda_a", "lambda_g"))
    panels = len(depths) + 1
    columns = min(3, panels)
    fig, axes = plt.subplots(math.ceil(panels / columns), columns,
                             figsize=(4.6 * columns, 4.0 * math.ceil(panels / columns)),
                             squeeze=False, constrained_layout=True)
    axes = axes.ravel()
    losses = [r["test_loss"] for r in rows if r["status"] == "complete"]
    norm = matplotlib.colors.Normalize(min(losses), max(losses)) if losses else None
    c_a, c_g = fits["xi_a"].get("c", math.nan), fits["xi_g"].get("c", math.nan)
    scatter = None
    for ax, depth in zip(axes, depths):
        if math.isfinite(c_a) and math.isfinite(c_g):  # where both fitted rules say "trains"
            inside = ((depth * abs_a <= c_a) & (depth * abs_g <= c_g)).astype(float)
            ax.contourf(X, Y, inside, levels=[0.5, 1.5], colors=["0.88"])
        for field, c, colour in ((abs_a, c_a, "tab:blue"), (abs_g, c_g, "tab:red")):
            for level_c, style in ((c, "-"), (SCHOENHOLZ_C, "--")):
                if math.isfinite(level_c) and level_c > 0:
                    ax.contour(X, Y, field, levels=[level_c / depth], colors=colour,
                               linestyles=style, linewidths=1.4 if style == "-" else 1.0)
        for field in (diagram.values["lambda_a"], diagram.values["lambda_g"]):
            ax.contour(X, Y, field, levels=[0.0], colors="0.6", linestyles=":", linewidths=0.8)
        mine = [r for r in rows if r["depth"] == depth]
        for trains, marker in ((True, "o"), (False, "X")):
            done = [r for r in mine if r["trains"] == trains and r["status"] == "complete"]
            if done:
                scatter = ax.scatter([r["alpha"] for r in done], [r["sigma_w"] for r in done],
                                     c=[r["test_loss"] for r in done], cmap="viridis", norm=norm,
                                     marker=marker, s=70, edgecolors="k", linewidths=0.6, zorder=3)
        diverged = [r for r in mine if r["status"] == "diverged"]
        if diverged:
            ax.scatter([r["alpha"] for r in diverged], [r["sigma_w"] for r in diverged],
                       marker="x", color="k", s=60, zorder=3)
        ax.set(xlim=x_range, ylim=y_range, xlabel="α", ylabel="σ_w",
               title=f"L = {depth}: {sum(r['trains'] for r in mine)} of {len(mine)} train")
    ax = axes[len(depths)]
    cs = np.geomspace(0.05, 500, 300)
    for name, colour in (("xi_a", "tab:blue"), ("xi_g", "tab:red"), ("xi_min", "tab:purple")):
        if rows:
            ax.plot(cs, accuracy_curve(rows, name, cs), color=colour, label=PREDICTORS[name][1])
    if rows:
        base = result["analysis"]["depth_only"]
        ax.axhline(base["accuracy"], color="0.4", ls="-.", lw=1,
                   label=f"depth alone (L ≤ {base['L0']:.3g})")
        ax.axhline(base["majority_accuracy"], color="0.7", ls=":", lw=1, label="majority class")
    ax.axvline(SCHOENHOLZ_C, color="k", ls="--", lw=0.8)
    ax.set(xscale="log", xlabel="c (trains iff L ≤ c·ξ)", ylabel="accuracy",
           title="accuracy of the rule against c")
    ax.legend(fontsize=7, loc="lower left")
    ax.grid(alpha=0.3, which="both")
    for extra in axes[panels:]:
        extra.axis("off")
    handles = [Line2D([], [], color="tab:blue", label=f"L = c·ξ_a, fitted c = {c_a:.3g}"),
               Line2D([], [], color="tab:red", label=f"L = c·ξ_g, fitted c = {c_g:.3g}"),
               Line2D([], [], color="0.3", ls="--", label="the same at c = 6 (Schoenholz)"),
               Line2D([], [], color="0.6", ls=":", label="λ_a = 0, λ_g = 0"),
               Patch(color="0.88", label="both fitted rules: trains"),
               Line2D([], [], marker="o", ls="", color="0.5", markeredgecolor="k", label="trains"),
               Line2D([], [], marker="X", ls="", color="0.5", markeredgecolor="k",
                      label="does not train"),
               Line2D([], [], marker="x", ls="", color="k", label="diverged")]
    fig.legend(handles=handles, loc="outside lower center", ncol=4, fontsize=8)
    if scatter is not None:
        fig.colorbar(scatter, ax=axes[:len(depths)].tolist(), shrink=0.8,
                     label="final test loss (nats/char)")
    crit = result["criterion"]
    fig.suptitle(f"Which depths train? Reference transformer, σ_b = {s['sigma_b']:g}, width "
                 f"{s['width']}, {s['steps']} Adam steps\ntrains: {crit['name']} loss ≤ "
                 f"unigram plateau − {crit['margin']:g} nats/char; ξ from the wide-limit theory",
                 fontsize=10)
    image.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(image, dpi=130)
    plt.close(fig)


# ---------------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/trainable_depth"))
    parser.add_argument("--depths", default="8,16,32,64,128")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--alphas", default="0.1,0.3,0.5,0.7,0.9")
    parser.add_argument("--sigma-ws", default="0.5,1,2,3,4,6,8")
    parser.add_argument("--sigma-b", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=2, help="training processes")
    parser.add_argument("--criterion", choices=("test", "train"), default="test",
                        help="which final loss decides 'trains' (module docstring)")
    parser.add_argument("--margin", type=float, default=0.3,
                        help="nats/char below the unigram plateau that count as training")
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples for c's range")
    parser.add_argument("--resolution", type=int, default=120, help="theory grid of the figure")
    parser.add_argument("--image", type=Path, default=Path("docs/images/trainable_depth.png"))
    parser.add_argument("--plot-only", action="store_true",
                        help="no training: summary and figure from the stored studies")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)  # this process only reads and plots; the workers train
    settings = Settings(args.width, args.context, args.batch, args.steps, args.lr, args.sigma_b,
                        numbers(args.alphas), numbers(args.sigma_ws))
    depths = [int(d) for d in args.depths.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    timings_path = args.out / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    if not args.plot_only:
        for depth in depths:
            if finished(settings, depth, args.out):
                print(f"depth {depth}: stored ({settings.study(depth)})", flush=True)
                continue
            print(f"{time.strftime('%H:%M:%S')} depth {depth}: {settings.configurations} "
                  f"configurations, {args.steps} steps …", flush=True)
            spent = train_depth(settings, depth, args.out, args.workers)
            earlier = timings.get(settings.study(depth))   # a resumed depth adds up its runs
            if earlier:
                spent = {k: spent[k] + earlier[k] if k != "configurations" else spent[k]
                         for k in spent}
            timings[settings.study(depth)] = spent
            timings_path.write_text(json.dumps(timings, indent=1))
            print(f"  {spent['wall_s']:.0f} s wall, {spent['cpu_s']:.0f} CPU s", flush=True)
    lambdas = theory(settings)
    plateau = plateaus(args.context)
    rows = collect(settings, depths, args.out, lambdas, plateau, args.criterion, args.margin)
    if not rows:
        raise SystemExit(f"no finished trainings in {args.out / 'sweep.sqlite'} for these settings")
    _check_theory(rows)
    result = {
        "settings": {"width": args.width, "context": args.context, "batch": args.batch,
                     "steps": args.steps, "lr": args.lr, "sigma_b": args.sigma_b,
                     "alphas": list(settings.alphas), "sigma_ws": list(settings.sigma_ws)},
        "depths": depths, "depths_trained": sorted({r["depth"] for r in rows}),
        "plateaus": plateau, "criterion": {"name": args.criterion, "margin": args.margin},
        "check": criterion_check(rows, args.margin),
        "analysis": analyse(rows, args.bootstrap),
        "timings": {str(d): timings[settings.study(d)] for d in depths
                    if settings.study(d) in timings},
        "rows": rows,
    }
    (args.out / "summary.json").write_text(json.dumps(_finite(result), indent=1))
    text = summary_markdown(result)
    (args.out / "summary.md").write_text(text)
    print(text)
    figure(result, args.image, args.resolution)
    print(f"wrote {args.out / 'summary.md'}, {args.out / 'summary.json'}, {args.image}")


def _check_theory(rows: list[dict]) -> None:
    """The trials' stored theory exponents are those of ``sigprop.exponents``."""
    for r in rows:
        for name in ("lambda_a", "lambda_g"):
            stored = r[f"{name}_theory"]
            if not (math.isnan(stored) and math.isnan(r[name])) and not math.isclose(
                    stored, r[name], rel_tol=1e-6, abs_tol=1e-9):
                print(f"warning: {name} of α = {r['alpha']:g}, σ_w = {r['sigma_w']:g}: "
                      f"sigprop.exponents {r[name]:.6g}, stored with the trial {stored:.6g}")


def _finite(value):
    """JSON without NaN/inf: they become null (inf as the string "inf")."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else (None if math.isnan(v) else ("inf" if v > 0 else "-inf"))
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


if __name__ == "__main__":
    main()
