"""`parity check`: passes on every pair, catches each deliberately broken conversion and names
its cause, and works from golden files where Keras cannot be imported.

The broken conversions are made by hand from a correct one (wrong hard-sigmoid slope, swapped GRU
gates, a square kernel left untransposed, Flatten read channels-first, padding handled by
position, BatchNorm with torch's epsilon, GRU reset_after flipped); each test first shows that
the check fails, then that the diagnosis names that cause and no other.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import parity
from parity.arch import PAIRS, ZOO
from parity.check.diagnose import ALTERNATIVES
from parity.check.harness import load_golden
from parity.check.keras_side import custom_objects
from parity.check.run import check, subject_for
from parity.cli import main as parity_main
from parity.convert.mapping import apply_mapping
from parity.convert.transforms import TRANSFORMS, Transform
from parity.keras.read import read_keras_file
from parity.ports import LSTM
from tests.conftest import GOLDEN, REPO, WEIGHTS, needs_keras
from tests.edits import edited_keras
from tests.golden_cases import CASES

DEEPMOJI_K2 = "deepmoji-hard_sigmoid_keras2-saturated-float32"
DEEPMOJI_K3 = "deepmoji-hard_sigmoid_keras3-saturated-float32"
EMBEDDING_DENSE = "embedding_dense-init-float32"
BIGRU = "bigru_classifier-init-float32"

#: Runs the CLI with keras, tensorflow and tf_keras unimportable, as on a torch-only machine.
WITHOUT_KERAS = """
import sys
for name in ("keras", "tensorflow", "tf_keras"):
    sys.modules[name] = None
