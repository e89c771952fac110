"""The rescue suite's tables and figure, from the stored runs and the arms' exponents.

Per network and arm: the runs, how many diverged, the test loss and accuracy (mean ± standard
error over the seeds' completed runs), when the training loss left the plateau (the mean
step of the runs that did, and how many never did) and the arm's exponents at initialization
(L·λ_a^(L), L·λ_g^(L), the normalized gradient total and the departure, ``prepare``).

Per network, the verdict:

* the default fails when its mean test loss is more than ``MARGIN`` above the reference's (a
  recurrent network: when its recall accuracy is below ``SOLVED``);
* an arm rescues the network when its mean test loss is within ``MARGIN`` of the reference's
  (recurrent: its recall accuracy reaches ``SOLVED``);
* without the reference's runs (``quick``), an arm trains when its mean test loss is
  ``PLATEAU_GAP`` below the test split's chance level (``Task.held_out_chance``), and fails
  otherwise;
* sigprop matches the best published fix when its mean test loss is at most the best fix's
  plus one standard error of their difference, sqrt(SE_sigprop² + SE_fix²).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sigprop.experiment.rescue.arms import arms_of
from sigprop.experiment.rescue.networks import MARGIN, NETWORKS, SOLVED
from sigprop.experiment.rescue.trial import PLATEAU_GAP, WINDOW

COLORS = {"default": "tab:red", "sigprop": "tab:green", "sigprop-normalized": "tab:olive",
          "off-critical": "tab:gray", "reference": "black"}
FIX_COLORS = ("tab:blue", "tab:orange", "tab:purple", "tab:cyan", "tab:brown", "tab:pink")


@dataclass(frozen=True)
class ArmResult:
    """One arm of one network over its seeds."""

    network: str
    arm: str
    kind: str
    runs: int
    diverged: int
    test_loss: float
    test_loss_se: float
    test_accuracy: float
    test_accuracy_se: float
    test_chance: float
    left_plateau: float
    never_left: int
    exponents: dict[str, Any] | None
    curves: list[list[float]]

    def to_json(self) -> dict[str, Any]:
        return {k: (_finite(v) if isinstance(v, float) else v)
                for k, v in self.__dict__.items() if k != "curves"}


@dataclass(frozen=True)
class Verdict:
    """What one network's runs show (module docstring)."""

    network: str
    default_fails: bool | None
    rescued_by: tuple[str, ...]
    best_fix: str | None
    sigprop_matches_best_fix: bool | None

    def sentence(self) -> str:
        title = self.network
        if self.default_fails is None:
            return f"{title}: not enough runs to judge."
        if not self.default_fails:
            return f"{title}: the default trains (no rescue needed)."
        rescued = ", ".join(self.rescued_by) or "no arm"
        text = f"{title}: the default fails; rescued by {rescued}."
        if self.best_fix is not None and self.sigprop_matches_best_fix is not None:
            text += (f" sigprop is {'within 1 SE of or better than' if self.sigprop_matches_best_fix else 'worse than'} "
                     f"the best published fix ({self.best_fix}).")
        return text


