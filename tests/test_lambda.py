"""Keras Lambda layers: translated from their saved bytecode, never executed.

- live tf.keras (.h5) and Keras 3 (.keras) models with each kind of whitelisted expression
  convert and match Keras' outputs and gradients (tests.test_generic_layers' harness);
- bytecode of older Pythons (2.7, 3.5, 3.6/3.7, 3.8-3.10 layouts), hand-assembled by a tiny
  marshal writer here, inside Keras 1.2-, 2.0- and 2.2-style .h5 files written with h5py, gives
  Keras' formula (computed with numpy);
- Python 3.12 / 3.13 code objects, assembled from xdis' opcode tables with CPython's inline
  caches, give numpy's answer and are read as those Pythons only;
- K.dot / K.batch_dot / ops.dot against tf_keras' and Keras 3's values and gradients, negative
  slice steps against numpy;
- hostile functions (os.system, __import__, eval, loops, closures over functions, random and
  mutated bytes) are refused by name with ConversionError and never run;
- parity inspect shows the expression and parity port writes it as torch code.
"""

from __future__ import annotations

import base64
import json
import marshal
import os
import struct
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch

import parity
from parity.check import tolerance_for
from parity.cli import main
from parity.keras.bytecode import render, translate
from parity.ports.lambda_layer import lambda_translation
from tests.conftest import needs_keras

#: Translated Lambdas against live Keras/TF: the float32 output tolerance of the one table.
OUTPUT_TOL = tolerance_for(torch.float32, "cpu", "output")

pytest.importorskip("xdis")

SENTINEL = "parity-lambda-sentinel"

#: The names the Lambdas below call through, bound as the files' authors bound them
#: (``from tf_keras import backend as K``, ``import tensorflow as tf``, ``from keras import ops``)
#: by _set_backend_names when Keras is installed.
K: Any = None
tf: Any = None
ops: Any = None

# --- a tiny marshal writer for code objects of older Pythons ----------------------------------


def _m_int(value: int) -> bytes:
    return b"i" + struct.pack("<i", value)


def _m_obj(value: Any, py2: bool) -> bytes:
    if value is None:
        return b"N"
    if value is Ellipsis:
        return b"."
    if isinstance(value, bool):
        return b"T" if value else b"F"
    if isinstance(value, int):
        return _m_int(value)
    if isinstance(value, float):
        return b"g" + struct.pack("<d", value)
    if isinstance(value, bytes):
        return b"s" + struct.pack("<i", len(value)) + value
    if isinstance(value, str):
        data = value.encode()
        return (b"t" if py2 else b"u") + struct.pack("<i", len(data)) + data
    if isinstance(value, tuple):
        return b"(" + struct.pack("<i", len(value)) + b"".join(_m_obj(v, py2) for v in value)
    raise TypeError(value)


def code_object(
    layout: str,
    code: bytes,
    consts: tuple = (None,),
    names: tuple = (),
    varnames: tuple = ("x",),
    argcount: int = 1,
    freevars: tuple = (),
) -> bytes:
    """A marshalled code object in the ``layout`` of "2.7", "3.5" (3.5-3.7) or "3.8"
    (3.8-3.10): the header fields, then code, consts, names, varnames, freevars, cellvars,
    filename, name, firstlineno, lnotab, as CPython's marshal.c writes them."""
    py2 = layout == "2.7"
    nlocals, stacksize, flags = len(varnames), 8, 0x43
    header = {
        "2.7": (argcount, nlocals, stacksize, flags),
        "3.5": (argcount, 0, nlocals, stacksize, flags),
        "3.8": (argcount, 0, 0, nlocals, stacksize, flags),
    }[layout]
    parts = [b"c", *(struct.pack("<i", v) for v in header)]
    parts += [_m_obj(code, py2), _m_obj(consts, py2), _m_obj(names, py2)]
    parts += [_m_obj(varnames, py2), _m_obj(freevars, py2), _m_obj((), py2)]
    parts += [_m_obj("<stdin>", py2), _m_obj("<lambda>", py2), struct.pack("<i", 1)]
    parts += [_m_obj(b"", py2)]
    return b"".join(parts)


def _op2(op: int, arg: int | None = None) -> bytes:
    """Python 2.7 / 3.5 instruction: one byte, two more for an argument."""
    return bytes([op]) if arg is None else bytes([op]) + struct.pack("<H", arg)


def _op3(op: int, arg: int = 0) -> bytes:
    """Python 3.6+ wordcode instruction."""
    return bytes([op, arg])


# opcode numbers (CPython's opcode.py of those versions)
LOAD_FAST, LOAD_CONST, LOAD_GLOBAL, LOAD_ATTR = 124, 100, 116, 106
BINARY_DIVIDE, BINARY_TRUE_DIVIDE, BINARY_SUBTRACT, BINARY_SUBSCR = 21, 27, 24, 25
BUILD_SLICE, BUILD_TUPLE, RETURN_VALUE, CALL_FUNCTION = 133, 102, 83, 131
JUMP_ABSOLUTE = 113


def scale_code(layout: str) -> bytes:
    """``lambda x: x / 127.5 - 1.0``: 2.7's BINARY_DIVIDE, 3.x's BINARY_TRUE_DIVIDE."""
    consts = (None, 127.5, 1.0)
    if layout == "2.7":
        ops = [(LOAD_FAST, 0), (LOAD_CONST, 1), (BINARY_DIVIDE, None), (LOAD_CONST, 2)]
        ops += [(BINARY_SUBTRACT, None), (RETURN_VALUE, None)]
        return code_object(layout, b"".join(_op2(*o) for o in ops), consts)
    ops = [(LOAD_FAST, 0), (LOAD_CONST, 1), (BINARY_TRUE_DIVIDE, None), (LOAD_CONST, 2)]
    ops += [(BINARY_SUBTRACT, None), (RETURN_VALUE, None)]
    if layout == "3.5":
        return code_object(layout, b"".join(_op2(*o) for o in ops), consts)
    wordcode = b"".join(_op3(op, arg or 0) for op, arg in ops)
    return code_object("3.5" if layout == "3.6" else layout, wordcode, consts)


def last_step_code(layout: str, wordcode: bool) -> bytes:
    """``lambda x: x[:, -1, :]``."""
    ops = [(LOAD_FAST, 0), (LOAD_CONST, 0), (LOAD_CONST, 0), (BUILD_SLICE, 2), (LOAD_CONST, 1)]
    ops += [(LOAD_CONST, 0), (LOAD_CONST, 0), (BUILD_SLICE, 2), (BUILD_TUPLE, 3)]
    ops += [(BINARY_SUBSCR, None), (RETURN_VALUE, None)]
    code = b"".join(_op3(op, arg or 0) if wordcode else _op2(op, arg) for op, arg in ops)
    return code_object(layout, code, (None, -1))


def system_code(layout: str) -> bytes:
    """``lambda x: os.system("touch SENTINEL")``, hand-assembled."""
    ops = [(LOAD_GLOBAL, 0), (LOAD_ATTR, 1), (LOAD_CONST, 1), (CALL_FUNCTION, 1)]
    ops += [(RETURN_VALUE, None)]
    wordcode = layout == "3.8"
    code = b"".join(_op3(op, arg or 0) if wordcode else _op2(op, arg) for op, arg in ops)
    return code_object(layout, code, (None, f"touch {SENTINEL}"), names=("os", "system"))


def loop_code() -> bytes:
    """A 3.8 code object that jumps back to its start (a loop)."""
    code = _op3(LOAD_FAST, 0) + _op3(JUMP_ABSOLUTE, 0) + _op3(RETURN_VALUE)
    return code_object("3.8", code)


# --- Python 3.11-3.13 code objects (Keras 3 files saved from 3.12 and 3.13) -------------------

#: CPython's inline cache entries after each instruction (Lib/opcode.py ``_cache_format`` of
#: 3.12 and 3.13), written here independently of parity's own table.
CACHES_312 = {"LOAD_GLOBAL": 4, "BINARY_OP": 1, "COMPARE_OP": 1, "BINARY_SUBSCR": 1}
CACHES_312 |= {"LOAD_ATTR": 9, "CALL": 3}
CACHES_313 = CACHES_312 | {"TO_BOOL": 3, "POP_JUMP_IF_FALSE": 1}
#: CO_FAST_LOCAL / CO_FAST_FREE: the kind byte of a parameter / a closure variable.
FAST_LOCAL, FAST_FREE = 0x20, 0x80


def _short(value: Any) -> bytes:
    """marshal's 3.11+ spellings: short ASCII strings ("z"), small tuples (")")."""
    if isinstance(value, str):
        data = value.encode("ascii")
        return b"z" + bytes([len(data)]) + data
    if isinstance(value, tuple):
        return b")" + bytes([len(value)]) + b"".join(_short(v) for v in value)
    return _m_obj(value, py2=False)


def assemble(version: str, ops: list[tuple[str, int]]) -> bytes:
    """Wordcode for Python ``version`` ("3.12", "3.13") from xdis' opcode table of that version,
    with the zeroed CACHE units CPython puts after each instruction that has them."""
    from xdis.op_imports import get_opcode_module
    from xdis.version_info import PythonImplementation

    major, minor = (int(p) for p in version.split("."))
    opmap = get_opcode_module((major, minor), PythonImplementation.CPython).opmap
    caches = CACHES_313 if version == "3.13" else CACHES_312
    out = b""
    for name, arg in ops:
        out += bytes([opmap[name], arg]) + b"\x00\x00" * caches.get(name, 0)
    return out


