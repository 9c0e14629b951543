"""keras_init_ against weights Keras itself initialized: same distributions, several seeds.

One example per Keras layer class the project converts (EXAMPLES, checked against the converter
table so a new converter needs a row): the Keras layer is built with its default initializers,
its weights are moved to torch layout by the project's own transforms, and their moments, bounds,
exact constants (biases, unit_forget_bias) and orthogonality are compared with those of the torch
module after keras_init_. Each comparison is also run on torch's default initialization, which
must fail it (so the test can fail).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import parity
from parity.arch.deepmoji import MAPPING, DeepMoji, DeepMojiConfig
from parity.arch.generic import CONVERTERS, default_rows
from parity.convert.transforms import CONSTANT_FILLS, TRANSFORMS
from parity.init import KERAS_FAN_AXES, PRESETS, keras_init_, variance_scaling_
from parity.ports import (
    GRU,
    LSTM,
    AttentionWeightedAverage,
    BatchNormalization,
    Conv1D,
    Dense,
    LayerNormalization,
    SimpleRNN,
)
from parity.ports.activations import PReLU
from parity.ports.attention import MHA_PROJECTIONS, AdditiveAttention, Attention, MultiHeadAttention
from parity.ports.preprocessing import Normalization
from parity.ports.structure import TimeDistributed
from parity.ports.vision import Conv2D, Conv2DTranspose, DepthwiseConv2D, SeparableConv2D
from tests.conftest import needs_keras

IN, UNITS, STEPS, KERNEL, VOCAB, EMBED = 24, 48, 5, 3, 1000, 16
#: DeepMoji's attention has one weight per feature: wide enough for stable moments.
ATT_DIM = 4096

#: (Keras weight, torch parameter or buffer, how): ``how`` names a parity.convert.transforms
#: TRANSFORMS entry (Keras -> torch layout), or is a test-only function for torch's own modules,
#: whose layouts the project never converts to; a None Keras weight means a torch parameter
#: Keras lacks, filled with CONSTANT_FILLS[how].
Row = tuple[str | None, str, str | Callable[[np.ndarray], np.ndarray]]


@dataclass(frozen=True)
class Example:
    """A Keras layer with default initializers and the torch module of the same sizes."""

    id: str
    #: Keras constructor kwargs; a ("Class", kwargs) value is a nested Keras layer.
    kwargs: dict[str, Any]
    input_shape: tuple[int | None, ...]
    torch: Callable[[], nn.Module]
    rows: tuple[Row, ...]
    #: Keras weight -> the initializer its origin asks for, where the Keras layer we can build
    #: draws something else (reference_keras' attention uses glorot; DeepMoji's asks 'uniform').
    redraw: dict[str, str] = field(default_factory=dict)


def _converter_rows(cls: str) -> tuple[Row, ...]:
    """The rows the generic converter maps a default ``cls`` layer with ("LSTM",
    "Bidirectional(GRU)"), relative to the layer and its module: the project's own table."""
    return tuple(
        (keras.split("/", 1)[1] if keras else None, torch_name.split(".", 1)[1], how)
        for keras, torch_name, how in default_rows("layer", cls)
    )


def _nn_gru_bias(row: int) -> Callable[[np.ndarray], np.ndarray]:
    """nn.GRU splits Keras' (2, 3u) bias into bias_ih (row 0) and bias_hh (row 1)."""
    return lambda a: TRANSFORMS["gru_bias"].to_torch(a)[row]


_BN_ROWS = _converter_rows("BatchNormalization")
#: (B, H, W, C) of the 2-D examples; depth multiplier large enough for stable depthwise moments.
_IMAGE_INPUT, MULTIPLIER = (None, 10, 10, IN), 8
_RNN_INPUT = (None, STEPS, IN)

