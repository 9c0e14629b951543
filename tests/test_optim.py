"""parity.optim against Keras' own optimizers: the same gradients give the same weights.

Each case feeds one sequence of gradients (seeded, float32 and float64, ordinary and tiny:
scale 1e-6, where Adam's epsilon-hat and RMSprop's epsilon-in-the-root dominate) to a Keras
optimizer and to ours, constructed with the SAME keyword arguments (Keras' names). Keras' weights
after every step are in tests/golden/optim-trajectories.npz (``python -m tests.test_optim``
rewrites it), so the comparison runs without TensorFlow; the live test re-runs Keras.
End-to-end training of a converted model (own gradients on each side) is in test_finetune.py.
"""

from __future__ import annotations

import inspect
import os
import sys
from typing import Any

import numpy as np
import pytest
import torch

from parity import optim
from parity.check.tolerances import tolerance_for
from tests.conftest import GOLDEN, needs_keras

GOLDEN_FILE = GOLDEN / "optim-trajectories.npz"
STEPS = 10
SHAPES = ((7, 5), (5,))
SCALES = {"grad1": 1.0, "grad1e-6": 1e-6}
DTYPES = {"float32": torch.float32, "float64": torch.float64}

#: name -> (class name in keras.optimizers and parity.optim, keyword arguments valid for both).
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "adam": ("Adam", {}),
    "adam-amsgrad-clipnorm": ("Adam", {"learning_rate": 0.01, "amsgrad": True, "clipnorm": 1.0}),
    "adam-deepmoji": ("Adam", {"learning_rate": 1e-4, "clipnorm": 1.0}),
    "adamw": ("AdamW", {"learning_rate": 0.01}),
    "rmsprop": ("RMSprop", {}),
    "rmsprop-momentum-centered": ("RMSprop", {"momentum": 0.9, "centered": True}),
    "sgd": ("SGD", {}),
    "sgd-momentum": ("SGD", {"momentum": 0.9}),
    "sgd-nesterov-decay": ("SGD", {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    "adagrad": ("Adagrad", {}),
    "adagrad-global-clipnorm": ("Adagrad", {"learning_rate": 0.1, "global_clipnorm": 0.5}),
    "adam-clipvalue-decay": ("Adam", {"clipvalue": 0.5, "weight_decay": 0.1}),
}


def _key(case: str, dtype: str, scale: str) -> str:
    return f"{case}/{dtype}/{scale}"


def inputs(
    dtype: str, scale: str, seed: int = 6
) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    """Initial weights and STEPS gradient lists, seeded per dtype and scale."""
    rng = np.random.default_rng([seed, list(DTYPES).index(dtype), list(SCALES).index(scale)])
    w0 = [rng.normal(size=s).astype(dtype) for s in SHAPES]
    grads = [
        [(rng.normal(size=s) * SCALES[scale]).astype(dtype) for s in SHAPES] for _ in range(STEPS)
    ]
    return w0, grads


def keras_trajectory(case: str, dtype: str, scale: str) -> np.ndarray:
    """Keras' weights after every step, flattened: (STEPS, n weights)."""
    import keras
    import tensorflow as tf

    cls, kwargs = CASES[case]
    w0, grads = inputs(dtype, scale)
    variables = [keras.Variable(w, dtype=dtype) for w in w0]
    opt = getattr(keras.optimizers, cls)(**kwargs)
    out = []
    for step in grads:
        opt.apply_gradients(zip([tf.constant(g) for g in step], variables, strict=True))
        out.append(np.concatenate([v.numpy().ravel() for v in variables]))
    return np.stack(out)


def torch_trajectory(case: str, dtype: str, scale: str, make: Any = None) -> np.ndarray:
    cls, kwargs = CASES[case]
    w0, grads = inputs(dtype, scale)
    params = [torch.nn.Parameter(torch.from_numpy(w.copy())) for w in w0]
    opt = make(params) if make is not None else getattr(optim, cls)(params, **kwargs)
    out = []
    for step in grads:
        for p, g in zip(params, step, strict=True):
            p.grad = torch.from_numpy(g.copy())
        opt.step()
        out.append(np.concatenate([p.detach().numpy().ravel() for p in params]))
    return np.stack(out)


def _golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN_FILE) as f:
        return dict(f)


ALL = [(c, d, s) for c in CASES for d in DTYPES for s in SCALES]


def _assert_close(ours: np.ndarray, keras_: np.ndarray, dtype: str, where: str) -> None:
    tol = tolerance_for(DTYPES[dtype], "cpu", "output")
    err = np.abs(ours - keras_)
    bound = tol.atol + tol.rtol * np.abs(keras_)
    step, idx = np.unravel_index(np.argmax(err - bound), err.shape)
    assert (err <= bound).all(), (
        f"{where}: step {step + 1} weight {idx}: ours {ours[step, idx]!r} keras "
        f"{keras_[step, idx]!r} (|diff| {err[step, idx]:.3g} > {bound[step, idx]:.3g})"
    )


