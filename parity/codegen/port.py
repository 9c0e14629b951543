"""``parity port``: a converted model as a standalone PyTorch package the user owns.

OUT_DIR gets ``model.py`` (one nn.Module, the Keras layers as attributes under their Keras
names, ``forward`` as straight-line code in Keras' call order with the masks explicit), and where
the model needs it ``keras_layers.py`` (the Keras-semantics layers torch lacks, written plainly,
only those used), ``weights.safetensors`` (its state_dict: exactly the Keras weights),
``golden.npz`` and ``test_model.py`` (outputs and gradients on inputs padded on both sides), and a
README. The generated files import torch, numpy and safetensors, never parity.

Each Keras layer's code comes from its port (``LayerConverter.emit``); a layer whose port has no
emitter is refused by name before anything is written, and the package is written as a whole or
not at all (a temporary directory, renamed into place).
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import importlib.util
import io
import json
import keyword
import re
import shutil
import sys
import tempfile
import tokenize
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from parity.api import load_keras
from parity.arch import GENERIC_NAME, arch_of
from parity.arch.generic.model import GenericModel
from parity.check import keras_side
from parity.check.inputs import generate_texts
from parity.check.tolerances import tolerance_for
from parity.errors import ConversionError
from parity.files import check_target, signals_raise
from parity.keras.graph import INPUT_LAYER, INPUT_SHAPE_KEYS, NESTED_INPUT
from parity.keras.read import read_keras_file
from parity.ports import CONVERTERS
from parity.ports.registry import MASK_PASSED_KEY, Emitted
from parity.ports.text_preprocessing import TextVectorization

#: Where the Keras-semantics layers' source is kept (copied, class by class, into OUT_DIR).
KERAS_LAYERS_SOURCE = Path(__file__).parent / "templates" / "keras_layers.py"
#: Rows of the golden inputs and their length (padded before and after, so both masks appear).
GOLDEN_BATCH = 6
GOLDEN_LENGTH = 12
#: The seed of the golden inputs and of the loss weights their gradients are taken on.
GOLDEN_SEED = 0


@dataclass(frozen=True)
class PortResult:
    """What ``port`` wrote."""

    out_dir: Path
    class_name: str
    files: tuple[str, ...]
    layers: int


# --- the plan: one emitted block per Keras call --------------------------------------------------


#: What text from the file may carry into comments and docstrings of the generated code (names,
#: versions): anything else becomes "?", so a hostile name cannot end a comment or a string.
SAFE_TEXT = re.compile(r"[^A-Za-z0-9 ._,:()/+-]")
#: Longest such text kept.
MAX_TEXT = 80
#: What generated code may import, and names it must never use: checked on the code itself
#: before anything is written, whatever the emitters produced.
GENERATED_IMPORTS = frozenset(
    {"__future__", "math", "collections", "pathlib", "torch", "safetensors", "keras_layers"}
)
FORBIDDEN_NAMES = frozenset(
    {"eval", "exec", "compile", "open", "__import__", "globals", "locals", "vars", "breakpoint",
     "input", "os", "sys", "subprocess", "importlib", "pickle", "marshal"}
)  # fmt: skip


def _text(value: str) -> str:
    """File-provided text, safe inside a comment or docstring."""
    return SAFE_TEXT.sub("?", str(value))[:MAX_TEXT]


def _check_generated(filename: str, source: str) -> None:
    """Refuse generated code that imports anything but torch, numpy's and safetensors' kind,
    or names a builtin that runs or reads anything: a backstop behind the emitters."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ConversionError(f"parity port: {filename} would not parse ({exc.msg})") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        else:
            modules = []
        for module in modules:
            if module.split(".")[0] not in GENERATED_IMPORTS:
                raise ConversionError(f"parity port: {filename} would import {module!r}")
        if isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
            raise ConversionError(f"parity port: {filename} would use {node.id!r}")


def _identifier(name: str, taken: set[str]) -> str:
    """A Keras layer name as a Python identifier (ASCII), unique among ``taken``."""
    ident = re.sub(r"[^A-Za-z0-9_]", "_", name)
    if not ident or ident[0].isdigit() or keyword.iskeyword(ident):
        ident = f"layer_{ident}"
    while ident in taken:
        ident += "_"
    taken.add(ident)
    return ident


def _same_operands(expr: str) -> str:
    """``a | a | a`` (one mask met on several inputs) as ``a``."""
    parts = re.split(r" [|&] ", expr)
    return parts[0] if len(parts) > 1 and len(set(parts)) == 1 else expr


@dataclass
class _Block:
    name: str
    cls: str
    attr: str | None
    emitted: Emitted
    lines: list[str]


