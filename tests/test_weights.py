"""The bundled weights: the committed safetensors are what converting the Keras files gives,
and they agree with the committed Keras numbers on real sentences (golden files)."""

from __future__ import annotations

import pytest
import torch

import parity
from tests.conftest import WEIGHTS

BUNDLED = {
    "embedding_dense": ("embedding_dense.keras", "embedding_dense.safetensors"),
    "deepmoji": ("deepmoji_small.keras", "deepmoji_small.safetensors"),
}


@pytest.mark.parametrize("arch", sorted(BUNDLED))
def test_bundled_safetensors_equal_a_fresh_conversion(arch: str) -> None:
    keras_file, converted = BUNDLED[arch]
    fresh = parity.load_keras(WEIGHTS / keras_file, arch=arch)
    shipped = parity.load(WEIGHTS / converted)
    assert shipped.config == fresh.config
    fresh_state, shipped_state = fresh.state_dict(), shipped.state_dict()
    assert fresh_state.keys() == shipped_state.keys()
    for name, tensor in fresh_state.items():
        torch.testing.assert_close(shipped_state[name], tensor, rtol=0, atol=0, msg=name)


def test_bundled_files_stay_small() -> None:
    total = sum(p.stat().st_size for p in WEIGHTS.iterdir())
    assert total < 5 * 2**20, f"weights/ is {total / 2**20:.1f} MiB"
