"""The one exception type for files that cannot be converted."""

from __future__ import annotations


class ParityWarning(UserWarning):
    """parity had to assume or change something the input does not say: the hard sigmoid a
    file cannot tell, a text cut to the tokenized length."""


class ConversionError(ValueError):
    """A Keras file that cannot become a PyTorch model: it names the file, layer and weight.

    A subclass of ValueError so that callers who already catch bad input keep working. A path
    that does not exist raises FileNotFoundError instead, as open() does.
    """


#: Characters never printed raw from a file: C0/C1 controls (ESC sequences retitle or clear a
#: terminal) and the bidirectional overrides and isolates (they reorder what a reader sees).
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


def printable(text: str) -> str:
    """``text`` with every control character escaped (``\\x1b``, ``\\u202e``), newlines and tabs
    included, so a name from a file prints as one inert line."""
    out = []
    for ch in text:
        code = ord(ch)
        if code < 0x20 or 0x7F <= code < 0xA0 or ch in _BIDI_CONTROLS:
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def error_line(exc: BaseException | str) -> str:
    """An error message as one printable line: its lines joined, controls escaped."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return printable("; ".join(lines))
