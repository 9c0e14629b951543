"""`parity port`: the generated package computes Keras' numbers, stands alone, and is refused
whole when a layer has no emitter.

Keras' own outputs come from the golden files (tests/golden); the generated package's own test
(pytest OUT_DIR, run with parity made unimportable) checks outputs and gradients against the
converted model, which the parity tests prove against Keras.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import parity
from parity.arch.zoo import ZOO
from parity.check import tolerance_for
from parity.cli import main
from parity.codegen.port import _load_generated
from tests.conftest import GOLDEN, needs_keras
from tests.golden_cases import (
    CASES,
    ZOO_LENGTHS,
    ZOO_PRE,
    ZOO_SIZES,
    ZOO_SMALL,
    GoldenCase,
    ragged_ids,
)

#: The golden cases whose models the port must write: the seed zoo and the embedding_dense pair
#: (rebuilt from its graph), float32 as the generated code computes.
PORTED = {
    case.id: case
    for case in CASES
    if case.floatx == "float32" and case.model_file.suffix == ".keras" and case.build is not None
}
#: What generated code may import.
ALLOWED_IMPORTS = {
    "__future__",
    "collections",
    "math",
    "numpy",
    "pathlib",
    "pytest",
    "safetensors",
    "torch",
    "typing",
    "keras_layers",
    "model",
}
#: Runs pytest with every `parity` import refused: the package must stand alone.
WITHOUT_PARITY = """
import sys

class _NoParity:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.split(".")[0] == "parity":
            raise ImportError("parity is not installed here")
        return None

sys.meta_path.insert(0, _NoParity())
import pytest
sys.exit(pytest.main([sys.argv[1], "-q", "-p", "no:cacheprovider"]))
"""


def assert_stands_alone(out: Path, *, formatted: bool = True) -> None:
    """The package in ``out`` passes ruff's defaults (as in a repository with no ruff settings;
    with ``formatted=False`` the lint only, not the layout) and its own test with every parity
    import refused."""
    checks = [["check", "--isolated"]] + [["format", "--isolated", "--check"]] * formatted
    for args in checks:
        lint = subprocess.run(
            [sys.executable, "-m", "ruff", *args, str(out)], capture_output=True, text=True
        )
        assert lint.returncode == 0, lint.stdout + lint.stderr
    run = subprocess.run(
        [sys.executable, "-c", WITHOUT_PARITY, str(out)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("case_id", sorted(PORTED))
def test_port_writes_a_standalone_package_with_keras_numbers(case_id: str, tmp_path: Path) -> None:
    case: GoldenCase = PORTED[case_id]
    out = tmp_path / "ported"
    result = parity.port(case.model_file, out)
    assert set(result.files) <= {p.name for p in out.iterdir()}
    for source in out.glob("*.py"):
        assert _imports(source) <= ALLOWED_IMPORTS, (source.name, _imports(source))

    # Keras' own outputs, on the golden ids
    golden = np.load(case.golden_file)
    generated = _load_generated(out, result.class_name)
    with torch.no_grad():
        ours = generated(torch.from_numpy(golden["ids"])).numpy()
    tol = tolerance_for(torch.float32, "cpu", "output")
    first = next(k for k in golden.files if k.startswith("output/"))  # the file's own output
    np.testing.assert_allclose(ours, golden[first], rtol=tol.rtol, atol=tol.atol)

    # ruff's defaults hold, and the package's own test passes with parity unimportable
    assert_stands_alone(out)


@needs_keras
@pytest.mark.keras
def test_port_refuses_a_layer_without_emitter_by_name_and_writes_nothing(tmp_path: Path) -> None:
    """LayerNormalization converts but has no emitter yet: refused by name, nothing written."""
    import keras

    model = keras.Sequential([keras.Input((5, 3)), keras.layers.LayerNormalization()])
    model.save(tmp_path / "m.keras")
    out = tmp_path / "ported"
    with pytest.raises(parity.ConversionError, match="no code emitter for LayerNormalization"):
        parity.port(tmp_path / "m.keras", out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]


def test_port_cli_refuses_a_non_empty_directory(tmp_path: Path, capsys) -> None:
    case = next(iter(PORTED.values()))
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["port", str(case.model_file), str(tmp_path)]) != 0
    assert "not an empty directory" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


@pytest.mark.parametrize("case_id", ["bigru_classifier-init-float32", "cnn_lstm-init-float32"])
def test_ported_model_exports_and_trains_as_the_converted_one(case_id: str, tmp_path) -> None:
    """torch.export with a dynamic batch, and three SGD steps that move the generated module's
    weights as they move the converted module's."""
    case = PORTED[case_id]
    result = parity.port(case.model_file, tmp_path / "ported")
    generated = _load_generated(result.out_dir, result.class_name)
    ids = torch.from_numpy(np.load(case.golden_file)["ids"])
    batch = torch.export.Dim("batch", min=2)
    program = torch.export.export(generated, (ids,), dynamic_shapes=({0: batch},))
    with torch.no_grad():
        np.testing.assert_allclose(
            program.module()(ids[:3]).numpy(), generated(ids[:3]).numpy(), rtol=1e-6, atol=1e-6
        )

    converted = parity.load_keras(case.model_file).train()
    generated.train()
    for module in (converted, generated):  # dropout off: the two draw different masks
        for sub in module.modules():
            if isinstance(sub, torch.nn.modules.dropout._DropoutNd):
                sub.p = 0.0
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.1) for m in (converted, generated)]
    for _ in range(3):
        for module, optimizer in zip((converted, generated), optimizers, strict=True):
            optimizer.zero_grad()
            module(ids).square().sum().backward()
            optimizer.step()
    ours = dict(generated.named_parameters())
    theirs = {name: p for name, p in converted.named_parameters()}
    assert set(ours) == set(theirs)
    tol = tolerance_for(torch.float32, "cpu", "gradient")
    for name, param in ours.items():
        np.testing.assert_allclose(
            param.detach().numpy(), theirs[name].detach().numpy(), rtol=tol.rtol, atol=tol.atol
        )