def _plan(model: GenericModel) -> tuple[list[_Block], list[str], list[str]]:
    """Every Keras call as code: (blocks, forward parameter names, returned expressions)."""
    config = model.config
    missing = sorted(
        {
            layer["class_name"]
            for layer in config.layers
            if layer["config"]["_class"] != INPUT_LAYER
            and CONVERTERS[layer["config"]["_class"]].emit is None
        }
    )
    if missing:
        raise ConversionError(
            f"parity port: no code emitter for {', '.join(missing)}; nothing was written"
        )
    # locals and submodule names are separate namespaces; both avoid what the code itself uses
    taken = {"self", "torch", "nn", "F", "Path", "load", "WEIGHTS", "ACTIVATIONS", "_"}
    taken |= set(dir(builtins))
    taken |= {"KerasLSTM", "KerasGRU", "KerasSimpleRNN"}
    attr_taken = set(dir(nn.Module))
    values: dict[tuple[str, int, int], str] = {}
    masks: dict[tuple[str, int, int], str] = {}
    params = []
    for name, node, index in config.inputs:
        var = _identifier(name, taken)
        params.append(var)
        values[(name, node, index)] = var
        masks[(name, node, index)] = "None"
    layers = {layer["name"]: layer for layer in config.layers}
    blocks: list[_Block] = []
    attrs: dict[str, str] = {}
    mask_vars: set[str] = set()
    for name, node in model._order:
        layer = layers[name]
        cls = layer["config"]["_class"]
        if cls == INPUT_LAYER:
            continue
        call = layer["inbound"][node]
        module = getattr(model, model._paths[name], None)
        args = [tuple(ref[:3]) for ref in call["args"]]
        arg_masks = [masks[a] for a in args]
        if call["mask"] is not None:  # Keras 3 passes some masks explicitly
            arg_masks[0] = values[tuple(call["mask"][:3])]
        try:
            call_config = {
                **layer["config"],
                "_constants": call["constants"],
                "_options": call.get("options", {}),
                MASK_PASSED_KEY: call["mask"] is not None,
            }
            masked = tuple(m != "None" for m in arg_masks)
            emitted = CONVERTERS[cls].emit(module, call_config, masked)
        except ConversionError as exc:
            raise ConversionError(f"layer {name!r} ({layer['class_name']}): {exc}") from exc
        if name not in attrs and emitted.module is not None:
            attrs[name] = _identifier(name, attr_taken)
        outs = [
            _identifier(name if node == 0 and i == 0 else f"{name}_{node}_{i}", taken)
            for i in range(len(emitted.masks))
        ]
        fields = {
            "self": f"self.{attrs[name]}" if name in attrs else "",
            "state": _identifier(f"{name}_state", taken),  # a recurrent layer's final states
            **{f"x{i}": values[a] for i, a in enumerate(args)},
            **{f"m{i}": m for i, m in enumerate(arg_masks)},
            **{f"out{i}": o for i, o in enumerate(outs)},
        }
        lines = [part for line in emitted.lines for part in _split(line.format(**fields), taken)]
        if not any(_reads(line, fields["state"]) for line in lines):  # states not used
            lines = [line.replace(f", {fields['state']} = ", ", _ = ") for line in lines]
        for i, (out, mask) in enumerate(zip(outs, emitted.masks, strict=True)):
            values[(name, node, i)] = out
            mask_expr = _same_operands(mask.format(**fields))
            if mask_expr in ("None", *fields.values()) or mask_expr.isidentifier():
                masks[(name, node, i)] = mask_expr
            else:  # computed once, named
                mask_var = _identifier(f"{out}_mask", taken)
                lines.append(f"{mask_var} = {mask_expr}")
                masks[(name, node, i)] = mask_var
                mask_vars.add(mask_var)
        blocks.append(_Block(name, layer["class_name"], attrs.get(name), emitted, lines))
    returns = [values[tuple(ref[:3])] for ref in config.outputs]
    _drop_unused_masks(blocks, mask_vars, returns)
    return blocks, params, returns


def _reads(line: str, var: str) -> bool:
    """Whether ``line`` reads ``var`` (an assignment's target is not a read)."""
    target, _, value = line.partition(" = ")
    return re.search(rf"\b{re.escape(var)}\b", value if value else target) is not None


def _drop_unused_masks(blocks: Sequence[_Block], mask_vars: set[str], returns: list[str]) -> None:
    """Remove the mask assignments no line reads (a layer ends the mask, or only an unused mask
    was built from it), until none is left."""
    while True:
        code = [line for block in blocks for line in block.lines] + returns
        unused = {var for var in mask_vars if not any(_reads(line, var) for line in code)}
        if not unused:
            return
        for block in blocks:
            block.lines = [line for line in block.lines if line.partition(" = ")[0] not in unused]
        mask_vars -= unused


# --- the files ----------------------------------------------------------------------------------


