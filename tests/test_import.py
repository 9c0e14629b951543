"""`import parity` must not load TensorFlow or Keras: converting needs neither."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
import parity, parity.arch, parity.arch.match, parity.cli
import parity.check, parity.cli.check, parity.check.keras_side
from parity.arch import deepmoji, embedding_dense, generic
heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras'))
print(heavy)
sys.exit(1 if heavy else 0)
"""


def test_import_parity_loads_neither_tensorflow_nor_keras() -> None:
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