@needs_keras
@pytest.mark.keras
@pytest.mark.parametrize("name", sorted(ZOO))
def test_port_of_a_keras2_file_gives_tf_keras_numbers(name: str, tmp_path: Path) -> None:
    """Every zoo model written by tf.keras (Keras 2 defaults: the GRU's reset_before, legacy .h5)
    ports to code that computes tf.keras' own outputs on rows padded before and after."""
    import importlib

    import tf_keras

    tf_keras.utils.set_random_seed(3)
    build = importlib.import_module(f"reference_keras.{name}").build_keras2
    keras_model = build(**{**ZOO_SMALL, **ZOO_SIZES[name]})
    path = tmp_path / f"{name}.h5"
    keras_model.save(path)
    result = parity.port(path, tmp_path / "ported")
    generated = _load_generated(result.out_dir, result.class_name)
    ids = ragged_ids(ZOO_SMALL["vocab_size"], ZOO_LENGTHS, 16, seed=5, pre=ZOO_PRE)
    expected = np.asarray(keras_model(ids))
    with torch.no_grad():
        ours = generated(torch.from_numpy(ids)).numpy()
    tol = tolerance_for(torch.float32, "cpu", "output")
    np.testing.assert_allclose(ours, expected, rtol=tol.rtol, atol=tol.atol)


def _seq2seq_with_head(cls: str, bidirectional: bool):
    """The seq2seq decoder of the generic tests (an encoder's states start it), with a
    TimeDistributed Dense on every step."""
    from tests.test_generic_layers import _seq2seq

    def build(k):
        inp, out, x = _seq2seq(cls, bidirectional)(k)
        return inp, k.layers.TimeDistributed(k.layers.Dense(2), name="per_step")(out), x

    return build


@needs_keras
@pytest.mark.keras
@pytest.mark.parametrize("writer", ["keras", "tf_keras"])
@pytest.mark.parametrize(
    ("cls", "bidirectional"),
    [("LSTM", False), ("GRU", False), ("SimpleRNN", False), ("LSTM", True)],
)
def test_port_of_a_seq2seq_decoder_with_initial_state(
    cls: str, bidirectional: bool, writer: str, tmp_path: Path
) -> None:
    """return_state, initial_state (Keras 3's keyword, tf.keras' extra inbound tensors) and
    TimeDistributed, ported: the package gives Keras' numbers."""
    import importlib

    from tests.test_generic_layers import _randomise

    k = importlib.import_module(writer)
    k.utils.set_random_seed(63)
    inp, out, x = _seq2seq_with_head(cls, bidirectional)(k)
    model = k.Model(inp, out)
    _randomise(model)
    path = tmp_path / ("m.keras" if writer == "keras" else "m.h5")
    model.save(path)
    result = parity.port(path, tmp_path / "ported")
    generated = _load_generated(result.out_dir, result.class_name)
    with torch.no_grad():
        ours = generated(torch.from_numpy(np.asarray(x, np.int64))).numpy()
    tol = tolerance_for(torch.float32, "cpu", "output")
    np.testing.assert_allclose(ours, np.asarray(model(x)), rtol=tol.rtol, atol=tol.atol)