def _keras_layers_source(names: set[str], extra: tuple[str, ...] = ()) -> str:
    """keras_layers.py with only the classes in ``names`` (and everything else it defines, which
    they share), then ``extra`` definitions (plug-ins'): the unused classes are cut out with the
    blank lines before them."""
    source = KERAS_LAYERS_SOURCE.read_text()
    lines = source.splitlines(keepends=True)
    cut = [
        (node.lineno, node.end_lineno)
        for node in ast.parse(source).body
        if isinstance(node, ast.ClassDef) and node.name not in names
    ]
    for start, end in reversed(cut):
        while start > 1 and not lines[start - 2].strip():
            start -= 1  # the blank lines that separated it
        del lines[start - 1 : end]
    if len(cut) == sum(isinstance(n, ast.ClassDef) for n in ast.parse(source).body) and not any(
        "nn." in src for src in extra
    ):  # only functions left (a Lambda's helpers): torch.nn would be an unused import
        lines = [line for line in lines if line != "from torch import nn\n"]
    return "\n\n\n".join(["".join(lines).rstrip(), *extra]) + "\n"


#: The line length the generated code keeps: ruff's default, so that ``ruff format --check``
#: passes in a repository with no ruff settings of its own.
LINE_LENGTH = 88


#: Where a forward() statement is indented.
FORWARD_INDENT = " " * 8


def _laid_out(line: str, value: ast.expr) -> bool:
    """Whether ruff format leaves ``line`` (assigning ``value``) as ``_fit`` lays it out: a
    line that fits, or a plain call whose arguments ``_fit`` spreads over lines that fit.
    Longer arithmetic and method chains ruff splits by rules of its own; they are split into
    shorter statements instead."""
    if len(FORWARD_INDENT) + len(line) <= LINE_LENGTH:
        return True
    spread = isinstance(value, ast.Tuple) or (
        isinstance(value, ast.Call) and _dotted(value.func)  # not f(a).sum(dim=1): a chain
    )
    return spread and all(len(part) <= LINE_LENGTH for part in _fit(line, FORWARD_INDENT))


def _dotted(node: ast.expr) -> bool:
    """A name or an attribute of one (``torch.where``, ``self.dense``): looked up, not
    computed."""
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name)