#: Keras class name -> its examples: parity's module (what the converter builds) and, where
#: keras_init_ has a rule for it, torch's own module too.
EXAMPLES: dict[str, tuple[Example, ...]] = {
    "PReLU": (
        Example(
            "parity",
            {"shared_axes": [1]},
            (None, STEPS, UNITS),
            lambda: PReLU((1, UNITS)),
            _converter_rows("PReLU"),
        ),
    ),
    "Embedding": (
        Example(
            "nn.Embedding",
            {"input_dim": VOCAB, "output_dim": EMBED},
            (None, STEPS),
            lambda: nn.Embedding(VOCAB, EMBED),
            _converter_rows("Embedding"),
        ),
    ),
    "Dense": (
        Example(
            "parity",
            {"units": UNITS},
            (None, 8 * IN),
            lambda: Dense(8 * IN, UNITS),
            _converter_rows("Dense"),
        ),
    ),
    "Conv1D": (
        Example(
            "parity",
            {"filters": UNITS, "kernel_size": KERNEL},
            (None, 20, IN),
            lambda: Conv1D(IN, UNITS, KERNEL),
            _converter_rows("Conv1D"),
        ),
    ),
    "Conv2D": (
        Example(
            "parity",
            {"filters": UNITS, "kernel_size": KERNEL},
            _IMAGE_INPUT,
            lambda: Conv2D(IN, UNITS, KERNEL),
            _converter_rows("Conv2D"),
        ),
    ),
    "DepthwiseConv2D": (
        Example(
            "parity",
            {"kernel_size": KERNEL, "depth_multiplier": MULTIPLIER},
            _IMAGE_INPUT,
            lambda: DepthwiseConv2D(IN, KERNEL, depth_multiplier=MULTIPLIER),
            _converter_rows("DepthwiseConv2D"),
        ),
    ),
    "SeparableConv2D": (
        Example(
            "parity",
            {"filters": UNITS, "kernel_size": KERNEL, "depth_multiplier": MULTIPLIER},
            _IMAGE_INPUT,
            lambda: SeparableConv2D(IN, UNITS, KERNEL, depth_multiplier=MULTIPLIER),
            _converter_rows("SeparableConv2D"),
        ),
    ),
    "Conv2DTranspose": (
        Example(
            "parity",
            {"filters": UNITS, "kernel_size": KERNEL},
            _IMAGE_INPUT,
            lambda: Conv2DTranspose(IN, UNITS, KERNEL),
            _converter_rows("Conv2DTranspose"),
        ),
    ),
    "BatchNormalization": (
        Example("parity", {}, (None, UNITS), lambda: BatchNormalization(UNITS), _BN_ROWS),
        Example("nn.BatchNorm1d", {}, (None, UNITS), lambda: nn.BatchNorm1d(UNITS), _BN_ROWS),
    ),
    # Normalization's statistics are not trained: before adapt, Keras holds mean 0, variance 1
    # and count 0, which the converted module must start from too.
    "Normalization": (
        Example(
            "parity",
            {"axis": -1},
            (None, STEPS, IN),
            lambda: Normalization(IN),
            _converter_rows("Normalization"),
        ),
    ),
    "LayerNormalization": (
        Example(
            "parity",
            {},
            (None, UNITS),
            lambda: LayerNormalization(UNITS),
            _converter_rows("LayerNormalization"),
        ),
    ),
    "SimpleRNN": (
        Example(
            "parity",
            {"units": UNITS},
            _RNN_INPUT,
            lambda: SimpleRNN(IN, UNITS),
            _converter_rows("SimpleRNN"),
        ),
        Example(
            "nn.RNN",
            {"units": UNITS},
            _RNN_INPUT,
            lambda: nn.RNN(IN, UNITS),
            _converter_rows("SimpleRNN"),
        ),
    ),
    "LSTM": (
        Example(
            "parity",
            {"units": UNITS},
            _RNN_INPUT,
            lambda: LSTM(IN, UNITS, batch_first=True),
            _converter_rows("LSTM"),
        ),
        Example(
            "nn.LSTM",
            {"units": UNITS},
            _RNN_INPUT,
            lambda: nn.LSTM(IN, UNITS),
            _converter_rows("LSTM"),
        ),
    ),
    "GRU": (
        Example(
            "parity-reset_after",
            {"units": UNITS, "reset_after": True},
            _RNN_INPUT,
            lambda: GRU(IN, UNITS, reset_after=True),
            _converter_rows("GRU"),
        ),
        Example(
            "parity-reset_before",
            {"units": UNITS, "reset_after": False},
            _RNN_INPUT,
            lambda: GRU(IN, UNITS, reset_after=False),
            _converter_rows("GRU"),
        ),
        Example(
            "nn.GRU",
            {"units": UNITS, "reset_after": True},
            _RNN_INPUT,
            lambda: nn.GRU(IN, UNITS),
            (
                ("kernel", "weight_ih_l0", "gru_kernel"),
                ("recurrent_kernel", "weight_hh_l0", "gru_kernel"),
                ("bias", "bias_ih_l0", _nn_gru_bias(0)),
                ("bias", "bias_hh_l0", _nn_gru_bias(1)),
            ),
        ),
    ),
    "Bidirectional": (
        Example(
            "SimpleRNN",
            {"layer": ("SimpleRNN", {"units": UNITS})},
            _RNN_INPUT,
            lambda: SimpleRNN(IN, UNITS, bidirectional=True),
            _converter_rows("Bidirectional(SimpleRNN)"),
        ),
        Example(
            "LSTM",
            {"layer": ("LSTM", {"units": UNITS})},
            _RNN_INPUT,
            lambda: LSTM(IN, UNITS, batch_first=True, bidirectional=True),
            _converter_rows("Bidirectional(LSTM)"),
        ),
        Example(
            "GRU-reset_after",
            {"layer": ("GRU", {"units": UNITS, "reset_after": True})},
            _RNN_INPUT,
            lambda: GRU(IN, UNITS, bidirectional=True, reset_after=True),
            _converter_rows("Bidirectional(GRU)"),
        ),
        Example(
            "GRU-reset_before",
            {"layer": ("GRU", {"units": UNITS, "reset_after": False})},
            _RNN_INPUT,
            lambda: GRU(IN, UNITS, bidirectional=True, reset_after=False),
            _converter_rows("Bidirectional(GRU)"),
        ),
    ),
    "TimeDistributed": (
        Example(
            "Dense",
            {"layer": ("Dense", {"units": UNITS})},
            (None, STEPS, 8 * IN),
            lambda: TimeDistributed(Dense(8 * IN, UNITS)),
            _converter_rows("TimeDistributed(Dense)"),
        ),
    ),
    # Attention layers: input_shape is [query, value] shapes (Attention's build takes the list)
    # or a tuple of them (MultiHeadAttention's build takes each shape as an argument).
    "Attention": (
        Example(
            "parity-scale-concat",
            {"use_scale": True, "score_mode": "concat"},
            [(None, STEPS, IN), (None, STEPS, IN)],
            lambda: Attention(use_scale=True, score_mode="concat"),
            (
                ("scale", "scale", "identity"),
                ("concat_score_weight", "concat_score_weight", "identity"),
            ),
        ),
    ),
    "AdditiveAttention": (
        Example(
            "parity",
            {},
            [(None, STEPS, ATT_DIM), (None, STEPS, ATT_DIM)],
            lambda: AdditiveAttention(ATT_DIM),
            _converter_rows("AdditiveAttention"),
        ),
    ),
    "MultiHeadAttention": (
        Example(
            "parity",
            {"num_heads": 4, "key_dim": 16, "value_dim": 12},
            ((None, STEPS, IN), (None, STEPS, EMBED)),
            lambda: MultiHeadAttention(IN, EMBED, EMBED, 4, 16, 12, IN),
            _converter_rows("MultiHeadAttention"),
        ),
    ),
    "AttentionWeightedAverage": (
        Example(
            "deepmoji",
            {},
            (None, STEPS, ATT_DIM),
            lambda: AttentionWeightedAverage(ATT_DIM),
            (("W", "weight", "identity"),),
            redraw={"W": "uniform"},
        ),
    ),
}

