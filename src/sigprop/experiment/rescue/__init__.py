"""The rescue suite: deep networks whose framework defaults do not train, trained with their
defaults, with ``sigprop.critical_init``, with the published fixes for their failure and with
an off-critical control, against a well-conditioned reference of the same size
(``sigprop.rescue``; docs/rescue.md).

* ``models`` — the networks as users build them (PyTorch and Hugging Face modules);
* ``networks`` — the suite: each network's task, budget, fixes and reference;
* ``fixes`` — the published fixes (DeepNorm, Admin, ReZero, Fixup, T-Fixup, DyT, orthogonal,
  He, delta-orthogonal, forget-gate bias, chrono), applied to a built model;
* ``arms`` — what each arm does to a network before it trains;
* ``prepare`` — the critical initializations and every arm's exponents;
* ``trial`` — one training; ``suite`` — all of them, resumable; ``report`` — tables, figure.
"""