from parity.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run_cli(*args: str | Path, keras: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "TF_CPP_MIN_LOG_LEVEL": "3"}
    head = ["-m", "parity"] if keras else ["-c", WITHOUT_KERAS]
    return subprocess.run(
        [sys.executable, *head, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
    )


def golden_check(case_id: str, model: torch.nn.Module | None = None, **load: str):
    """Check ``model`` (default: the case's file converted) against the case's golden file."""
    path = GOLDEN / f"{case_id}.keras"
    if model is None:
        model = parity.load_keras(path, **load)
    subject, _ = subject_for(model, read_keras_file(path))
    return check(subject, load_golden(GOLDEN / f"{case_id}.npz"))


def broken(path: Path, transforms: dict[str, str]) -> tuple[torch.nn.Module, list]:
    """The file converted through a mapping table with some transforms replaced (torch parameter
    -> transform name): the model and the broken table, which also maps gradients back."""
    model = parity.load_keras(path)
    rows = list(subject_for(model)[0].mapping)
    values = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    weights = {k: TRANSFORMS[how].to_keras(values[t].detach().numpy()) for k, t, how in rows if k}
    rows = [(k, t, transforms.get(t, how)) for k, t, how in rows]
    apply_mapping(model, rows, weights)
    return model, rows


def broken_check(case_id: str, transforms: dict[str, str]):
    path = GOLDEN / f"{case_id}.keras"
    model, rows = broken(path, transforms)
    subject, _ = subject_for(model, read_keras_file(path))
    subject.mapping = rows
    return check(subject, load_golden(GOLDEN / f"{case_id}.npz"))


def explained_by(report) -> list[str]:
    """The alternatives the diagnosis says explain the whole gap."""
    return [
        line.split("]")[0].lstrip("[")
        for line in report.diagnosis
        if line.startswith("[") and "] explains the gap" in line
    ]


# --- the harness on correct conversions ---------------------------------------------------------


def _sample_file(pair: str) -> Path:
    return next(case.model_file for case in CASES if case.pair == pair and case.model_file.exists())


@needs_keras
@pytest.mark.keras
@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_live_check_passes_layer_by_layer_on_every_pair(pair: str, tmp_path: Path) -> None:
    """Every registered pair: Keras run live on a file of that pair, every activation point of
    the pair's table compared, every output and every weight's gradient; all pass."""
    out = tmp_path / "report.json"
    code = parity_main(["check", str(_sample_file(pair)), "--arch", pair, "--json", str(out)])
    report = json.loads(out.read_text())
    assert code == 0 and report["passed"], report
    rows = {row["name"]: row for row in report["rows"]}
    expected = {f"activation/{name}" for name, _ in PAIRS[pair].check_points()}
    assert expected <= set(rows), expected - set(rows)
    grads = {f"grad/{k}" for k, _, _ in PAIRS[pair].mapping() if k is not None}
    assert grads <= set(rows)
    assert {row["kind"] for row in rows.values()} == {"activation", "output", "gradient"}
    assert report["diagnosis"] == []


@needs_keras
@pytest.mark.keras
@pytest.mark.parametrize("arch", sorted(ZOO))
def test_live_check_passes_on_every_generic_zoo_model(arch: str, tmp_path: Path) -> None:
    """Models converted from their config: activations read from the submodules named after
    the Keras layers (those whose torch layout differs are left out with a note)."""
    out = tmp_path / "report.json"
    code = parity_main(["check", str(_sample_file(arch)), "--arch", arch, "--json", str(out)])
    report = json.loads(out.read_text())
    assert code == 0 and report["passed"], report
    kinds = [row["kind"] for row in report["rows"]]
    assert kinds.count("activation") >= 2 and "output" in kinds
    grads = {f"grad/{k}" for k, t, _ in ZOO[arch].mapping() if k is not None}
    assert grads <= {row["name"] for row in report["rows"]}


def test_golden_check_passes_and_reports_tightest_tolerance() -> None:
    report = golden_check(DEEPMOJI_K2)
    assert report.passed, report.table()
    tight = report.tightest()
    for kind in ("output", "gradient"):
        assert 0 < tight[kind]["atol"] <= tight[kind]["table_atol"]
        worst = max(r.max_abs for r in report.rows if r.kind == kind)
        # the tightest atol (at the table's atol:rtol shape) is at least the worst difference
        # minus its rtol share; with rtol 0 it would be exactly max_abs
        assert worst <= tight[kind]["atol"] + tight[kind]["rtol"] * 10
    assert report.diagnosis == []


def test_a_perturbed_weight_fails_and_no_alternative_claims_it() -> None:
    model = parity.load_keras(GOLDEN / f"{DEEPMOJI_K2}.keras")
    with torch.no_grad():
        model.attlayer.weight.add_(1e-2)
    report = golden_check(DEEPMOJI_K2, model)
    assert not report.passed
    assert explained_by(report) == []
    assert "no known alternative explains it" in report.diagnosis[-1]


# --- broken conversions: caught, and the cause named ----------------------------------------------


@pytest.mark.parametrize(
    ("case_id", "wrong", "right"),
    [(DEEPMOJI_K2, "keras3", "keras2"), (DEEPMOJI_K3, "keras2", "keras3")],
)
def test_wrong_hard_sigmoid_slope_is_caught_and_named(case_id: str, wrong: str, right: str) -> None:
    report = golden_check(case_id, hard_sigmoid=wrong)
    assert not report.passed
    assert explained_by(report) == ["hard_sigmoid"], report.diagnosis
    assert f"--hard-sigmoid {right}" in "\n".join(report.diagnosis)


def _channels_first(seq_len: int, dim: int) -> Transform:
    """A Dense-after-Flatten kernel (T*D, C) read as if Flatten were channels-first (D, T)."""

    def to_torch(kernel: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(
            kernel.reshape(seq_len, dim, -1).transpose(1, 0, 2).reshape(seq_len * dim, -1).T
        )

    def to_keras(weight: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(
            weight.T.reshape(dim, seq_len, -1).transpose(1, 0, 2).reshape(seq_len * dim, -1)
        )

    return Transform(to_torch, to_keras)


@needs_keras
@pytest.mark.keras
def test_wrong_hard_sigmoid_in_a_generic_dense_is_caught_and_named(tmp_path: Path) -> None:
    """Keras 3's Dense(activation="hard_sigmoid") is relu6(x + 3) / 6; converted as Keras 2's."""
    import keras

    keras.utils.set_random_seed(6)
    model = keras.Sequential(
        [
            keras.Input(shape=(4,), dtype="int32"),
            keras.layers.Embedding(20, 3, name="embedding"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(5, activation="hard_sigmoid", name="hidden"),
            keras.layers.Dense(2, activation="softmax", name="out"),
        ]
    )
    hidden = model.get_layer("hidden")
    hidden.set_weights([w * 8.0 for w in hidden.get_weights()])  # reach the flat parts
    src = tmp_path / "hard.keras"
    model.save(src)
    golden = tmp_path / "g.npz"
    assert parity_main(["golden", str(src), str(golden)]) == 0
    wrong = parity.load_keras(src, hard_sigmoid="keras2")
    subject, _ = subject_for(wrong, read_keras_file(src))
    report = check(subject, load_golden(golden))
    assert not report.passed and report.first_failure.name == "activation/hidden"
    assert explained_by(report) == ["hard_sigmoid"], report.diagnosis
    assert "--hard-sigmoid keras3" in "\n".join(report.diagnosis)


def test_flatten_read_channels_first_is_caught_and_named(monkeypatch: pytest.MonkeyPatch) -> None:
    model = parity.load_keras(GOLDEN / f"{EMBEDDING_DENSE}.keras")
    layout = _channels_first(model.config.seq_len, model.config.embedding_dim)
    monkeypatch.setitem(TRANSFORMS, "channels_first_flatten", layout)
    report = broken_check(EMBEDDING_DENSE, {"dense.weight": "channels_first_flatten"})
    assert not report.passed
    assert explained_by(report) == ["flatten_order"], report.diagnosis


class PositionalMaskLSTM(LSTM):
    """The classic port bug: lengths from the mask, then masks steps 0..length-1 (what
    pack_padded_sequence does), which is right only for post-padded rows."""

    def forward(self, input, hx=None, *, mask=None):  # type: ignore[override]
        lengths = mask.sum(dim=1, keepdim=True)
        steps = torch.arange(mask.shape[1], device=mask.device)[None, :]
        return super().forward(input, hx, mask=steps < lengths)


def test_padding_side_is_caught_and_named() -> None:
    model = parity.load_keras(GOLDEN / f"{DEEPMOJI_K2}.keras")
    for lstm in (model.bi_lstm_0, model.bi_lstm_1):
        lstm.__class__ = PositionalMaskLSTM
    report = golden_check(DEEPMOJI_K2, model)
    assert not report.passed
    assert explained_by(report) == ["padding_side"], report.diagnosis
    assert "moved to post-padding" in "\n".join(report.diagnosis)


def test_swapped_gru_gates_are_caught_and_named() -> None:
    """Keras' z, r, h blocks copied as they are into torch's r, z, n: a plain transpose for the
    kernels and the bias as it is, in both directions of bi_gru_0."""
    wrong = {
        f"bi_gru_0.{name}{suffix}": how
        for suffix in ("", "_reverse")
        for name, how in (("weight_ih_l0", "transpose"), ("weight_hh_l0", "transpose"))
    }
    wrong |= {"bi_gru_0.bias_l0": "identity", "bi_gru_0.bias_l0_reverse": "identity"}
    report = broken_check(BIGRU, wrong)
    assert not report.passed
    assert explained_by(report) == ["gru_gate_order"], report.diagnosis
    assert "bi_gru_0" in "\n".join(report.diagnosis)


def test_lstm_bias_counted_twice_is_caught_and_named() -> None:
    """Keras' one LSTM bias copied into both of torch's biases (bias_hh must stay zero)."""
    model = parity.load_keras(GOLDEN / f"{DEEPMOJI_K2}.keras")
    with torch.no_grad():
        model.bi_lstm_1.bias_hh_l0.copy_(model.bi_lstm_1.bias_ih_l0)
    report = golden_check(DEEPMOJI_K2, model)
    assert not report.passed
    assert explained_by(report) == ["bias_split"], report.diagnosis
    assert "bias_hh" in "\n".join(report.diagnosis) and "bi_lstm_1" in "\n".join(report.diagnosis)


def test_gru_bias_rows_swapped_is_caught_and_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """GRU reset_after's bias (2, 3u) = [input; recurrent] converted with its rows swapped."""
    gru_bias = TRANSFORMS["gru_bias"]
    flipped = Transform(
        lambda b: gru_bias.to_torch(b)[::-1].copy(), lambda b: gru_bias.to_keras(b[::-1].copy())
    )
    monkeypatch.setitem(TRANSFORMS, "gru_bias_rows_swapped", flipped)
    report = broken_check(BIGRU, {"bi_gru_1.bias_l0": "gru_bias_rows_swapped"})
    assert not report.passed
    assert explained_by(report) == ["bias_split"], report.diagnosis


def test_gru_reset_after_flipped_is_caught_and_named() -> None:
    """A Keras 2 GRU (reset_after=False, one bias) run with nn.GRU's equations."""
    case_id = "bigru_classifier-reset_before-float32"
    model = parity.load_keras(GOLDEN / f"{case_id}.keras")
    assert model.bi_gru_1.reset_after is False
    model.bi_gru_1.reset_after = True
    report = golden_check(case_id, model)
    assert not report.passed
    assert explained_by(report) == ["gru_reset_after"], report.diagnosis


def test_custom_layers_come_from_reference_keras_only_when_a_file_names_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A file of builtin layers loads without reference_keras; DeepMoji's names its attention
    layer, and where reference_keras is missing the error says where that layer is defined."""
    assert custom_objects(GOLDEN / f"{EMBEDDING_DENSE}.keras") == {}
    monkeypatch.setitem(sys.modules, "reference_keras.deepmoji", None)
    with pytest.raises(ValueError, match=r"defined in reference_keras\.deepmoji"):
        custom_objects(GOLDEN / f"{DEEPMOJI_K2}.keras")


@needs_keras
@pytest.mark.keras
def test_untransposed_square_kernel_is_caught_and_named(tmp_path: Path) -> None:
    """A square Dense kernel loads either way round; the check still catches it."""
    import keras

    from parity.check.keras_side import keras_reference
    from reference_keras import embedding_dense

    keras.utils.set_random_seed(3)
    src = tmp_path / "square.keras"
    embedding_dense.build(vocab_size=30, seq_len=2, embedding_dim=3, num_classes=6).save(src)
    model = parity.load_keras(src)
    subject, keras_args = subject_for(model, read_keras_file(src))
    ids = np.array([[1, 2], [0, 5], [7, 0], [29, 29]])
    golden = keras_reference(src, "embedding_dense", ids, **keras_args)
    assert check(subject, golden).passed
    model, rows = broken(src, {"dense.weight": "identity"})  # the transpose forgotten
    subject, _ = subject_for(model, read_keras_file(src))
    subject.mapping = rows
    report = check(subject, golden)
    assert not report.passed
    assert explained_by(report) == ["transposed_kernel"], report.diagnosis
    assert "dense/kernel transposed" in "\n".join(report.diagnosis)


@needs_keras
@pytest.mark.keras
def test_batchnorm_with_torch_epsilon_is_caught_and_named(tmp_path: Path) -> None:
    """BatchNormalization converted generically, then given torch's eps (1e-5)."""
    import keras

    keras.utils.set_random_seed(4)
    model = keras.Sequential(
        [
            keras.Input(shape=(5,), dtype="int32"),
            keras.layers.Embedding(20, 4, name="embedding"),
            keras.layers.BatchNormalization(name="norm"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(3, activation="softmax", name="out"),
        ]
    )
    gamma, beta, mean, _ = model.get_layer("norm").get_weights()
    variance = np.full(4, 2e-3, dtype=np.float32)  # small: the epsilon matters
    model.get_layer("norm").set_weights([gamma + 0.5, beta + 0.1, mean + 0.01, variance])
    src = tmp_path / "bn.keras"
    model.save(src)
    torch_model = parity.load_keras(src)
    from parity.cli.check import _keras_side  # the CLI's own live path

    args = type("Args", (), {"src": str(src), "inputs": None, "dtype": "float32"})()
    subject, keras_args = subject_for(torch_model, read_keras_file(src))
    golden = _keras_side(args, torch_model, read_keras_file(src), {"pair": None, **keras_args})
    assert "activation/norm" in golden
    assert check(subject, golden).passed
    torch_model.norm.eps = 1e-5
    report = check(subject, golden)
    assert not report.passed
    assert report.first_failure.name == "activation/norm"
    assert explained_by(report) == ["batchnorm_epsilon"], report.diagnosis


@needs_keras
@pytest.mark.keras
def test_users_keras2_h5_checks_live_and_a_wrong_slope_is_explained(tmp_path: Path) -> None:
    """A Keras 2 DeepMoji saved by tf_keras as a full .h5 (Keras 3 cannot load it: LSTM's
    time_major): Keras' side comes from tf_keras, gates are Keras 2's 0.2-slope hard sigmoid."""
    import tf_keras

    from reference_keras import deepmoji

    tf_keras.utils.set_random_seed(8)
    model = deepmoji.build_keras2(vocab_size=50, embedding_dim=6, hidden_size=5, num_classes=3)
    weights = [w * 4.0 if w.ndim == 2 and w.shape[1] % 4 == 0 else w for w in model.get_weights()]
    model.set_weights(weights)  # gate pre-activations reach the hard sigmoid's flat parts
    src = tmp_path / "deepmoji_keras2.h5"
    model.save(str(src))
    out = tmp_path / "r.json"
    assert parity_main(["check", str(src), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["passed"]
    golden = tmp_path / "g.npz"
    assert parity_main(["golden", str(src), str(golden)]) == 0
    meta = json.loads(str(load_golden(golden)["meta"]))
    assert meta["keras_runtime"] == "tf_keras"
    wrong = run_cli("check", src, "--golden", golden, "--hard-sigmoid", "keras3", keras=False)
    assert wrong.returncode == 1
    assert "[hard_sigmoid] explains the gap" in wrong.stdout
    assert "--hard-sigmoid keras2" in wrong.stdout


def test_every_alternative_says_when_it_applies() -> None:
    expected = {
        "hard_sigmoid",
        "gru_gate_order",
        "gru_reset_after",
        "bias_split",
        "padding_side",
        "flatten_order",
        "batchnorm_epsilon",
        "transposed_kernel",
        "tf32",
    }
    assert set(ALTERNATIVES) == expected
    assert ALTERNATIVES["gru_gate_order"].keras_classes >= {"GRU"}
    assert ALTERNATIVES["batchnorm_epsilon"].keras_classes == {"BatchNormalization"}
    # TF32 is only tried on CUDA
    subject, _ = subject_for(parity.load_keras(GOLDEN / f"{DEEPMOJI_K2}.keras"))
    assert ALTERNATIVES["tf32"].variants(subject, np.ones((1, 2), np.int64), "cpu") == []


# --- the command line -------------------------------------------------------------------------


def test_cli_check_with_golden_without_keras_table_json_and_exit_codes(tmp_path: Path) -> None:
    src, golden = GOLDEN / f"{DEEPMOJI_K2}.keras", GOLDEN / f"{DEEPMOJI_K2}.npz"
    out = tmp_path / "ok.json"
    ok = run_cli("check", src, "--golden", golden, "--json", out, keras=False)
    assert ok.returncode == 0, ok.stderr
    header = ok.stdout.splitlines()[1]
    for column in ("name", "kind", "max abs", "max rel", "where", "atol/rtol", "used", "result"):
        assert column in header
    assert "tightest passing tolerance, gradient" in ok.stdout and "PASS" in ok.stdout
    report = json.loads(out.read_text())
    assert set(report) >= {"passed", "rows", "diagnosis"} and report["passed"] is True
    for row in report["rows"]:
        assert set(row) >= {"name", "kind", "max_abs", "max_rel", "atol", "rtol", "passed", "where"}
        assert row["kind"] in ("activation", "output", "gradient")

    bad = tmp_path / "bad.json"
    broken = run_cli(
        "check", src, "--golden", golden, "--hard-sigmoid", "keras3", "--json", bad, keras=False
    )
    assert broken.returncode == 1
    assert "FAIL" in broken.stdout and "[hard_sigmoid] explains the gap" in broken.stdout
    report = json.loads(bad.read_text())
    assert report["passed"] is False and report["diagnosis"]
    assert any(not row["passed"] for row in report["rows"])


def test_cli_live_check_without_keras_is_one_clear_line() -> None:
    result = run_cli("check", GOLDEN / f"{DEEPMOJI_K2}.keras", keras=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("parity: error:"), result.stderr
    assert "needs Keras and TensorFlow" in lines[0] and "--golden" in lines[0]


def test_cli_refuses_a_golden_file_of_another_model(tmp_path: Path) -> None:
    result = run_cli(
        "check",
        GOLDEN / f"{DEEPMOJI_K2}.keras",
        "--golden",
        GOLDEN / f"{EMBEDDING_DENSE}.npz",
        keras=False,
    )
    assert result.returncode == 1 and "made for embedding_dense" in result.stderr


def test_cli_cuda_runs_or_fails_cleanly() -> None:
    """--device cuda: TF32 off, same tolerances; without CUDA, one clear line."""
    src, golden = GOLDEN / f"{DEEPMOJI_K2}.keras", GOLDEN / f"{DEEPMOJI_K2}.npz"
    result = run_cli("check", src, "--golden", golden, "--device", "cuda", keras=False)
    if torch.cuda.is_available():
        assert result.returncode == 0, result.stdout + result.stderr
        assert "cuda" in result.stdout
    else:
        assert result.returncode == 1 and "no CUDA device" in result.stderr


@needs_keras
@pytest.mark.keras
def test_cli_golden_then_check_without_keras(tmp_path: Path, device: str) -> None:
    """`parity golden` saves Keras' side with activations; `check --golden` reproduces the live
    verdict where Keras cannot be imported (the CUDA machine's path)."""
    src = WEIGHTS / "deepmoji_small.keras"
    golden = tmp_path / "deepmoji_small.npz"
    assert parity_main(["golden", str(src), str(golden)]) == 0
    saved = load_golden(golden)
    assert {f"activation/{n}" for n, _ in PAIRS["deepmoji"].check_points()} <= set(saved)
    meta = json.loads(str(saved["meta"]))
    assert meta["keras_version"] and meta["source_sha256"] and meta["dtype"] == "float32"
    out = tmp_path / "r.json"
    args = ("check", src, "--golden", golden, "--device", device, "--json", out)
    result = run_cli(*args, keras=False)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert report["passed"] and report["device"] == device
    assert sum(row["kind"] == "activation" for row in report["rows"]) == 7


@needs_keras
@pytest.mark.keras
def test_cli_check_on_the_users_own_inputs(tmp_path: Path) -> None:
    src = WEIGHTS / "embedding_dense.keras"
    rng = np.random.default_rng(5)
    ids = rng.integers(0, 10000, (3, 100))
    ids[0, :60] = 0  # pre-padded
    np.save(tmp_path / "ids.npy", ids)
    golden = tmp_path / "g.npz"
    assert (
        parity_main(["golden", str(src), str(golden), "--inputs", str(tmp_path / "ids.npy")]) == 0
    )
    np.testing.assert_array_equal(load_golden(golden)["ids"], ids)
    out = tmp_path / "r.json"
    code = parity_main(
        ["check", str(src), "--inputs", str(tmp_path / "ids.npy"), "--json", str(out)]
    )
    assert code == 0 and json.loads(out.read_text())["passed"]


def test_cli_rejects_inputs_that_do_not_fit(tmp_path: Path) -> None:
    np.save(tmp_path / "ids.npy", np.full((2, 100), 10_000))  # vocabulary is 10000
    result = run_cli(
        "check", WEIGHTS / "embedding_dense.keras", "--inputs", tmp_path / "ids.npy", keras=False
    )
    assert result.returncode == 1 and "ids must lie in [0, 10000)" in result.stderr
    np.save(tmp_path / "short.npy", np.ones((2, 7), np.int64))
    result = run_cli(
        "check", WEIGHTS / "embedding_dense.keras", "--inputs", tmp_path / "short.npy", keras=False
    )
    assert result.returncode == 1 and "takes 100 ids per row" in result.stderr


@needs_keras
def test_fixed_length_deepmoji_checks_live_at_its_length(capsys: pytest.CaptureFixture) -> None:
    """DeepMoji's own model fixes the length (Input(shape=(maxlen,))): a live check with
    --arch deepmoji must feed ids of that length, read from the file."""
    path = GOLDEN / "deepmoji-fixed_length-float32.keras"
    model = parity.load_keras(path, arch="deepmoji")
    assert model.config.input_length == 14
    assert parity_main(["check", str(path), "--arch", "deepmoji"]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("length", [0, -5, 10**12, True])
def test_absurd_fixed_length_in_a_config_is_refused(length: object, tmp_path: Path) -> None:
    def fix_length(config: dict) -> None:
        config["config"]["layers"][0]["config"]["batch_shape"] = [None, length]

    source = GOLDEN / "deepmoji-fixed_length-float32.keras"
    path = edited_keras(source, tmp_path / "bad.keras", fix_length)
    with pytest.raises(parity.ConversionError, match="fixes the input length"):
        parity.load_keras(path, arch="deepmoji")