@needs_keras
@pytest.mark.keras
def test_port_of_a_nested_model(tmp_path: Path) -> None:
    """A Sequential encoder inside a functional model is written as its inlined layers."""
    import keras

    keras.utils.set_random_seed(64)
    encoder = keras.Sequential(
        [
            keras.Input((None,), dtype="int32"),
            keras.layers.Embedding(30, 4, mask_zero=True),
            keras.layers.LSTM(3, return_sequences=True),
            keras.layers.GlobalAveragePooling1D(),
        ],
        name="encoder",
    )
    inp = keras.Input((None,), dtype="int32")
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(encoder(inp)))
    model.save(tmp_path / "nested.keras")
    result = parity.port(tmp_path / "nested.keras", tmp_path / "ported")
    generated = _load_generated(result.out_dir, result.class_name)
    ids = ragged_ids(30, ZOO_LENGTHS, 16, seed=6, pre=ZOO_PRE)
    with torch.no_grad():
        ours = generated(torch.from_numpy(ids)).numpy()
    tol = tolerance_for(torch.float32, "cpu", "output")
    np.testing.assert_allclose(ours, np.asarray(model(ids)), rtol=tol.rtol, atol=tol.atol)


def test_hostile_names_and_values_never_become_code(tmp_path: Path) -> None:
    """A layer name carrying code lands in comments only as inert text; a config value that
    is not what code may hold (a string axis) is refused by name, nothing written."""
    from tests.edits import edited_keras

    source = GOLDEN / "deepmoji-hard_sigmoid_keras2-saturated-float32.keras"
    payload = 'x"""\nimport os\nos.system("touch HACKED")  # '

    def rename(config: dict) -> None:
        for layer in config["config"]["layers"]:
            if layer["name"] == "softmax":
                layer["name"] = payload
                layer["config"]["name"] = payload
        config["config"]["output_layers"] = [[payload, 0, 0]]

    path = edited_keras(source, tmp_path / "named.keras", rename)
    result = parity.port(path, tmp_path / "ported")
    code = (result.out_dir / "model.py").read_text()
    assert _imports(result.out_dir / "model.py") <= ALLOWED_IMPORTS
    names = {n.id for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Name)}
    assert "os" not in names  # the payload is inert text in a comment, and an identifier
    assert not any(line.lstrip().startswith(("import os", "os.")) for line in code.splitlines())
    assert not (tmp_path / "HACKED").exists()

    def string_axis(config: dict) -> None:
        for layer in config["config"]["layers"]:
            if layer["class_name"] == "Concatenate":
                layer["config"]["axis"] = "-1); import os; (0"

    path = edited_keras(source, tmp_path / "axis.keras", string_axis)
    with pytest.raises(parity.ConversionError):
        parity.port(path, tmp_path / "ported_axis")
    assert not (tmp_path / "ported_axis").exists()


@needs_keras
@pytest.mark.keras
@pytest.mark.slow
@pytest.mark.parametrize("name", ["MobileNetV2", "ResNet50", "VGG16", "EfficientNetB0"])
def test_port_of_a_keras_application(name: str, tmp_path: Path) -> None:
    """The acceptance applications (weights=None, batch norms moved off the identity) ported:
    Keras' logits, ruff's defaults, and the package's own test with parity unimportable."""
    import keras

    from tests.test_applications import IMAGE, _random_batch_norm

    keras.utils.set_random_seed(30)
    model = getattr(keras.applications, name)(
        weights=None, input_shape=IMAGE, classes=7, classifier_activation=None
    )
    _random_batch_norm(model)
    model.save(tmp_path / f"{name}.keras")
    result = parity.port(tmp_path / f"{name}.keras", tmp_path / "ported")
    generated = _load_generated(result.out_dir, result.class_name)
    x = np.random.default_rng(32).uniform(-1, 1, (2, *IMAGE)).astype("float32")
    with torch.no_grad():
        ours = generated(torch.from_numpy(x)).numpy()
    tol = tolerance_for(torch.float32, "cpu", "output")
    np.testing.assert_allclose(ours, np.asarray(model(x)), rtol=tol.rtol, atol=10 * tol.atol)
    assert_stands_alone(result.out_dir)