#: (Keras class, index into its examples), one test case each.
CASES = [
    pytest.param(cls, i, id=f"{cls}-{example.id}")
    for cls, examples in EXAMPLES.items()
    for i, example in enumerate(examples)
]
#: Classes whose only weights are constants torch's modules start from too (gamma 1, beta 0,
#: moving mean 0, moving variance 1; PReLU's alpha 0, which parity's module starts from), so
#: torch's defaults rightly pass the check.
SAME_AS_TORCH_DEFAULTS = {
    *("BatchNormalization", "LayerNormalization", "PReLU", "Normalization"),
    "Attention",  # scale and concat_score_weight 1, which parity's module starts from
}
#: Negative controls other than "the module as constructed": parity's attention draws DeepMoji's
#: U(-0.05, 0.05) in its own constructor (torch has no default for it), so the check is shown to
#: fail on torchMoji's N(0, 0.05) instead.
TORCH_DEFAULTS: dict[str, Callable[[nn.Module], object]] = {
    "AttentionWeightedAverage": lambda m: nn.init.normal_(m.weight, std=0.05),
}

SEEDS = (1, 2, 3)
#: Relative tolerance on the standard deviation of pooled samples (n >= ~3000 per tensor here,
#: so sampling error is ~1%; the distributions we must tell apart differ by > 10%).
STD_RTOL = 0.06


