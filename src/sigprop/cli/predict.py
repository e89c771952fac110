"""``sigprop predict``: the final test loss an initialization will reach, from a finished sweep."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

import sigprop
from sigprop.cli.app import app, console, user_errors
from sigprop.cli.options import JsonFlag, architecture_options
from sigprop.spec import InvalidHyperparameter

if TYPE_CHECKING:
    import pandas

    from sigprop import LossPrediction


@app.command()
@user_errors
@architecture_options()
def predict(
    arch: Optional[str],
    values: dict[str, Any],
    storage: Annotated[Optional[str], typer.Option(help="Study database: the SQLite file or URL "
                                                   "`sigprop sweep` wrote (default "
                                                   "results/sweep/sweep.sqlite).")] = None,
    study: Annotated[Optional[str], typer.Option(help="Study name (default: the storage's only "
                                                 "study).")] = None,
    csv: Annotated[Optional[Path], typer.Option("--csv", help="Predict every row of this CSV "
                                                "(columns: hyperparameter names); flags apply "
                                                "to every row.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="With --csv: the CSV of predictions "
                                                "(default: NAME.predicted.csv beside the "
                                                "input; with --json only if given).")] = None,
    cv_repeats: Annotated[int, typer.Option(help="Random fold assignments each candidate "
                                            "predictor's cross-validated R² is averaged "
                                            "over.")] = 10,
    refit: Annotated[bool, typer.Option("--refit", help="Fit again even if the saved "
                                        "predictor matches the study.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Predict the final test loss of an initialization from a finished sweep.

    Among the predictors computable from hyperparameters alone (theory exponents at
    initialization, or the raw swept hyperparameters as a baseline), the one with the best
    cross-validated R² is fitted on the study's finished trials and saved beside it (refitted
    when the study has more). The interval holds 80% of held-out residuals. Hyperparameters
    not given take the study's values; swept ones must be given."""
    if arch is not None:
        raise InvalidHyperparameter("--arch: predict uses the block the study trained; give "
                                    "the values that differ as flags")
    points = None if csv is None else _read_csv(csv)
    with Console(stderr=True).status("loading or fitting the loss predictor…"):
        reports = sigprop.predictions(storage, study, points, cv_repeats=cv_repeats, refit=refit, **values)
    if csv is None:
        if as_json:
            print(json.dumps(reports[0].to_json()))
        else:
            _print_one(reports[0])
        return
    if as_json:
        print(json.dumps([report.to_json() for report in reports]))
    if out is None and as_json:
        return
    path = out or csv.with_name(f"{csv.stem}.predicted.csv")
    sigprop.predictions_frame(reports).to_csv(path, index=False)
    if not as_json:
        _print_table(reports)
        console.print(f"wrote {path}")


def _read_csv(path: Path) -> pandas.DataFrame:
    """The points of ``--csv``; an unreadable file is bad input."""
    import pandas

    try:
        return pandas.read_csv(path)
    except OSError as error:
        raise InvalidHyperparameter(f"--csv: cannot read {path}: {error.strerror}") from None
    except (pandas.errors.ParserError, pandas.errors.EmptyDataError) as error:
        raise InvalidHyperparameter(f"--csv: {path} is not a CSV table ({error})") from None


def _print_one(report: LossPrediction) -> None:
    """Two or three lines: the prediction and interval, extrapolation, and the predictor."""
    at = ", ".join(f"{k} = {v}" for k, v in report.hyperparameters.items())
    features = ", ".join(f"{k} = {v:+.3f}" for k, v in report.features.items())
    if not math.isnan(report.predicted_loss):
        console.print(f"predicted final test loss at {at}: {report.predicted_loss:.3f} nats/char "
                      f"({report.coverage:.0%} interval {report.low:.3f}–{report.high:.3f})")
    else:
        console.print(f"no prediction at {at}: a feature is not finite ({features})")
    if report.extrapolation:
        console.print("extrapolation: outside what the study trained in "
                      + ", ".join(report.outside))
    kind = " (the baseline on the raw hyperparameters predicted best)" if report.baseline else ""
    console.print(f"predictor: {report.predictor}{kind}; cross-validated R² {report.cv_r2:.2f} "
                  f"± {report.cv_r2_sd:.2f}; features {features}")


def _print_table(reports: list[LossPrediction]) -> None:
    """A table of the points, their predictions and intervals."""
    if not reports:
        console.print("no points to predict")
        return
    first = reports[0]
    baseline = ", the baseline on the raw hyperparameters" if first.baseline else ""
    table = Table(title=f"predicted final test loss ({first.predictor}{baseline}; "
                        f"cross-validated R² {first.cv_r2:.2f} ± {first.cv_r2_sd:.2f})")
    names = list(dict.fromkeys(name for report in reports for name in report.hyperparameters))
    for column in (*names, "loss", f"{first.coverage:.0%} interval", "extrapolation"):
        table.add_column(column, justify="right")
    for report in reports:
        cells = [str(report.hyperparameters.get(name, "")) for name in names]
        table.add_row(*cells, f"{report.predicted_loss:.3f}",
                      f"{report.low:.3f}–{report.high:.3f}",
                      ", ".join(report.outside) if report.extrapolation else "")
    console.print(table)
