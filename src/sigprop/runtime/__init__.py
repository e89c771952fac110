"""How sigprop runs: where torch works (``devices``), with how many threads (``threads``), and
numbers as JSON values (``values``). Nothing here imports torch at import time."""
