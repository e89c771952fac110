"""The experiment's verbs as the library offers them (``sigprop.run_sweep``, ``analyze``,
``reproduce``, ``focus``); the command line's ``sweep``, ``analyze``, ``reproduce`` and
``focus`` only parse their flags and print what these return.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from sigprop.analysis import Analysis
from sigprop.analysis.predictors import REPEATS
from sigprop.experiment.focus import FocusScale, run_focus, write_focus_report
from sigprop.experiment.reproduce import SCALES, analyze_study
from sigprop.experiment.reproduce import reproduce as reproduce_into
from sigprop.experiment.trial import sweep_spec
from sigprop.runtime.devices import resolve_device
from sigprop.spec import Architecture, InvalidHyperparameter
from sigprop.sweep import normalize_storage, run_study

DEFAULT_SWEEP = Path("results/sweep")
DEFAULT_STORAGE = DEFAULT_SWEEP / "sweep.sqlite"


@dataclass(frozen=True)
class Sweep:
    """A finished (or resumed) training sweep: where it is stored, how many configurations it
    has, what the screen kept (None without one) and how long the whole call took."""

    storage: str
    study: str
    configurations: int
    screen: dict[str, Any] | None
    seconds: float

    def verdict(self) -> str:
        screened = ""
        if self.screen:
            s = self.screen
            screened = (f" screen: kept {s['kept']} of the first {s['candidates']} points "
                        f"(|L·λ_a| <= {s['tau_a']:g}, |L·λ_g| <= {s['tau_g']:g} at "
                        f"L = {s['depth']}).")
        return (f"Sweep {self.study!r}: {self.configurations} configurations in "
                f"{self.storage}.{screened}")

    def to_json(self) -> dict[str, Any]:
        return {"storage": self.storage, "study": self.study,
                "configurations": self.configurations, "screen": self.screen,
                "seconds": round(self.seconds, 2), "verdict": self.verdict()}


def run_sweep(
    arch: Architecture | str | None = None,
    *,
    grid: Sequence[str] = (),
    sample: Sequence[str] = (),
    samples: int = 0,
    sample_seed: int = 0,
    storage: str | None = None,
    study: str = "sweep",
    out: str | Path = DEFAULT_SWEEP,
    workers: int = 2,
    batch_size: int = 8,
    depth: int | None = None,
    width: int = 64,
    context: int = 64,
    batch: int = 32,
    steps: int = 400,
    lr: float = 1e-3,
    data: str = "shakespeare",
    compile: bool = True,
    screen: bool = False,
    screen_lambda_a: float | None = None,
    screen_lambda_g: float | None = None,
    device: str = "auto",
    show_progress: bool = False,
    **values: Any,
) -> Sweep:
    """Train a grid, or a quasi-random search, of initializations of the block ``arch`` (with
    the declared ``values``) as causal character LMs: one Optuna study, one trial per
    configuration. Calling it again resumes: finished trials are kept, interrupted ones rerun.

    ``grid``: swept settings "NAME=v1,v2,…" (any numeric hyperparameter or alias, or seed);
    ``sample``: ranges "NAME=LOW:HIGH" of which ``samples`` quasi-random points (a scrambled
    Halton sequence from ``sample_seed``) are crossed with the grid. ``storage``: a SQLite path
    or URL, or ``postgresql://…`` to share one sweep between machines (default
    ``out``/sweep.sqlite). The LMs have ``depth`` layers (default the architecture's, else 16)
    of width ``width`` and train ``steps`` Adam steps at ``lr`` on ``batch`` × ``context``
    characters of ``data`` (shakespeare or copy). ``screen``: train only sampled points with
    |L·λ_a| ≤ ``screen_lambda_a`` and |L·λ_g| ≤ ``screen_lambda_g`` (default 3 each).
    """
    resolve_device(device)
    given = {"screen_lambda_a": screen_lambda_a, "screen_lambda_g": screen_lambda_g}
    if not screen and any(v is not None for v in given.values()):
        name = next(k for k, v in given.items() if v is not None)
        raise InvalidHyperparameter(f"{name} (--{name.replace('_', '-')}): only with screen=True "
                                    "(--screen)")
    box = ({key: v for key, v in zip(("tau_a", "tau_g"), given.values()) if v is not None}
           if screen else None)
    started = time.perf_counter()
    with _screen_progress(samples if (screen and show_progress) else 0) as on_screen:
        spec = sweep_spec(arch, values, list(grid), list(sample), samples, sample_seed,
                          depth=depth, screen=box, on_screen=on_screen, width=width,
                          context=context, batch=batch, steps=steps, lr=lr, data=data,
                          compile=compile)
    url = normalize_storage(storage, Path(out) / "sweep.sqlite")
    run_study(url, study, spec, "sigprop.experiment.trial:make_evaluate", workers=workers,
              batch_size=batch_size, progress=show_progress, factory_kwargs={"device": device})
    kept = None if not spec.screen else {**spec.screen, "kept": spec.samples}
    return Sweep(url, study, len(spec.configurations()), kept, time.perf_counter() - started)


def analyze(
    storage: str | None = None,
    study: str = "sweep",
    out: str | Path = "results/analysis",
    x: str | None = None,
    y: str | None = None,
    cv_repeats: int = REPEATS,
) -> tuple[Analysis, dict[str, Path]]:
    """Does (λ_a, λ_g) at initialization predict the test loss of a finished sweep? Loss against
    the exponents, cross-validated predictors of the loss from the exponents against the raw
    swept hyperparameters, and, for two swept hyperparameters, the loss over them with the
    theory's zero curves (figures written into ``out``). Returns the ``Analysis`` and the
    figures' paths."""
    url = normalize_storage(storage, DEFAULT_STORAGE)
    return analyze_study(url, study, Path(out), x, y, cv_repeats)


def reproduce(
    out: str | Path = "results/reproduce",
    scale: str = "small",
    *,
    arch: Architecture | str | None = None,
    workers: int | None = None,
    storage: str | None = None,
    focus: str | Path | None = "results/focus",
    device: str = "auto",
    log: Callable[[str], None] = print,
) -> Path:
    """The paper end to end into ``out``/report.md (returned): theory phase diagrams, theory
    against simulation, a training sweep and its analysis, at ``scale`` "small" (about 15
    minutes on 2 CPU cores) or "paper". Calling it again resumes the sweep. ``focus``: the
    folder of a ``focus`` run whose result the report includes, if there is one."""
    if scale not in SCALES:
        raise InvalidHyperparameter(f"scale must be one of {', '.join(SCALES)}; got {scale!r}")
    return reproduce_into(Path(out), SCALES[scale], storage, workers, log=log, arch=arch,
                          focus=None if focus is None else Path(focus), device=device)


def focus(
    out: str | Path = "results/focus",
    *,
    storage: str | None = None,
    main: str | None = None,
    workers: int | None = None,
    device: str = "auto",
    log: Callable[[str], None] = print,
) -> Path:
    """Is the trained loss lowest at the crossing? Train a small (α, σ_w) grid around the
    candidate optima, 3 seeds at depths 16 and 32 (about an hour on 2 CPU cores), and write
    ``out``/focus.md (returned). ``main``: the storage of the coarse sweep whose minimum is a
    candidate (default results/reproduce/sweep.sqlite if it exists). Calling it again
    resumes."""
    scale = FocusScale() if workers is None else replace(FocusScale(), workers=workers)
    out = Path(out)
    url = run_focus(out, scale, storage, log=log, device=device)
    default_main = Path("results/reproduce/sweep.sqlite")
    main = main or (str(default_main) if default_main.exists() else None)
    return write_focus_report(out, url, scale, main)


@contextlib.contextmanager
def _screen_progress(samples: int) -> Iterator[Callable[[int, int], None] | None]:
    """A transient progress bar of the points a screen kept (none without one)."""
    if not samples:
        yield None
        return
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn)

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("screening: points kept", total=samples)
        yield lambda examined, kept: bar.update(
            task, completed=kept, description=f"screening {examined} candidates: points kept")
