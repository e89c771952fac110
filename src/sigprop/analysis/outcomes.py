"""From finished trials to the table the analysis works on: one row per trial, one per point.

A diverged run has no test loss; it counts as a failure at the loss of the uniform predictor,
log(vocabulary size), or at its last finite loss if that is higher: training that blew up has
not learned the data, and leaving it out would hide the worst corners of the phase diagram.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

EXPONENT_COLUMNS = (
    "lambda_a_theory",
    "lambda_g_theory",
    "log_gap_L_theory",
    "log_jac_L_theory",
    "lambda_a_measured",
    "lambda_g_measured",
)


def trial_outcomes(trials: pd.DataFrame, vocab_size: int) -> pd.DataFrame:
    """Completed trials with a ``loss`` column: the test loss, or the failure loss if diverged."""
    done = trials[trials["status"].isin(["complete", "diverged"])].copy()
    failure = np.maximum(np.log(vocab_size), done["last_finite_loss"].fillna(np.log(vocab_size)))
    done["loss"] = np.where(done["status"] == "diverged", failure, done["test_loss"])
    return done


def point_outcomes(outcomes: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    """Mean and standard error of the loss over seeds at each hyperparameter point, with the
    (seed-independent) theory exponents and the seed-averaged measured ones."""
    grouped = outcomes.groupby(axes, sort=True)
    table = grouped["loss"].agg(["mean", "count", "std"]).rename(
        columns={"mean": "loss", "count": "seeds", "std": "loss_std"})
    table["loss_se"] = table["loss_std"] / np.sqrt(table["seeds"])
    table["diverged"] = grouped["status"].apply(lambda s: int((s == "diverged").sum()))
    extra = [c for c in outcomes.columns if c.startswith(("lambda_a_", "lambda_g_"))
             and c not in EXPONENT_COLUMNS and not c.startswith(("lambda_a_depth", "lambda_g_depth"))]
    for column in (*EXPONENT_COLUMNS, *extra):
        if column in outcomes:
            table[column] = grouped[column].mean()
    return table.reset_index()