def compare(ours: list[np.ndarray], theirs: list[np.ndarray], bounded: bool = True) -> str | None:
    """None when ``ours`` (several seeds) looks drawn like ``theirs``; else what differs.

    ``bounded``: compare the largest |w| too (uniform and truncated draws have a hard bound;
    entries of an orthogonal matrix do not, so their maximum is too noisy to compare)."""
    a, b = np.stack(ours), np.stack(theirs)
    if a.shape != b.shape:
        return f"shape {a.shape[1:]} vs Keras {b.shape[1:]}"
    if np.all(b == b[:1]):  # a constant initializer: must be equal exactly
        return None if np.array_equal(a, b) else "constant differs from Keras'"
    sa, sb = a.std(), b.std()
    if abs(sa / sb - 1) > STD_RTOL:
        return f"std {sa:.4g} vs Keras {sb:.4g}"
    if abs(a.mean()) > 5 * sb / np.sqrt(a.size):
        return f"mean {a.mean():.3g}, Keras std {sb:.3g}"
    ma, mb = np.abs(a).max(), np.abs(b).max()
    if bounded and not 0.85 * mb <= ma <= 1.02 * mb:
        return f"max |w| {ma:.4g} vs Keras {mb:.4g}"
    return None


def orthogonality_error(w: np.ndarray) -> float:
    """max |W W^T - I| on the side with fewer vectors (Keras (u, gu) rows orthonormal)."""
    w = w if w.shape[0] <= w.shape[1] else w.T
    return float(np.abs(w @ w.T - np.eye(w.shape[0])).max())


# --- both sides of an example, in torch layout ------------------------------------------------


def _keras_layer(keras: Any, cls: str, kwargs: dict[str, Any]) -> Any:
    """Keras class ``cls`` built from ``kwargs`` (nested ("Class", kwargs) values too)."""
    kwargs = {k: _keras_layer(keras, *v) if isinstance(v, tuple) else v for k, v in kwargs.items()}
    if hasattr(keras.layers, cls):
        return getattr(keras.layers, cls)(**kwargs)
    from reference_keras import deepmoji  # custom layers: the Keras half of their pair

    return deepmoji.CUSTOM_OBJECTS[cls](**kwargs)


def _keras_name(path: str) -> str:
    """A Keras variable path as the converters name the weight: 'bidirectional/forward_gru/
    gru_cell/kernel' -> 'forward_kernel', 'dense/kernel' -> 'kernel'."""
    parts = path.split("/")
    if len(parts) == 3 and parts[1] in MHA_PROJECTIONS:  # 'mha/query/kernel' -> 'query/kernel'
        return "/".join(parts[1:])
    direction = [p.split("_")[0] for p in parts[1:-1] if p.startswith(("forward_", "backward_"))]
    return "_".join([*direction, parts[-1]])


def _keras_weights(cls: str, example: Example, seed: int) -> dict[str, np.ndarray]:
    """The Keras layer's initial weights by converter name, as Keras draws them for ``seed``."""
    import keras

    keras.utils.set_random_seed(seed)
    layer = _keras_layer(keras, cls, example.kwargs)
    shape = example.input_shape
    several = isinstance(shape, tuple) and bool(shape) and isinstance(shape[0], tuple)
    layer.build(*shape) if several else layer.build(shape)
    weights = {_keras_name(w.path): np.asarray(w) for w in layer.weights}
    for name, initializer in example.redraw.items():
        weights[name] = np.asarray(keras.initializers.get(initializer)(weights[name].shape))
    return weights


def _tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    return dict(module.named_parameters()) | dict(module.named_buffers())


@functools.cache
def _theirs(cls: str, index: int) -> tuple[dict[str, np.ndarray], ...]:
    """Keras' initial weights of EXAMPLES[cls][index] per seed, in torch layout by torch name."""
    example = EXAMPLES[cls][index]
    shapes = {name: tuple(t.shape) for name, t in _tensors(example.torch()).items()}
    out = []
    for seed in SEEDS:
        keras_weights = _keras_weights(cls, example, seed)
        used = {k for k, _, _ in example.rows if k is not None}
        assert used == set(keras_weights), (
            f"rows map {sorted(used)}, Keras has {sorted(keras_weights)}"
        )
        arrays = {}
        for keras_name, torch_name, how in example.rows:
            if keras_name is None:
                arrays[torch_name] = CONSTANT_FILLS[str(how)](shapes[torch_name])
            else:
                to_torch = how if callable(how) else TRANSFORMS[how].to_torch
                arrays[torch_name] = to_torch(keras_weights[keras_name])
        out.append(arrays)
    return tuple(out)


