"""keras.layers.Lambda: the saved function translated from its bytecode, never executed.

Parity notes:
- parity.keras.bytecode reads the function's code object (any Python 2.7-3.13, with xdis) and
  interprets it symbolically over a whitelist into an expression tree; this file evaluates the
  tree with torch (``LambdaExpression``: a tree of closures, no eval/exec) and renders it as
  text for ``parity inspect`` and as code for ``parity port``.
- Functions are looked up in ``FUNCTIONS`` by the namespace their module spelling means by
  convention (``K``/``backend`` = keras.backend of Keras 2, ``tf``/``tf.math``/``tf.nn`` =
  TensorFlow, ``ops``/``keras.ops`` = Keras 3): each keeps that library's signature, defaults
  and formula (parity.ports.lambda_ops). An unknown function is refused by name.
- ``x`` is the input tensor, or the list of inputs when the Lambda is called on several.
  ``x.shape`` is read at run time (Keras has the batch dimension as None there).
- Output mask: none (Keras 2 and 3 return the ``mask`` argument, None by default); a Lambda
  saved with a mask (a function or a value) is refused. ``output_shape`` only shapes Keras'
  symbolic tensors and is not needed.
- Python 2's ``/`` (BINARY_DIVIDE) floor-divides two ints and divides anything else.
- Subscripts go through ``lambda_ops.keras_getitem``: torch slices take no negative step, so
  such a slice is taken whole, narrowed to the run Python selects, flipped and stepped forward.
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from parity.errors import ConversionError
from parity.keras.bytecode import CLASSIC_DIVIDE, Expr, Translation, render, translate
from parity.ports import lambda_ops as ops
from parity.ports.registry import (
    Config,
    Emitted,
    Example,
    LayerConverter,
    Masks,
    Shapes,
    no_rows,
    no_weights,
)

#: (namespace, name) -> the torch function with the Keras signature (parity.ports.lambda_ops).
FUNCTIONS: dict[tuple[str, str], Callable[..., Any]] = {
    **{
        ("K", name): fn
        for name, fn in {
            "mean": ops.keras_mean,
            "sum": ops.keras_sum,
            "max": ops.keras_max,
            "min": ops.keras_min,
            "square": ops.keras_square,
            "sqrt": ops.K_sqrt,
            "exp": ops.keras_exp,
            "log": ops.keras_log,
            "abs": ops.keras_abs,
            "clip": ops.K_clip,
            "softmax": ops.keras_softmax,
            "sigmoid": ops.keras_sigmoid,
            "tanh": ops.keras_tanh,
            "relu": ops.keras_relu,
            "expand_dims": ops.K_expand_dims,
            "squeeze": ops.K_squeeze,
            "concatenate": ops.K_concatenate,
            "stack": ops.keras_stack,
            "l2_normalize": ops.K_l2_normalize,
            "reshape": ops.K_reshape,
            "permute_dimensions": ops.K_permute_dimensions,
            "transpose": ops.K_transpose,
            "cast": ops.keras_cast,
            "reverse": ops.K_reverse,
            "maximum": ops.keras_maximum,
            "minimum": ops.keras_minimum,
            "pow": ops.K_pow,
            "epsilon": ops.K_epsilon,
            "int_shape": ops.K_int_shape,
            "batch_flatten": ops.K_batch_flatten,
            "dot": ops.K_dot,
            "batch_dot": ops.K_batch_dot,
            "shape": ops.keras_shape,
            "constant": ops.K_constant,
            "ones_like": ops.keras_ones_like,
            "zeros_like": ops.keras_zeros_like,
            "repeat_elements": ops.K_repeat_elements,
            "tile": ops.K_tile,
            "argmax": ops.K_argmax,
            "argmin": ops.K_argmin,
        }.items()
    },
    **{
        ("tf", name): fn
        for name, fn in {
            "reduce_mean": ops.tf_reduce_mean,
            "reduce_sum": ops.tf_reduce_sum,
            "reduce_max": ops.tf_reduce_max,
            "reduce_min": ops.tf_reduce_min,
            "square": ops.keras_square,
            "sqrt": ops.keras_sqrt,
            "exp": ops.keras_exp,
            "log": ops.keras_log,
            "abs": ops.keras_abs,
            "clip_by_value": ops.tf_clip_by_value,
            "softmax": ops.tf_softmax,
            "sigmoid": ops.keras_sigmoid,
            "tanh": ops.keras_tanh,
            "relu": ops.tf_relu,
            "expand_dims": ops.tf_expand_dims,
            "squeeze": ops.tf_squeeze,
            "concat": ops.tf_concat,
            "stack": ops.tf_stack,
            "l2_normalize": ops.tf_l2_normalize,
            "reshape": ops.tf_reshape,
            "transpose": ops.tf_transpose,
            "matmul": ops.tf_matmul,
            "cast": ops.keras_cast,
            "reverse": ops.tf_reverse,
            "maximum": ops.keras_maximum,
            "minimum": ops.keras_minimum,
            "pow": ops.tf_pow,
            "shape": ops.keras_shape,
            "ones_like": ops.tf_ones_like,
            "zeros_like": ops.tf_zeros_like,
            "tile": ops.tf_tile,
            "argmax": ops.tf_argmax,
            "argmin": ops.tf_argmin,
        }.items()
    },
    **{
        ("ops", name): fn
        for name, fn in {
            "mean": ops.keras_mean,
            "sum": ops.keras_sum,
            "max": ops.keras_max,
            "min": ops.keras_min,
            "square": ops.keras_square,
            "sqrt": ops.keras_sqrt,
            "exp": ops.keras_exp,
            "log": ops.keras_log,
            "abs": ops.keras_abs,
            "absolute": ops.keras_abs,
            "clip": ops.ops_clip,
            "softmax": ops.keras_softmax,
            "sigmoid": ops.keras_sigmoid,
            "tanh": ops.keras_tanh,
            "relu": ops.keras_relu,
            "expand_dims": ops.ops_expand_dims,
            "squeeze": ops.ops_squeeze,
            "concatenate": ops.ops_concatenate,
            "stack": ops.keras_stack,
            "reshape": ops.ops_reshape,
            "transpose": ops.ops_transpose,
            "matmul": ops.keras_matmul,
            "cast": ops.keras_cast,
            "flip": ops.ops_flip,
            "maximum": ops.keras_maximum,
            "minimum": ops.keras_minimum,
            "power": ops.ops_power,
            "dot": ops.ops_dot,
            "ones_like": ops.keras_ones_like,
            "zeros_like": ops.keras_zeros_like,
            "tile": ops.ops_tile,
        }.items()
    },
    ("builtins", "abs"): abs,
}

#: Helpers every emitted Lambda's functions may call (their source goes along).
_SHARED_HELPERS = (ops.keras_axes, ops.keras_dtype, ops.keras_integral, ops.keras_getitem)


_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "//": operator.floordiv,
    "%": operator.mod,
    "**": operator.pow,
    "@": operator.matmul,
    CLASSIC_DIVIDE: ops.classic_divide,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
}
_UNARY: dict[str, Callable[[Any], Any]] = {"-": operator.neg, "+": operator.pos}

Evaluator = Callable[[Any], Any]


def _known(namespace: str, name: str) -> bool:
    return (namespace, name) in FUNCTIONS


def _check_call(expr: Expr) -> None:
    """A call whose arguments do not bind to the Keras signature is refused at conversion."""
    namespace, name, path = expr.value
    fn = FUNCTIONS[(namespace, name)]
    if fn is abs:
        ok = len(expr.args) == 1 and not expr.keys
    else:
        split = len(expr.args) - len(expr.keys)
        try:
            inspect.signature(fn).bind(*range(split), **dict.fromkeys(expr.keys, 0))
            ok = True
        except TypeError:
            ok = False
    if not ok:
        raise ConversionError(f"{path} is called with arguments parity does not translate")


def _compile(expr: Expr) -> Evaluator:
    """The tree as nested closures over the input (built once; no eval/exec)."""
    kind, args = expr.kind, expr.args
    if kind == "input":
        return lambda x: x
    if kind == "const":
        value = expr.value
        return lambda x: value
    children = [_compile(a) for a in args]
    if kind == "tuple":
        return lambda x: tuple(c(x) for c in children)
    if kind == "list":
        return lambda x: [c(x) for c in children]
    if kind == "slice":
        start, stop, step = children
        return lambda x: slice(start(x), stop(x), step(x))
    if kind in ("binary", "compare"):
        fn2, (left, right) = _BINARY[expr.value], children
        return lambda x: fn2(left(x), right(x))
    if kind == "unary":
        fn1, (operand,) = _UNARY[expr.value], children
        return lambda x: fn1(operand(x))
    if kind == "subscript":
        value, index = children
        return lambda x: ops.keras_getitem(value(x), index(x))
    if kind == "attr":
        name, (owner,) = expr.value, children
        if name == "ndim":
            return lambda x: owner(x).dim()
        return lambda x: tuple(owner(x).shape)
    if kind == "call":
        _check_call(expr)
        fn = FUNCTIONS[expr.value[:2]]
        split = len(children) - len(expr.keys)
        positional, keywords = children[:split], dict(zip(expr.keys, children[split:], strict=True))
        return lambda x: fn(*(c(x) for c in positional), **{k: c(x) for k, c in keywords.items()})
    raise ConversionError(f"Lambda expression kind {kind!r} is not translated")


class LambdaExpression(nn.Module):
    """A Keras Lambda's translated function: ``forward(x)`` with x a tensor or a list of them."""

    def __init__(self, translation: Translation) -> None:
        super().__init__()
        self.expr = translation.expr
        self.text = translation.text
        self._evaluate = _compile(translation.expr)

    def forward(self, x: Tensor | list[Tensor]) -> Any:
        return self._evaluate(x)

    def extra_repr(self) -> str:
        return f"x -> {self.text}"