@pytest.mark.parametrize(("case", "dtype", "scale"), ALL, ids=[_key(*a) for a in ALL])
def test_trajectory_matches_keras_golden(case: str, dtype: str, scale: str) -> None:
    golden = _golden()[_key(case, dtype, scale)]
    _assert_close(torch_trajectory(case, dtype, scale), golden, dtype, _key(case, dtype, scale))


TORCH_NAMESAKES = {
    # torch's own optimizer given Keras' hyper-parameters: the test must tell them apart.
    "adam": lambda p: torch.optim.Adam(p, lr=1e-3, eps=1e-7),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=1e-3, alpha=0.9, eps=1e-7),
    "sgd": lambda p: torch.optim.SGD(p),  # torch's default lr is 1e-3, Keras' 0.01
}


@pytest.mark.parametrize("case", sorted(TORCH_NAMESAKES))
def test_torch_namesake_fails_on_tiny_gradients(case: str) -> None:
    """torch's eps placement (and SGD's default lr) differ from Keras': the golden catches it.

    (torch's Adagrad given Keras' arguments agrees to float64 precision here: the 0.1 initial
    accumulator swamps the eps placement, so it is no counter-example.)"""
    golden = _golden()[_key(case, "float64", "grad1e-6")]
    theirs = torch_trajectory(case, "float64", "grad1e-6", make=TORCH_NAMESAKES[case])
    with pytest.raises(AssertionError):
        _assert_close(theirs, golden, "float64", case)


def test_state_dict_resumes_exactly() -> None:
    """Stop after 4 steps, save, rebuild, load, continue: same weights as one straight run."""
    w0, grads = inputs("float64", "grad1")
    straight = torch_trajectory("adam-amsgrad-clipnorm", "float64", "grad1")[-1]
    params = [torch.nn.Parameter(torch.from_numpy(w.copy())) for w in w0]
    opt = optim.Adam(params, learning_rate=0.01, amsgrad=True, clipnorm=1.0)
    for i, step in enumerate(grads):
        if i == 4:
            saved = opt.state_dict()
            opt = optim.Adam(params, learning_rate=0.01, amsgrad=True, clipnorm=1.0)
            opt.load_state_dict(saved)
            assert opt.iterations == 4
        for p, g in zip(params, step, strict=True):
            p.grad = torch.from_numpy(g.copy())
        opt.step()
    resumed = np.concatenate([p.detach().numpy().ravel() for p in params])
    np.testing.assert_array_equal(resumed, straight)


def test_lr_scheduler_sees_learning_rate() -> None:
    p = torch.nn.Parameter(torch.zeros(3))
    opt = optim.SGD([p])
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    p.grad = torch.ones(3)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.005)


@needs_keras
@pytest.mark.parametrize(("case", "dtype", "scale"), ALL, ids=[_key(*a) for a in ALL])
def test_live_keras_matches_ours_and_golden(case: str, dtype: str, scale: str) -> None:
    live = keras_trajectory(case, dtype, scale)
    _assert_close(torch_trajectory(case, dtype, scale), live, dtype, _key(case, dtype, scale))
    np.testing.assert_array_equal(live, _golden()[_key(case, dtype, scale)])


@needs_keras
@pytest.mark.parametrize("cls", sorted(optim.OPTIMIZERS))
def test_names_and_defaults_are_keras(cls: str) -> None:
    """Every argument we take has Keras' name and Keras' default."""
    import keras

    theirs = inspect.signature(getattr(keras.optimizers, cls)).parameters
    ours = inspect.signature(getattr(optim, cls)).parameters
    for name, param in ours.items():
        if name == "params":
            continue
        assert name in theirs, f"{cls}({name}=...) is not a Keras argument"
        assert param.default == theirs[name].default, (
            f"{cls}({name}=) defaults to {param.default!r}, Keras to {theirs[name].default!r}"
        )


def write_golden() -> None:
    """Regenerate GOLDEN_FILE from live Keras (run: python -m tests.test_optim)."""
    import keras
    import tensorflow as tf

    arrays = {_key(*a): keras_trajectory(*a) for a in ALL}
    arrays["versions"] = np.array([f"keras {keras.__version__}", f"tensorflow {tf.__version__}"])
    np.savez_compressed(GOLDEN_FILE, **arrays)
    print(f"wrote {GOLDEN_FILE} ({len(ALL)} trajectories)")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    write_golden()
    sys.exit(0)
