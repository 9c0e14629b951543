"""`python -m parity ...` is the same as the `parity` command."""

from parity.cli import entry

entry()