@needs_keras
@pytest.mark.keras
def test_golden_outputs_are_keras_own_where_keras_is_installed(tmp_path: Path) -> None:
    """golden.npz holds Keras' own outputs (and says so) when keras loads the file; the
    generated package's test then compares the code with Keras directly."""
    case = PORTED["bilstm_classifier-init-float32"]
    result = parity.port(case.model_file, tmp_path / "ported")
    golden = np.load(result.out_dir / "golden.npz")
    assert str(golden["source"]).startswith("keras ")
    import keras

    model = keras.models.load_model(case.model_file)
    (ids,) = [golden[k] for k in golden.files if k.startswith("input/")]
    expected = np.asarray(model(ids))
    np.testing.assert_array_equal(golden["output/0"], expected.astype(np.float32))


@needs_keras
@pytest.mark.keras
def test_port_of_long_names_is_formatted_as_ruff_formats_it(tmp_path: Path) -> None:
    """Statements too long for a line (long layer names, a masked average) are written as
    shorter statements that ruff format leaves as they are; the numbers are Keras'."""
    import keras

    keras.utils.set_random_seed(65)
    inp = keras.Input((7,), dtype="int32")
    x = keras.layers.Embedding(50, 8, mask_zero=True, name="embedding_with_a_long_name")(inp)
    x = keras.layers.GlobalAveragePooling1D(name="global_average_pooling1d_long")(x)
    model = keras.Model(inp, keras.layers.Dense(3, name="dense")(x))
    model.save(tmp_path / "long.keras")
    result = parity.port(tmp_path / "long.keras", tmp_path / "ported")
    assert (
        "global_average_pooling1d_long_part = torch.where("
        in (result.out_dir / "model.py").read_text()
    )
    assert_stands_alone(result.out_dir)
    ids = np.array([[1, 2, 3, 0, 0, 0, 0], [4, 5, 6, 7, 8, 9, 1]], dtype="int32")
    generated = _load_generated(result.out_dir, result.class_name)
    with torch.no_grad():
        ours = generated(torch.from_numpy(ids)).numpy()
    tol = tolerance_for(torch.float32, "cpu", "output")
    np.testing.assert_allclose(ours, np.asarray(model(ids)), rtol=tol.rtol, atol=tol.atol)


def _run_split(line: str) -> tuple[list[str], list[str], list[str]]:
    """(the statements ``_split`` makes of ``line``, the calls the line makes, in order, and
    the calls the statements make): f, g and h record their calls and add up their
    arguments."""
    from parity.codegen.port import _split

    def recorder(calls: list[str]) -> dict[str, object]:
        def fn(name: str):
            def call(*args: object, **kwargs: object) -> float:
                calls.append(name)
                return float(sum(args) + sum(kwargs.values()))

            return call

        def mk(*args: object) -> object:
            calls.append("mk")
            return fn("made")

        names = {"f": fn("f"), "g": fn("g"), "h": fn("h"), "mk": mk}
        return {**names, "a_rather_long_name": 1.5}

    statements = _split(line, {"f", "g", "h", "mk", "a_rather_long_name", "out", "z"})
    original_calls: list[str] = []
    scope = recorder(original_calls)
    exec(line, scope)
    split_calls: list[str] = []
    split_scope = recorder(split_calls)
    exec("\n".join(statements), split_scope)
    assert split_scope["out"] == scope["out"]
    return statements, original_calls, split_calls


@pytest.mark.parametrize(
    "line",
    [
        "out = f(a_rather_long_name, g(a_rather_long_name, 2.0)) / h(a_rather_long_name, 3.0)"
        " + g(a_rather_long_name, 4.0) * f(a_rather_long_name, h(a_rather_long_name, 1.0))",
        "out = f(g(a_rather_long_name, a_rather_long_name, a_rather_long_name, 1.0), 2.0)"
        " - h(a_rather_long_name, a_rather_long_name, a_rather_long_name, 2.0 * 3.0)",
        "out = -f(a_rather_long_name, a_rather_long_name, a_rather_long_name, a_rather_long_name)"
        " * 2.0",
        "out = g(f(a_rather_long_name, 1.0), 2.0).real.__add__(h(a_rather_long_name, 3.0, 4.0))"
        ".__mul__(f(2.0, 3.0))",
        # the receiver of a method, and a computed function, run before the arguments
        "out = f(a_rather_long_name, 1.0).real.__add__(g(h(a_rather_long_name, a_rather_long_name"
        ", 2.0), a_rather_long_name, a_rather_long_name, 3.0))",
        "out = mk(a_rather_long_name)(g(h(a_rather_long_name, a_rather_long_name, 2.0), "
        "a_rather_long_name, 3.0, 4.0, a_rather_long_name))",
    ],
)
def test_a_long_statement_becomes_short_ones_computing_the_same_in_the_same_order(
    line: str, tmp_path: Path
) -> None:
    """Each statement, laid out as the port lays it out, is what ruff format writes."""
    from parity.codegen.port import FORWARD_INDENT, _fit

    statements, original_calls, split_calls = _run_split(line)
    assert len(statements) > 1
    assert split_calls == original_calls
    body = [part for s in statements for part in _fit(s, FORWARD_INDENT)]
    source = tmp_path / "m.py"
    head = ["class M:", "    def forward(self, a_rather_long_name, f, g, h):"]
    source.write_text("\n".join([*head, *body, "        return out", ""]))
    lint = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--isolated", "--check", str(source)],
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, source.read_text()