def line_table(code: bytes) -> bytes:
    """A 3.11+ location table: entries of up to 8 code units, "no column" form (code 13),
    line delta 0 (a signed varint)."""
    units, out = len(code) // 2, b""
    while units:
        n = min(units, 8)
        out += bytes([0x80 | (13 << 3) | (n - 1), 0])
        units -= n
    return out


def code_object_311(
    code: bytes,
    consts: tuple = (None,),
    names: tuple = (),
    localsplus: tuple = ("x",),
    kinds: bytes | None = None,
    argcount: int = 1,
    exception_table: bytes = b"",
) -> bytes:
    """A marshalled 3.11-3.13 code object (one layout): argcount, posonlyargcount,
    kwonlyargcount, stacksize, flags, code, consts, names, localsplusnames, localspluskinds,
    filename, name, qualname, firstlineno, linetable, exceptiontable."""
    kinds = bytes([FAST_LOCAL] * len(localsplus)) if kinds is None else kinds
    parts = [b"\xe3", *(struct.pack("<i", v) for v in (argcount, 0, 0, 8, 0x13))]
    parts += [_m_obj(code, False), _short(consts), _short(names), _short(localsplus)]
    parts += [_m_obj(kinds, False), _short("<stdin>"), _short("<lambda>"), _short("<lambda>")]
    parts += [struct.pack("<i", 1), _m_obj(line_table(code), False)]
    parts += [_m_obj(exception_table, False)]
    return b"".join(parts)


def modern_cases(version: str) -> dict[str, tuple[bytes, str, Any]]:
    """name -> (marshalled code as CPython ``version`` compiles it, rendered expression, the
    numpy formula on x). The instruction sequences are what CPython 3.12 / 3.13 emit."""
    call_kw = (
        [("LOAD_CONST", 2), ("CALL_KW", 2)] if version == "3.13" else [("KW_NAMES", 2), ("CALL", 2)]
    )
    x0_x1 = [("LOAD_FAST", 0), ("LOAD_CONST", 0), ("BINARY_SUBSCR", 0)]
    x0_x1 += [("LOAD_FAST", 0), ("LOAD_CONST", 1), ("BINARY_SUBSCR", 0)]
    scaled = (
        [("LOAD_FAST_LOAD_FAST", 0x01)]
        if version == "3.13"
        else [("LOAD_FAST", 0), ("LOAD_FAST", 1)]
    )
    slices = [("LOAD_FAST", 0), ("LOAD_CONST", 0), ("LOAD_CONST", 0), ("BUILD_SLICE", 2)]
    slices += [("LOAD_CONST", 1), ("LOAD_CONST", 0), ("LOAD_CONST", 0), ("BUILD_SLICE", 2)]
    compare = 4 << (5 if version == "3.13" else 4) | 4  # ">" with its comparison mask
    ops = {
        "scale": (
            [
                ("RESUME", 0),
                ("LOAD_FAST", 0),
                ("LOAD_CONST", 1),
                ("BINARY_OP", 11),
                ("LOAD_CONST", 2),
                ("BINARY_OP", 10),
                ("RETURN_VALUE", 0),
            ],
            dict(consts=(None, 127.5, 1.0)),
            "x / 127.5 - 1.0",
            lambda x: x / 127.5 - 1.0,
        ),
        "last-step": (
            [
                ("RESUME", 0),
                *slices,
                ("BUILD_TUPLE", 3),
                ("BINARY_SUBSCR", 0),
                ("RETURN_VALUE", 0),
            ],
            dict(consts=(None, -1)),
            "x[:, -1, :]",
            lambda x: x[:, -1, :],
        ),
        "mean": (
            [
                ("RESUME", 0),
                ("LOAD_GLOBAL", 0),
                ("LOAD_ATTR", 3),
                ("LOAD_FAST", 0),
                ("LOAD_CONST", 1),
                *call_kw,
                ("RETURN_VALUE", 0),
            ],
            dict(consts=(None, 1, ("axis",)), names=("K", "mean")),
            "K.mean(x, axis=1)",
            lambda x: x.mean(axis=1),
        ),
        "product": (
            [
                ("RESUME", 0),
                *x0_x1,
                ("BINARY_OP", 5),
                ("RETURN_VALUE", 0),
            ],
            dict(consts=(0, 1)),
            "x[0] * x[1]",
            lambda x: x[0] * x[1],
        ),
        "slice-abs-compare": (
            [
                ("RESUME", 0),
                ("LOAD_GLOBAL", 1),
                ("LOAD_FAST", 0),
                ("LOAD_CONST", 1),
                ("LOAD_CONST", 2),
                ("BINARY_SLICE", 0),
                ("CALL", 1),
                ("LOAD_CONST", 3),
                ("COMPARE_OP", compare),
                ("RETURN_VALUE", 0),
            ],
            dict(consts=(None, 1, -1, 0.1), names=("abs",)),
            "abs(x[1:-1]) > 0.1",
            lambda x: abs(x[1:-1]) > 0.1,
        ),
        "default-and-closure": (
            [
                ("RESUME", 0),
                ("COPY_FREE_VARS", 1),
                *scaled,
                ("BINARY_OP", 5),
                ("LOAD_DEREF", 2),
                ("BINARY_OP", 0),
                ("RETURN_VALUE", 0),
            ],
            dict(localsplus=("x", "s", "shift"), kinds=bytes([0x20, 0x20, 0x80]), argcount=2),
            "x * 2.0 + 0.5",
            lambda x: x * 2.0 + 0.5,
        ),
        "return-const": (
            [("RESUME", 0), ("RETURN_CONST", 1)],
            dict(consts=(None, 2.5)),
            "2.5",
            None,
        ),
    }
    return {
        name: (code_object_311(assemble(version, seq), **fields), text, formula)
        for name, (seq, fields, text, formula) in ops.items()
    }


MODERN_CASES = sorted(modern_cases("3.12"))


def raw_string(raw: bytes) -> str:
    """How Keras 1.x-2.1 stored the bytes: marshal.dumps(...).decode('raw_unicode_escape')."""
    return raw.decode("raw_unicode_escape")


def b64(raw: bytes) -> str:
    """How Keras 2.2+ stored them: codecs.encode(raw, 'base64')."""
    return base64.encodebytes(raw).decode("ascii")


# --- Keras 1.2 / 2.0 / 2.2 style .h5 files, written with h5py ---------------------------------

STYLES = ("keras-1.2", "keras-2.0", "keras-2.2")


def lambda_h5(path: Path, style: str, raw: bytes, input_shape: tuple[int, ...] = (4, 3)) -> Path:
    """A one-Lambda Sequential model file as Keras ``style`` wrote it (the function as that
    version stored it; no weights)."""
    function: Any
    if style == "keras-1.2":
        function = raw_string(raw)
    elif style == "keras-2.0":
        function = [raw_string(raw), None, None]
    else:
        function = [b64(raw), None, None]
    layer = {
        "class_name": "Lambda",
        "config": {
            "name": "lambda_1",
            "trainable": True,
            "batch_input_shape": [None, *input_shape],
            "dtype": "float32",
            "function": function,
            "function_type": "lambda",
            "output_shape": None,
            "output_shape_type": "raw",
            "arguments": {},
        },
    }
    if style == "keras-1.2":
        layer["config"]["input_dtype"] = "float32"
        layer["config"].pop("dtype")
    layers: Any = [layer] if style != "keras-2.2" else {"name": "seq", "layers": [layer]}
    model_config = {"class_name": "Sequential", "config": layers}
    version = {"keras-1.2": "1.2.2", "keras-2.0": "2.0.8", "keras-2.2": "2.2.4"}[style]
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = version.encode()
        f.attrs["backend"] = b"tensorflow"
        f.attrs["model_config"] = json.dumps(model_config).encode()
        weights = f.create_group("model_weights")
        weights.attrs["layer_names"] = [b"lambda_1"]
        weights.create_group("lambda_1").attrs["weight_names"] = np.array([], dtype="S1")
    return path


def _convert_and_run(path: Path, x: np.ndarray) -> np.ndarray:
    model = parity.load_keras(path)
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


X = np.random.default_rng(3).uniform(0, 255, (2, 4, 3)).astype("float32")


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("layout", ["2.7", "3.5", "3.6", "3.8"])
def test_old_python_scale_lambda_gives_keras_formula(layout: str, style: str, tmp_path) -> None:
    """``x / 127.5 - 1.0`` (the self-driving models' normalisation) from each code layout."""
    raw = scale_code(layout)
    if style == "keras-1.2" and layout not in ("2.7", "3.5"):
        pytest.skip("Keras 1.2 ran on Python 2.7 and 3.5")
    out = _convert_and_run(lambda_h5(tmp_path / "m.h5", style, raw), X)
    np.testing.assert_allclose(out, X / 127.5 - 1.0, rtol=1e-6)
    assert lambda_translation(_config(raw)).text == "x / 127.5 - 1.0"


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("layout", ["2.7", "3.5", "3.6", "3.8"])
def test_old_python_last_step_lambda(layout: str, style: str, tmp_path) -> None:
    """``x[:, -1, :]`` (the attention model's last step) from each code layout."""
    raw = last_step_code("3.5" if layout == "3.6" else layout, wordcode=layout in ("3.6", "3.8"))
    out = _convert_and_run(lambda_h5(tmp_path / "m.h5", style, raw), X)
    np.testing.assert_array_equal(out, X[:, -1, :])
    translation = lambda_translation(_config(raw))
    assert translation.text == "x[:, -1, :]"


