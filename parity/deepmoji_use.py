"""The DeepMoji application's former home, kept so ``parity.deepmoji_use`` imports keep working:
everything now lives in parity.apps.deepmoji (emoji, features, file scoring, `parity deepmoji`),
and every name it exports is looked up there.
"""

from typing import Any

from parity.apps import deepmoji as _app
from parity.inference import DEFAULT_TEXT_LENGTH

#: Tokens per text when the model fixes no length and none is named (parity.inference's).
DEFAULT_MAXLEN = DEFAULT_TEXT_LENGTH

__all__ = [*_app.__all__, "DEFAULT_MAXLEN"]


def __getattr__(name: str) -> Any:
    """``parity.deepmoji_use.X`` is ``parity.apps.deepmoji.X`` (PEP 562)."""
    if name in _app.__all__:
        return getattr(_app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