@pytest.mark.parametrize(
    "line",
    [
        # parts that run only if another part says so stay where they are
        "out = f(a_rather_long_name, 1.0) if g(a_rather_long_name, 2.0) else h(a_rather_long_name"
        ", 3.0, 4.0, 5.0, 6.0)",
        "out = f(a_rather_long_name, 1.0, 2.0, 3.0) or g(a_rather_long_name, 2.0, 3.0, 4.0, 5.0)",
        # a starred list or a generator before the long part would run after it; a walrus
        # binds a name
        "out = f(*[g(a_rather_long_name, 1.0)], h(g(a_rather_long_name, a_rather_long_name, 2.0"
        "), a_rather_long_name, 3.0, 4.0))",
        "out = f(*(g(x, 1.0) for x in (a_rather_long_name,)), h(a_rather_long_name, 2.0, 3.0, 4.0"
        ", 5.0))",
        "out = (z := g(a_rather_long_name, a_rather_long_name, a_rather_long_name)) + h(z, 2.0, "
        "3.0)",
    ],
)
def test_parts_that_may_not_move_stay(line: str) -> None:
    statements, original_calls, split_calls = _run_split(line)
    assert statements == [line]
    assert split_calls == original_calls


def test_an_index_with_slices_stays_in_its_subscript() -> None:
    from parity.codegen.port import _split

    line = f"{'y' * 36} = {'x' * 50}[:, -1:, :]"
    assert _split(line, set()) == [line]


def test_non_ascii_text_before_a_hoisted_part_keeps_the_statement_intact() -> None:
    """ast counts columns in UTF-8 bytes: a non-ASCII string before the part moved out."""
    from parity.codegen.port import _split

    long_call = "g(a_rather_long_name, a_rather_long_name, a_rather_long_name, a_rather_long_name)"
    statements = _split(f"out = f(x='é', y={long_call})", {"f", "g", "a_rather_long_name"})
    assert statements == [f"out_part = {long_call}", "out = f(x='é', y=out_part)"]


@needs_keras
@pytest.mark.keras
@pytest.mark.parametrize("length", [0, 28])
def test_port_of_wrapped_recurrent_layers_is_formatted_as_ruff_formats_it(
    length: int, tmp_path: Path
) -> None:
    """Bidirectional (sum, last step) and TimeDistributed under Keras' default names (0) and
    28-character names: the statements, a comment and a tuple assignment among them, are laid
    out as ruff format lays them out; the numbers are Keras'."""
    import keras

    def name(base: str) -> str | None:
        return f"{base}_{'x' * (length - len(base) - 1)}" if length else None

    keras.utils.set_random_seed(66)
    inp = keras.Input((5, 4))
    lstm = keras.layers.LSTM(3, return_sequences=True)
    seq = keras.layers.Bidirectional(lstm, merge_mode="sum", name=name("bs"))(inp)
    last = keras.layers.Bidirectional(keras.layers.LSTM(3), name=name("bl"))(seq)
    steps = keras.layers.TimeDistributed(keras.layers.Dense(2), name=name("td"))(seq)
    flat = keras.layers.Flatten(name=name("fl"))(steps)
    model = keras.Model(inp, keras.layers.Concatenate(name=name("cc"))([last, flat]))
    model.save(tmp_path / "wrapped.keras")
    result = parity.port(tmp_path / "wrapped.keras", tmp_path / "ported")
    assert_stands_alone(result.out_dir)
    x = np.random.default_rng(3).normal(size=(2, 5, 4)).astype("float32")
    with torch.no_grad():
        ours = _load_generated(result.out_dir, result.class_name)(torch.from_numpy(x)).numpy()
    tol = tolerance_for(torch.float32, "cpu", "output")
    np.testing.assert_allclose(ours, np.asarray(model(x)), rtol=tol.rtol, atol=tol.atol)
