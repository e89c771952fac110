"""The experiment wing: the paper's training experiment and what is built on it.

* ``trial`` — what a sweep trains (the causal character LM of a declared block) and what one
  batch of its trials does;
* ``init_exponents`` — the exponents of a trained configuration at initialization (theory and
  measured), the columns every trial stores and the exponent screen's function;
* ``reproduce``, ``report`` — ``sigprop reproduce``: the pipeline end to end and its report;
* ``focus`` — is the trained loss lowest at the crossing?

The generic machinery it uses (``sigprop.sweep``, ``sigprop.train``, ``sigprop.analysis``)
never imports it.
"""
