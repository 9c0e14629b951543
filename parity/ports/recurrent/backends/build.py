"""The setup step that builds the C++ LSTM loop: ``python -m parity.ports.recurrent.backends.build``
(``make setup`` runs it), so a user's first forward loads it instead of compiling it."""

from __future__ import annotations

import sys

from parity.ports.recurrent.backends import cpp


def main() -> int:
    try:
        path = cpp.build_prebuilt()
    except Exception as exc:  # no compiler or ninja: the package still works, on the Python loop
        reason = f"{type(exc).__name__}: {exc}"
        print(
            f"parity: the C++ LSTM loop was not built ({reason}); the Python loop will run, "
            "or a first use retries the build",
            file=sys.stderr,
        )
        return 0
    print(f"parity: built the C++ LSTM loop: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