def _simple(node: ast.expr) -> bool:
    """An operand that is looked up or written out, never computed."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        return isinstance(node.operand, ast.Constant)
    return isinstance(node, ast.Constant) or _dotted(node)


#: What may be computed ahead into a variable of its own: no walrus (it binds a name), no
#: lambda, comprehension or generator (scopes of their own), no and/or or conditional (their
#: parts run only if another says so), no starred list.
HOISTABLE = (ast.Call, ast.BinOp, ast.UnaryOp, ast.Compare, ast.Subscript, ast.Attribute)


def _operands(node: ast.expr) -> list[ast.expr]:
    """The operands of ``node`` in the order Python computes them (for a chained comparison,
    the first two only: the later run only if the earlier hold); none for a node whose parts
    may not move."""
    if isinstance(node, ast.Call):
        func = node.func  # computed first unless looked up: its receiver, or itself
        receiver = func.value if isinstance(func, ast.Attribute) else func
        computed = [] if _dotted(func) else [receiver]
        return [*computed, *node.args, *(k.value for k in node.keywords)]
    if isinstance(node, ast.BinOp) and not isinstance(node.op, ast.Pow):
        # (a power's operands stay: ruff writes a**b without spaces once both are names)
        return [node.left, node.right]
    if isinstance(node, ast.UnaryOp):
        return [node.operand]
    if isinstance(node, ast.Compare):
        return [node.left, node.comparators[0]]
    if isinstance(node, ast.Subscript):  # the value; the index may hold slices
        return [node.value]
    if isinstance(node, ast.Attribute):
        return [node.value]
    if isinstance(node, ast.Tuple | ast.List) and not _literal_table(node):
        return list(node.elts)
    return []


def _first_hoistable(node: ast.expr) -> ast.expr | None:
    """The first operand of ``node`` that may be computed ahead: compound, of a HOISTABLE
    kind, and with no compound operand before it that may not move (which would then run
    after it)."""
    for operand in _operands(node):
        if _simple(operand):
            continue
        if isinstance(operand, HOISTABLE) and not (
            isinstance(operand, ast.BinOp) and isinstance(operand.op, ast.Pow)
        ):
            return operand
        return None
    return None


def _literal_table(node: ast.expr) -> bool:
    """A list or tuple of constants (a vocabulary): ``_fit`` lays it out one per line."""
    elements = node.elts if isinstance(node, ast.List | ast.Tuple) else ()
    return bool(elements) and all(isinstance(e, ast.Constant) for e in elements)


def _code_and_comment(line: str) -> tuple[str, str]:
    """``line`` without its trailing comment, and the comment ("" for none)."""
    try:
        for token in tokenize.generate_tokens(io.StringIO(line).readline):
            if token.type == tokenize.COMMENT:
                return line[: token.start[1]].rstrip(), token.string
    except (tokenize.TokenError, SyntaxError):
        pass
    return line, ""


def _split(line: str, taken: set[str]) -> list[str]:
    """``line`` as statements that each fit the line length once laid out: while an
    assignment does not, its first compound operand is computed first into a new variable
    (``taken`` keeps the name unique), so every operation still runs once and in the same
    order. A statement that cannot be split stays as it is."""
    if len(FORWARD_INDENT) + len(line) <= LINE_LENGTH or "\n" in line:
        return [line]
    code, comment = _code_and_comment(line)
    if comment:  # on a line of its own, above: ruff lays out the code without it
        return [comment, *_split(code, taken)] if code else [line]
    try:
        tree = ast.parse(line).body
    except SyntaxError:
        return [line]
    if len(tree) != 1 or not isinstance(tree[0], ast.Assign):
        return [line]
    value = tree[0].value
    if _laid_out(line, value):
        return [line]
    part = _first_hoistable(value)  # the first: the statements still run in the line's order
    if part is None:
        return [line]
    target = ast.get_source_segment(line, tree[0].targets[0]) or "part"
    var = _identifier(f"{target.split(',')[0].strip()}_part", taken)
    hoisted = f"{var} = {ast.get_source_segment(line, part)}"
    raw = line.encode()  # ast's column offsets count UTF-8 bytes
    rest = (raw[: part.col_offset] + var.encode() + raw[part.end_col_offset :]).decode()
    return [*_split(hoisted, taken), *_split(rest, taken)]


def _fit(line: str, indent: str) -> list[str]:
    """``line`` (an assignment of a call) laid out as ruff format lays it out when it is longer
    than LINE_LENGTH: the arguments on one indented line if they fit, else one per line."""
    if len(indent) + len(line) <= LINE_LENGTH or line.startswith("#"):
        return [indent + line]
    tree = ast.parse(line).body[0]
    call = getattr(tree, "value", None)
    if isinstance(call, ast.Tuple) and isinstance(tree, ast.Assign):  # one element per line
        target = ast.get_source_segment(line, tree.targets[0])
        elements = [f"{indent}    {ast.get_source_segment(line, e)}," for e in call.elts]
        return [f"{indent}{target} = (", *elements, f"{indent})"]
    if not isinstance(call, ast.Call):  # an expression: in parentheses on its own line
        target, _, value = line.partition(" = ")
        inner = f"{indent}    {value}"
        if value and len(inner) <= LINE_LENGTH:
            return [f"{indent}{target} = (", inner, f"{indent})"]
        return [indent + line]
    head = line.encode()[: call.func.end_col_offset].decode() + "("  # offsets count bytes
    target, _, value = line.partition(" = ")
    if len(indent + head) > LINE_LENGTH and value and len(f"{indent}    {value}") <= LINE_LENGTH:
        # too long a name to open the call on its line: the call in parentheses on its own
        return [f"{indent}{target} = (", f"{indent}    {value}", f"{indent})"]
    args = [ast.get_source_segment(line, a) for a in call.args]
    args += [f"{k.arg}={ast.get_source_segment(line, k.value)}" for k in call.keywords]
    inner = indent + "    "
    hugged = inner + ", ".join(args)
    if len(hugged) <= LINE_LENGTH:
        return [indent + head, hugged, indent + ")"]
    lines = [indent + head]
    for node, arg in zip([*call.args, *(k.value for k in call.keywords)], args, strict=True):
        if len(f"{inner}{arg},") > LINE_LENGTH and isinstance(node, ast.List | ast.Tuple):
            # a long list argument (a vocabulary): one element per line, as ruff lays it out
            key = arg[: arg.index("=") + 1] if not arg.startswith(("[", "(")) else ""
            opening, closing = ("[", "]") if isinstance(node, ast.List) else ("(", ")")
            elements = [ast.get_source_segment(line, e) for e in node.elts]
            lines += [f"{inner}{key}{opening}"]
            lines += [f"{inner}    {e}," for e in elements]
            lines += [f"{inner}{closing},"]
        else:
            lines.append(f"{inner}{arg},")
    return [*lines, indent + ")"]


def _model_source(
    class_name: str,
    header: str,
    blocks: Sequence[_Block],
    params: Sequence[str],
    returns: Sequence[str],
) -> str:
    # only the helpers the code names (the others are keras_layers.py's own dependencies)
    texts = [b.emitted.module or "" for b in blocks] + [line for b in blocks for line in b.lines]
    helpers = sorted(
        {
            h
            for b in blocks
            for h in b.emitted.helpers
            if any(re.search(rf"\b{h}\b", text) for text in texts)
        }
    )
    code = [
        f'"""{header}"""',
        "",
        "from __future__ import annotations",
        "",
        "from pathlib import Path",
        "",
    ]
    # sorted as ruff's isort sorts them: plain imports first, then from-imports by module
    code.append("import torch")
    if helpers:
        code.append(f"from keras_layers import {', '.join(helpers)}")
    code += ["from safetensors.torch import load_file", "from torch import nn"]
    if any("F." in line for b in blocks for line in b.lines):
        code.append("from torch.nn import functional as F")
    code += ["", 'WEIGHTS = Path(__file__).with_name("weights.safetensors")', "", ""]
    code += [
        f"class {class_name}(nn.Module):",
        f'    """The Keras model {class_name}: layers under their Keras names."""',
        "",
    ]
    code += ["    def __init__(self) -> None:", "        super().__init__()"]
    for block in blocks:
        if block.attr is not None and block.emitted.module is not None:
            code += _fit(f"self.{block.attr} = {block.emitted.module}", " " * 8)
    signature = ", ".join(f"{p}: torch.Tensor" for p in params)
    code += ["", f"    def forward(self, {signature}):"]
    for block in blocks:
        code.append(f"        # {_text(block.name)} ({_text(block.cls)})")
        for line in block.lines:
            code += _fit(line, FORWARD_INDENT)
    code.append(f"        return {', '.join(returns)}")
    signature = 'path: str | Path | None = None, device: str = "cpu"'
    load_def = f"def load({signature}) -> {class_name}:"
    if len(load_def) > LINE_LENGTH:
        load_def = f"def load(\n    {signature}\n) -> {class_name}:"
    code += ["", "", load_def]
    code += [
        '    """The model with its weights, in eval mode, on ``device``."""',
        f"    model = {class_name}()",
        "    model.load_state_dict(load_file(str(path or WEIGHTS)), strict=True)",
        "    return model.to(device).eval()",
        "",
    ]
    return "\n".join(code)


def _test_source(names: Sequence[str]) -> str:
    out_tol = tolerance_for(torch.float32, "cpu", "output")
    grad_tol = tolerance_for(torch.float32, "cpu", "gradient")
    return f'''"""model.py computes what the Keras model computed (outputs, gradients: golden.npz).

