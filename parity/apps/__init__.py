"""Applications built on the library, each in its own package (deepmoji: emoji and features for
texts, file scoring). The library never imports them; only parity.cli registers their
subcommands.
"""
