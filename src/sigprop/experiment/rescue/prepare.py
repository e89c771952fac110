"""Before any training: each network's critical initializations and every arm's exponents.

``critical_inits`` runs ``sigprop.critical_init`` on the network's factory with the raw and the
normalized gradient target (its default knobs, 4 seeds), and ``arm_exponents`` measures every
arm's prepared network with ``sigprop.diagnose`` (4 seeds, float64): L·λ_a^(L), L·λ_g^(L),
the normalized gradient total and the departure, the numbers the report puts next to the
trained losses. Both are stored as JSON under the suite's folder and read back on a rerun.

How each kind of network is measured (the options of ``sigprop.ModelSource``): a language
model on random token ids of its vocabulary; a classifier on hidden states (the deep MLP) or
on N(0, 1) images of the task's 8 × 8 size (the CNN); a recurrent network's LSTM/GRU layer
unrolled over the task's ``lag + 2`` steps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

from torch import nn

from sigprop.api.diagnose import diagnose
from sigprop.api.init import critical_init
from sigprop.experiment.rescue.arms import GRADIENTS, arms_of, prepared
from sigprop.experiment.rescue.networks import Network
from sigprop.init.result import CriticalInit, load_init, summary

SEEDS = 4
IMAGE_SIZE = 8  # the digits' size


def measurement(network: Network) -> dict[str, Any]:
    """The model options and settings every measurement of ``network`` uses."""
    if network.kind == "lm":
        return {"vocab_size": network.task().corpus.vocab_size}
    if network.kind == "recurrent":
        return {"layers": network.lag + 2}
    return {"image_size": IMAGE_SIZE}


def measured_part(network: Network, model: nn.Module) -> nn.Module:
    """What is measured and initialized: the recurrent layer of a recurrent network, else the
    model."""
    return model.rnn if network.kind == "recurrent" else model


def critical_inits(network: Network, folder: Path, log: Callable[[str], None] = print,
                   quick: bool = False) -> dict[str, CriticalInit]:
    """The network's critical initializations by arm ("sigprop": raw gradient target,
    "sigprop-normalized", unless ``quick``), found once and stored in ``folder``."""
    found = {}
    for arm, gradient in GRADIENTS.items():
        if quick and arm != "sigprop":
            continue
        path = folder / f"{network.name}-{gradient}.json"
        if path.exists():
            found[arm] = load_init(path)
            continue
        log(f"{network.name}: searching the critical initialization ({gradient} gradient)")
        init = critical_init(lambda seed: measured_part(network, network.model(seed)),
                             gradient=gradient, seeds=SEEDS, **measurement(network))
        init.write(path)
        log(f"  {init.verdict()}")
        found[arm] = init
    return found


def arm_exponents(network: Network, inits: dict[str, CriticalInit], folder: Path,
                  log: Callable[[str], None] = print,
                  arms: Sequence[str] | None = None) -> dict[str, dict]:
    """The whole-model totals (``sigprop.init.result.summary`` of ``diagnose``) of every arm (or
    of ``arms``), stored in ``folder``/<network>.json and measured only where missing."""
    path = folder / f"{network.name}.json"
    stored = json.loads(path.read_text()) if path.exists() else {}
    for arm in arms_of(network):
        if arm.name in stored or (arms is not None and arm.name not in arms):
            continue
        log(f"{network.name}: measuring the exponents of {arm.name}")
        result = diagnose(
            lambda seed, arm=arm.name: measured_part(network, prepared(network, arm, seed,
                                                                       inits)),
            seeds=SEEDS, **measurement(network))
        stored[arm.name] = summary(result)
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(stored, indent=1))
    return stored
