"""The one exception type for files that cannot be converted."""

from __future__ import annotations


class ConversionError(ValueError):
    """A Keras file that cannot become a PyTorch model: it names the file, layer and weight.

    A subclass of ValueError so that callers who already catch bad input keep working. A path
    that does not exist raises FileNotFoundError instead, as open() does.
    """