def test_versions_are_told_by_layout_and_opcodes() -> None:
    """Each hand-assembled layout is read as the Pythons it can be, and only those."""
    assert translate(b64(scale_code("2.7"))).versions == ((2, 7),)
    assert translate(b64(scale_code("3.5"))).versions == ((3, 5),)
    assert translate(b64(scale_code("3.6"))).versions == ((3, 6), (3, 7))
    assert translate(b64(scale_code("3.8"))).versions == ((3, 8), (3, 9), (3, 10))
    native = translate(b64(marshal.dumps((lambda x: x / 127.5 - 1.0).__code__)))
    assert (3, 11) in native.versions and native.text == "x / 127.5 - 1.0"


def test_python2_division_floors_ints_only() -> None:
    """BINARY_DIVIDE: Python 2's ``/`` divides floats and floor-divides two ints."""
    module = parity.ports.lambda_layer.LambdaExpression(translate(b64(scale_code("2.7"))))
    ints = torch.tensor([[255, 7]])
    # 255 / 127.5: a float constant, so a true division even on int tensors
    np.testing.assert_allclose(module(ints).numpy(), np.array([[255, 7]]) / 127.5 - 1.0)
    from parity.ports.lambda_ops import classic_divide

    assert classic_divide(7, 2) == 3 and classic_divide(7.0, 2) == 3.5
    assert classic_divide(torch.tensor([7]), 2).tolist() == [3]


def _config(raw: bytes, **extra: Any) -> dict[str, Any]:
    return {"name": "lambda_1", "function": [b64(raw), None, None], **extra}


# --- hostile functions ----------------------------------------------------------------------


def _refused(config: dict[str, Any], *words: str) -> str:
    with pytest.raises(parity.ConversionError) as info:
        lambda_translation(config)
    message = str(info.value)
    for word in words:
        assert word in message, message
    return message