def lambda_translation(config: Config) -> Translation:
    """The translated function of a Lambda config, or ConversionError naming why not."""
    where = f"Lambda {config.get('name', '?')!r}"
    kind = config.get("function_type", "lambda")
    if config.get("mask") is not None:
        raise ConversionError(f"{where}: a mask given to the Lambda is not translated")
    function = config.get("function")
    if kind == "function" or _named_function(function):
        return _named(function, config, where)
    if kind != "lambda":
        raise ConversionError(f"{where}: function_type {kind!r} is not translated")
    try:
        translation = translate(
            function, arguments=config.get("arguments"), where=where, known=_known
        )
        _check_calls(translation.expr)
    except ConversionError as exc:
        message = str(exc) if str(exc).startswith(where) else f"{where}: {exc}"
        raise ConversionError(message) from None
    if translation.expr.kind in ("tuple", "list"):
        raise ConversionError(f"{where}: returns several values ({translation.text})")
    return translation


def lambda_summary(config: Config) -> str:
    """One line for ``parity inspect``: ``x -> <expression>``, or why it is not translated."""
    try:
        return f"x -> {lambda_translation(config).text}"
    except ConversionError as exc:
        return f"not translated: {exc}"


def _check_calls(expr: Expr) -> None:
    if expr.kind == "call":
        _check_call(expr)
    for child in expr.args:
        _check_calls(child)


