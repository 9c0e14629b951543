"""keras_init_ against weights Keras itself initialized: same distributions, several seeds.

Moments, bounds, exact constants (biases, unit_forget_bias) and orthogonality of our weights are
compared with those of Keras layers built with the same sizes; each comparison is also run on
torch's default initialization, which must fail it (so the test can fail).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

import parity
from parity.init import KERAS_FAN_AXES, PRESETS, keras_init_, variance_scaling_
from parity.layers import LSTM, AttentionWeightedAverage
from parity.models.deepmoji import MAPPING, DeepMoji, DeepMojiConfig
from tests.conftest import needs_keras

SEEDS = (1, 2, 3)
#: Relative tolerance on the standard deviation of pooled samples (n >= ~8000 per tensor here,
#: so sampling error is ~1%; the distributions we must tell apart differ by > 20%).
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


# --- Keras side: layer kind -> (build Keras layer and return its weights, torch module) -------


def _keras_weights(make: Callable, shape: tuple[int, ...], seed: int) -> list[np.ndarray]:
    import keras

    keras.utils.set_random_seed(seed)
    layer = make()
    layer.build(shape)
    return [np.asarray(w) for w in layer.get_weights()]


IN, UNITS, STEPS_, KERNEL = 24, 48, 5, 3

#: kind -> (Keras layer factory, Keras input shape, torch module factory, torch -> Keras arrays)
KINDS: dict[str, tuple] = {
    "dense": (
        lambda k: k.layers.Dense(UNITS),
        (None, 8 * IN),
        lambda: nn.Linear(8 * IN, UNITS),
        lambda m: [m.weight.T, m.bias],
    ),
    "embedding": (
        lambda k: k.layers.Embedding(1000, 16),
        (None, 5),
        lambda: nn.Embedding(1000, 16),
        lambda m: [m.weight],
    ),
    "conv1d": (
        lambda k: k.layers.Conv1D(UNITS, KERNEL),
        (None, 20, IN),
        lambda: nn.Conv1d(IN, UNITS, KERNEL),
        lambda m: [m.weight.permute(2, 1, 0), m.bias],
    ),
    "simple_rnn": (
        lambda k: k.layers.SimpleRNN(UNITS),
        (None, STEPS_, IN),
        lambda: nn.RNN(IN, UNITS),
        lambda m: [m.weight_ih_l0.T, m.weight_hh_l0.T, m.bias_ih_l0 + m.bias_hh_l0],
    ),
    "gru": (
        lambda k: k.layers.GRU(UNITS),
        (None, STEPS_, IN),
        lambda: nn.GRU(IN, UNITS),
        lambda m: [m.weight_ih_l0.T, m.weight_hh_l0.T, torch.stack([m.bias_ih_l0, m.bias_hh_l0])],
    ),
    "lstm": (
        lambda k: k.layers.LSTM(UNITS),
        (None, STEPS_, IN),
        lambda: nn.LSTM(IN, UNITS),
        lambda m: [m.weight_ih_l0.T, m.weight_hh_l0.T, m.bias_ih_l0 + m.bias_hh_l0],
    ),
    "parity_lstm": (
        lambda k: k.layers.LSTM(UNITS),
        (None, STEPS_, IN),
        lambda: LSTM(IN, UNITS, gate_activation="hard_sigmoid_keras2"),
        lambda m: [m.weight_ih_l0.T, m.weight_hh_l0.T, m.bias_ih_l0 + m.bias_hh_l0],
    ),
    "batchnorm": (
        lambda k: k.layers.BatchNormalization(),
        (None, UNITS),
        lambda: nn.BatchNorm1d(UNITS),
        lambda m: [m.weight, m.bias, m.running_mean, m.running_var],
    ),
}

RECURRENT = {"simple_rnn", "gru", "lstm", "parity_lstm"}


def _ours(kind: str, init: bool) -> list[list[np.ndarray]]:
    """Our arrays in Keras layout for each seed; torch's defaults when ``init`` is False."""
    _, _, make, to_keras = KINDS[kind]
    out = []
    for seed in SEEDS:
        torch.manual_seed(seed)
        module = make()
        if init:
            keras_init_(module)
        out.append([t.detach().numpy().copy() for t in to_keras(module)])
    return out


def _theirs(kind: str) -> list[list[np.ndarray]]:
    import keras

    make, shape, _, _ = KINDS[kind]
    return [_keras_weights(lambda: make(keras), shape, seed) for seed in SEEDS]


def _problems(ours: list[list[np.ndarray]], theirs: list[list[np.ndarray]], kind: str) -> list:
    problems = []
    for i in range(len(theirs[0])):
        bounded = not (kind in RECURRENT and i == 1)
        issue = compare([o[i] for o in ours], [t[i] for t in theirs], bounded)
        if issue:
            problems.append(f"{kind} weight {i}: {issue}")
    if kind in RECURRENT:
        worst = max(orthogonality_error(o[1]) for o in ours)
        if worst > 1e-5:
            problems.append(f"{kind} recurrent kernel not orthogonal ({worst:.3g})")
    return problems


@needs_keras
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_layer_initialized_like_keras(kind: str) -> None:
    theirs = _theirs(kind)
    assert not _problems(_ours(kind, init=True), theirs, kind)


@needs_keras
@pytest.mark.parametrize("kind", sorted(set(KINDS) - {"batchnorm"}))
def test_torch_defaults_fail_the_comparison(kind: str) -> None:
    """The same check on torch's own defaults finds differences (BatchNorm's agree)."""
    assert _problems(_ours(kind, init=False), _theirs(kind), kind)


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
        for keras_name, torch_name, transform in MAPPING:
            if keras_name is None:
                assert not params[torch_name].any(), f"{torch_name} must stay zero"
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