@pytest.fixture()
def sentinel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file a hostile function would create (in the test's working directory)."""
    monkeypatch.chdir(tmp_path)
    yield tmp_path / SENTINEL
    assert not (tmp_path / SENTINEL).exists(), "a Lambda's code was executed"


def _native(fn: Any) -> bytes:
    # the test builds these with the running Python's marshal: the code under test never does
    return marshal.dumps(fn.__code__)


HOSTILE = {
    "os.system": (lambda x: os.system(f"touch {SENTINEL}"), "calls os.system"),
    "__import__": (lambda x: __import__("os").system(f"touch {SENTINEL}"), "'__import__'"),
    "eval": (lambda x: eval(f"__import__('os').system('touch {SENTINEL}')"), "'eval'"),
    "comprehension": (lambda x: [os.system(f"touch {SENTINEL}") for _ in x], "nested function"),
    "branch": (lambda x: os.system("true") if x else x, "branch"),
    "tensor-method": (lambda x: x.numpy(), ".numpy"),
    "unknown-backend-function": (lambda x: K.foldl(x), "K.foldl"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_function_is_refused_by_name_and_never_runs(case: str, sentinel: Path) -> None:
    fn, words = HOSTILE[case]
    message = _refused(_config(_native(fn)), "lambda_1", words, "nothing was executed")
    assert "Traceback" not in message


@pytest.mark.parametrize("layout", ["2.7", "3.5", "3.8"])
def test_hand_assembled_os_system_is_refused(layout: str, sentinel: Path, tmp_path) -> None:
    _refused(_config(system_code(layout)), "calls os.system", "nothing was executed")
    path = lambda_h5(tmp_path / "m.h5", "keras-2.0", system_code(layout))
    with pytest.raises(parity.ConversionError, match=r"calls os.system.*plug"):
        parity.load_keras(path)


def test_loop_is_refused(sentinel: Path) -> None:
    _refused(_config(loop_code()), "JUMP_ABSOLUTE", "branch or loop")


def test_closure_over_a_function_is_refused(sentinel: Path) -> None:
    f = print
    raw = _native(lambda x: f(x))
    # Keras would write the cell's contents; a function has no JSON form: whatever stands there
    for closure in ([{"class_name": "function", "config": "print"}], ["print"], None):
        config = {"name": "lambda_1", "function": [b64(raw), None, closure]}
        _refused(config, "nothing was executed")


def test_closure_over_numbers_and_arguments_are_constants() -> None:
    scale = 3.0
    raw = _native(lambda x: x * scale)
    config = {"name": "l", "function": [b64(raw), None, [2.5]]}
    assert lambda_translation(config).text == "x * 2.5"
    raw = _native(lambda x, a=2.0: x * a)
    assert lambda_translation({"function": [b64(raw), [2.0], None]}).text == "x * 2.0"
    config = {"function": [b64(raw), [2.0], None], "arguments": {"a": 5}}
    assert lambda_translation(config).text == "x * 5"


def test_a_mask_or_a_mask_argument_is_refused() -> None:
    raw = _native(lambda x: x)
    _refused(_config(raw, mask=[b64(raw), None, None]), "mask")
    _refused(_config(_native(lambda x, mask=None: x)), "'mask'")


def test_missing_xdis_is_refused_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from parity.keras import bytecode

    monkeypatch.setattr(bytecode, "_xdis", lambda: None)
    _refused(_config(_native(lambda x: x)), "keras-parity[lambda]", "nothing was executed")


def test_deep_nesting_is_refused() -> None:
    """A chain of 200 unary minuses (a few bytes) would recurse 200 deep when evaluated."""
    ops = [(LOAD_FAST, 0)] + [(11, None)] * 200 + [(RETURN_VALUE, None)]  # UNARY_NEGATIVE
    raw = code_object("2.7", b"".join(_op2(*o) for o in ops))
    _refused(_config(raw), "deep")


def test_oversized_code_is_refused_before_reading() -> None:
    _refused({"function": ["A" * 200_000, None, None]}, "characters long")


FUZZ_ROUNDS = 150


def test_fuzzed_bytes_give_conversion_error_or_a_translation(sentinel: Path) -> None:
    """Random bytes, and real code objects (this Python's and hand-assembled ones) with bytes
    changed, as the saved function: a translation or ConversionError, nothing else, never run.
    Seeded, bounded rounds: the same cases every run."""
    rng = np.random.default_rng(11)
    bases = [_native(lambda x: x[:, -1, :] / 127.5 - 1.0), scale_code("2.7"), system_code("3.8")]
    bases += [last_step_code("3.5", wordcode=False), _native(lambda x: K.mean(x, axis=1))]
    for _ in range(FUZZ_ROUNDS):
        data = rng.integers(0, 256, int(rng.integers(0, 300)), dtype=np.uint8).tobytes()
        mutated = bytearray(bases[int(rng.integers(len(bases)))])
        for at in rng.integers(0, len(mutated), int(rng.integers(1, 6))):
            mutated[at] = int(rng.integers(0, 256))
        for raw in (data, bytes(mutated), b"c" + data, b"\xe3" + data):
            for function in ([b64(raw), None, None], raw_string(raw)):
                try:
                    lambda_translation({"name": "fuzz", "function": function})
                except parity.ConversionError:
                    pass


# --- live Keras: each expression kind, outputs and gradients -----------------------------------


def _tf_keras_cases() -> dict[str, tuple[Any, tuple[int, ...]]]:
    """tf.keras (Keras 2) Lambdas: K = keras.backend, tf = tensorflow, as the files use them."""
    return {
        "scale": (lambda x: x / 127.5 - 1.0, (4, 3)),
        "last-step": (lambda x: x[:, -1, :], (4, 3)),
        "slices-newaxis-ellipsis": (
            lambda x: x[..., None, ::2] + x[:, -5:, None, :1] * x[:, 2:3, None, 1:-1],
            (5, 3),
        ),
        "shape-power-compare": (
            lambda x: x**2 * x.shape[-1] - abs(-x) + K.cast(x > 0.1, "float32"),
            (4, 3),
        ),
        "reductions": (
            lambda x: (
                K.mean(x, axis=1, keepdims=True)
                + K.sum(x, axis=-1, keepdims=True)
                - K.max(x, axis=[1, 2], keepdims=True) * K.min(x)
            ),
            (4, 3),
        ),
        "l2-normalize-softmax": (
            lambda x: K.l2_normalize(x, axis=-1) + K.softmax(x) - K.sigmoid(x) * K.tanh(x),
            (4, 3),
        ),
        "elementwise": (
            lambda x: (
                K.sqrt(K.square(x) + 1.0)
                + K.exp(-K.abs(x))
                + K.log(K.relu(x) + 2.0)
                + K.clip(x, -0.5, 0.5)
            ),
            (4, 3),
        ),
        "shapes": (
            lambda x: (
                K.permute_dimensions(K.reshape(x, (-1, 3, 4)), (0, 2, 1))
                + K.expand_dims(K.squeeze(x[:, :1, :], 1), 1)[:, :, :1]
            ),
            (4, 3),
        ),
        "concat-stack-reverse-cast": (
            lambda x: (
                K.concatenate([x, K.reverse(x, 1)], axis=-1) * K.cast(x.shape[1], "float32")
                + K.stack([x, -x], axis=2)[:, :, 1, :1]
            ),
            (4, 3),
        ),
        "tf-ops": (
            lambda x: (
                tf.reduce_sum(tf.math.l2_normalize(x, axis=1), axis=1)
                + tf.nn.softmax(tf.matmul(x, tf.transpose(x, perm=[0, 2, 1])))[:, 0, :3]
            ),
            (4, 3),
        ),
        # attention Lambdas: scores of two sequences, and a weighted sum over time
        "batch-dot-attention": (
            lambda x: K.batch_dot(K.softmax(K.batch_dot(x[0], x[1], axes=[2, 2])), x[1]),
            None,
        ),
        "batch-dot-axes-1": (lambda x: K.batch_dot(x[0], x[1], axes=(1, 1)), None),
        "batch-dot-ranks": (
            lambda x: (
                K.batch_dot(x[:, :, 0], x)
                + K.batch_dot(x[:, 0, :], x[:, 1, :])
                + K.batch_dot(x, x[:, 0, :], axes=-1)[:, :3]
                + K.batch_dot(K.expand_dims(x, 2), x, axes=(3, 2))[:, 0, 0, :3]
            ),
            (4, 3),
        ),
        "dot-matmul": (
            lambda x: (
                K.dot(x, K.constant([[1.0, -2.0], [0.5, 3.0], [2.0, 1.0]]))
                + K.dot(x[:, 0, :], K.permute_dimensions(x[:, :2, :], (1, 2, 0)))[:, None, 0, :2]
                + tf.matmul(x, x, transpose_b=True)[:, :, :2]
                + K.sum(
                    tf.linalg.matmul(
                        x, K.permute_dimensions(x, (0, 2, 1))[:, :2, :], True, transpose_b=True
                    ),
                    axis=1,
                    keepdims=True,
                )
            ),
            (4, 3),
        ),
        "negative-steps": (
            lambda x: (
                K.concatenate(
                    [x[:, ::-1], x[..., ::-2], x[:, ::-1, 2:0:-1], x[:, -1:-10:-1, -2::-1]], axis=-1
                )
                * x[:, 3::-1, :1]
                + x[:, 8:-9:-3, None, 0][:, :1]
                + x[:, ::-3, 2:][:, :1]
            ),
            (4, 3),
        ),
        "shape-functions": (
            lambda x: (
                K.reshape(x, (K.shape(x)[0], -1))
                * K.cast(tf.shape(x)[1], "float32")
                / K.int_shape(x)[-1]
                + K.ones_like(x[:, 0, :1])
                - K.zeros_like(x[:, 1, :1], dtype="float32")
                + K.epsilon() * 1e6
                + K.constant(2.0, shape=(1, 12))
                + x.shape[2]
            ),
            (4, 3),
        ),
        "repeat-tile-argmax": (
            lambda x: (
                K.repeat_elements(x, 2, axis=1)
                + K.tile(x, [1, 2, 1])
                + tf.tile(x[:, :1, :], [1, 8, 1])
                + K.cast(K.argmax(x, axis=-1), "float32")[:, :1, None]
                - K.cast(K.argmin(x), "float32")[:, :1, None]
                + K.cast(tf.argmax(x[0]), "float32")
                + tf.ones_like(x[:, :1, :1]) * 0.5
                + tf.zeros_like(x[:, :1, :1], dtype="float32")
            ),
            (4, 3),
        ),
        "tf-reductions-keepdims": (
            lambda x: (
                tf.reduce_mean(x, axis=1, keepdims=True)
                + tf.reduce_sum(x, axis=[1, 2], keepdims=True)
                - tf.reduce_max(x, axis=-1, keepdims=True)
                * tf.reduce_min(x, axis=(0, 2), keepdims=True)
                + K.max(x, axis=1, keepdims=True)
                + tf.reduce_mean(x)
            ),
            (4, 3),
        ),
    }


def _keras3_cases() -> dict[str, tuple[Any, tuple[int, ...]]]:
    """Keras 3 Lambdas over keras.ops."""
    return {
        "scale": (lambda x: x / 127.5 - 1.0, (4, 3)),
        "ops": (
            lambda x: (
                ops.mean(x, axis=1)
                + ops.max(ops.softmax(x), axis=1)
                - ops.sum(ops.square(x), axis=1)
                + ops.sqrt(ops.abs(x[:, 0, :]) + 1.0)
            ),
            (4, 3),
        ),
        "ops-shapes": (
            lambda x: (
                ops.concatenate([ops.reshape(x, (-1, 12)), ops.flip(x, 1)[:, 0, :]], axis=-1)
                + ops.expand_dims(ops.matmul(x[:, 0, :], ops.transpose(x[:, 1, :])), -1)[:, :1, 0]
            ),
            (4, 3),
        ),
        "two-inputs": (lambda x: x[0] * 2.0 - x[1] @ ops.transpose(x[1], (0, 2, 1)) @ x[0], None),
        "ops-dot-tile": (
            lambda x: (
                ops.dot(x, ops.transpose(x[:, 0, :]))[:, :, :3]
                + ops.dot(x, x[0, 0, :])[:, :, None]
                + ops.tile(x[:, :1, :], (4, 1))
                + ops.ones_like(x) * 2.0
                - ops.zeros_like(x)
            ),
            (4, 3),
        ),
        "negative-steps": (
            lambda x: x[:, ::-1, ::-2] * x[..., 2::-2] + x[:, -2::-2, 1:][:, :1],
            (4, 3),
        ),
    }


def _set_backend_names(keras2: Any, keras3: Any) -> None:
    """The names the Lambdas below use, bound as the files' authors bound them."""
    import tensorflow

    global K, tf, ops
    K, tf, ops = keras2.backend, tensorflow, keras3.ops


TF_KERAS_CASES = sorted(_tf_keras_cases())
KERAS3_CASES = sorted(_keras3_cases())


def _model(lib: Any, fn: Any, shape: tuple[int, ...] | None) -> tuple[Any, np.ndarray]:
    rng = np.random.default_rng(5)
    if shape is None:  # called on a list of two tensors
        inp = lib.Input((4, 3))
        a, b = lib.layers.Dense(3)(inp), lib.layers.Dense(3)(inp)
        out = lib.layers.Lambda(fn, name="lam")([a, b])
        shape = (4, 3)
    else:
        inp = lib.Input(shape)
        out = lib.layers.Lambda(fn, name="lam")(lib.layers.Dense(shape[-1])(inp))
    out = lib.layers.Dense(2)(lib.layers.Flatten()(out) if len(out.shape) > 2 else out)
    return lib.Model(inp, out), rng.uniform(-1, 1, (3, *shape)).astype("float32")


@needs_keras
@pytest.mark.keras
@pytest.mark.parametrize("case", TF_KERAS_CASES)
def test_tf_keras_lambda_matches_keras(case: str, tmp_path: Path) -> None:
    import keras
    import tf_keras

    from tests.test_generic_layers import check_against_keras

    _set_backend_names(tf_keras, keras)
    tf_keras.utils.set_random_seed(7)
    model, x = _model(tf_keras, *_tf_keras_cases()[case])
    check_against_keras(model, x, tmp_path / "m.h5", torch.float32)


@needs_keras
@pytest.mark.keras
@pytest.mark.parametrize("case", KERAS3_CASES)
def test_keras3_lambda_matches_keras(case: str, tmp_path: Path) -> None:
    import keras
    import tf_keras

    from tests.test_generic_layers import check_against_keras

    _set_backend_names(tf_keras, keras)
    keras.utils.set_random_seed(7)
    model, x = _model(keras, *_keras3_cases()[case])
    check_against_keras(model, x, tmp_path / "m.keras", torch.float32)


# --- inspect and port ---------------------------------------------------------------------------


def test_inspect_shows_each_lambda_expression_or_why_not(tmp_path: Path, capsys) -> None:
    good = lambda_h5(tmp_path / "good.h5", "keras-2.2", last_step_code("3.8", wordcode=True))
    assert main(["inspect", str(good)]) == 0
    assert "x -> x[:, -1, :]" in capsys.readouterr().out
    bad = lambda_h5(tmp_path / "bad.h5", "keras-2.0", system_code("2.7"))
    assert main(["inspect", str(bad)]) == 0
    out = capsys.readouterr().out
    assert "not translated" in out and "calls os.system" in out


@needs_keras
@pytest.mark.keras
def test_port_writes_the_expression_as_torch_code(tmp_path: Path) -> None:
    """The generated package holds the expression, imports only torch & co, passes its own
    test with parity unimportable, and gives Keras' numbers."""
    import keras
    import tf_keras

    from tests.test_port import ALLOWED_IMPORTS, _imports, assert_stands_alone

    _set_backend_names(tf_keras, keras)
    tf_keras.utils.set_random_seed(8)
    inp = tf_keras.Input((4, 3))
    h = tf_keras.layers.Dense(3, name="dense")(inp)
    a = tf_keras.layers.Lambda(lambda x: K.l2_normalize(x, axis=-1)[:, ::-1] / 2.0, name="norm")(h)
    b = tf_keras.layers.Lambda(lambda x: K.concatenate([x[0], x[1][:, -1:, :]], 1), name="cat")(
        [a, h]
    )
    model = tf_keras.Model(inp, b)
    model.save(tmp_path / "m.h5")
    out = tmp_path / "ported"
    result = parity.port(tmp_path / "m.h5", out)
    source = (out / "model.py").read_text()
    # too long for one line: the subscript is computed first, laid out as ruff lays it out
    assert (
        "norm_part = keras_getitem(\n"
        "            K_l2_normalize(dense, axis=-1),\n"
        "            (slice(None, None, None), slice(None, None, -1)),\n"
        "        )\n"
        "        norm = norm_part / 2.0\n" in source
    )
    assert "K_concatenate([norm, [norm, dense][1][:, -1:, :]], 1)" in source.replace(
        "[norm, dense][0]", "norm"
    )
    for path in out.glob("*.py"):
        assert _imports(path) <= ALLOWED_IMPORTS
    from parity.codegen.port import _load_generated

    x = np.random.default_rng(1).uniform(-1, 1, (2, 4, 3)).astype("float32")
    generated = _load_generated(out, result.class_name)
    with torch.no_grad():
        ours = generated(torch.from_numpy(x)).numpy()
    tol = tolerance_for(torch.float32, "cpu", "output")
    np.testing.assert_allclose(ours, model(x).numpy(), rtol=tol.rtol, atol=tol.atol)
    assert_stands_alone(out)


# --- K.dot / K.batch_dot shape rules, negative slice steps ------------------------------------

#: (x shape, y shape, axes) for K.batch_dot: each rank pairing and axes spelling Keras accepts.
BATCH_DOT_CASES = [
    ((2, 3), (2, 3), None),
    ((2, 3), (2, 3), 1),
    ((2, 3), (2, 3, 4), None),
    ((2, 4, 3), (2, 3), None),
    ((2, 4, 3), (2, 4), (1, 1)),
    ((2, 4, 3), (2, 5, 3), [2, 2]),
    ((2, 4, 3), (2, 4, 5), (1, 1)),
    ((2, 3, 4, 5), (2, 5, 6), None),
    ((2, 3, 4, 5), (2, 4, 6, 7), (2, 1)),
    ((2, 3, 4, 5), (2, 6, 4, 7), (-2, 2)),
    ((2, 3), (2, 6, 7, 3), (1, 3)),
    ((2, 3, 4, 5), (2, 5), (3, 1)),
]
#: (x shape, y shape) for K.dot and keras.ops.dot.
DOT_CASES = [((2, 3), (3, 4)), ((2, 5, 3), (3, 4)), ((3,), (2, 3, 4)), ((2, 4, 5, 3), (2, 6, 3, 4))]


def _tf_and_torch_grads(tf_fn: Any, torch_fn: Any, *arrays: np.ndarray) -> None:
    """Outputs and the gradients of sum(out * w) of both, on the same inputs."""
    import tensorflow

    ins = [tensorflow.constant(a) for a in arrays]
    with tensorflow.GradientTape() as tape:
        for t in ins:
            tape.watch(t)
        ref = tf_fn(*ins)
        w = tensorflow.constant(np.random.default_rng(2).normal(size=ref.shape).astype("float32"))
        loss = tensorflow.reduce_sum(ref * w)
    ref_grads = tape.gradient(loss, ins)
    ts = [torch.from_numpy(a).requires_grad_() for a in arrays]
    ours = torch_fn(*ts)
    (ours * torch.from_numpy(w.numpy())).sum().backward()
    assert tuple(ours.shape) == tuple(ref.shape)
    out_tol = tolerance_for(torch.float32, "cpu", "output")
    grad_tol = tolerance_for(torch.float32, "cpu", "gradient")
    np.testing.assert_allclose(
        ours.detach().numpy(), ref.numpy(), rtol=out_tol.rtol, atol=out_tol.atol
    )
    for t, g in zip(ts, ref_grads, strict=True):
        np.testing.assert_allclose(
            t.grad.numpy(), g.numpy(), rtol=grad_tol.rtol, atol=grad_tol.atol
        )


@needs_keras
@pytest.mark.keras
def test_batch_dot_and_dot_follow_keras_shape_rules() -> None:
    """Each rank pairing and axes spelling against tf_keras' K.batch_dot and K.dot and Keras 3's
    ops.dot: shapes, values and both inputs' gradients."""
    import keras
    import tf_keras

    from parity.ports import lambda_ops

    rng = np.random.default_rng(4)
    for x_shape, y_shape, axes in BATCH_DOT_CASES:
        x, y = (rng.normal(size=s).astype("float32") for s in (x_shape, y_shape))
        _tf_and_torch_grads(
            lambda a, b: tf_keras.backend.batch_dot(a, b, axes=axes),  # noqa: B023
            lambda a, b: lambda_ops.K_batch_dot(a, b, axes=axes),  # noqa: B023
            x,
            y,
        )
    for x_shape, y_shape in DOT_CASES:
        x, y = (rng.normal(size=s).astype("float32") for s in (x_shape, y_shape))
        _tf_and_torch_grads(tf_keras.backend.dot, lambda_ops.K_dot, x, y)
        _tf_and_torch_grads(keras.ops.dot, lambda_ops.ops_dot, x, y)
    with pytest.raises(ValueError, match="batch axis"):
        lambda_ops.K_batch_dot(torch.ones(2, 3), torch.ones(2, 3), axes=0)


def _step_cases() -> list[tuple[Any, Any, int]]:
    bounds = [None, -9, -7, -4, -1, 0, 1, 3, 6, 7, 9]
    return [(a, b, s) for a in bounds for b in bounds for s in (-1, -2, -3, -8)]


def test_negative_slice_steps_match_numpy() -> None:
    """x[:, a:b:s] for every start/stop (inside, at and beyond both ends, None) and negative
    step, translated from bytecode with a, b, s as defaults, against numpy's own slicing; plus
    the same slice after ..., beside None and an int, and on the first axis."""
    raw = _native(lambda x, a=None, b=None, s=-1: x[:, a:b:s])
    raw_mixed = _native(lambda x, a=None, b=None, s=-1: x[0, None, ..., a:b:s, ::-2])
    raw_first = _native(lambda x, a=None, b=None, s=-1: x[a:b:s])
    a = np.arange(2 * 7 * 5, dtype="float32").reshape(2, 7, 5)
    t = torch.from_numpy(a)
    for start, stop, step in _step_cases():
        defaults = [start, stop, step]
        for code, expected in (
            (raw, a[:, start:stop:step]),
            (raw_mixed, a[0, None, ..., start:stop:step, ::-2]),
            (raw_first, a[start:stop:step]),
        ):
            module = parity.ports.lambda_layer.LambdaExpression(
                lambda_translation({"name": "l", "function": [b64(code), defaults, None]})
            )
            ours = module(t).numpy()
            assert ours.shape == expected.shape, (start, stop, step)
            np.testing.assert_array_equal(ours, expected)


# --- Python 3.12 / 3.13 bytecode ----------------------------------------------------------------


@pytest.mark.parametrize("version", ["3.12", "3.13"])
@pytest.mark.parametrize("case", MODERN_CASES)
def test_python_312_313_bytecode_gives_the_formula(version: str, case: str, tmp_path) -> None:
    """Code objects laid out as CPython 3.12 / 3.13 write them (caches, BINARY_SLICE,
    RETURN_CONST, CALL without PRECALL, KW_NAMES / CALL_KW, LOAD_ATTR's method bit,
    LOAD_FAST_LOAD_FAST, COPY_FREE_VARS) in a Keras 3-style config: read as that Python only,
    and evaluated to numpy's answer."""
    raw, text, formula = modern_cases(version)[case]
    config = {
        "name": "lambda_1",
        "function": {
            "class_name": "__lambda__",
            "config": {"code": b64(raw), "defaults": [2.0], "closure": [0.5]},
        },
    }
    translation = lambda_translation(config)
    assert translation.text == text
    major, minor = (int(p) for p in version.split("."))
    # 3.12 code using no instruction that differs from 3.11 reads the same as 3.11
    assert (major, minor) in translation.versions
    assert set(translation.versions) <= ({(3, 11), (3, 12)} if minor == 12 else {(3, 13)})
    if formula is None:
        return
    x = np.random.default_rng(6).uniform(-1, 1, (3, 4, 5)).astype("float32")
    module = parity.ports.lambda_layer.LambdaExpression(translation)
    np.testing.assert_allclose(module(torch.from_numpy(x)).numpy(), formula(x), rtol=1e-6)


@pytest.mark.parametrize("version", ["3.12", "3.13"])
def test_python_312_313_fields_parse(version: str) -> None:
    """The location table and exception table of a 3.12 / 3.13 code object are read back as
    written (xdis), and a code object with an exception table (try/with: no lambda has one) is
    refused."""
    from xdis import magics, unmarshal

    raw, _, _ = modern_cases(version)["mean"]
    code = unmarshal.load_code(
        __import__("io").BytesIO(raw), magics.magic2int(magics.by_version[version]), {}
    )
    assert code.co_exceptiontable == b""
    assert code.co_linetable == line_table(code.co_code) and len(code.co_linetable) > 2
    assert code.co_names == ("K", "mean") and code.co_varnames == ("x",)
    ops = [("RESUME", 0), ("LOAD_FAST", 0), ("RETURN_VALUE", 0)]
    handled = code_object_311(assemble(version, ops), exception_table=b"\x82\x04\x06\x00")
    _refused(_config(handled), "exception table", "nothing was executed")


def test_cache_layout_tells_312_from_311(monkeypatch: pytest.MonkeyPatch) -> None:
    """3.11 and 3.12 share opcode numbers but not LOAD_ATTR's argument (a name index in 3.11,
    index * 2 + method bit in 3.12): these bytes (with a NULL pushed first, so that both
    readings' calls are well formed) call K.sum as 3.12 and K.max as 3.11. The caches (9 after
    LOAD_ATTR in 3.12, 4 in 3.11) leave the one reading that fits."""
    ops = [("RESUME", 0), ("PUSH_NULL", 0), ("LOAD_GLOBAL", 0), ("LOAD_ATTR", 3)]
    ops += [("LOAD_FAST", 0), ("CALL", 1), ("RETURN_VALUE", 0)]
    raw = code_object_311(assemble("3.12", ops), names=("K", "sum", "mean", "max"))
    translation = translate(b64(raw))
    assert translation.text == "K.sum(x)" and translation.versions == ((3, 12),)
    # without the cache check the two readings disagree and the file would be refused
    from parity.keras import bytecode

    monkeypatch.setattr(bytecode, "INLINE_CACHES", {})
    with pytest.raises(parity.ConversionError, match=r"3\.11: K\.max\(x\).*3\.12: K\.sum"):
        translate(b64(raw))


def test_python_313_truth_tests_are_refused() -> None:
    """3.13's TO_BOOL and a COMPARE_OP converting to bool (an ``if``) are refused by name."""
    ops = [("RESUME", 0), ("LOAD_FAST", 0), ("TO_BOOL", 0), ("RETURN_VALUE", 0)]
    _refused(_config(code_object_311(assemble("3.13", ops))), "TO_BOOL", "truth test")
    ops = [("RESUME", 0), ("LOAD_FAST", 0), ("LOAD_CONST", 0), ("COMPARE_OP", (4 << 5) | 16 | 4)]
    ops += [("RETURN_VALUE", 0)]
    raw = code_object_311(assemble("3.13", ops), consts=(0.5,))
    _refused(_config(raw), "bool", "nothing was executed")


# --- review regressions: spellings, TF's own rules, settled at conversion ----------------------


def _fn_config(fn: Any, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    """A tf.keras-style Lambda config of ``fn`` as this Python saves it."""
    function = [b64(_native(fn)), None, None]
    return {"name": "lam", "function": function, "arguments": arguments or {}}


def _translated(fn: Any, arguments: dict[str, Any] | None = None) -> Any:
    from parity.ports.lambda_layer import LambdaExpression

    return LambdaExpression(lambda_translation(_fn_config(fn, arguments)))


def _live_and_ours(fn: Any, x: np.ndarray, **arguments: Any) -> tuple[np.ndarray, np.ndarray]:
    """(Keras/TF running ``fn`` on x, parity's translation of ``fn``'s bytecode on x)."""
    import tensorflow

    live = np.asarray(fn(tensorflow.constant(x), **arguments))
    with torch.no_grad():
        ours = _translated(fn, arguments)(torch.from_numpy(x)).numpy()
    return live, ours


def _close(live: np.ndarray, ours: np.ndarray) -> None:
    assert ours.dtype == live.dtype, (ours.dtype, live.dtype)
    assert ours.shape == live.shape
    np.testing.assert_allclose(ours, live, rtol=1e-6, atol=1e-6)


@pytest.fixture()
def backends() -> None:
    keras = pytest.importorskip("keras")
    tf_keras = pytest.importorskip("tf_keras")
    _set_backend_names(tf_keras, keras)


X_FLOAT = np.random.default_rng(3).uniform(-2, 2, (2, 3, 4)).astype("float32")
X_INT = np.random.default_rng(4).integers(-7, 8, (2, 3, 4)).astype("int32")

#: Lambdas TF/Keras run and parity once converted into something that failed or differed.
RUN_AS_TF = {
    "tuple-operand": (lambda x: x * (1.0, 2.0, 3.0, 4.0) - (0.5, 1.0, 1.5, 2.0) > x, X_FLOAT),
    "nested-list-operand": (lambda x: [[1.0, 2.0, 3.0, 4.0]] * x, X_FLOAT),
    "cast-tf-alias": (lambda x: K.cast(K.cast(x, "float"), "half") + tf.cast(x, "half"), X_INT),
    "cast-floatx": (lambda x: K.cast(x > 0, K.floatx()), X_FLOAT),
    "K-mean-int": (lambda x: K.mean(x, axis=-1) + tf.reduce_mean(x, axis=(1, 2))[:, None], X_INT),
    "ops-mean-int": (lambda x: ops.mean(x, axis=-1), X_INT),
    "int-sum-keeps-dtype": (lambda x: K.sum(x, axis=1) + tf.reduce_sum(x, 2)[:, :1], X_INT),
    "int-true-divide": (lambda x: x / 2 + x / x[:, :, :1] * x.shape[1], X_INT + 10),
    "int8-true-divide": (lambda x: K.cast(x, "int8") / 3, X_INT),
    "clip-tensor-bounds": (
        lambda x: K.clip(x, x[:, :1] * 0.0, 1.0) + tf.clip_by_value(x, -1.0, x[:, :, :1]),
        X_FLOAT,
    ),
    "clip-min-above-max": (
        lambda x: K.clip(x, 0.5, -0.5) + tf.clip_by_value(x, 0.5, -0.5) + ops.clip(x, 0.3, -0.3),
        X_FLOAT,
    ),
    "softmax-axis-none": (
        lambda x: K.softmax(x, axis=None) + ops.softmax(x, axis=None) + tf.nn.softmax(x, None),
        X_FLOAT,
    ),
    "softmax-axes-list": (lambda x: K.softmax(x, axis=[1, 2]), X_FLOAT),
    "negative-step-from-expression": (lambda x: x[:, :: x.ndim - 4] * 2, X_FLOAT),
}


@needs_keras
@pytest.mark.keras
@pytest.mark.parametrize("case", sorted(RUN_AS_TF))
def test_lambda_follows_tensorflows_rules(case: str, backends: None) -> None:
    """Each translated Lambda gives TF's values and dtype (tuple operands, dtype aliases,
    floatx, integer means and sums, integer true division, clip bounds, softmax axes)."""
    fn, x = RUN_AS_TF[case]
    _close(*_live_and_ours(fn, x))


@needs_keras
@pytest.mark.keras
@pytest.mark.parametrize("case", sorted(RUN_AS_TF))
def test_emitted_code_follows_tensorflows_rules(case: str, backends: None) -> None:
    """``parity port``'s text of each of those Lambdas, run with torch and the helpers' sources
    only, gives TF's values and dtype too."""
    import tensorflow

    from parity.ports.lambda_layer import emitted_code

    fn, x = RUN_AS_TF[case]
    text, names, sources = emitted_code(lambda_translation(_fn_config(fn)).expr, 1)
    namespace: dict[str, Any] = {"torch": torch}
    for source in dict.fromkeys(sources):
        exec(source, namespace)  # the generated module's helpers (this project's own code)
    assert set(names) <= set(namespace)
    ours = eval(text.format(x0="x0"), namespace, {"x0": torch.from_numpy(x)})
    _close(np.asarray(fn(tensorflow.constant(x))), ours.numpy())


@needs_keras
@pytest.mark.keras
def test_list_argument_beside_a_tensor(backends: None) -> None:
    _close(*_live_and_ours(lambda x, w: x + w, X_FLOAT, w=[1.0, 2.0, 3.0, 4.0]))


@pytest.mark.parametrize(
    ("fn", "why"),
    [
        (lambda x: K.cast(x, "floatish"), '"floatish", which is not one parity knows'),
        (lambda x: ops.cast(x, "float"), '"float", which is not one parity knows'),
        (lambda x: K.cast(x, K.epsilon()), "K.epsilon(), which is not one parity knows"),
        (lambda x: x * (1.0, (2.0, 3.0)), "is ragged"),
        (lambda x: x * (1.0, "a"), "holds 'a', not only numbers"),
        (lambda x: x * (x, 1.0), "holds a value computed at run time"),
        (lambda x: (x > 0) * x, "arithmetic on a comparison, which TensorFlow computes in bool"),
        (lambda x: -(x > 0), "arithmetic on a comparison"),
    ],
)
def test_what_would_fail_at_run_time_is_refused_at_conversion(fn: Any, why: str) -> None:
    with pytest.raises(parity.ConversionError, match="Lambda 'lam'") as info:
        lambda_translation(_fn_config(fn))
    assert why in str(info.value)


def test_tf_keras_backend_spellings_are_keras_backend() -> None:
    """tf.keras.backend / tf_keras.backend / tensorflow.keras.backend mean K (Keras 2)."""
    for fn in (
        lambda x: tf.keras.backend.mean(x, axis=1),
        lambda x: tf_keras.backend.mean(x, axis=1),
        lambda x: tensorflow.keras.backend.mean(x, axis=1),
    ):
        expr = lambda_translation(_fn_config(fn)).expr
        assert expr.value[:2] == ("K", "mean")
    with pytest.raises(parity.ConversionError, match=r"tf\.keras\.layers"):
        lambda_translation(_fn_config(lambda x: tf.keras.layers.Dense(3)(x)))


tf_keras: Any = None
tensorflow: Any = None


@needs_keras
@pytest.mark.keras
def test_tf_linalg_transpose_swaps_the_last_two_axes(
    backends: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tf.linalg.transpose is TF 1's matrix_transpose (tf.compat.v1 keeps it), not tf.transpose."""
    import tensorflow as real_tf

    class _Linalg:
        transpose = staticmethod(real_tf.compat.v1.linalg.transpose)
        matrix_transpose = staticmethod(real_tf.linalg.matrix_transpose)

    class _TF1:  # the module a TF 1 script called tf
        linalg = _Linalg
        transpose = staticmethod(real_tf.transpose)

    monkeypatch.setitem(globals(), "tf", _TF1)
    x = np.random.default_rng(0).normal(size=(2, 3, 4)).astype("float32")

    def fn(x: Any) -> Any:
        return tf.linalg.transpose(x) + tf.transpose(x, (0, 2, 1)) * tf.linalg.matrix_transpose(x)

    _close(*_live_and_ours(fn, x))


def _sample_calls() -> dict[str, tuple[Any, ...]]:
    """One call per function name, in the arguments every spelling of it takes: "x" a
    (2, 3, 4) tensor of positive values, "x1" x[:, :1], "xt" x's last two axes swapped,
    "w" a (4, 2) matrix, "xx" [x, x]."""
    return {
        **dict.fromkeys(("mean", "sum", "max", "min", "argmax", "argmin"), ("x", 1)),
        **dict.fromkeys(("reduce_mean", "reduce_sum", "reduce_max", "reduce_min"), ("x", 1)),
        **dict.fromkeys(
            ("square", "sqrt", "exp", "log", "abs", "absolute", "sigmoid", "tanh", "relu"), ("x",)
        ),
        **dict.fromkeys(("softmax", "transpose", "matrix_transpose", "shape"), ("x",)),
        **dict.fromkeys(("ones_like", "zeros_like", "int_shape", "batch_flatten"), ("x",)),
        **dict.fromkeys(("clip", "clip_by_value"), ("x", 0.9, 0.4)),
        "expand_dims": ("x", 1),
        "squeeze": ("x1", 1),
        **dict.fromkeys(("concatenate", "concat", "stack"), ("xx", 1)),
        "l2_normalize": ("x", 1),
        "reshape": ("x", (2, 12)),
        "permute_dimensions": ("x", (0, 2, 1)),
        **dict.fromkeys(("matmul", "batch_dot"), ("x", "xt")),
        "dot": ("x", "w"),
        "cast": ("x", "int32"),
        "reverse": ("x", [1]),
        "flip": ("x", 1),
        **dict.fromkeys(("maximum", "minimum"), ("x", 0.5)),
        **dict.fromkeys(("pow", "power"), ("x", 2.0)),
        **dict.fromkeys(("epsilon", "floatx"), ()),
        "constant": ([1.0, 2.0],),
        "repeat_elements": ("x", 2, 1),
        "tile": ("x", (1, 2, 1)),
    }


LIVE_MODULES = {
    "K": "tf_keras.backend",
    "tf": "tensorflow",
    "tf.math": "tensorflow.math",
    "tf.nn": "tensorflow.nn",
    "tf.linalg": "tensorflow.linalg",
    "ops": "keras.ops",
}


@needs_keras
@pytest.mark.keras
def test_every_table_spelling_is_that_spellings_function() -> None:
    """Each (namespace, name) of the function table exists under that spelling in TF 2 (or
    tf.compat.v1, for TF 1 files), tf_keras' backend or keras.ops, and computes what that
    live function computes, dtype included, on a sample call."""
    import importlib

    import tensorflow as real_tf

    from parity.ports.lambda_layer import FUNCTIONS

    samples = _sample_calls()
    rng = np.random.default_rng(9)
    x = rng.uniform(0.1, 2.0, (2, 3, 4)).astype("float32")
    values = {"x": x, "x1": x[:, :1], "xt": np.swapaxes(x, 1, 2), "w": x[0, :2, :].T.copy()}
    checked = []
    for (namespace, name), ours in sorted(FUNCTIONS.items()):
        if namespace == "builtins":
            continue
        module = importlib.import_module(LIVE_MODULES[namespace])
        live = getattr(module, name, None)
        if live is None and namespace.startswith("tf"):  # TF 1 spellings
            v1 = real_tf.compat.v1
            live = getattr(getattr(v1, namespace[3:]) if "." in namespace else v1, name, None)
        assert live is not None, f"{namespace}.{name} is no such function"
        call = samples[name]

        def arg(a: Any, side: str) -> Any:
            if a == "xx":
                return [arg("x", side)] * 2
            if isinstance(a, str) and a in values:
                return real_tf.constant(values[a]) if side == "tf" else torch.from_numpy(values[a])
            return a

        want = live(*(arg(a, "tf") for a in call))
        got = ours(*(arg(a, "torch") for a in call))
        if isinstance(want, tuple | str | float):
            assert got == want, (namespace, name)
        else:
            want, got = np.asarray(want), np.asarray(got)
            assert got.dtype == want.dtype and got.shape == want.shape, (namespace, name)
            np.testing.assert_allclose(
                got, want, rtol=OUTPUT_TOL.rtol, atol=OUTPUT_TOL.atol, err_msg=f"{namespace}.{name}"
            )
        checked.append(f"{namespace}.{name}")
    assert len(checked) > 120


@needs_keras
@pytest.mark.keras
def test_keras3_lambda_on_a_list_of_one_gets_the_list(tmp_path: Path) -> None:
    """Keras 3 passes ``lam([t])`` a list (x[0] is the tensor) and its .keras config records
    the list; batch 3 = feature count 3 so that taking the first sample would broadcast."""
    import keras

    inp = keras.Input((3,))
    out = keras.layers.Lambda(lambda x: x[0] * 2.0 + 1.0, name="lam")([inp])
    model = keras.Model(inp, out)
    model.save(tmp_path / "m.keras")
    x = np.random.default_rng(2).uniform(-1, 1, (3, 3)).astype("float32")
    ours = parity.load_keras(tmp_path / "m.keras")(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(ours, model.predict(x, verbose=0), rtol=1e-6)

    from parity.ports.lambda_layer import emitted_code

    expr = lambda_translation(_fn_config(lambda x: x[0] * 2.0)).expr
    assert emitted_code(expr, 1, listed=True)[0] == "[{x0}][0] * 2.0"
    assert emitted_code(expr, 1)[0] == "{x0}[0] * 2.0"


def test_nested_input_lists_are_refused() -> None:
    from parity.keras.graph import _calls

    tensor = {"class_name": "__keras_tensor__", "config": {"keras_history": ["a", 0, 0]}}
    with pytest.raises(parity.ConversionError, match="nested lists"):
        _calls({"inbound_nodes": [{"args": [[[tensor], tensor]], "kwargs": {}}]}, "lam")
    (call,) = _calls({"inbound_nodes": [{"args": [[tensor]], "kwargs": {}}]}, "lam")
    assert call.options == {"input_structure": "list of one"}


# --- review regressions: hostile bytecode bounded in time and memory ---------------------------


@pytest.fixture()
def no_xdis(monkeypatch: pytest.MonkeyPatch) -> None:
    """xdis' reader fails the test if called: the refusal must come from the pre-scan."""
    from xdis import unmarshal

    def called(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("xdis read bytes the pre-scan should have refused")

    monkeypatch.setattr(unmarshal, "load_code", called)


def _with_constant(value: Any) -> bytes:
    """``lambda x: x * 2.0`` with one more (flat) constant, as this Python marshals it."""
    f = lambda x: x * 2.0  # noqa: E731
    return marshal.dumps(f.__code__.replace(co_consts=(*f.__code__.co_consts, value)))


def _refused_fast(raw: bytes, match: str) -> None:
    import time

    start = time.perf_counter()
    with pytest.raises(parity.ConversionError, match=match):
        lambda_translation({"name": "lam", "function": [b64(raw), None, None]})
    assert time.perf_counter() - start < 1.0


def _dag_code(depth: int) -> bytes:
    """``lambda x: x / 127.5 - 1.0`` (3.8 layout) with one more constant: a tuple DAG, each
    level (previous, previous), the second copy a marshal back-reference, so 40 levels fit in
    a few hundred bytes (CPython itself cannot even build such a code object: it walks
    constant tuples). The writer flags nothing else, so the DAG's levels take reference
    indexes 0 (outermost) to depth (innermost)."""
    marker = 1234.5678
    ops = [(LOAD_FAST, 0), (LOAD_CONST, 1), (BINARY_TRUE_DIVIDE, 0), (LOAD_CONST, 2)]
    ops += [(BINARY_SUBTRACT, 0), (RETURN_VALUE, 0)]
    wordcode = b"".join(_op3(op, arg) for op, arg in ops)
    raw = code_object("3.8", wordcode, (None, 127.5, 1.0, marker))
    leaf = b"g" + struct.pack("<d", 1.5)
    body = bytes([ord(")") | 0x80, 2]) + leaf + leaf
    for level in range(1, depth + 1):
        inner = depth - (level - 1)  # the reference index of the level below
        body = bytes([ord(")") | 0x80, 2]) + body + b"r" + struct.pack("<I", inner)
    return raw.replace(b"g" + struct.pack("<d", marker), body)


@pytest.mark.parametrize("depth", [8, 40])
def test_tuple_dag_is_refused_before_xdis(depth: int, no_xdis: None) -> None:
    """xdis hashes the 2**depth leaves when it finishes reading (40 levels: weeks)."""
    raw = _dag_code(depth)
    assert len(raw) < 1024
    _refused_fast(raw, "refers back to a tuple" if depth < 12 else "nests objects")


def test_tuple_dag_reads_as_a_dag_without_the_prescan(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test input is what it claims: with the pre-scan off, xdis reads a constant whose
    two halves are one object."""
    from parity.keras import bytecode

    monkeypatch.setattr(bytecode, "prescan", lambda raw, version: None)
    code = bytecode._read(_dag_code(3), (3, 8))
    assert not isinstance(code, str), code
    dag = code.consts[3]
    assert dag[0] is dag[1] and dag[0][0] is dag[0][1]


def test_long_constant_tuple_is_refused_before_xdis(no_xdis: None) -> None:
    """63,000 Nones in 63 KB: xdis grows a tuple one item at a time (about 24 s)."""
    _refused_fast(_with_constant((None,) * 63000), "tuple, list or set of 63,000 items")


def test_huge_int_constant_is_refused_before_xdis(no_xdis: None) -> None:
    """A 480,000-bit int: xdis builds it digit by digit, quadratically (1.6 s a Lambda)."""
    _refused_fast(_with_constant((1 << (15 * 32000)) - 1), "integer of more than 75 bits")


def test_real_code_objects_pass_the_prescan() -> None:
    from parity.keras.bytecode import prescan

    assert prescan(_native(lambda x: K.cast(x > 0, "float32") * (1.0, 2.0) + x[0]), (3, 11)) is None
    for layout, version in (("2.7", (2, 7)), ("3.5", (3, 5)), ("3.8", (3, 8))):
        assert prescan(scale_code(layout), version) is None
        assert prescan(scale_code(layout), (3, 11)) is not None  # another layout


def test_big_argument_used_many_times_is_refused() -> None:
    """One 256 x 256 argument referenced 120 times: it counts in full at every use (it took
    35 s and 2.3 GB), and so does a smaller one that fits once but not 30 times."""
    names = ", ".join(["w"] * 30)
    fn = eval(f"lambda x, w: x + ({names},) + ({names},) + ({names},) + ({names},)")
    for w, match in (
        ([[[0.5] * 256] * 256], "more than 2048 values"),
        ([[0.5] * 40] * 40, "more than 2048 expression nodes"),
    ):
        config = {"name": "lam", "function": [b64(_native(fn)), None, None], "arguments": {"w": w}}
        with pytest.raises(parity.ConversionError, match=match):
            lambda_translation(config)


def test_more_defaults_than_parameters_is_a_conversion_error() -> None:
    f = lambda x, a=1.0: x * a  # noqa: E731
    config = {"name": "lam", "function": [b64(_native(f)), [1.0, 2.0, 3.0], None]}
    with pytest.raises(parity.ConversionError, match="3 defaults for 2 parameters"):
        lambda_translation(config)


def test_model_lambda_code_is_bounded_in_total() -> None:
    from parity.keras.bytecode import MAX_MODEL_CODE_BYTES
    from parity.ports.lambda_layer import lambda_summary, model_code_problem

    raw = _with_constant("a" * 60000)
    configs = [{"name": f"l{i}", "function": [b64(raw), None, None]} for i in range(5)]
    assert 4 * len(raw) < MAX_MODEL_CODE_BYTES < 5 * len(raw)
    assert model_code_problem(configs[:4]) is None
    problem = model_code_problem(configs)
    assert problem is not None and "bytes of code" in problem
    assert lambda_summary(configs[0], problem).startswith("not translated: the model's Lambda")


def test_compare_argument_must_be_one_the_version_writes() -> None:
    """3.11 and 3.12 share COMPARE_OP's number: 3.11's argument 4 (>) is no 3.12 argument."""
    from parity.keras.bytecode import _Code, _Interpreter, _Refused

    def run(version: tuple[int, int], arg: int) -> str:
        instructions = (
            ("LOAD_FAST", 0, "x"),
            ("LOAD_CONST", 0, 0.0),
            ("COMPARE_OP", arg, ">"),
            ("RETURN_VALUE", None, None),
        )
        code = _Code(version, 1, 0, 0, (0.0,), ("x",), (), (), instructions)
        try:
            return render(_Interpreter(code, None, None, {}, lambda n, f: True).run())
        except _Refused as exc:
            return str(exc)

    assert run((3, 11), 4) == "x > 0.0"
    assert run((3, 12), 68) == "x > 0.0"
    assert run((3, 13), 132) == "x > 0.0"
    assert "never writes" in run((3, 12), 4)
    assert "never writes" in run((3, 11), 68)
    assert "never writes" in run((3, 13), 68)


@pytest.mark.parametrize(
    ("module", "name", "namespace"),
    [
        ("keras.backend", "square", "K"),
        ("keras.backend.tensorflow_backend", "mean", "K"),  # Keras 2.0-2.3
        ("keras.src.backend", "softmax", "K"),  # Keras 2.13-2.15
        ("tf_keras.src.backend", "clip", "K"),
        ("keras.src.ops.numpy", "mean", "ops"),
        ("tensorflow.python.ops.math_ops", "reduce_mean", "tf"),
        ("tensorflow.python.ops.nn_ops", "relu", "tf.nn"),
        ("keras.src.backend.tensorflow.numpy", "mean", None),  # Keras 3's backend: refused
        ("tensorflow.python.ops.array_ops", "matrix_transpose_v2", None),
        ("mymodule", "square", None),
    ],
)
def test_named_function_namespace_follows_its_module(
    module: str, name: str, namespace: str | None
) -> None:
    config = {"name": "lam", "function": name, "function_type": "function", "module": module}
    if namespace is None:
        with pytest.raises(parity.ConversionError, match="not a Keras backend function"):
            lambda_translation(config)
    else:
        assert lambda_translation(config).expr.value[:2] == (namespace, name)


def test_powers_are_written_as_ruff_formats_them(tmp_path: Path) -> None:
    """``x**2`` between simple operands, spaced otherwise, ``-(x**2)`` for a negated power:
    the text ruff format leaves as it is, and the value Python gives the tree."""
    import subprocess
    import sys

    from parity.keras.bytecode import Expr

    x, two, half = Expr("input"), Expr("const", 2), Expr("const", -0.5)
    square = Expr("binary", "**", (x, two))
    trees = [
        (square, 9.0),
        (Expr("binary", "**", (x, half)), 3.0**-0.5),
        (Expr("unary", "-", (square,)), -9.0),
        (Expr("binary", "**", (Expr("unary", "-", (x,)), two)), 9.0),
        (Expr("binary", "**", (x, square)), 3.0**9.0),
        (Expr("binary", "**", (square, two)), 81.0),
        (Expr("binary", "**", (Expr("binary", "+", (x, two)), two)), 25.0),
        (Expr("binary", "*", (square, two)), 18.0),
    ]
    lines = []
    for tree, value in trees:
        text = render(tree, "x")
        assert eval(text, {"x": 3.0}) == pytest.approx(value), text
        lines.append(f"y = {text}")
    source = tmp_path / "powers.py"
    source.write_text("\n".join(lines) + "\n")
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--isolated", "--check", "--diff", str(source)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout


def test_port_of_a_long_named_slice_lambda(tmp_path: Path) -> None:
    """A Lambda ``x[:, -1, :]`` under long layer names: too long for one line, its slices stay
    in the subscript (a slice is no value to compute first); the package passes ruff format
    and gives Keras' numbers."""
    import keras
    import tf_keras

    from parity.codegen.port import _load_generated
    from tests.test_port import assert_stands_alone

    _set_backend_names(tf_keras, keras)
    tf_keras.utils.set_random_seed(9)
    inp = tf_keras.Input((4, 3))
    h = tf_keras.layers.Dense(3, name="dense_projection_of_the_input_sequence_features")(inp)
    last = tf_keras.layers.Lambda(
        lambda x: x[:, -1, :], name="last_step_of_the_projected_sequence_features"
    )(h)
    model = tf_keras.Model(inp, last)
    model.save(tmp_path / "m.h5")
    out = tmp_path / "ported"
    result = parity.port(tmp_path / "m.h5", out)
    assert_stands_alone(out)
    x = np.random.default_rng(2).uniform(-1, 1, (2, 4, 3)).astype("float32")
    with torch.no_grad():
        ours = _load_generated(out, result.class_name)(torch.from_numpy(x)).numpy()
    tol = tolerance_for(torch.float32, "cpu", "output")
    np.testing.assert_allclose(ours, model(x).numpy(), rtol=tol.rtol, atol=tol.atol)