def _ours(cls: str, example: Example, init: bool) -> list[dict[str, np.ndarray]]:
    """Our tensors of the example for each seed, by torch name; torch's defaults when ``init`` is
    False (or the negative control TORCH_DEFAULTS names)."""
    out = []
    for seed in SEEDS:
        torch.manual_seed(seed)
        module = example.torch()
        if init:
            keras_init_(module)
        elif cls in TORCH_DEFAULTS:
            with torch.no_grad():
                TORCH_DEFAULTS[cls](module)
        tensors = _tensors(module)
        out.append({t: tensors[t].detach().numpy().copy() for _, t, _ in example.rows})
    return out


def _problems(
    example: Example, ours: list[dict[str, np.ndarray]], theirs: tuple[dict[str, np.ndarray], ...]
) -> list[str]:
    problems = []
    for keras_name, torch_name, _ in example.rows:
        recurrent = (keras_name or "").endswith("recurrent_kernel")
        issue = compare(
            [o[torch_name] for o in ours], [t[torch_name] for t in theirs], not recurrent
        )
        if issue:
            problems.append(f"{keras_name} -> {torch_name}: {issue}")
        if recurrent:
            worst = max(orthogonality_error(o[torch_name]) for o in ours)
            if worst > 1e-5:
                problems.append(f"{torch_name} not orthogonal ({worst:.3g})")
    return problems


# --- the tests --------------------------------------------------------------------------------


def _owns_weights(cls: str) -> bool:
    """Whether Keras class ``cls`` with a default config saves weights, by its converter."""
    config = {"_class": cls, "layer": {"class_name": "LSTM", "config": {}}}  # Bidirectional's
    try:
        return bool(CONVERTERS[cls].weights(config))
    except (KeyError, TypeError, parity.ConversionError):  # too minimal a config: demand a row
        return True


def test_every_converted_class_with_weights_has_an_example() -> None:
    """A new converter whose class owns weights must get a row in EXAMPLES (and a rule)."""
    missing = sorted(cls for cls in CONVERTERS if _owns_weights(cls) and cls not in EXAMPLES)
    assert not missing, f"add EXAMPLES rows for {missing}"
    # DeepMoji's attention is converted by its architecture, not by the generic table.
    unknown = set(EXAMPLES) - set(CONVERTERS) - {"AttentionWeightedAverage"}
    assert not unknown, f"EXAMPLES rows for classes nothing converts: {sorted(unknown)}"
    recurrent = {
        cls
        for cls, examples in EXAMPLES.items()
        if any(k == "recurrent_kernel" for e in examples for k, _, _ in e.rows)
    }
    wrapped = {e.kwargs["layer"][0] for e in EXAMPLES["Bidirectional"]}
    assert wrapped == recurrent, "every recurrent class needs a Bidirectional example too"


@pytest.mark.parametrize(("cls", "index"), CASES)
def test_every_parameter_is_mapped(cls: str, index: int) -> None:
    """Each torch parameter gets exactly one row, so none escapes the comparison."""
    example = EXAMPLES[cls][index]
    params = {name for name, _ in example.torch().named_parameters()}
    targets = [t for _, t, _ in example.rows]
    assert sorted(targets) == sorted(set(targets))
    assert params <= set(targets), f"unmapped: {sorted(params - set(targets))}"


@needs_keras
@pytest.mark.parametrize(("cls", "index"), CASES)
def test_layer_initialized_like_keras(cls: str, index: int) -> None:
    example = EXAMPLES[cls][index]
    assert not _problems(example, _ours(cls, example, init=True), _theirs(cls, index))


@needs_keras
@pytest.mark.parametrize(
    ("cls", "index"), [c for c in CASES if c.values[0] not in SAME_AS_TORCH_DEFAULTS]
)
def test_torch_defaults_fail_the_comparison(cls: str, index: int) -> None:
    """The same check on torch's own defaults finds differences."""
    example = EXAMPLES[cls][index]
    assert _problems(example, _ours(cls, example, init=False), _theirs(cls, index))