@dataclass(frozen=True)
class RescueReport:
    """Every arm's results (``arms``) and every network's verdict (``verdicts``)."""

    arms: tuple[ArmResult, ...]
    verdicts: tuple[Verdict, ...]

    def verdict(self) -> str:
        return " ".join(v.sentence() for v in self.verdicts)

    def __repr__(self) -> str:
        failing = sum(bool(v.default_fails) for v in self.verdicts)
        rescued = sum(bool(v.default_fails) and "sigprop" in v.rescued_by
                      for v in self.verdicts)
        return (f"RescueReport(networks={len(self.verdicts)}, runs={sum(a.runs for a in self.arms)}, "
                f"failing defaults={failing}, rescued by sigprop={rescued})")

    def to_json(self) -> dict[str, Any]:
        return {"arms": [a.to_json() for a in self.arms],
                "verdicts": [v.__dict__ | {"rescued_by": list(v.rescued_by)}
                             for v in self.verdicts],
                "verdict": self.verdict()}

    def table(self) -> str:
        """The Markdown table: one row per network and arm."""
        lines = ["| network | arm | L·λ_a, L·λ_g (norm.), departure | test loss | test accuracy "
                 "| left the plateau at step | runs (diverged) |",
                 "|---|---|---|---|---|---|---|"]
        for a in self.arms:
            e = a.exponents or {}
            totals = (f"{_signed(e.get('log_gap_L'))}, {_signed(e.get('log_jac_L'))} "
                      f"({_signed(e.get('log_jac_norm_L'))}), {_plain(e.get('departure'))}"
                      if e else "—")
            plateau = ("never" if math.isnan(a.left_plateau) else f"{a.left_plateau:.0f}") + (
                f" ({a.never_left} never)" if a.never_left and not math.isnan(a.left_plateau)
                else "")
            lines.append(
                f"| {a.network} | {a.arm} | {totals} | {_pm(a.test_loss, a.test_loss_se)} | "
                f"{_pm(a.test_accuracy, a.test_accuracy_se)} | {plateau} | {a.runs}"
                f"{f' ({a.diverged})' if a.diverged else ''} |")
        return "\n".join(lines)

    def markdown(self) -> str:
        verdicts = "\n".join(f"* {v.sentence()}" for v in self.verdicts)
        return (f"# The rescue suite\n\n{verdicts}\n\n{self.table()}\n\n"
                "Test loss in nats per scored position (characters; the recalled symbol; the "
                "image's class), mean ± standard error over the seeds' completed runs. "
                f"Rescued: within {MARGIN} nats of the reference (recurrent networks: recall "
                f"accuracy ≥ {SOLVED}). Left the plateau: the first step whose {WINDOW}-step "
                "mean training loss is 0.3 nats below chance.\n\n![rescue](rescue.png)\n")

    def write(self, out: str | Path, plot: str | Path | None = None) -> list[Path]:
        """report.md, report.json and the figure (``plot``, default rescue.png) in ``out``."""
        import json

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.md").write_text(self.markdown())
        (out / "report.json").write_text(json.dumps(self.to_json(), indent=1))
        figure = self.figure(Path(plot) if plot is not None else out / "rescue.png")
        return [out / "report.md", out / "report.json", figure]

    def figure(self, path: Path) -> Path:
        """One panel per network: the mean training loss (10-step bins) of every arm."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        networks = [v.network for v in self.verdicts]
        columns = 3
        rows = max(1, -(-len(networks) // columns))
        fig, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 3.6 * rows),
                                 squeeze=False)
        for ax, name in zip(axes.flat, networks):
            fixes = iter(FIX_COLORS)
            mine = [a for a in self.arms if a.network == name and a.curves]
            # The scale stops at 1.5× chance: a run that blows up must not flatten the rest.
            top = 1.5 * max((a.test_chance for a in mine if np.isfinite(a.test_chance)),
                            default=np.inf)
            lowest, clipped = np.inf, False
            for a in mine:
                color = COLORS.get(a.arm) or next(fixes)
                curve = _mean_curve([_bins(c) for c in a.curves])
                off_scale = bool(np.nanmax(curve, initial=-np.inf) > top)
                clipped |= off_scale
                lowest = min(lowest, np.nanmin(curve, initial=np.inf))
                ax.plot(WINDOW * (np.arange(curve.size) + 0.5), curve, color=color,
                        lw=2 if a.kind in ("sigprop", "default") else 1.2,
                        ls="--" if a.kind == "reference" else "-",
                        label=a.arm + (" (off scale)" if off_scale else ""))
            if clipped and np.isfinite(lowest):
                ax.set_ylim(lowest - 0.05 * (top - lowest), top)
            ax.set_title(name, fontsize=10)
            ax.set_xlabel("Adam step")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        for ax in list(axes.flat)[len(networks):]:
            ax.axis("off")
        axes[0, 0].set_ylabel("training loss (nats)")
        fig.suptitle("Deep networks whose defaults do not train: mean training loss over "
                     "seeds, every arm", fontsize=11)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path


def summarize(runs: list[dict], exponents: dict[str, dict], networks: list[str]
              ) -> RescueReport:
    """The report of the ``runs`` of ``networks`` (``exponents``: network → arm → totals)."""
    results, verdicts = [], []
    for name in networks:
        mine = []
        for arm in arms_of(NETWORKS[name]):
            selected = [r for r in runs if r["network"] == name and r["arm"] == arm.name]
            if selected:
                mine.append(_arm_result(name, arm.name, arm.kind, selected,
                                        exponents.get(name, {}).get(arm.name)))
        results += mine
        verdicts.append(_verdict(name, mine))
    return RescueReport(tuple(results), tuple(verdicts))


def _arm_result(network: str, arm: str, kind: str, runs: list[dict],
                exponents: dict | None) -> ArmResult:
    complete = [r for r in runs if r["status"] == "complete"]
    loss, loss_se = _mean_se([r["test_loss"] for r in complete])
    accuracy, accuracy_se = _mean_se([r["test_accuracy"] for r in complete])
    left = [r["left_plateau_at"] for r in runs if r.get("left_plateau_at") is not None]
    return ArmResult(network, arm, kind, len(runs), len(runs) - len(complete), loss, loss_se,
                     accuracy, accuracy_se, float(runs[0]["test_chance"]),
                     float(np.mean(left)) if left else math.nan,
                     len(runs) - len(left), exponents, [r["losses"] for r in runs])


def _verdict(name: str, arms: list[ArmResult]) -> Verdict:
    by_name = {a.arm: a for a in arms}
    default = by_name.get("default")
    recurrent = NETWORKS[name].kind == "recurrent"
    reference = by_name.get("reference")
    if default is None:
        return Verdict(name, None, (), None, None)

    def trains(a: ArmResult) -> bool:
        if recurrent:
            return a.test_accuracy >= SOLVED
        if reference is None:
            return a.test_loss < a.test_chance - PLATEAU_GAP
        return a.test_loss <= reference.test_loss + MARGIN

    rescued = tuple(a.arm for a in arms if a.kind in ("sigprop", "fix") and trains(a))
    fixes = [a for a in arms if a.kind == "fix" and math.isfinite(a.test_loss)]
    best = min(fixes, key=lambda a: a.test_loss) if fixes else None
    sigprop = by_name.get("sigprop")
    matches = None
    if best is not None and sigprop is not None and math.isfinite(sigprop.test_loss):
        gap = sigprop.test_loss - best.test_loss
        matches = bool(gap <= math.hypot(_zero(sigprop.test_loss_se), _zero(best.test_loss_se)))
    return Verdict(name, not trains(default), rescued, None if best is None else best.arm,
                   matches)


def _bins(losses: list[float]) -> np.ndarray:
    x = np.asarray(losses, dtype=float)
    count = x.size // WINDOW
    return x[: count * WINDOW].reshape(count, WINDOW).mean(axis=1) if count else x


def _mean_curve(curves: list[np.ndarray]) -> np.ndarray:
    """The mean over seeds at each bin; a run that diverged stops early and counts only
    where it has values."""
    stacked = np.full((len(curves), max(c.size for c in curves)), np.nan)
    for row, curve in zip(stacked, curves):
        row[: curve.size] = curve
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a bin where every run stopped
        return np.nanmean(stacked, axis=0)


def _mean_se(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return math.nan, math.nan
    if len(values) == 1:
        return float(values[0]), math.nan
    return float(np.mean(values)), float(np.std(values, ddof=1) / math.sqrt(len(values)))


def _zero(value: float) -> float:
    return 0.0 if math.isnan(value) else value


def _pm(mean: float, se: float) -> str:
    """mean ± se to 3 decimals; beyond 1000 (a run that blew up without a non-finite loss) in
    3 significant digits."""
    if math.isnan(mean):
        return "—"
    spec = ".3g" if abs(mean) >= 1000 else ".3f"
    return f"{mean:{spec}}" + ("" if math.isnan(se) else f" ± {se:{spec}}")


def _signed(value) -> str:
    return "—" if value is None else f"{value:+.2f}"


def _plain(value) -> str:
    return "—" if value is None else f"{value:.2f}"


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
