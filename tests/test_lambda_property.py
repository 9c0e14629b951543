"""Property test of the Lambda translation: random expressions over the whitelist (arithmetic,
abs, powers, comparisons, subscripts with ints, None, ..., and slices of any step, a few Keras
reductions), compiled by the running Python IN THE TEST into a lambda, saved as tf.keras 2
writes it (base64 of marshal.dumps(code), in [code, defaults, closure]), translated by parity
from the bytes and evaluated with torch; the oracle is the same lambda run on numpy arrays
(with K bound to numpy formulas of those reductions). parity's rendered text, compiled again,
must give the same numbers too (what ``parity inspect`` shows is what runs).

Bounded: 200 derandomized examples (the same ones every run), no deadline.
"""

from __future__ import annotations

import base64
import marshal
import warnings
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("xdis")
hypothesis = pytest.importorskip("hypothesis")
st = pytest.importorskip("hypothesis.strategies")

from parity.ports.lambda_layer import LambdaExpression, lambda_translation  # noqa: E402

SHAPE = (2, 5, 4)
X = np.random.default_rng(9).uniform(-2, 2, SHAPE).astype("float32")
MAX_DEPTH = 4


def _reduce(fn: Any) -> Any:
    def reduced(x: np.ndarray, axis: Any = None, keepdims: bool = False) -> np.ndarray:
        return np.asarray(fn(x, axis=axis, keepdims=keepdims), dtype=x.dtype)

    return reduced


#: The oracle's K: numpy formulas of the Keras 2 backend functions the expressions call.
K = SimpleNamespace(
    mean=_reduce(np.mean),
    sum=_reduce(np.sum),
    max=_reduce(np.max),
    min=_reduce(np.min),
    square=np.square,
    abs=np.abs,
    maximum=np.maximum,
    cast=lambda value, dtype: np.asarray(value).astype(dtype),
)


def _shape(text: str) -> tuple[int, ...] | None:
    """The numpy result shape of an expression over x, or None when numpy refuses it."""
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the mean of an empty slice
            value = eval(f"lambda x: {text}", {"K": K})(X)  # the test's own generated text
    except (IndexError, ValueError, TypeError):
        return None
    return np.shape(value) if np.ndim(value) <= 6 and np.size(value) <= 4096 else None


@st.composite
def _index(draw: Any, shape: tuple[int, ...]) -> str:
    """A subscript over ``shape``: per axis an int, a slice (any step but 0), maybe a None,
    maybe a leading ..."""
    parts: list[str] = []
    axes = list(range(len(shape)))
    if draw(st.booleans()) and len(shape) > 1:
        parts.append("...")
        axes = axes[-draw(st.integers(1, len(shape) - 1)) :]
    for axis in axes:
        n = shape[axis]
        kind = draw(st.sampled_from(["full", "slice", "slice", "int", "none"]))
        if kind == "full" or (kind == "int" and n == 0):
            parts.append(":")
        elif kind == "int":
            parts.append(str(draw(st.integers(-n, n - 1))))
        elif kind == "none":
            parts += ["None", ":"]
        else:
            bound = st.one_of(st.none(), st.integers(-n - 2, n + 2))
            start, stop = draw(bound), draw(bound)
            step = draw(st.sampled_from([None, 1, 2, 3, -1, -1, -2, -3, -7]))
            text = f"{'' if start is None else start}:{'' if stop is None else stop}"
            parts.append(text if step is None else f"{text}:{step}")
    return ", ".join(parts) if parts else ":"


@st.composite
def _expression(draw: Any, depth: int = 0) -> str:
    """A random expression over x whose numpy evaluation is well defined (shapes tracked by
    probing numpy)."""
    leaf = depth >= MAX_DEPTH or draw(st.integers(0, 3)) == 0
    if leaf:
        return "x"
    kind = draw(
        st.sampled_from(["binary", "binary", "const", "unary", "subscript", "subscript", "call"])
    )
    inner = draw(_expression(depth + 1))
    shape = _shape(inner)
    if shape is None:
        return "x"
    if kind == "binary":
        other = draw(_expression(depth + 1))
        op = draw(st.sampled_from(["+", "-", "*"]))
        combined = f"({inner}) {op} ({other})"
        return combined if _shape(combined) is not None else inner
    if kind == "const":
        c = draw(st.sampled_from([0.5, 2.0, -1.5, 3.0, 127.5]))
        op = draw(st.sampled_from(["+", "-", "*", "/", "rsub", "rmul"]))
        if op == "rsub":
            return f"{c} - ({inner})"
        if op == "rmul":
            return f"{c} * ({inner})"
        return f"({inner}) {op} {c}"
    if kind == "unary":
        form = draw(
            st.sampled_from(
                ["-({})", "abs({})", "({}) ** 2", "+({})", "K.cast(({}) > 0.25, 'float32')"]
            )
        )
        return form.format(inner)
    if kind == "subscript":
        if not shape:
            return inner
        subscripted = f"({inner})[{draw(_index(shape))}]"
        return subscripted if _shape(subscripted) is not None else inner
    # call
    if not shape:
        return inner
    name = draw(st.sampled_from(["mean", "sum", "max", "min", "square", "abs", "maximum"]))
    if name in ("square", "abs"):
        return f"K.{name}({inner})"
    if name == "maximum":
        return f"K.maximum({inner}, 0.5)"
    axis = draw(st.sampled_from([None, *range(-len(shape), len(shape))]))
    keepdims = draw(st.booleans())
    call = f"K.{name}({inner}, axis={axis}, keepdims={keepdims})"
    return call if _shape(call) is not None else inner


def _keras2_config(text: str) -> dict[str, Any]:
    code = compile(f"lambda x: {text}", "<lambda>", "eval")  # the test compiles; parity never
    fn = eval(code, {"K": K})
    raw = base64.encodebytes(marshal.dumps(fn.__code__)).decode("ascii")
    return {
        "name": "lambda_1",
        "function": [raw, None, None],
        "function_type": "lambda",
        "arguments": {},
    }


def _close(ours: Any, expected: np.ndarray) -> None:
    expected = np.asarray(expected)
    ours = ours.numpy() if torch.is_tensor(ours) else np.asarray(ours)
    assert ours.shape == expected.shape
    scale = max(1.0, float(np.nanmax(np.abs(expected), initial=0.0)))
    # elementwise ops round alike; only reductions reorder sums
    np.testing.assert_allclose(ours.astype("float64"), expected, rtol=1e-5, atol=1e-5 * scale)


@hypothesis.settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[hypothesis.HealthCheck.too_slow, hypothesis.HealthCheck.data_too_large],
)
@hypothesis.given(_expression())
def test_random_expressions_match_numpy(text: str) -> None:
    config = _keras2_config(text)
    translation = lambda_translation(config)
    module = LambdaExpression(translation)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the mean of an empty slice
        expected = eval(f"lambda x: {text}", {"K": K})(X)
        rendered = eval(f"lambda x: {translation.text}", {"K": K})(X)
    with torch.no_grad():
        ours = module(torch.from_numpy(X))
    _close(ours, expected)
    _close(rendered, expected)
