"""``sigprop.diagnose``: the geometry, Jacobian norm and exponents of any PyTorch model at
initialization.

The model is named as everywhere else (``sigprop.ModelSource``): an ``nn.Module`` instance, a
factory or ``"module.path:factory"``, ``hf=`` or ``net=``. The measurement itself is
``sigprop.measure.diagnose.measure_diagnosis``; this face adds the thread policy
(``sigprop.runtime.threads``) and an initialization to apply first (``init=``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from typing_extensions import Unpack

from sigprop.measure.diagnose import Diagnosis, measure_diagnosis
from sigprop.measure.source import Model, ModelSource, Which
from sigprop.runtime.threads import torch_threads


def diagnose(
    model: Model | ModelSource | None = None,
    *,
    n_tokens: int = 16,
    seeds: int | Sequence[int] = 4,
    seed: int = 0,
    n_probes: int = 4,
    burn_in: int | None = None,
    init: str | Path | dict | None = None,
    prepare: Callable | None = None,
    device: str = "auto",
    threads: int | str | None = None,
    **which: Unpack[Which],
) -> Diagnosis:
    """Measure the per-layer geometry, Jacobian norm and both exponents of a PyTorch model at
    initialization: transformers, convolutional, recurrent and graph networks (what a token and
    a layer are in each: ``sigprop.measure.families``).

    Which model: ``model`` (an ``nn.Module`` instance, a factory ``factory(seed) -> nn.Module``,
    ``"module.path:factory"`` or a ``ModelSource``), or ``hf=`` (gpt2, bert, llama, built from a
    config with ``layers``, ``width``, ``heads``), or ``net=`` (resnet18, lstm, gru, rnn, gcn);
    the other options of ``sigprop.measure.source.Which`` (``family``, ``blocks``, ``run``,
    ``vocab_size`` for a model that takes token ids, ``width``, ``image_size``) as keywords.

    How: ``seeds`` seeds from ``seed`` (or the seeds themselves), each a fresh model in float64
    on ``device`` with its own inputs and ``n_probes`` probes; ``burn_in`` layers before the
    late-layer rates (default L // 2). ``init``: a critical initialization (a
    ``CriticalInit``, its JSON or a file ``sigprop init --out`` wrote) applied to every fresh
    model first; ``prepare(model)``: any other change in place. ``threads``: torch threads
    (default: the library's policy, ``sigprop.runtime.threads``). Returns a ``Diagnosis``
    (``verdict()``, ``to_json()``); raises ``DiagnoseError`` (a ``ValueError``) for bad input.
    """
    source = ModelSource.of(model, n_tokens=n_tokens, **which)
    if init is not None:
        from sigprop.init.result import apply_init, load_init

        saved, earlier = load_init(init), prepare

        def prepare(built):  # noqa: F811 - the saved init first, then the caller's change
            apply_init(built, saved, source.block_path)
            if earlier is not None:
                earlier(built)

    with torch_threads(threads):
        return measure_diagnosis(source, n_tokens=n_tokens, seeds=seeds, seed=seed,
                                 n_probes=n_probes, burn_in=burn_in, device=device,
                                 prepare=prepare)
