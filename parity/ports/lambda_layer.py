"""keras.layers.Lambda: the saved function translated from its bytecode, never executed.

Parity notes:
- parity.keras.bytecode reads the function's code object (any Python 2.7-3.13, with xdis) and
  interprets it symbolically over a whitelist into an expression tree; this file evaluates the
  tree with torch (``LambdaExpression``: a tree of closures, no eval/exec) and renders it as
  text for ``parity inspect`` and as code for ``parity port``.
- Functions are looked up in ``FUNCTIONS`` by the namespace their full module spelling means
  by convention (``K``/``backend``/``tf.keras.backend`` = keras.backend of Keras 2; ``tf``,
  ``tf.math``, ``tf.nn``, ``tf.linalg`` = those TensorFlow modules, each its own table, since
  ``tf.linalg.transpose`` is not ``tf.transpose``; ``ops``/``keras.ops`` = Keras 3): each keeps
  that spelling's signature, defaults and formula (parity.ports.lambda_ops). An unknown
  function is refused by name.
- ``resolve`` settles at conversion what would otherwise fail at run time: signatures,
  ``K.floatx()``, dtype names (TF's or Keras 3's aliases), tuples/lists beside tensors.
- ``x`` is the input tensor, or the list of inputs when the Lambda is called on several or
  (Keras 3 records it) on a list of one.
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
from collections.abc import Callable, Iterable
from typing import Any

from torch import Tensor, nn

from parity.errors import ConversionError
from parity.keras.bytecode import (
    CLASSIC_DIVIDE,
    MAX_MODEL_CODE_BYTES,
    Expr,
    Translation,
    function_bytes,
    render,
    translate,
)
from parity.keras.graph import INPUT_STRUCTURE, LISTED
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

#: Keras 2's backend (tf.keras, tf_keras, Keras 2.x): ``K.<name>``.
_K_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "mean": ops.K_mean,
    "sum": ops.keras_sum,
    "max": ops.keras_max,
    "min": ops.keras_min,
    "square": ops.keras_square,
    "sqrt": ops.K_sqrt,
    "exp": ops.keras_exp,
    "log": ops.keras_log,
    "abs": ops.keras_abs,
    "clip": ops.K_clip,
    "softmax": ops.K_softmax,
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
    "floatx": ops.K_floatx,
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
}

#: TensorFlow's top level (``tf.<name>``, TF 2 and the TF 1 spellings log and
#: matrix_transpose).
_TF_FUNCTIONS: dict[str, Callable[..., Any]] = {
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
    "sigmoid": ops.keras_sigmoid,
    "tanh": ops.keras_tanh,
    "expand_dims": ops.tf_expand_dims,
    "squeeze": ops.tf_squeeze,
    "concat": ops.tf_concat,
    "stack": ops.tf_stack,
    "reshape": ops.tf_reshape,
    "transpose": ops.tf_transpose,
    "matrix_transpose": ops.tf_matrix_transpose,
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
}

#: ``tf.math.<name>``: what TensorFlow exports there (the same functions as tf.<name>, plus
#: log, softmax and l2_normalize).
_TF_MATH_FUNCTIONS: dict[str, Callable[..., Any]] = {
    **{
        name: _TF_FUNCTIONS[name]
        for name in (
            "reduce_mean",
            "reduce_sum",
            "reduce_max",
            "reduce_min",
            "square",
            "sqrt",
            "exp",
            "log",
            "abs",
            "sigmoid",
            "tanh",
            "maximum",
            "minimum",
            "pow",
            "argmax",
            "argmin",
        )
    },
    "softmax": ops.tf_softmax,
    "l2_normalize": ops.tf_l2_normalize,
}

#: ``tf.nn.<name>``.
_TF_NN_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "softmax": ops.tf_softmax,
    "sigmoid": ops.keras_sigmoid,
    "tanh": ops.keras_tanh,
    "relu": ops.tf_relu,
    "l2_normalize": ops.tf_l2_normalize,
}

#: ``tf.linalg.<name>``: transpose is TF 1's name of matrix_transpose (the last two axes), not
#: tf.transpose.
_TF_LINALG_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "matmul": ops.tf_matmul,
    "l2_normalize": ops.tf_l2_normalize,
    "matrix_transpose": ops.tf_matrix_transpose,
    "transpose": ops.tf_matrix_transpose,
}

#: Keras 3's ``keras.ops.<name>``.
_OPS_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "mean": ops.ops_mean,
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
    "softmax": ops.ops_softmax,
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
}

#: (namespace, name) -> the torch function with that spelling's signature and meaning
#: (parity.ports.lambda_ops). The namespace is the one the written module path means
#: (parity.keras.bytecode.MODULE_NAMESPACES): each spelling is looked up in its own table.
FUNCTIONS: dict[tuple[str, str], Callable[..., Any]] = {
    **{("K", name): fn for name, fn in _K_FUNCTIONS.items()},
    **{("tf", name): fn for name, fn in _TF_FUNCTIONS.items()},
    **{("tf.math", name): fn for name, fn in _TF_MATH_FUNCTIONS.items()},
    **{("tf.nn", name): fn for name, fn in _TF_NN_FUNCTIONS.items()},
    **{("tf.linalg", name): fn for name, fn in _TF_LINALG_FUNCTIONS.items()},
    **{("ops", name): fn for name, fn in _OPS_FUNCTIONS.items()},
    ("builtins", "abs"): abs,
}

#: Helpers every emitted Lambda's functions may call (their source goes along).
_SHARED_HELPERS = (
    ops.keras_axes,
    ops.keras_dtype,
    ops.keras_integral,
    ops.keras_reduce_mean,
    ops.keras_getitem,
)


_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": ops.keras_true_divide,
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


def _bound(expr: Expr) -> inspect.BoundArguments | None:
    """A call's arguments bound to its function's signature (None for the builtin abs);
    ConversionError when they do not bind."""
    namespace, name, path = expr.value
    fn = FUNCTIONS[(namespace, name)]
    split = len(expr.args) - len(expr.keys)
    if fn is abs:
        if len(expr.args) == 1 and not expr.keys:
            return None
        raise ConversionError(f"{path} is called with arguments parity does not translate")
    keywords = dict(zip(expr.keys, expr.args[split:], strict=True))
    try:
        return inspect.signature(fn).bind(*expr.args[:split], **keywords)
    except TypeError:
        raise ConversionError(
            f"{path} is called with arguments parity does not translate"
        ) from None


#: Dtype spellings each library accepts beside the canonical names (tf.as_dtype's aliases;
#: Keras 3's standardize_dtype, which takes "int" and refuses TF's aliases).
_DTYPE_ALIASES = {
    "tf": {"half": "float16", "float": "float32", "double": "float64"},
    "ops": {"int": "int64"},
}
#: Parameters that take a dtype name (resolved at conversion, so a bad one is refused there).
_DTYPE_PARAMETERS = ("dtype", "output_type")
#: What keras.backend.floatx() returns unless the script changed it (a file does not say).
FLOATX = "float32"


def resolve(expr: Expr) -> Expr:
    """The tree with everything that can be settled before run time settled, or
    ConversionError: calls bound to their signatures, K.floatx() as its value, dtype names as
    canonical ones (refused when unknown or computed), tuples and lists beside arithmetic
    checked to be rectangular numbers (TF turns them into tensors)."""
    args = tuple(resolve(a) for a in expr.args)
    expr = Expr(expr.kind, expr.value, args, expr.keys)
    if expr.kind == "call":
        bound = _bound(expr)
        if FUNCTIONS[expr.value[:2]] is ops.K_floatx:
            return Expr("const", FLOATX)
        if bound is not None:
            expr = _resolve_dtypes(expr, bound)
    if expr.kind in ("binary", "compare"):
        for operand in expr.args:
            if operand.kind in ("tuple", "list"):
                _numbers_shape(operand, render(operand))
    if expr.kind in ("binary", "unary") and any(a.kind == "compare" for a in expr.args):
        # TF keeps a comparison's bool dtype: (x > 0) * x casts x to bool (a logical and),
        # -(x > 0) and (x > 0) + 1.0 fail; torch would compute numbers
        raise ConversionError(
            f"{render(expr)} does arithmetic on a comparison, which TensorFlow computes in bool "
            "(cast it first, e.g. K.cast(x > 0, 'float32'))"
        )
    return expr


def _resolve_dtypes(expr: Expr, bound: inspect.BoundArguments) -> Expr:
    namespace, _, path = expr.value
    aliases = _DTYPE_ALIASES["ops" if namespace == "ops" else "tf"]
    args = list(expr.args)
    for parameter in _DTYPE_PARAMETERS:
        value = bound.arguments.get(parameter)
        if value is None or value == Expr("const", None):
            continue
        dtype = value.value if value.kind == "const" else None
        if isinstance(dtype, str):
            dtype = aliases.get(dtype, dtype)
        try:
            ops.keras_dtype(dtype)
        except ValueError:
            raise ConversionError(
                f"{path} is given the dtype {render(value)}, which is not one parity knows"
            ) from None
        at = next(i for i, a in enumerate(expr.args) if a is value)
        args[at] = Expr("const", dtype)
    return Expr(expr.kind, expr.value, tuple(args), expr.keys)


def _numbers_shape(expr: Expr, text: str) -> tuple[int, ...]:
    """The shape of a tuple/list of numbers (as a tensor), or ConversionError."""
    if expr.kind == "const":
        value = expr.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConversionError(f"{text} beside a tensor holds {value!r}, not only numbers")
        return ()
    if expr.kind not in ("tuple", "list"):
        raise ConversionError(f"{text} beside a tensor holds a value computed at run time")
    shapes = {_numbers_shape(a, text) for a in expr.args}
    if len(shapes) > 1:
        raise ConversionError(f"{text} beside a tensor is ragged")
    return (len(expr.args), *(shapes.pop() if shapes else ()))


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

        def binary(x: Any) -> Any:
            # a tuple/list beside a tensor becomes a tensor of its dtype, as TF converts it
            a, b = left(x), right(x)
            return fn2(ops.keras_operand(a, b), ops.keras_operand(b, a))

        return binary
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
        translation = Translation(resolve(translation.expr), translation.versions)
    except ConversionError as exc:
        message = str(exc) if str(exc).startswith(where) else f"{where}: {exc}"
        raise ConversionError(message) from None
    if translation.expr.kind in ("tuple", "list"):
        raise ConversionError(f"{where}: returns several values ({translation.text})")
    return translation


def model_code_problem(configs: Iterable[Config]) -> str | None:
    """Why a model's Lambdas are not translated at all: their code together is larger than
    MAX_MODEL_CODE_BYTES (each is read once per candidate Python); None when within it."""
    total = 0
    for config in configs:
        try:
            raw, _, _ = function_bytes(config.get("function"), "Lambda")
        except ConversionError:
            continue  # refused on its own when translated
        total += len(raw)
    if total > MAX_MODEL_CODE_BYTES:
        return (
            f"the model's Lambda functions hold {total:,} bytes of code, more than "
            f"{MAX_MODEL_CODE_BYTES:,}; nothing was executed"
        )
    return None


def lambda_summary(config: Config, problem: str | None = None) -> str:
    """One line for ``parity inspect``: ``x -> <expression>``, or why it is not translated
    (``problem``: the model's, from model_code_problem)."""
    if problem is not None:
        return f"not translated: {problem}"
    try:
        return f"x -> {lambda_translation(config).text}"
    except ConversionError as exc:
        return f"not translated: {exc}"


#: Where Keras says a named function (function_type "function") lives: the exact backend
#: modules of Keras 2 (keras.src.backend is Keras 2.13-2.15's; Keras 3's backend functions
#: live below it and are refused), and module prefixes.
_NAMED_BACKENDS = (
    "keras.backend",
    "keras.src.backend",
    "tf_keras.backend",
    "tf_keras.src.backend",
    "tensorflow.python.keras.backend",
)
_NAMED_PREFIXES = {
    "keras.backend.": ("K",),  # Keras 2.0-2.3: keras.backend.tensorflow_backend
    "keras.ops.": ("ops",),
    "keras.src.ops.": ("ops",),
    # TF's functions live in tensorflow.python.ops.*: their own name tells them apart
    # (tf.transpose is transpose_v2, tf.linalg.matrix_transpose is matrix_transpose)
    "tensorflow.": ("tf", "tf.math", "tf.nn"),
}


def _named_namespaces(module: Any) -> tuple[str, ...]:
    if not isinstance(module, str):
        return ()
    if module in _NAMED_BACKENDS:
        return ("K",)
    if module.startswith("tensorflow.python.keras") or module.startswith("tensorflow.keras"):
        return ()
    return next((ns for p, ns in _NAMED_PREFIXES.items() if module.startswith(p)), ())


def _named_function(function: Any) -> bool:
    return isinstance(function, dict) and function.get("class_name") == "function"


def _named(function: Any, config: Config, where: str) -> Translation:
    """A Lambda of a named function (Lambda(K.square)): translated only when the module is a
    Keras/TF backend one and the function is in the table; called on the input alone."""
    if _named_function(function):
        name, module = function.get("config"), function.get("module")
    else:
        name, module = function, config.get("module")
    namespace = next((ns for ns in _named_namespaces(module) if (ns, name) in FUNCTIONS), None)
    if not isinstance(name, str) or namespace is None:
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


def _listed(config: Config) -> bool:
    """Whether the Lambda was called on a list of one tensor (Keras 3 records the list and
    passes it on: the function sees a list, not the tensor)."""
    options = config.get("_options") or {}
    return isinstance(options, dict) and options.get(INPUT_STRUCTURE) == LISTED


def _call(module: nn.Module, config: Config, xs: list[Tensor], masks: Masks):
    out = module(xs[0] if len(xs) == 1 and not _listed(config) else list(xs))
    if not isinstance(out, Tensor):
        raise ConversionError(
            f"Lambda {config.get('name', '?')!r} computed a {type(out).__name__}, not a tensor"
        )
    return [out], [None]


_PLACEHOLDER = "__lambda_input__"


def emitted_code(
    expr: Expr, inputs: int, listed: bool = False
) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """(the expression as torch code over {x0}, {x1}, ..., the helper names it imports from
    keras_layers.py, their sources); ``listed``: one input passed as a list of one."""
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
    text = text.replace(_PLACEHOLDER, "{x0}" if inputs == 1 and not listed else f"[{names}]")
    if not used:
        return text, (), ()
    # the helpers call these: their sources go along (deduplicated by the port)
    shared = [inspect.getsource(f) for f in _SHARED_HELPERS]
    return text, tuple(used), (*shared, *used.values())


#: Calls the emitted code makes beside the FUNCTIONS table: lambda_ops helpers and slice().
_EMITTED_BUILTINS = (
    "classic_divide",
    "keras_true_divide",
    "keras_operand",
    "keras_getitem",
    "slice",
)


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


def _float_constant(expr: Expr) -> bool:
    return expr.kind == "const" and isinstance(expr.value, float)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _torch_tree(expr: Expr) -> Expr:
    """The tree as the emitted code spells it: Python 2 divisions as classic_divide calls,
    subscripts with a negative (or computed) slice step as keras_getitem calls with slice()
    objects, ``.shape`` as a tuple (what the module computes)."""
    args = tuple(_torch_tree(a) for a in expr.args)
    if expr.kind == "binary" and expr.value == CLASSIC_DIVIDE:
        return _builtin("classic_divide", args)
    if expr.kind in ("binary", "compare") and any(a.kind in ("tuple", "list") for a in args):
        # TF turns a tuple/list beside a tensor into a tensor (the other side computed twice)
        left, right = args
        args = (_builtin("keras_operand", (left, right)), _builtin("keras_operand", (right, left)))
    if expr.kind == "binary" and expr.value == "/" and not any(map(_float_constant, args)):
        # integer tensors divide as TF's truediv does (beside a float constant TF needs floats)
        return _builtin("keras_true_divide", args)
    if expr.kind == "subscript" and not _forward_steps(expr.args[1]):
        value, index = args
        items = index.args if index.kind == "tuple" else (index,)
        items = tuple(_builtin("slice", i.args) if i.kind == "slice" else i for i in items)
        return _builtin("keras_getitem", (value, Expr("tuple", args=items)))
    return Expr(expr.kind, expr.value, args, expr.keys)


def _emit(module: nn.Module | None, config: Config, masked: tuple[bool, ...]) -> Emitted:
    assert isinstance(module, LambdaExpression)
    text, helpers, sources = emitted_code(module.expr, max(len(masked), 1), _listed(config))
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
