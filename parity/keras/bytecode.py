"""A Keras Lambda layer's saved Python function, read as data and translated to a small
expression tree (``Expr``), never executed.

Keras saves a Lambda's function as ``marshal.dumps(func.__code__)`` of the Python that saved it
(Keras 1.x-2.1: the bytes as a raw_unicode_escape string; Keras 2.2+, tf.keras: base64; Keras 3:
base64 under {"class_name": "__lambda__"}), with its defaults and closure values. The file does
not say which Python wrote it, and code objects differ from version to version; so:

0. the bytes are walked once per candidate layout by ``prescan`` (linear time, no objects
   built): back-references to containers, oversized ints, tuples and object counts are
   refused there, since xdis reads those in quadratic or exponential time;
1. the bytes are read with xdis' pure-Python unmarshaller (``xdis.unmarshal.load_code``, never
   ``marshal.loads`` and never xdis' ``load_module``, which falls back to the running
   interpreter's marshal), once per candidate Python (2.7, 3.5 ... 3.13); a candidate whose
   layout does not consume the bytes exactly is dropped;
2. its instructions are decoded with that version's opcode table (xdis); a candidate with an
   opcode its version does not have, or (3.11+) whose inline CACHE units do not follow the
   instructions as that version lays them out (``INLINE_CACHES``), is dropped;
3. each remaining candidate is interpreted symbolically over a whitelist (one handler per
   opcode name, ``_HANDLERS``): the stack holds expression trees, never Python objects from the
   file. Every other instruction, global name or function is refused by name;
4. candidates that agree give the answer; candidates that translate to different expressions
   are refused as ambiguous.

Nothing from the file is evaluated, imported, unpickled or unmarshalled by the interpreter's
own marshal. Sizes (bytes, instructions, stack, tree nodes) are bounded for hostile input.
This module knows nothing of torch: parity.ports.lambda_layer evaluates the tree.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import reprlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from parity.errors import ConversionError

#: Bound on the marshalled code object (a real Lambda is a few hundred bytes).
MAX_CODE_BYTES = 64 * 1024
#: Bound on all Lambda code of one model (each Lambda is read once per candidate Python).
MAX_MODEL_CODE_BYTES = 256 * 1024
#: Bounds checked on the marshal bytes before xdis reads them (``prescan``): objects in all,
#: items of one tuple/list/set (xdis grows tuples one item at a time: quadratic), nesting,
#: digits of a big int (15 bits each; xdis builds them quadratically; int64 needs 5) and
#: characters of a float written as text.
MAX_MARSHAL_OBJECTS = 4096
MAX_MARSHAL_ITEMS = 1024
MAX_MARSHAL_DEPTH = 16
MAX_LONG_DIGITS = 5
MAX_FLOAT_TEXT = 64
#: Bound on the instructions interpreted.
MAX_INSTRUCTIONS = 1024
#: Bound on the symbolic stack and on the expression tree's node count.
MAX_STACK = 64
MAX_NODES = 2048
#: Bound on the tree's nesting (walked recursively when evaluated and rendered).
MAX_DEPTH = 100
#: Bound on a plain constant's nesting (tuples in tuples) and element count.
MAX_CONSTANT_ITEMS = 256
MAX_CONSTANT_DEPTH = 8
#: Bound on a string constant (dtype names, keywords: a few characters).
MAX_STRING = 256

#: The Pythons Keras files were saved from (Keras 1.2/2.0 with 2.7 up to Keras 3 with 3.13).
PYTHON_VERSIONS: tuple[tuple[int, int], ...] = (
    (2, 7),
    (3, 5),
    (3, 6),
    (3, 7),
    (3, 8),
    (3, 9),
    (3, 10),
    (3, 11),
    (3, 12),
    (3, 13),
)

#: Code-object flags that take the function off the whitelist: *args, **kwargs, generator,
#: coroutine, async generator (CPython's CO_VARARGS ... CO_ASYNC_GENERATOR).
_REFUSED_FLAGS = {
    0x04: "takes *args",
    0x08: "takes **kwargs",
    0x20: "is a generator",
    0x80: "is a coroutine",
    0x100: "is a coroutine",
    0x200: "is an async generator",
}

#: Parameters Keras fills itself when the function names them: not translatable.
_KERAS_FILLED = ("mask", "training")

#: Written module paths and the function table each means by convention (``from keras import
#: backend as K``, ``import tensorflow as tf``, ``from keras import ops``): the namespaces of
#: parity.ports.lambda_layer.FUNCTIONS. Each TensorFlow submodule has its own table, because
#: one name can mean different functions there (tf.transpose reverses every axis,
#: tf.linalg.transpose swaps the last two). Keras does not store the globals: these are the
#: names the Keras documentation and the files seen in the wild use.
MODULE_NAMESPACES: dict[str, str] = {
    "K": "K",
    "backend": "K",
    "keras.backend": "K",
    "tf.keras.backend": "K",
    "tf_keras.backend": "K",
    "tensorflow.keras.backend": "K",
    "tf": "tf",
    "tensorflow": "tf",
    "tf.math": "tf.math",
    "tensorflow.math": "tf.math",
    "tf.nn": "tf.nn",
    "tensorflow.nn": "tf.nn",
    "tf.linalg": "tf.linalg",
    "tensorflow.linalg": "tf.linalg",
    "ops": "ops",
    "keras.ops": "ops",
}
#: Module paths on the way to those (``tf.keras`` in ``tf.keras.backend.mean``): no functions.
MODULE_PATHS = frozenset(
    ".".join(path.split(".")[:n])
    for path in MODULE_NAMESPACES
    for n in range(1, path.count(".") + 2)
)
#: Python builtins a Lambda may call on tensors (the namespace "builtins").
BUILTIN_FUNCTIONS = ("abs",)
#: Tensor attributes a Lambda may read: the static shape (batch dimension at run time) and rank.
TENSOR_ATTRIBUTES = ("shape", "ndim")

#: Binary operators: their text and precedence (Python's), for rendering.
BINARY_PRECEDENCE = {
    "**": 7,
    "*": 5,
    "/": 5,
    "//": 5,
    "%": 5,
    "@": 5,
    "+": 4,
    "-": 4,
}
COMPARISONS = ("<", "<=", "==", "!=", ">", ">=")
#: Python 2's BINARY_DIVIDE: ints floor-divide, anything else divides (rendered "/").
CLASSIC_DIVIDE = "/2"

# CPython's BINARY_OP argument (3.11+): the operator, in-place forms 13 higher.
_BINARY_OP_ARGS = {
    0: "+",
    2: "//",
    4: "@",
    5: "*",
    6: "%",
    8: "**",
    10: "-",
    11: "/",
}
_BINARY_OPNAMES = {
    "BINARY_ADD": "+",
    "BINARY_SUBTRACT": "-",
    "BINARY_MULTIPLY": "*",
    "BINARY_TRUE_DIVIDE": "/",
    "BINARY_FLOOR_DIVIDE": "//",
    "BINARY_MODULO": "%",
    "BINARY_POWER": "**",
    "BINARY_MATRIX_MULTIPLY": "@",
    "BINARY_DIVIDE": CLASSIC_DIVIDE,
}
# CALL_INTRINSIC_1 (3.12+): unary plus is INTRINSIC_UNARY_POSITIVE.
_INTRINSIC_UNARY_POSITIVE = 5
# COMPARE_OP (3.13): bit 4 of the argument converts the result to a bool (a truth test).
_COMPARE_TO_BOOL_313 = 16
#: COMPARE_OP's argument: 3.11 writes the comparison's index in COMPARISONS; 3.12 writes
#: index << 4 and 3.13 index << 5, each with that comparison's mask in the low 4 bits (CPython's
#: compare_masks: less 2, greater 4, equal 8, not equal 7). An argument a version never
#: writes means the bytes are not that version's (3.11 and 3.12 share the opcode).
_COMPARE_MASKS = (2, 10, 8, 7, 4, 12)
_COMPARE_SHIFT = {(3, 12): 4, (3, 13): 5}

#: CPython's inline caches (CACHE code units after an instruction), per version, from each
#: version's Lib/opcode.py ``_cache_format``. A 3.11+ code object carries exactly these (marshal
#: writes them zeroed), so a candidate whose caches do not line up is not that version: where
#: the opcode numbers agree (3.11 and 3.12) this tells the layouts apart, e.g. LOAD_ATTR's
#: argument, a name index in 3.11 and index * 2 + method flag in 3.12.
INLINE_CACHES: dict[tuple[int, int], dict[str, int]] = {
    (3, 11): {
        "BINARY_SUBSCR": 4,
        "STORE_SUBSCR": 1,
        "UNPACK_SEQUENCE": 1,
        "STORE_ATTR": 4,
        "LOAD_ATTR": 4,
        "COMPARE_OP": 2,
        "LOAD_GLOBAL": 5,
        "BINARY_OP": 1,
        "LOAD_METHOD": 10,
        "PRECALL": 1,
        "CALL": 4,
    },
    (3, 12): {
        "LOAD_GLOBAL": 4,
        "BINARY_OP": 1,
        "UNPACK_SEQUENCE": 1,
        "COMPARE_OP": 1,
        "BINARY_SUBSCR": 1,
        "FOR_ITER": 1,
        "LOAD_SUPER_ATTR": 1,
        "LOAD_ATTR": 9,
        "STORE_ATTR": 4,
        "CALL": 3,
        "STORE_SUBSCR": 1,
        "SEND": 1,
    },
    (3, 13): {
        "LOAD_GLOBAL": 4,
        "BINARY_OP": 1,
        "UNPACK_SEQUENCE": 1,
        "COMPARE_OP": 1,
        "CONTAINS_OP": 1,
        "BINARY_SUBSCR": 1,
        "FOR_ITER": 1,
        "LOAD_SUPER_ATTR": 1,
        "LOAD_ATTR": 9,
        "STORE_ATTR": 4,
        "CALL": 3,
        "STORE_SUBSCR": 1,
        "SEND": 1,
        "JUMP_BACKWARD": 1,
        "TO_BOOL": 3,
        "POP_JUMP_IF_TRUE": 1,
        "POP_JUMP_IF_FALSE": 1,
        "POP_JUMP_IF_NONE": 1,
        "POP_JUMP_IF_NOT_NONE": 1,
    },
}


@dataclass(frozen=True)
class Expr:
    """One node of a translated Lambda: ``kind`` with its ``value`` and children.

    kinds: "input" (the Lambda's argument), "const" (value), "tuple"/"list" (args), "slice"
    (args: start, stop, step), "binary" (value: operator; args: left, right), "compare",
    "unary" (value "-" or "+"), "subscript" (args: object, index), "attr" (value: name; args:
    object), "call" (value: (namespace, name, written path); args: positional then keyword
    values; keys: the keyword names).
    """

    kind: str
    value: Any = None
    args: tuple[Expr, ...] = ()
    keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class Translation:
    """A Lambda function translated: the expression and the Pythons whose bytecode gave it."""

    expr: Expr
    versions: tuple[tuple[int, int], ...]

    @property
    def text(self) -> str:
        return render(self.expr)


# --- the saved function ------------------------------------------------------------------------


def function_bytes(function: Any, where: str) -> tuple[bytes, Any, Any]:
    """(marshalled code, defaults, closure) from a Lambda config's "function" in any Keras
    spelling; ConversionError when it is not one."""
    if isinstance(function, dict):  # Keras 3: {"class_name": "__lambda__", "config": {...}}
        inner = function.get("config")
        if function.get("class_name") != "__lambda__" or not isinstance(inner, dict):
            raise ConversionError(f"{where}: function {_show(function)} is not a saved lambda")
        code, defaults, closure = inner.get("code"), inner.get("defaults"), inner.get("closure")
    elif isinstance(function, list | tuple):
        if len(function) != 3:
            raise ConversionError(f"{where}: function is a list of {len(function)}, not 3")
        code, defaults, closure = function
    else:
        code, defaults, closure = function, None, None
    if code is None:
        raise ConversionError(f"{where}: saves no function code")
    if not isinstance(code, str):
        raise ConversionError(f"{where}: the function's code is {type(code).__name__}")
    if len(code) > 2 * MAX_CODE_BYTES:
        raise ConversionError(f"{where}: the function's code is {len(code):,} characters long")
    return _code_bytes(code, where), defaults, closure


def _code_bytes(code: str, where: str) -> bytes:
    """Keras 1.x-2.1 wrote the marshal bytes as a raw_unicode_escape string (a code object
    starts with "c", or "\\xe3" with marshal's reference flag); later Keras wrote base64."""
    if code[:1] in ("c", "\xe3"):
        try:
            raw = code.encode("raw_unicode_escape")
        except UnicodeEncodeError as exc:
            raise ConversionError(f"{where}: the function's code is not bytes ({exc})") from None
    else:
        try:
            raw = base64.b64decode("".join(code.split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ConversionError(f"{where}: the function's code is not base64 ({exc})") from None
    if len(raw) > MAX_CODE_BYTES:
        raise ConversionError(f"{where}: the function's code is {len(raw):,} bytes long")
    return raw


# --- the marshal bytes checked before xdis reads them -----------------------------------------

#: marshal's FLAG_REF: the object goes into the table that TYPE_REF ("r") points into.
_FLAG_REF = 0x80
#: Type codes without data: None, False, True, StopIteration, Ellipsis.
_SINGLETONS = frozenset(b"NFTS.")
#: Fixed-size scalars: int32, int64 (Python 2), binary float, binary complex.
_FIXED = {ord("i"): 4, ord("I"): 8, ord("g"): 8, ord("y"): 16}
#: Strings with a 4-byte length: bytes/str (s), interned (t), unicode (u), ASCII (a, A).
_LONG_STRINGS = frozenset(b"stuaA")
#: Strings with a 1-byte length (short ASCII).
_SHORT_STRINGS = frozenset(b"zZ")
#: Containers with a 4-byte count (tuple, list, set, frozenset) or a 1-byte one (small tuple).
_CONTAINERS = frozenset(b"([<>")
_SMALL_TUPLE = ord(")")
_CODE = ord("c")
#: Code object headers: the 4-byte ints before co_code, the objects before co_firstlineno and
#: after it, per layout (CPython's marshal.c; xdis reads the same fields).
_CODE_LAYOUTS = {
    "2.7": (4, 8, 1),  # argcount nlocals stacksize flags | code consts names varnames
    "3.0": (5, 8, 1),  # + kwonlyargcount                 | freevars cellvars filename name
    "3.8": (6, 8, 1),  # + posonlyargcount                | firstlineno | lnotab
    "3.11": (5, 8, 2),  # argcount posonly kwonly stacksize flags | code consts names
}  # localsplusnames localspluskinds filename name qualname | firstlineno | linetable exctable


def _layout(version: tuple[int, int]) -> tuple[int, int, int]:
    key = "2.7" if version < (3, 0) else "3.0" if version < (3, 8) else "3.8"
    return _CODE_LAYOUTS["3.11" if version >= (3, 11) else key]


class _Scan:
    """One walk over marshal bytes as xdis will read them (same type codes, same reference
    table: a flagged object takes the next index when it starts; "r" n reads entry n, or the
    last entry when n is 0 or past the end, as xdis does)."""

    def __init__(self, raw: bytes, version: tuple[int, int]) -> None:
        self.raw, self.version, self.at, self.objects = raw, version, 0, 0
        #: per reference index: whether a back-reference to it is harmless (a scalar, a
        #: string, an empty tuple). Containers are refused: shared, they make a DAG whose
        #: hashing and walking are exponential in the bytes
        self.table: list[bool] = []

    def take(self, n: int) -> bytes:
        if n < 0 or self.at + n > len(self.raw):
            raise _Layout("ends early")
        chunk = self.raw[self.at : self.at + n]
        self.at += n
        return chunk

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "little")

    def u8(self) -> int:
        return self.take(1)[0]

    def obj(self, depth: int) -> None:
        if depth > MAX_MARSHAL_DEPTH:
            raise _Limit(f"nests objects more than {MAX_MARSHAL_DEPTH} deep")
        self.objects += 1
        if self.objects > MAX_MARSHAL_OBJECTS:
            raise _Limit(f"holds more than {MAX_MARSHAL_OBJECTS} objects")
        code = self.u8()
        flagged, kind = bool(code & _FLAG_REF), code & ~_FLAG_REF
        if kind in _SINGLETONS:
            return
        if kind == ord("r"):
            self.reference(self.u32())
            return
        if kind == ord("R"):  # Python 2: an index into the interned strings
            self.u32()
            return
        slot = len(self.table)
        if flagged:
            self.table.append(False)  # reserved: a reference while it is read is refused
        harmless = True
        if kind in _FIXED:
            self.take(_FIXED[kind])
        elif kind in _LONG_STRINGS:
            self.take(self.u32())
        elif kind in _SHORT_STRINGS:
            self.take(self.u8())
        elif kind == ord("l"):
            digits = self.u32()  # xdis reads the signed count unsigned: a negative is huge
            if digits > MAX_LONG_DIGITS:
                raise _Limit(f"holds an integer of more than {MAX_LONG_DIGITS * 15} bits")
            self.take(2 * digits)
        elif kind == ord("f"):  # a float as text (Python 2's marshal version 0/1)
            self.take(self.u8())
        elif kind == ord("x"):  # a complex as two texts
            for _ in range(2):
                size = self.u32()
                if size > MAX_FLOAT_TEXT:
                    raise _Limit("holds a complex number written as long text")
                self.take(size)
        elif kind in _CONTAINERS or kind == _SMALL_TUPLE:
            count = self.u8() if kind == _SMALL_TUPLE else self.u32()
            if count > MAX_MARSHAL_ITEMS:
                raise _Limit(f"holds a tuple, list or set of {count:,} items")
            for _ in range(count):
                self.obj(depth + 1)
            harmless = count == 0 and kind in (_SMALL_TUPLE, ord("("))
        elif kind == _CODE:
            self.code(depth)
            harmless = False
        else:
            raise _Layout(f"type code {kind:#x}")
        if flagged:
            self.table[slot] = harmless

    def reference(self, index: int) -> None:
        if not self.table:
            raise _Layout("a reference before any object")
        entry = index if 0 < index < len(self.table) else len(self.table) - 1
        if not self.table[entry]:
            raise _Limit("refers back to a tuple, list, set or code object (real code never does)")

    def code(self, depth: int) -> None:
        ints, before, after = _layout(self.version)
        self.take(4 * ints)
        for _ in range(before):
            self.obj(depth + 1)
        self.take(4)  # co_firstlineno
        for _ in range(after):
            self.obj(depth + 1)


class _Layout(Exception):
    """The bytes are not laid out as this Python's marshal writes a code object."""


class _Limit(Exception):
    """The bytes are laid out as a code object but hold what no Lambda needs (message)."""


def prescan(raw: bytes, version: tuple[int, int]) -> str | None:
    """Why xdis must not read ``raw`` as ``version``'s code object, or None: the layout does not
    fit ("not a Python ... code object"), or it holds a back-reference to a container, an
    oversized int or float text, or more objects, items or nesting than the bounds allow. Runs
    in time linear in the bytes, before xdis (whose reading is quadratic or exponential in
    those cases)."""
    scan = _Scan(raw, version)
    try:
        if raw[:1] not in (b"c", bytes([_CODE | _FLAG_REF])):
            raise _Layout("not a code object")
        scan.obj(0)
        if scan.at != len(raw):
            raise _Layout("bytes left over")
    except _Layout as exc:
        return f"not a Python {_v(version)} code object ({exc})"
    except _Limit as exc:
        return f"{_LIMIT}{exc}"
    return None


#: Marks a prescan refusal that is about what the bytes hold, not their layout.
_LIMIT = "the function's code "


# --- reading and decoding, per candidate Python ------------------------------------------------


@dataclass(frozen=True)
class _Code:
    """What the interpreter reads of one code object."""

    version: tuple[int, int]
    argcount: int
    kwonlyargcount: int
    flags: int
    consts: tuple[Any, ...]
    varnames: tuple[str, ...]
    freevars: tuple[str, ...]
    cellvars: tuple[str, ...]
    instructions: tuple[tuple[str, int | None, Any], ...]
    #: 3.11+: the exception table (try/except, with; a lambda has none)
    exception_table: bytes = b""


def _xdis() -> Any:
    try:
        # optional dependency (the "lambda" extra): only files with a Lambda need it
        from xdis import magics, unmarshal
        from xdis.bytecode import get_instructions_bytes
        from xdis.op_imports import get_opcode_module
        from xdis.version_info import PythonImplementation
    except ImportError:
        return None
    return magics, unmarshal, get_instructions_bytes, get_opcode_module, PythonImplementation


def _read(raw: bytes, version: tuple[int, int]) -> _Code | str:
    """The code object as ``version`` would lay it out, or why it is not one."""
    problem = prescan(raw, version)
    if problem is not None:
        return problem
    magics, unmarshal, get_instructions_bytes, get_opcode_module, impl = _xdis()
    magic = magics.magic2int(magics.by_version[f"{version[0]}.{version[1]}"])
    stream = io.BytesIO(raw)
    try:
        # xdis reports unknown type codes on stderr and carries on: the checks below refuse
        with contextlib.redirect_stderr(io.StringIO()):
            code = unmarshal.load_code(stream, magic, code_objects={})
    except Exception as exc:  # any failure of the reader on hostile bytes is "not this layout"
        return f"not a Python {_v(version)} code object ({type(exc).__name__})"
    if stream.tell() != len(raw):
        return f"not a Python {_v(version)} code object (bytes left over)"
    fields = ("co_argcount", "co_flags", "co_consts", "co_varnames", "co_code")
    if not all(hasattr(code, name) for name in fields):
        return f"not a Python {_v(version)} code object"
    try:
        opc = get_opcode_module(version, impl.CPython)
        decoded = []
        caches = INLINE_CACHES.get(version)
        owed, after = 0, ""
        for ins in get_instructions_bytes(code, opc):
            if len(decoded) >= MAX_INSTRUCTIONS:
                return f"more than {MAX_INSTRUCTIONS} instructions"
            if ins.opname.startswith("<"):
                return f"opcode {ins.opname} does not exist in Python {_v(version)}"
            if ins.opname == "CACHE" and caches is not None:
                if owed == 0:
                    return f"a cache entry where Python {_v(version)} has none"
                owed -= 1
            elif ins.opname != "CACHE":
                if owed:
                    return f"{after} lacks the caches Python {_v(version)} puts after it"
                decoded.append((ins.opname, ins.arg, ins.argval))
                owed, after = (caches or {}).get(ins.opname, 0), ins.opname
        if owed:
            return f"{after} lacks the caches Python {_v(version)} puts after it"
        table = getattr(code, "co_exceptiontable", b"") or b""
        strings = (code.co_varnames, code.co_freevars, code.co_cellvars)
        if not all(isinstance(n, str) for names in strings for n in names):
            return f"not a Python {_v(version)} code object (names that are not strings)"
        return _Code(
            version,
            int(code.co_argcount),
            int(getattr(code, "co_kwonlyargcount", 0) or 0),
            int(code.co_flags),
            tuple(code.co_consts),
            tuple(code.co_varnames),
            tuple(code.co_freevars),
            tuple(code.co_cellvars),
            tuple(decoded),
            bytes(table) if isinstance(table, bytes | bytearray) else b"?",
        )
    except Exception as exc:  # a decoder failure means the bytes are not this version's code
        return f"instructions do not decode as Python {_v(version)} ({type(exc).__name__})"


def translate(
    function: Any,
    *,
    arguments: Any = None,
    where: str = "Lambda",
    versions: Sequence[tuple[int, int]] = PYTHON_VERSIONS,
    known: Callable[[str, str], bool] = lambda namespace, name: True,
) -> Translation:
    """The expression a saved Lambda function computes (see the module docstring).

    ``known(namespace, name)`` says whether a function is in the caller's table (checked while
    translating, so that the refusal names the first unknown function). ConversionError names
    the first instruction, global or function off the whitelist, and says nothing was executed.
    """
    if _xdis() is None:
        raise ConversionError(
            f"{where}: translating a Lambda's bytecode needs the xdis package: pip install "
            "'keras-parity[lambda]' (nothing was executed)"
        )
    raw, defaults, closure = function_bytes(function, where)
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise ConversionError(f"{where}: arguments {_show(arguments)} is not a dict")
    # keyed by repr: Expr equality would take 1, 1.0 and True for one constant
    found: dict[str, tuple[Expr, list[tuple[int, int]]]] = {}
    refusals: list[tuple[int, str]] = []
    layouts: list[str] = []
    limits: list[str] = []
    for version in versions:
        code = _read(raw, version)
        if isinstance(code, str):
            (limits if code.startswith(_LIMIT) else layouts).append(code)
            continue
        interpreter = None
        try:
            interpreter = _Interpreter(code, defaults, closure, arguments, known)
            expr = interpreter.run()
        except _Refused as exc:
            refusals.append((-1 if interpreter is None else interpreter.at, str(exc)))
            continue
        found.setdefault(repr(expr), (expr, []))[1].append(version)
    nothing = "nothing was executed"
    if len(found) > 1:
        readings = "; ".join(
            f"Python {', '.join(_v(v) for v in vs)}: {render(e)}" for e, vs in found.values()
        )
        raise ConversionError(
            f"{where}: the bytecode reads differently as different Pythons ({readings}) and "
            f"the file does not say which wrote it; {nothing}"
        )
    if found:
        ((expr, vs),) = found.values()
        return Translation(expr, tuple(vs))
    if refusals:
        # the versions whose layout parsed refused it: the reading that got furthest (the
        # earliest Python on a tie) is the likeliest writer, its reason names the culprit
        _, reason = max(refusals, key=lambda refusal: refusal[0])
        raise ConversionError(f"{where}: bytecode {reason}; {nothing}")
    if limits:
        raise ConversionError(f"{where}: {limits[0]}; {nothing}")
    raise ConversionError(
        f"{where}: the function's code is no Python 2.7-3.13 code object ({layouts[0]}); {nothing}"
    )


# --- the symbolic interpreter -----------------------------------------------------------------


class _Refused(Exception):
    """An instruction, name or value off the whitelist (message: what the bytecode does)."""


@dataclass(frozen=True)
class _Module:
    """A global module reference (K, tf.math, ...), by its written dotted path."""

    path: str


@dataclass(frozen=True)
class _Function:
    """A function looked up on a module or among the builtins."""

    namespace: str
    name: str
    path: str


class _Null:
    """CPython's NULL stack slot beside a callable (3.7+ method calls, 3.11+ every call)."""


_NULL = _Null()
_PLAIN = (type(None), bool, int, float, str, type(Ellipsis))


def _plain(value: Any, what: str, depth: int = 0, budget: list[int] | None = None) -> Expr:
    """A constant from the code object, the defaults, the closure or ``arguments`` as a tree;
    anything but numbers, strings, None, Ellipsis and tuples/lists of them is refused, and so
    is a tree of more than MAX_NODES nodes (``budget``: the nodes left, shared by the walk)."""
    if budget is None:
        budget = [MAX_NODES]
    budget[0] -= 1
    if budget[0] < 0:
        raise _Refused(f"uses a {what} of more than {MAX_NODES} values")
    if depth > MAX_CONSTANT_DEPTH:
        raise _Refused(f"uses a {what} nested too deeply")
    if isinstance(value, bytes) and not isinstance(value, str):
        try:  # Python 2 str constants are bytes
            value = value.decode("ascii")
        except UnicodeDecodeError:
            raise _Refused(f"uses a {what} that is non-ASCII bytes") from None
    if isinstance(value, str) and len(value) > MAX_STRING:
        raise _Refused(f"uses a {what} that is a string of {len(value):,} characters")
    if isinstance(value, _PLAIN):
        return Expr("const", value)
    if isinstance(value, tuple | list):
        if len(value) > MAX_CONSTANT_ITEMS:
            raise _Refused(f"uses a {what} of {len(value)} items")
        kind = "tuple" if isinstance(value, tuple) else "list"
        return Expr(kind, args=tuple(_plain(v, what, depth + 1, budget) for v in value))
    if hasattr(value, "co_code"):
        raise _Refused("defines a nested function or comprehension")
    raise _Refused(f"uses a {what} of type {type(value).__name__}, which is not a plain value")


class _Interpreter:
    """One code object run over expression trees: opcode name -> handler (``_HANDLERS``)."""

    def __init__(
        self,
        code: _Code,
        defaults: Any,
        closure: Any,
        arguments: dict[str, Any],
        known: Callable[[str, str], bool],
    ) -> None:
        self.code = code
        self.known = known
        self.stack: list[Any] = []
        self.kwnames: tuple[str, ...] = ()
        self.nodes = 0
        self.measures: dict[int, tuple[int, int]] = {}
        self.keep: list[Expr] = []
        #: the attribute the next instruction reads, for naming a refused global's function
        self.next_attr: Any = None
        #: the instruction being interpreted (how far a refused reading got)
        self.at = -1
        self.locals = self._parameters(defaults, arguments)
        self.cells = self._closure(closure)

    def _parameters(self, defaults: Any, arguments: dict[str, Any]) -> dict[str, Any]:
        code = self.code
        for flag, why in _REFUSED_FLAGS.items():
            if code.flags & flag:
                raise _Refused(why)
        if code.cellvars:
            raise _Refused("defines a nested function (cell variables)")
        count = code.argcount + code.kwonlyargcount
        if code.argcount < 1:
            raise _Refused("takes no argument")
        params = code.varnames[:count]
        if len(params) < count:
            raise _Refused("has a malformed parameter list")
        if defaults is None:
            defaults = []
        if not isinstance(defaults, list | tuple):
            raise _Refused(f"has defaults {_show(defaults)}, not a list")
        positional = params[: code.argcount]
        if len(defaults) > len(positional):
            raise _Refused(f"has {len(defaults)} defaults for {len(positional)} parameters")
        bound: dict[str, Any] = {positional[0]: Expr("input")}
        with_default = dict(
            zip(positional[len(positional) - len(defaults) :], defaults, strict=True)
        )
        for name in params[1:]:
            if name in _KERAS_FILLED:
                raise _Refused(f"takes {name!r}, which Keras fills at call time")
            if name in arguments:
                bound[name] = _plain(arguments[name], f"argument {name!r}")
            elif name in with_default:
                bound[name] = _plain(with_default[name], f"default of {name!r}")
            else:
                raise _Refused(f"takes {name!r}, which neither arguments nor defaults give")
        if positional[0] in _KERAS_FILLED:
            raise _Refused(f"takes {positional[0]!r} first")
        return bound

    def _closure(self, closure: Any) -> dict[str, Any]:
        names = self.code.freevars
        if not names:
            return {}
        if not isinstance(closure, list | tuple) or len(closure) != len(names):
            raise _Refused(f"closes over {', '.join(names)} and the file does not give them")
        return {n: _plain(v, f"closure value {n!r}") for n, v in zip(names, closure, strict=True)}

    def push(self, value: Any, loaded: bool = False) -> None:
        """Put a value on the stack. Every expression's tree, counted as walked (a shared
        subtree once per use), stays within MAX_NODES; a value ``loaded`` from a constant,
        parameter or closure costs its whole tree each time (a big argument used many times
        is refused, not copied into the tree again and again)."""
        if isinstance(value, Expr):
            size, depth = self.measure(value)
            if size > MAX_NODES:
                raise _Refused(f"builds an expression of more than {MAX_NODES} nodes")
            self.nodes += size if loaded else 1
            if self.nodes > MAX_NODES:
                raise _Refused(f"builds more than {MAX_NODES} expression nodes")
            # nesting bounds the recursion of everything that walks the tree later
            if depth > MAX_DEPTH:
                raise _Refused(f"nests expressions more than {MAX_DEPTH} deep")
        if len(self.stack) >= MAX_STACK:
            raise _Refused(f"uses more than {MAX_STACK} stack slots")
        self.stack.append(value)

    def measure(self, value: Expr) -> tuple[int, int]:
        """(nodes, depth) of a tree, remembered per node (children first: constants from
        ``_plain`` were never pushed)."""
        known = self.measures.get(id(value))
        if known is None:
            parts = [self.measure(a) for a in value.args]
            size = 1 + sum(p[0] for p in parts)
            known = (size, 1 + max((p[1] for p in parts), default=0))
            self.measures[id(value)] = known
            self.keep.append(value)  # ids stay unique while the interpreter runs
        return known

    def pop(self) -> Any:
        if not self.stack:
            raise _Refused("pops an empty stack (malformed bytecode)")
        return self.stack.pop()

    def pop_expr(self) -> Expr:
        value = self.pop()
        if isinstance(value, Expr):
            return value
        if isinstance(value, _Module):
            raise _Refused(f"uses the module {value.path} as a value")
        if isinstance(value, _Function):
            raise _Refused(f"uses the function {value.path} as a value")
        raise _Refused("uses a NULL stack slot as a value (malformed bytecode)")

    def run(self) -> Expr:
        instructions = self.code.instructions
        for at, (opname, arg, argval) in enumerate(instructions):
            self.at = at
            following = instructions[at + 1] if at + 1 < len(instructions) else None
            self.next_attr = following[2] if following and "ATTR" in following[0] else None
            if following and following[0] == "LOAD_METHOD":
                self.next_attr = following[2]
            handler = _HANDLERS.get(opname)
            if handler is None:
                raise _Refused(f"uses {opname}, {_describe(opname)}")
            result = handler(self, arg, argval)
            if result is not None:
                if self.code.exception_table:
                    # a lambda has no try/with: its handlers would take other paths
                    self.at = len(instructions)
                    raise _Refused("has an exception table (try/except or with)")
                return result
        raise _Refused("ends without returning (malformed bytecode)")

    # --- names --------------------------------------------------------------------------------

    def load_fast(self, name: Any) -> None:
        if name not in self.locals:
            raise _Refused(f"reads the local variable {name!r}, which is not a parameter")
        self.push(self.locals[name], loaded=True)

    def load_global(self, name: Any, null: bool) -> None:
        if not isinstance(name, str):
            raise _Refused(f"reads a global named {_show(name)}")
        if null:
            self.push(_NULL)
        if name in MODULE_PATHS:
            self.push(_Module(name))
        elif name in BUILTIN_FUNCTIONS:
            self.push(_Function("builtins", name, name))
        elif isinstance(self.next_attr, str):
            raise _Refused(f"calls {name}.{self.next_attr}, which is not a Keras backend function")
        else:
            raise _Refused(
                f"reads the global {name!r}, which is not a Keras/TensorFlow backend module"
            )

    def load_attr(self, name: Any, method: bool) -> None:
        if not isinstance(name, str):
            raise _Refused(f"reads an attribute named {_show(name)}")
        owner = self.pop()
        if isinstance(owner, _Module):
            path = f"{owner.path}.{name}"
            if path in MODULE_PATHS and not method:
                self.push(_Module(path))
                return
            namespace = MODULE_NAMESPACES.get(owner.path)
            if namespace is None or not self.known(namespace, name):
                raise _Refused(f"calls {path}, which is not a Keras backend function parity knows")
            if method:
                self.push(_NULL)
            self.push(_Function(namespace, name, path))
            return
        if isinstance(owner, Expr):
            if method or name not in TENSOR_ATTRIBUTES:
                raise _Refused(f"reads .{name} of a value (only {', '.join(TENSOR_ATTRIBUTES)})")
            self.push(Expr("attr", name, (owner,)))
            return
        raise _Refused(f"reads .{name} of {type(owner).__name__}")

    # --- calls --------------------------------------------------------------------------------

    def call(self, argc: int, kwnames: tuple[str, ...], slots: int) -> None:
        """A call of ``argc`` values (the last ``len(kwnames)`` by keyword) under ``slots``
        stack entries holding the callable (and a NULL beside it, in either order)."""
        if not isinstance(argc, int) or not 0 <= argc <= MAX_STACK:
            raise _Refused(f"makes a call with {_show(argc)} arguments")
        values = [self.pop_expr() for _ in range(argc)][::-1]
        under = [self.pop() for _ in range(slots)]
        functions = [u for u in under if isinstance(u, _Function)]
        if len(functions) != 1 or any(u is not _NULL for u in under if u is not functions[0]):
            callee = next((u for u in under if isinstance(u, Expr | _Module)), None)
            raise _Refused(f"calls {_callee(callee)}, which is not a Keras backend function")
        function = functions[0]
        if len(kwnames) > len(values):
            raise _Refused("passes more keywords than arguments (malformed bytecode)")
        self.push(
            Expr(
                "call",
                (function.namespace, function.name, function.path),
                tuple(values),
                tuple(kwnames),
            )
        )

    def keyword_names(self, value: Any) -> tuple[str, ...]:
        names = value.value if isinstance(value, Expr) and value.kind == "tuple" else None
        if isinstance(value, Expr) and value.kind == "tuple":
            names = tuple(a.value for a in value.args)
        if not isinstance(names, tuple) or not all(isinstance(n, str) for n in names):
            raise _Refused(f"passes keyword names {_show(value)}")
        return names


def _v(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


def _show(value: Any) -> str:
    return reprlib.repr(value)


def _callee(value: Any) -> str:
    if isinstance(value, Expr):
        return render(value)
    if isinstance(value, _Module):
        return f"the module {value.path}"
    return "a value"


def _describe(opname: str) -> str:
    """Why an opcode is off the whitelist, in words."""
    for prefix, why in _OFF_WHITELIST:
        if prefix in opname:
            return why
    return "which is not on the whitelist of translatable instructions"


_OFF_WHITELIST = (
    ("IMPORT", "an import"),
    ("JUMP", "a branch or loop, which is not translated"),
    ("FOR_ITER", "a loop, which is not translated"),
    ("GET_ITER", "a loop or comprehension, which is not translated"),
    ("MAKE_FUNCTION", "a nested function, which is not translated"),
    ("LOAD_CLOSURE", "a nested function's closure, which is not translated"),
    ("STORE", "an assignment, which is not translated"),
    ("DELETE", "a deletion, which is not translated"),
    ("YIELD", "a generator, which is not translated"),
    ("CALL_FUNCTION_EX", "a call with *args/**kwargs, which is not translated"),
    ("BUILD_MAP", "a dict, which is not translated"),
    ("UNPACK", "unpacking, which is not translated"),
    ("TO_BOOL", "a truth test (if, not, and/or), which is not translated"),
)


# --- handlers: (interpreter, arg, argval) -> the returned expression, or None to go on ----------

Handler = Callable[[_Interpreter, Any, Any], Expr | None]


def _nothing(it: _Interpreter, arg: Any, argval: Any) -> None:
    return None


def _load_const(it: _Interpreter, arg: Any, argval: Any) -> None:
    consts = it.code.consts
    if not isinstance(arg, int) or not 0 <= arg < len(consts):
        raise _Refused(f"loads constant #{_show(arg)} of {len(consts)}")
    it.push(_plain(consts[arg], "constant"), loaded=True)


def _load_fast(it: _Interpreter, arg: Any, argval: Any) -> None:
    it.load_fast(argval)


def _load_fast_pair(it: _Interpreter, arg: Any, argval: Any) -> None:
    names = it.code.varnames
    if not isinstance(arg, int) or max(arg >> 4, arg & 15) >= len(names):
        raise _Refused("reads a local variable that does not exist (malformed bytecode)")
    it.load_fast(names[arg >> 4])
    it.load_fast(names[arg & 15])


def _load_deref(it: _Interpreter, arg: Any, argval: Any) -> None:
    if argval not in it.cells:
        raise _Refused(f"reads the closure variable {_show(argval)}, which the file does not give")
    it.push(it.cells[argval], loaded=True)


def _load_global(it: _Interpreter, arg: Any, argval: Any) -> None:
    # 3.11+: the low bit of the argument asks for a NULL beside the global
    null = it.code.version >= (3, 11) and isinstance(arg, int) and bool(arg & 1)
    it.load_global(argval, null)


def _load_attr(it: _Interpreter, arg: Any, argval: Any) -> None:
    # 3.12+: the low bit of LOAD_ATTR's argument marks a method load (as LOAD_METHOD)
    method = it.code.version >= (3, 12) and isinstance(arg, int) and bool(arg & 1)
    it.load_attr(argval, method)


def _load_method(it: _Interpreter, arg: Any, argval: Any) -> None:
    it.load_attr(argval, True)


def _push_null(it: _Interpreter, arg: Any, argval: Any) -> None:
    it.push(_NULL)


def _binary(symbol: str) -> Handler:
    def handler(it: _Interpreter, arg: Any, argval: Any) -> None:
        right, left = it.pop_expr(), it.pop_expr()
        it.push(Expr("binary", symbol, (left, right)))

    return handler


def _binary_op(it: _Interpreter, arg: Any, argval: Any) -> None:
    symbol = _BINARY_OP_ARGS.get(arg - 13 if isinstance(arg, int) and arg >= 13 else arg)
    if symbol is None:
        raise _Refused(f"uses the binary operator #{_show(arg)} (bitwise or unknown)")
    _binary(symbol)(it, arg, argval)


def _compare(it: _Interpreter, arg: Any, argval: Any) -> None:
    if it.code.version >= (3, 13) and isinstance(arg, int) and arg & _COMPARE_TO_BOOL_313:
        raise _Refused("converts a comparison to a bool (a truth test), which is not translated")
    symbol = argval.replace("bool(", "").rstrip(")") if isinstance(argval, str) else None
    if symbol not in COMPARISONS:
        raise _Refused(f"compares with {_show(argval)}")
    version = it.code.version
    if version >= (3, 11) and isinstance(arg, int):
        shift = _COMPARE_SHIFT.get(version, 0)
        index = arg >> shift
        written = index < len(COMPARISONS) and COMPARISONS[index] == symbol
        if shift and written:
            written = arg & 15 == _COMPARE_MASKS[index]
        elif not shift:
            written = written and arg == index
        if not written:
            raise _Refused(f"compares with argument {arg}, which Python {_v(version)} never writes")
    right, left = it.pop_expr(), it.pop_expr()
    it.push(Expr("compare", symbol, (left, right)))


def _unary(symbol: str) -> Handler:
    def handler(it: _Interpreter, arg: Any, argval: Any) -> None:
        it.push(Expr("unary", symbol, (it.pop_expr(),)))

    return handler


def _intrinsic(it: _Interpreter, arg: Any, argval: Any) -> None:
    if arg != _INTRINSIC_UNARY_POSITIVE:
        raise _Refused(f"uses the intrinsic #{_show(arg)}, which is not translated")
    _unary("+")(it, arg, argval)


def _subscript(it: _Interpreter, arg: Any, argval: Any) -> None:
    index, value = it.pop_expr(), it.pop_expr()
    it.push(Expr("subscript", args=(value, index)))


def _binary_slice(it: _Interpreter, arg: Any, argval: Any) -> None:
    stop, start, value = it.pop_expr(), it.pop_expr(), it.pop_expr()
    index = Expr("slice", args=(start, stop, Expr("const", None)))
    it.push(Expr("subscript", args=(value, index)))


def _python2_slice(start: bool, stop: bool) -> Handler:
    """Python 2's SLICE+0..3: x[:], x[a:], x[:b], x[a:b]."""

    def handler(it: _Interpreter, arg: Any, argval: Any) -> None:
        none = Expr("const", None)
        upper = it.pop_expr() if stop else none
        lower = it.pop_expr() if start else none
        value = it.pop_expr()
        index = Expr("slice", args=(lower, upper, none))
        it.push(Expr("subscript", args=(value, index)))

    return handler


def _build(kind: str) -> Handler:
    def handler(it: _Interpreter, arg: Any, argval: Any) -> None:
        if not isinstance(arg, int) or not 0 <= arg <= MAX_STACK:
            raise _Refused(f"builds a {kind} of {_show(arg)} items")
        items = [it.pop_expr() for _ in range(arg)][::-1]
        if kind == "slice":
            if arg not in (2, 3):
                raise _Refused(f"builds a slice of {arg} items")
            items += [Expr("const", None)] * (3 - arg)
        it.push(Expr(kind, args=tuple(items)))

    return handler


def _list_extend(it: _Interpreter, arg: Any, argval: Any) -> None:
    extra = it.pop_expr()
    target = it.pop_expr()
    if arg != 1 or target.kind != "list" or extra.kind not in ("tuple", "list"):
        raise _Refused("extends a list with something other than constants")
    it.push(Expr("list", args=target.args + extra.args))


def _list_to_tuple(it: _Interpreter, arg: Any, argval: Any) -> None:
    value = it.pop_expr()
    if value.kind != "list":
        raise _Refused("converts a non-list to a tuple")
    it.push(Expr("tuple", args=value.args))


def _kw_names(it: _Interpreter, arg: Any, argval: Any) -> None:
    consts = it.code.consts
    if not isinstance(arg, int) or not 0 <= arg < len(consts):
        raise _Refused("names keywords from a constant that does not exist")
    it.kwnames = it.keyword_names(_plain(consts[arg], "keyword names"))


def _call_311(it: _Interpreter, arg: Any, argval: Any) -> None:
    kwnames, it.kwnames = it.kwnames, ()
    it.call(arg, kwnames, 2)


def _call_kw_313(it: _Interpreter, arg: Any, argval: Any) -> None:
    it.call(arg, it.keyword_names(it.pop()), 2)


def _call_function(it: _Interpreter, arg: Any, argval: Any) -> None:
    if not isinstance(arg, int):
        raise _Refused(f"makes a call with {_show(arg)} arguments")
    if it.code.version >= (3, 6):
        it.call(arg, (), 1)
        return
    # up to 3.5: low byte positional count, high byte keyword pairs (name constant, value)
    positional, pairs = arg & 0xFF, (arg >> 8) & 0xFF
    keywords: list[tuple[str, Expr]] = []
    for _ in range(pairs):
        value, name = it.pop_expr(), it.pop_expr()
        if name.kind != "const" or not isinstance(name.value, str):
            raise _Refused("passes a keyword whose name is not a string")
        keywords.append((name.value, value))
    for _, value in reversed(keywords):
        it.push(value)
    it.call(positional + pairs, tuple(n for n, _ in reversed(keywords)), 1)


def _call_function_kw(it: _Interpreter, arg: Any, argval: Any) -> None:
    it.call(arg, it.keyword_names(it.pop()), 1)


def _call_method(it: _Interpreter, arg: Any, argval: Any) -> None:
    it.call(arg, (), 2)


def _return(it: _Interpreter, arg: Any, argval: Any) -> Expr:
    return it.pop_expr()


def _return_const(it: _Interpreter, arg: Any, argval: Any) -> Expr:
    _load_const(it, arg, argval)
    return it.pop_expr()


_HANDLERS: dict[str, Handler] = {
    "NOP": _nothing,
    "RESUME": _nothing,
    "PRECALL": _nothing,
    "COPY_FREE_VARS": _nothing,
    "EXTENDED_ARG": _nothing,
    "EXTENDED_ARG_QUICK": _nothing,
    "LOAD_CONST": _load_const,
    "LOAD_FAST": _load_fast,
    "LOAD_FAST_CHECK": _load_fast,
    "LOAD_FAST_LOAD_FAST": _load_fast_pair,
    "LOAD_DEREF": _load_deref,
    "LOAD_GLOBAL": _load_global,
    "LOAD_NAME": _load_global,
    "LOAD_ATTR": _load_attr,
    "LOAD_METHOD": _load_method,
    "PUSH_NULL": _push_null,
    "BINARY_OP": _binary_op,
    **{name: _binary(symbol) for name, symbol in _BINARY_OPNAMES.items()},
    "COMPARE_OP": _compare,
    "UNARY_NEGATIVE": _unary("-"),
    "UNARY_POSITIVE": _unary("+"),
    "CALL_INTRINSIC_1": _intrinsic,
    "BINARY_SUBSCR": _subscript,
    "BINARY_SLICE": _binary_slice,
    "SLICE+0": _python2_slice(False, False),
    "SLICE+1": _python2_slice(True, False),
    "SLICE+2": _python2_slice(False, True),
    "SLICE+3": _python2_slice(True, True),
    "BUILD_SLICE": _build("slice"),
    "BUILD_TUPLE": _build("tuple"),
    "BUILD_LIST": _build("list"),
    "LIST_EXTEND": _list_extend,
    "LIST_TO_TUPLE": _list_to_tuple,
    "KW_NAMES": _kw_names,
    "CALL": _call_311,
    "CALL_KW": _call_kw_313,
    "CALL_FUNCTION": _call_function,
    "CALL_FUNCTION_KW": _call_function_kw,
    "CALL_METHOD": _call_method,
    "RETURN_VALUE": _return,
    "RETURN_CONST": _return_const,
}


# --- rendering --------------------------------------------------------------------------------

_ATOM = 10
_UNARY = 6
_COMPARE = 1


def _precedence(expr: Expr) -> int:
    if expr.kind == "binary":
        return BINARY_PRECEDENCE["/" if expr.value == CLASSIC_DIVIDE else expr.value]
    if expr.kind == "unary":
        return _UNARY
    if expr.kind == "compare":
        return _COMPARE
    if expr.kind == "const" and isinstance(expr.value, int | float) and expr.value < 0:
        return _UNARY
    return _ATOM


def render(
    expr: Expr,
    name: str = "x",
    call: Callable[[Expr, list[str]], str] | None = None,
) -> str:
    """``expr`` as Python text: the Lambda argument as ``name``, calls as written in the Lambda
    (or as ``call(expr, rendered arguments)`` spells them)."""

    def go(e: Expr) -> str:
        kind = e.kind
        if kind == "input":
            return name
        if kind == "const":
            return _constant_text(e.value)
        if kind in ("tuple", "list"):
            items = [go(a) for a in e.args]
            if kind == "list":
                return f"[{', '.join(items)}]"
            return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
        if kind == "slice":
            return _slice_text(e, go)
        if kind == "binary":
            symbol = "/" if e.value == CLASSIC_DIVIDE else e.value
            mine = _precedence(e)
            left, right = e.args
            right_assoc = symbol == "**"
            lt = wrap(left, mine + (1 if right_assoc else 0))
            rt = wrap(right, mine + (0 if right_assoc else 1))
            if right_assoc and not (lt + rt).startswith("(") and not rt.startswith("("):
                if _simple_power_operand(left) and _simple_power_operand(right):
                    return f"{lt}**{rt}"  # as ruff format writes a power of simple operands
            return f"{lt} {symbol} {rt}"
        if kind == "compare":
            return f"{wrap(e.args[0], 2)} {e.value} {wrap(e.args[1], 2)}"
        if kind == "unary":
            operand = e.args[0]
            if operand.kind == "binary" and operand.value == "**":  # ruff's -(a**2)
                return f"{e.value}({go(operand)})"
            return f"{e.value}{wrap(operand, _UNARY)}"
        if kind == "subscript":
            value, index = e.args
            if index.kind == "tuple" and index.args:
                inner = ", ".join(_index_text(a, go) for a in index.args)
            else:
                inner = _index_text(index, go)
            return f"{wrap(value, _ATOM)}[{inner}]"
        if kind == "attr":
            return f"{wrap(e.args[0], _ATOM)}.{e.value}"
        if kind == "call":
            args = [go(a) for a in e.args]
            if call is not None:
                return call(e, args)
            return f"{e.value[2]}({call_arguments(e, args)})"
        raise ValueError(f"unknown expression kind {kind!r}")

    def wrap(e: Expr, least: int) -> str:
        text = go(e)
        return f"({text})" if _precedence(e) < least else text

    return go(expr)


def _simple_power_operand(expr: Expr) -> bool:
    """An operand ruff format writes a power of without spaces: a name, a number, a unary
    sign or an attribute of one, a power of two of them."""
    if expr.kind == "input":
        return True
    if expr.kind == "const":
        return expr.value is None or isinstance(expr.value, bool | int | float)
    if expr.kind in ("unary", "attr"):
        return _simple_power_operand(expr.args[0])
    if expr.kind == "binary" and expr.value == "**":  # x**y**2
        return all(map(_simple_power_operand, expr.args))
    return False


def _constant_text(value: Any) -> str:
    if value is Ellipsis:
        return "..."
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return f'float("{value}")'
    text = repr(value)
    if isinstance(value, str | bytes) and text.endswith("'") and '"' not in text:
        # ruff format's double quotes (a repr in single quotes holds no quote of either kind)
        opening = text.index("'")
        return f'{text[:opening]}"{text[opening + 1 : -1]}"'
    return text


def call_arguments(expr: Expr, rendered: list[str]) -> str:
    """A call's arguments as text: positional, then ``key=value``."""
    split = len(rendered) - len(expr.keys)
    keywords = [f"{k}={v}" for k, v in zip(expr.keys, rendered[split:], strict=True)]
    return ", ".join(rendered[:split] + keywords)


def _index_text(e: Expr, go: Callable[[Expr], str]) -> str:
    return _slice_text(e, go) if e.kind == "slice" else go(e)


def _slice_text(e: Expr, go: Callable[[Expr], str]) -> str:
    start, stop, step = (None if a == Expr("const", None) else go(a) for a in e.args)
    text = f"{start or ''}:{stop or ''}"
    return f"{text}:{step}" if step is not None else text