#: Where Keras says a named function (function_type "function") lives, by namespace.
_NAMED_MODULES = {
    "keras.backend": "K",
    "tf_keras.src.backend": "K",
    "keras.src.backend": "K",
    "tensorflow.python.keras.backend": "K",
    "keras.ops": "ops",
    "keras.src.ops": "ops",
    "tensorflow": "tf",
    "tensorflow.math": "tf",
    "tensorflow.nn": "tf",
}


def _named_function(function: Any) -> bool:
    return isinstance(function, dict) and function.get("class_name") == "function"


def _named(function: Any, config: Config, where: str) -> Translation:
    """A Lambda of a named function (Lambda(K.square)): translated only when the module is a
    Keras/TF backend one and the function is in the table; called on the input alone."""
    if _named_function(function):
        name, module = function.get("config"), function.get("module")
    else:
        name, module = function, config.get("module")
    namespace = next(
        (ns for prefix, ns in _NAMED_MODULES.items() if str(module).startswith(prefix)), None
    )
    if not isinstance(name, str) or namespace is None or (namespace, name) not in FUNCTIONS:
        raise ConversionError(
            f"{where}: the named function {module}.{name} is not a Keras backend function "
            "parity knows; nothing was executed"
        )
    if config.get("arguments"):
        raise ConversionError(f"{where}: arguments to a named function are not translated")
    path = f"{module}.{name}"
    return Translation(Expr("call", (namespace, name, path), (Expr("input"),)), ())


def _build(config: Config, shapes: Shapes, acts: dict[str, str]) -> nn.Module:
    return LambdaExpression(lambda_translation(config))


def _call(module: nn.Module, config: Config, xs: list[Tensor], masks: Masks):
    out = module(xs[0] if len(xs) == 1 else list(xs))
    if not isinstance(out, Tensor):
        raise ConversionError(
            f"Lambda {config.get('name', '?')!r} computed a {type(out).__name__}, not a tensor"
        )
    return [out], [None]


_PLACEHOLDER = "__lambda_input__"


