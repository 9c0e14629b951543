"""Shared fixtures: the device matrix (cpu, cuda when present), TF32 off, fixed seeds."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden"
WEIGHTS = REPO / "weights"
#: ../shared beside the checkout (tests may read it; the product never needs it).
SHARED_DATA = REPO.parent / "shared" / "data" / "deepmoji_benchmarks"

# TF32 would change float32 matmuls on CUDA; Keras' numbers are full float32.
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
    ),
]


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
    np.random.seed(0)


def has_keras() -> bool:
    try:
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
    except ImportError:
        return False
    return True


needs_keras = pytest.mark.skipif(not has_keras(), reason="keras/tensorflow not installed")
needs_shared = pytest.mark.skipif(not SHARED_DATA.exists(), reason="../shared data not present")