golden.npz holds the inputs (rows padded before and after their tokens), the outputs (Keras'
own where keras was installed when the package was written: golden.npz's "source" says), and
the gradients of sum(output * loss_weights) for every parameter, from the converted model that
``parity check`` proves against Keras.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from model import load

GOLDEN = np.load(Path(__file__).with_name("golden.npz"))
INPUTS = {json.dumps(list(names))}
#: float32 tolerances (relative, absolute) for outputs and gradients.
OUTPUT_RTOL, OUTPUT_ATOL = {out_tol.rtol!r}, {out_tol.atol!r}
GRADIENT_RTOL, GRADIENT_ATOL = {grad_tol.rtol!r}, {grad_tol.atol!r}


def _input(array: np.ndarray, device: str):
    # texts (a model that takes strings) are passed as they are
    return array if array.dtype.kind == "U" else torch.from_numpy(array).to(device)


def _run(device: str) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model = load(device=device)
    inputs = [_input(GOLDEN[f"input/{{name}}"], device) for name in INPUTS]
    outputs = model(*inputs)
    return model, outputs if isinstance(outputs, tuple) else (outputs,)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_outputs_match(device: str) -> None:
    with torch.no_grad():
        _, outputs = _run(device)
    for i, out in enumerate(outputs):
        np.testing.assert_allclose(
            out.cpu().numpy(), GOLDEN[f"output/{{i}}"], rtol=OUTPUT_RTOL, atol=OUTPUT_ATOL
        )


@pytest.mark.parametrize("device", DEVICES)
def test_gradients_match(device: str) -> None:
    model, outputs = _run(device)
    loss = sum(
        (out * torch.from_numpy(GOLDEN[f"loss_weights/{{i}}"]).to(device)).sum()
        for i, out in enumerate(outputs)
    )
    loss.backward()
    for name, param in model.named_parameters():
        np.testing.assert_allclose(
            param.grad.cpu().numpy(),
            GOLDEN[f"gradient/{{name}}"],
            rtol=GRADIENT_RTOL,
            atol=GRADIENT_ATOL,
            err_msg=name,
        )
'''


def _readme(class_name: str, source: Path, digest: str, helpers: bool) -> str:
    files = "model.py, keras_layers.py" if helpers else "model.py"
    return f"""# {class_name}

PyTorch code for the Keras model in `{_text(source.name)}` (sha256 `{digest}`), written by
`parity port`. It depends on torch, numpy and safetensors only.

```python
import model  # with this directory on sys.path

net = model.load()  # weights.safetensors, eval mode, CPU
out = net(inputs)  # the tensors the Keras model took, in Keras' layout
```

- {files}: the module; edit it as your own code. `weights.safetensors`: its state_dict, exactly
  the Keras weights.
- `pytest .` checks outputs and gradients against `golden.npz` (CPU, and CUDA when there is one).
"""


# --- golden inputs and numbers ------------------------------------------------------------------


def _golden_inputs(model: GenericModel) -> list[Tensor]:
    """One tensor per model input: token ids padded before and after their tokens where the input
    feeds an Embedding, else seeded floats of the input's declared shape."""
    rng = np.random.default_rng(GOLDEN_SEED)
    consumers: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for layer in model.config.layers:
        for call in layer["inbound"]:
            for ref in call["args"]:
                consumers.setdefault(tuple(ref[:2]), []).append(layer)
    layers = {layer["name"]: layer for layer in model.config.layers}
    length = arch_of(model).input_length(model) or GOLDEN_LENGTH
    inputs: list[Tensor | np.ndarray] = []
    for name, node, _ in model.config.inputs:
        dtype = layers[name]["config"].get("dtype")
        if dtype == "string":
            inputs.append(_golden_strings(model, consumers, (name, node), layers[name], rng))
            continue
        embeddings = _embeddings_fed(consumers, (name, node))
        if embeddings:
            vocab = min(embeddings)
            ids = np.zeros((GOLDEN_BATCH, length), np.int64)
            for row in range(GOLDEN_BATCH):
                real = int(rng.integers(1, length + 1))
                tokens = rng.integers(1, max(vocab, 2), real)
                if row % 2:
                    ids[row, :real] = tokens  # post-padded
                else:
                    ids[row, length - real :] = tokens  # pre-padded
            inputs.append(torch.from_numpy(ids))
            continue
        shape = _declared_shape(layers[name]["config"])
        if shape is None:
            raise ConversionError(f"parity port: the input {name!r} declares no shape")
        dims = [GOLDEN_BATCH] + [GOLDEN_LENGTH if d is None else int(d) for d in shape[1:]]
        if isinstance(dtype, str) and dtype.startswith("int"):  # raw integers (IntegerLookup)
            inputs.append(torch.from_numpy(rng.integers(-3, 20, dims)))
            continue
        inputs.append(torch.from_numpy(rng.standard_normal(dims).astype(np.float32)))
    return inputs


def _embeddings_fed(
    consumers: dict[tuple[str, int], list[dict[str, Any]]], source: tuple[str, int]
) -> list[int]:
    """The vocabulary sizes of the Embeddings a model input feeds, through nested models'
    inputs (which pass it on)."""
    sizes, todo, seen = [], [source], set()
    while todo:
        ref = todo.pop()
        if ref in seen:
            continue
        seen.add(ref)
        for layer in consumers.get(ref, []):
            if layer["config"]["_class"] == "Embedding":
                sizes.append(layer["shapes"]["embeddings"][0])
            elif layer["config"]["_class"] == NESTED_INPUT:
                todo += [(layer["name"], node) for node in range(len(layer["inbound"]))]
    return sizes


def _golden_strings(
    model: GenericModel,
    consumers: dict[tuple[str, int], list[dict[str, Any]]],
    source: tuple[str, int],
    layer: dict[str, Any],
    rng: np.random.Generator,
) -> np.ndarray:
    """A string input's golden rows: for a TextVectorization, texts of its vocabulary's words
    and others (parity check's, cut to the batch, the longest kept); else words of the lookup
    layers' vocabularies and words outside them, in the input's declared shape."""
    modules = [getattr(model, model._paths[c["name"]], None) for c in consumers.get(source, [])]
    for module in modules:
        if isinstance(module, TextVectorization):
            length = module.output_sequence_length or GOLDEN_LENGTH
            texts = generate_texts(module.table.vocabulary(), length, seed=GOLDEN_SEED)
            return np.concatenate([texts[: max(GOLDEN_BATCH - 4, 0)], texts[-4:]])[:GOLDEN_BATCH]
    words = ["zzqxj", "", "\u00c9t\u00e9", "[UNK]"]
    for module in modules:
        table = getattr(module, "table", None)
        if table is not None and not table.integer:
            words += [t.decode("utf-8") for t in table.tokens]
    shape = _declared_shape(layer["config"]) or [None, 1]
    dims = [GOLDEN_BATCH] + [GOLDEN_LENGTH if d is None else int(d) for d in shape[1:]]
    return np.array(words)[rng.integers(0, len(words), dims)]


def _as_array(x: Tensor | np.ndarray) -> np.ndarray:
    """An input as golden.npz stores it (texts stay a numpy unicode array)."""
    return x if isinstance(x, np.ndarray) else x.numpy()


def _declared_shape(config: dict[str, Any]) -> list[Any] | None:
    """An InputLayer's (batch, ...) shape as its config states it."""
    for key in INPUT_SHAPE_KEYS:
        if isinstance(config.get(key), list):
            return config[key]
    return None


def _use_keras_outputs(source: Path, golden: dict[str, np.ndarray], inputs: list[Tensor]) -> None:
    """Keras' own outputs in golden.npz, where keras is installed and loads the file and its
    numbers agree with the converted model's (which parity check proves); else the converted
    model's, and golden.npz's "source" says which and why."""
    golden["source"] = np.array("converted model (keras not installed)")
    try:
        keras_model = keras_side.load_model(source)
    except ImportError:
        return
    except ValueError as exc:  # a file Keras cannot rebuild (weights only, custom classes)
        golden["source"] = np.array(f"converted model (Keras cannot load the file: {exc})"[:300])
        return
    arrays = [_as_array(x) for x in inputs]
    try:
        found = keras_model(arrays if len(arrays) > 1 else arrays[0])
    except Exception as exc:  # Keras raises many types on inputs it will not take
        golden["source"] = np.array(f"converted model (Keras cannot run it: {exc})"[:300])
        return
    found = [np.asarray(o) for o in (found if isinstance(found, list | tuple) else [found])]
    ours = [golden[f"output/{i}"] for i in range(len(found))]
    tol = tolerance_for(torch.float32, "cpu", "output")
    if len(found) != len([k for k in golden if k.startswith("output/")]) or not all(
        k.shape == o.shape and np.allclose(o, k, rtol=tol.rtol, atol=tol.atol)
        for k, o in zip(found, ours, strict=True)
    ):
        # e.g. Keras 3 rereading a Keras 2 hard sigmoid: parity check says which is right
        golden["source"] = np.array("converted model (Keras computes otherwise; run parity check)")
        return
    for i, value in enumerate(found):
        golden[f"output/{i}"] = value.astype(np.float32)
    runtime = keras_side.runtime(keras_model)
    golden["source"] = np.array(f"{runtime['keras_runtime']} {runtime['keras_version']}")


def _golden(
    model: GenericModel, blocks: Sequence[_Block]
) -> tuple[dict[str, np.ndarray], list[Tensor]]:
    """Inputs, outputs, loss weights and every parameter's gradient (under its name in the
    generated module), from the converted model in float32."""
    model = model.float().eval()
    inputs = _golden_inputs(model)
    model.zero_grad(set_to_none=True)
    outputs = model(*inputs)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    rng = np.random.default_rng(GOLDEN_SEED + 1)
    weights = [rng.standard_normal(tuple(o.shape)).astype(np.float32) for o in outputs]
    sum((o * torch.from_numpy(w)).sum() for o, w in zip(outputs, weights, strict=True)).backward()
    golden: dict[str, np.ndarray] = {}
    for (name, _, _), x in zip(model.config.inputs, inputs, strict=True):
        golden[f"input/{name}"] = _as_array(x)
    for i, (out, w) in enumerate(zip(outputs, weights, strict=True)):
        golden[f"output/{i}"] = out.detach().numpy()
        golden[f"loss_weights/{i}"] = w
    for block in blocks:
        if block.attr is None:
            continue
        module = getattr(model, model._paths[block.name])
        # the generated module's names for the converted parameters: its state holds them
        # (same storage) under the names the code gives them
        by_storage = {p.data_ptr(): p for p in module.parameters()}
        for key, value in _own_state(block, module).items():
            param = by_storage.get(value.data_ptr())
            if param is not None:
                grad = torch.zeros_like(param) if param.grad is None else param.grad
                # in the shape the code gives it (a depthwise kernel as a grouped conv's)
                golden[f"gradient/{block.attr}.{key}"] = grad.detach().reshape(value.shape).numpy()
    return golden, inputs


def _own_state(block: _Block, module: nn.Module) -> dict[str, Tensor]:
    """The generated submodule's state, as tensors of the converted one (its storage)."""
    return block.emitted.state(module) if block.emitted.state else module.state_dict()


def _state(model: GenericModel, blocks: Sequence[_Block]) -> dict[str, Tensor]:
    """The generated module's state_dict, from the converted one."""
    state: dict[str, Tensor] = {}
    for block in blocks:
        if block.attr is None:
            continue
        module = getattr(model, model._paths[block.name])
        for key, value in _own_state(block, module).items():
            state[f"{block.attr}.{key}"] = value.detach().float().contiguous().clone()
    return state


def _class_name(name: str) -> str:
    """A class name from ``name`` ("my_model" -> "MyModel"); refused when none can be made."""
    words = re.findall(r"[A-Za-z0-9]+", name)
    candidate = "".join(w[:1].upper() + w[1:] for w in words)
    if not candidate.isidentifier() or keyword.iskeyword(candidate):
        candidate = f"Model{candidate}"
    if not candidate.isidentifier():
        raise ConversionError(f"parity port: {name!r} gives no class name; pass --name")
    return candidate


def _file_bytes(source: Path) -> bytes:
    """What the header's sha256 covers: the file, or a directory's files in sorted order."""
    if source.is_file():
        return source.read_bytes()
    return b"".join(p.read_bytes() for p in sorted(source.rglob("*")) if p.is_file())


def _header(class_name: str, source: Path, digest: str, model: nn.Module, version: str) -> str:
    gates = sorted(
        {
            getattr(m, attr)
            for m in model.modules()
            for attr in ("gate_activation",)
            if isinstance(getattr(m, attr, None), str)
        }
    )
    gate_line = f"- gate activation: {_text(', '.join(gates))}\n" if gates else ""
    return (
        f"{class_name}: a Keras model as PyTorch code.\n\n"
        f"Written by parity port from {_text(source.name)}.\n"
        f"- sha256 of the file: {digest}\n"
        f"- Keras version that wrote it: {_text(version or 'not recorded')}\n"
        f"{gate_line}"
        "- inputs and outputs in Keras' layout (channels-last); token ids: 0 is padding, rows\n"
        "  may be padded before or after their tokens (the masks are computed as Keras does)\n"
    )


# --- writing and proving ------------------------------------------------------------------------


def _load_generated(directory: Path, class_name: str) -> nn.Module:
    """Import the generated model.py (and keras_layers.py) from ``directory``, unregistered."""
    saved_path = list(sys.path)
    saved_helpers = sys.modules.pop("keras_layers", None)
    sys.path.insert(0, str(directory))
    try:
        spec = importlib.util.spec_from_file_location(
            f"_parity_port_{class_name}", directory / "model.py"
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.load(directory / "weights.safetensors")
    finally:
        sys.path[:] = saved_path
        sys.modules.pop("keras_layers", None)
        if saved_helpers is not None:
            sys.modules["keras_layers"] = saved_helpers


def _prove(generated: nn.Module, golden: dict[str, np.ndarray], inputs: list[Tensor]) -> None:
    """The generated module must reproduce the converted model's outputs and gradients at the
    float32 tolerances, or nothing is written."""
    out_tol = tolerance_for(torch.float32, "cpu", "output")
    grad_tol = tolerance_for(torch.float32, "cpu", "gradient")
    try:
        outputs = generated(*inputs)
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        loss = sum(
            (o * torch.from_numpy(golden[f"loss_weights/{i}"])).sum() for i, o in enumerate(outputs)
        )
        loss.backward()
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise ConversionError(
            f"parity port: the generated code fails on the golden inputs ({exc}); nothing "
            "was written"
        ) from exc
    found = {f"output/{i}": o.detach().numpy() for i, o in enumerate(outputs)}
    found |= {
        f"gradient/{name}": p.grad.numpy() if p.grad is not None else np.zeros(tuple(p.shape))
        for name, p in generated.named_parameters()
    }
    expected = {k: v for k, v in golden.items() if k.startswith(("output/", "gradient/"))}
    if set(found) != set(expected):
        raise ConversionError(
            "parity port: the generated module's parameters differ from the Keras weights: "
            f"{sorted(set(found) ^ set(expected))[:6]}"
        )
    for key, value in expected.items():
        tol = out_tol if key.startswith("output/") else grad_tol
        if value.shape != found[key].shape or not np.allclose(
            found[key], value, rtol=tol.rtol, atol=tol.atol
        ):
            worst = (
                float(np.max(np.abs(found[key] - value)))
                if value.shape == found[key].shape
                else float("nan")
            )
            raise ConversionError(
                f"parity port: the generated code computes another {key} (max abs difference "
                f"{worst:.3g}); nothing was written"
            )


def port(
    path: str | Path,
    out_dir: str | Path,
    *,
    arch: str | None = None,
    hard_sigmoid: str | None = None,
    config: str | Path | None = None,
    name: str | None = None,
) -> PortResult:
    """Write ``out_dir`` as a standalone PyTorch package for the Keras file ``path``.

    ``arch``, ``hard_sigmoid`` and ``config`` are load_keras'; the model is rebuilt from its
    Keras graph (the generic architecture) unless ``arch`` names another. ``name``: the class name
    (default: the Keras model's name). ``out_dir`` must not exist yet, or be empty.
    """
    source = Path(path)
    out = Path(out_dir)
    check_target(out if not out.is_dir() else out / "model.py", "port")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConversionError(f"{out}: exists and is not an empty directory; choose another")
    model = load_keras(source, arch=arch or GENERIC_NAME, hard_sigmoid=hard_sigmoid, config=config)
    if not isinstance(model, GenericModel):
        raise ConversionError(
            f"parity port writes models rebuilt from their Keras graph; {source} converts as the "
            f"{arch_of(model).name!r} pair: pass --arch generic"
        )
    class_name = _class_name(name or source.name.split(".")[0])
    blocks, params, returns = _plan(model)
    golden, inputs = _golden(model, blocks)
    _use_keras_outputs(source, golden, inputs)
    helpers = {h for b in blocks for h in b.emitted.helpers}
    digest = hashlib.sha256(_file_bytes(source)).hexdigest()
    version = read_keras_file(source).keras_version
    header = _header(class_name, source, digest, model, version)
    files = {
        "model.py": _model_source(class_name, header, blocks, params, returns),
        "test_model.py": _test_source([n for n, _, _ in model.config.inputs]),
        "README.md": _readme(class_name, source, digest, bool(helpers)),
    }
    if helpers:
        extra = dict.fromkeys(src.strip() for b in blocks for src in b.emitted.sources)
        files["keras_layers.py"] = _keras_layers_source(helpers, tuple(extra))
    for filename, text in files.items():
        if filename.endswith(".py") and filename != "test_model.py":
            _check_generated(filename, text)
    parent = out.parent if str(out.parent) else Path(".")
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent))
    try:
        with signals_raise():  # SIGTERM too: the staging directory is removed below
            for filename, text in files.items():
                (staging / filename).write_text(text)
            save_file(_state(model, blocks), str(staging / "weights.safetensors"))
            np.savez(staging / "golden.npz", **golden)
            _prove(_load_generated(staging, class_name), golden, inputs)
            if out.is_dir():
                out.rmdir()  # empty: checked above
            staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    written = (*files, "weights.safetensors", "golden.npz")
    return PortResult(out, class_name, tuple(sorted(written)), len(blocks))