def emitted_code(expr: Expr, inputs: int) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """(the expression as torch code over {x0}, {x1}, ..., the helper names it imports from
    keras_layers.py, their sources)."""
    used: dict[str, str] = {}

    def call(e: Expr, args: list[str]) -> str:
        if e.value[0] == "builtins" and e.value[1] in _EMITTED_BUILTINS:
            name = e.value[1]
            if name != "slice":
                used[name] = inspect.getsource(getattr(ops, name))
            return f"{name}({', '.join(args)})"
        fn = FUNCTIONS[e.value[:2]]
        if fn is abs:
            return f"abs({args[0]})"
        used[fn.__name__] = inspect.getsource(fn)
        split = len(args) - len(e.keys)
        keywords = [f"{k}={v}" for k, v in zip(e.keys, args[split:], strict=True)]
        return f"{fn.__name__}({', '.join(args[:split] + keywords)})"

    text = render(_torch_tree(expr), _PLACEHOLDER, call)
    text = text.replace("{", "{{").replace("}", "}}")
    names = ", ".join(f"{{x{i}}}" for i in range(inputs))
    text = text.replace(_PLACEHOLDER, "{x0}" if inputs == 1 else f"[{names}]")
    if not used:
        return text, (), ()
    # the helpers call these: their sources go along (deduplicated by the port)
    shared = [inspect.getsource(f) for f in _SHARED_HELPERS]
    return text, tuple(used), (*shared, *used.values())


#: Calls the emitted code makes beside the FUNCTIONS table: lambda_ops helpers and slice().
_EMITTED_BUILTINS = ("classic_divide", "keras_getitem", "slice")


def _builtin(name: str, args: tuple[Expr, ...]) -> Expr:
    return Expr("call", ("builtins", name, name), args)


def _forward_steps(index: Expr) -> bool:
    """Whether every slice in a subscript's index steps forward (torch's own slicing)."""
    items = index.args if index.kind == "tuple" else (index,)
    for item in items:
        if item.kind != "slice":
            continue
        step = item.args[2]
        if step.kind != "const" or not (step.value is None or _positive_int(step.value)):
            return False
    return True


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _torch_tree(expr: Expr) -> Expr:
    """The tree as the emitted code spells it: Python 2 divisions as classic_divide calls,
    subscripts with a negative (or computed) slice step as keras_getitem calls with slice()
    objects, ``.shape`` as a tuple (what the module computes)."""
    args = tuple(_torch_tree(a) for a in expr.args)
    if expr.kind == "binary" and expr.value == CLASSIC_DIVIDE:
        return _builtin("classic_divide", args)
    if expr.kind == "subscript" and not _forward_steps(expr.args[1]):
        value, index = args
        items = index.args if index.kind == "tuple" else (index,)
        items = tuple(_builtin("slice", i.args) if i.kind == "slice" else i for i in items)
        return _builtin("keras_getitem", (value, Expr("tuple", args=items)))
    return Expr(expr.kind, expr.value, args, expr.keys)


def _emit(module: nn.Module | None, config: Config, masked: tuple[bool, ...]) -> Emitted:
    assert isinstance(module, LambdaExpression)
    text, helpers, sources = emitted_code(module.expr, max(len(masked), 1))
    return Emitted(None, (f"{{out0}} = {text}",), ("None",), helpers=helpers, sources=sources)


def _example(fn: Callable[..., Any], **config: Any) -> Example:
    """A Keras 3 Lambda config of ``fn`` as the running Python saves it (the test suite builds
    it in live Keras, which runs it; parity only translates it)."""
    import base64
    import marshal

    kind = config.pop("_input", "sequence")
    code = base64.b64encode(marshal.dumps(fn.__code__)).decode("ascii")
    lam = {"class_name": "__lambda__", "config": {"code": code, "defaults": None, "closure": None}}
    return Example({"function": lam, "arguments": {}, **config}, kind)


CONVERTERS: dict[str, LayerConverter] = {
    "Lambda": LayerConverter(
        no_weights,
        _build,
        no_rows,
        _call,
        inputs=None,
        emit=_emit,
        examples=(
            _example(lambda x: x / 127.5 - 1.0),
            _example(lambda x: x[:, -1, :]),
            _example(lambda x: x[..., None, ::2] * x.shape[-1] - abs(x[:, :, None, :1])),
            _example(lambda x: x[0] * 2.0 - x[1] ** 2, _input="paired_sequences"),
            _example(lambda x: x[:, ::-1, ::-2] * 2.0 - x[:, -2::-3, :1][:, :1]),
        ),
    ),
}
