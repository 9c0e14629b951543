"""The package version (one place: parity.__version__ and the metadata parity.save writes)."""

__version__ = "0.1.0"
