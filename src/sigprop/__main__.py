"""``python -m sigprop`` runs the command line."""

from sigprop.cli import main

main()