def test_whole_kernel_not_per_gate() -> None:
    """glorot over Keras' whole (in, 4u) kernel: limit sqrt(6 / (in + 4u)), not per gate."""
    lstm = keras_init_(nn.LSTM(IN, UNITS))
    limit = np.sqrt(6 / (IN + 4 * UNITS))
    w = lstm.weight_ih_l0.detach().numpy()
    assert np.abs(w).max() <= limit
    assert np.abs(w).max() > 0.95 * limit
    assert orthogonality_error(lstm.weight_hh_l0.detach().numpy()) < 1e-5
    bias = (lstm.bias_ih_l0 + lstm.bias_hh_l0).detach().numpy()
    np.testing.assert_array_equal(bias, np.repeat([0.0, 1.0, 0.0, 0.0], UNITS))
    assert not lstm.bias_hh_l0.detach().any()


@needs_keras
@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("shape", [(96, 64), (3, 32, 48)], ids=["2d", "conv"])
def test_presets_match_keras_initializers(name: str, shape: tuple[int, ...]) -> None:
    """variance_scaling_ presets on a Keras-layout array = keras.initializers.get(name)."""
    import keras

    theirs, ours = [], []
    for seed in SEEDS:
        theirs.append(
            np.asarray(
                keras.initializers.get({"class_name": name, "config": {"seed": seed}})(shape)
            )
        )
        t = torch.empty(shape)
        torch.manual_seed(seed)
        p = PRESETS[name]
        ours.append(variance_scaling_(t, p.scale, p.mode, p.distribution, KERAS_FAN_AXES).numpy())
    assert compare(ours, theirs) is None


@needs_keras
def test_deepmoji_initialized_like_keras_deepmoji() -> None:
    """Every DeepMoji weight, through the conversion table, against Keras' DeepMoji; the
    attention vector against Keras' 'uniform' (U(-0.05, 0.05)), which DeepMoji asks for."""
    import keras

    from reference_keras import deepmoji as kdeepmoji

    sizes = {"vocab_size": 400, "embedding_dim": 32, "hidden_size": 24, "num_classes": 5}
    theirs: dict[str, list[np.ndarray]] = {}
    for seed in SEEDS:
        keras.utils.set_random_seed(seed)
        kmodel = kdeepmoji.build(**sizes)
        for layer in kmodel.layers:
            for w in layer.weights:
                name = f"{layer.name}/{w.path.split('/')[-1]}"
                if layer.name.startswith("bi_lstm"):
                    direction = "forward" if "forward" in w.path else "backward"
                    name = f"{layer.name}/{direction}_{w.path.split('/')[-1]}"
                theirs.setdefault(name, []).append(np.asarray(w))
    shape = theirs["attlayer/W"][0].shape
    theirs["attlayer/W"] = [
        np.asarray(keras.initializers.RandomUniform(-0.05, 0.05, seed=s)(shape)) for s in SEEDS
    ]
    ours: dict[str, list[np.ndarray]] = {}
    for seed in SEEDS:
        torch.manual_seed(seed)
        model = parity.keras_init_(DeepMoji(DeepMojiConfig(**sizes)))
        params = dict(model.named_parameters())
        buffers = dict(model.named_buffers())
        for keras_name, torch_name, transform in MAPPING:
            if keras_name is None:  # a constant Keras does not have: a buffer, never trained
                assert torch_name not in params and not buffers[torch_name].any()
                continue
            t = params[torch_name].detach().numpy()
            ours.setdefault(keras_name, []).append(t.T if transform == "transpose" else t)
    assert set(ours) == set(theirs)
    problems = []
    for name in ours:
        issue = compare(ours[name], theirs[name], bounded="recurrent" not in name)
        if issue:
            problems.append(f"{name}: {issue}")
        if "recurrent" in name:
            worst = max(orthogonality_error(w) for w in ours[name])
            if worst > 1e-5:
                problems.append(f"{name}: not orthogonal ({worst:.3g})")
    assert not problems


def test_unknown_module_with_parameters_is_refused() -> None:
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.zeros(3))

    with pytest.raises(TypeError, match="Odd"):
        keras_init_(nn.Sequential(nn.Linear(2, 2), Odd()))


def test_attention_uses_deepmoji_uniform() -> None:
    att = keras_init_(AttentionWeightedAverage(4000))
    w = att.weight.detach().numpy()
    assert np.abs(w).max() <= 0.05 and np.abs(w).max() > 0.049
    assert abs(w.std() - 0.05 / np.sqrt(3)) < 0.002
