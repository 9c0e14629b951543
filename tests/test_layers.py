"""Oracle tests for parity.ports and the DeepMoji module.

Each test compares against something computed independently: torch's own nn.LSTM, a formula
written out in numpy, or the LSTM run on one row's real tokens alone. They run on CPU.

LSTM tests take the ``impl`` fixture and run both implementations: "reference" and "fast" (the
fused loop, which runs whenever no gradient is recorded; tests with a backward pass also check
its no-grad forward).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from parity.arch.deepmoji import DeepMoji, DeepMojiConfig
from parity.check.tolerances import Tolerance, tolerance_for
from parity.ports import (
    ACTIVATIONS,
    GRU,
    LSTM,
    RECURRENT_ACTIVATIONS,
    AttentionWeightedAverage,
    Dense,
    KerasRNNBase,
    SimpleRNN,
    get_activation,
    hard_sigmoid,
)
from parity.ports.activations import activation_slots
from parity.ports.recurrent.backends import IMPLEMENTATIONS

IN, HID = 5, 7
LENGTHS = [1, 6, 3, 4]  # includes length 1 and the full length
T = max(LENGTHS)


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, tol: Tolerance, what: str) -> None:
    torch.testing.assert_close(
        actual, expected, rtol=tol.rtol, atol=tol.atol, msg=lambda m: f"{what}: {m}"
    )


def _tol(dtype: torch.dtype, device: str = "cpu", quantity: str = "output") -> Tolerance:
    return tolerance_for(dtype, device, quantity)


EXACT = Tolerance(0.0, 0.0)


@pytest.fixture(params=IMPLEMENTATIONS)
def impl(request: pytest.FixtureRequest) -> str:
    return request.param


def _pair(
    num_layers: int,
    bidirectional: bool,
    batch_first: bool,
    dtype: torch.dtype,
    device="cpu",
    impl="reference",
):
    torch.manual_seed(0)
    ref = nn.LSTM(
        IN, HID, num_layers, batch_first=batch_first, bidirectional=bidirectional, dtype=dtype
    )
    ours = LSTM(
        IN,
        HID,
        num_layers,
        batch_first=batch_first,
        bidirectional=bidirectional,
        dtype=dtype,
        impl=impl,
    )
    ours.load_state_dict(ref.state_dict(), strict=True)  # same names and shapes as nn.LSTM
    return ref.to(device), ours.to(device)


def _torch_oracle(ref: nn.LSTM, device: str) -> nn.LSTM:
    """nn.LSTM where it is exact enough to be the oracle: on CUDA, its CPU kernels in float64.
    cuDNN's own float32 LSTM is 2e-6 from the exact result (measured on an H100), more than
    the float32 tolerance, so it cannot judge the port on CUDA."""
    return ref if device == "cpu" else ref.to("cpu", torch.float64)


# --- nn.LSTM oracle ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("with_hx", [False, True])
def test_lstm_equals_torch_lstm(
    bidirectional, num_layers, batch_first, dtype, with_hx, device, impl
):
    ref, ours = _pair(num_layers, bidirectional, batch_first, dtype, device, impl)
    out_tol, grad_tol = _tol(dtype, device), _tol(dtype, device, "gradient")
    batch, n_states = 3, num_layers * (2 if bidirectional else 1)
    factory = {"dtype": dtype, "device": device}
    x = torch.randn((batch, T, IN) if batch_first else (T, batch, IN), **factory)
    hx = None
    if with_hx:
        hx = tuple(torch.randn(n_states, batch, HID, **factory) for _ in range(2))

    results = {}
    for name, module in (("ref", _torch_oracle(ref, device)), ("ours", ours)):
        like = next(module.parameters())  # the oracle may run elsewhere, in float64
        xi = x.to(like).requires_grad_()
        hxi = None if hx is None else tuple(t.to(like).requires_grad_() for t in hx)
        out, (h_n, c_n) = module(xi, hxi)
        torch.manual_seed(1)  # the same cotangents for both (drawn on CPU, then moved)
        loss = sum((t * torch.randn(t.shape).to(t)).sum() for t in (out, h_n, c_n))
        loss.backward()
        grads = {n: p.grad for n, p in module.named_parameters()}
        grads["input"] = xi.grad
        if hxi is not None:
            grads["h0"], grads["c0"] = hxi[0].grad, hxi[1].grad
        results[name] = tuple(_to(v, x) for v in (out, h_n, c_n, grads))

    for i, what in enumerate(("output", "h_n", "c_n")):
        _assert_close(results["ours"][i], results["ref"][i], out_tol, what)
    ref_grads, our_grads = results["ref"][3], results["ours"][3]
    assert our_grads.keys() == ref_grads.keys()
    for name, grad in ref_grads.items():
        _assert_close(our_grads[name], grad, grad_tol, f"grad {name}")
    with torch.inference_mode():  # the no-grad path ("fast": the fused loop)
        out, (h_n, c_n) = ours(x, hx)
    for i, (what, value) in enumerate((("output", out), ("h_n", h_n), ("c_n", c_n))):
        _assert_close(value, results["ref"][i], out_tol, f"no-grad {what}")


def _to(value, like: torch.Tensor):
    if isinstance(value, dict):
        return {k: _to(v, like) for k, v in value.items()}
    return value.to(like)


def test_lstm_unbatched_input_like_torch(impl):
    ref, ours = _pair(2, True, False, torch.float64, impl=impl)
    x = torch.randn(T, IN, dtype=torch.float64)
    with torch.no_grad():
        (out_r, (h_r, c_r)), (out_o, (h_o, c_o)) = ref(x), ours(x)
    assert out_o.shape == out_r.shape and h_o.shape == h_r.shape
    for a, b in ((out_o, out_r), (h_o, h_r), (c_o, c_r)):
        _assert_close(a, b, _tol(torch.float64), "unbatched")


def test_lstm_rejects_unsupported_arguments():
    with pytest.raises(ValueError, match="proj_size"):
        LSTM(IN, HID, proj_size=3)
    with pytest.raises(ValueError, match="nope"):
        LSTM(IN, HID, gate_activation="nope")
    with pytest.raises(ValueError, match="impl"):
        LSTM(IN, HID, impl="cudnn")


# --- activations ------------------------------------------------------------------------------


def _grid(dtype: np.dtype) -> np.ndarray:
    rng = np.random.default_rng(0)
    edges = [-3.0, -2.5, -2.5000001, -1.0, -0.5, 0.0, 0.5, 1.0, 2.5, 2.4999999, 3.0, 10.0, -10.0]
    return np.concatenate([edges, rng.normal(scale=3.0, size=1000)]).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_hard_sigmoid_keras2_formula(dtype):
    x = _grid(dtype)
    # tf_keras backend.hard_sigmoid / Theano: multiply by 0.2, add 0.5, clip to [0, 1].
    expected = np.clip(x * dtype(0.2) + dtype(0.5), dtype(0.0), dtype(1.0))
    actual = hard_sigmoid(torch.from_numpy(x), "keras2").numpy()
    np.testing.assert_array_equal(actual, expected)
    assert actual.dtype == dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_hard_sigmoid_keras3_formula(dtype):
    x = _grid(dtype)
    # keras/src/activations/activations.py: relu6(x + 3) / 6.
    expected = np.minimum(np.maximum(x + dtype(3.0), dtype(0.0)), dtype(6.0)) / dtype(6.0)
    xt = torch.from_numpy(x)
    actual = hard_sigmoid(xt, "keras3")
    np.testing.assert_array_equal(actual.numpy(), expected)
    assert torch.equal(actual, F.hardsigmoid(xt))  # bit-equal to torch's (and Keras 3's)


def test_hard_sigmoid_variants_differ():
    # The reason both exist: on x = 2, Keras 2 gives 0.9, Keras 3 gives 5/6.
    x = torch.tensor([2.0], dtype=torch.float64)
    assert hard_sigmoid(x, "keras2").item() == pytest.approx(0.9)
    assert hard_sigmoid(x, "keras3").item() == pytest.approx(5.0 / 6.0)


def test_activation_registry():
    assert {"sigmoid", "hard_sigmoid_keras2", "hard_sigmoid_keras3"} <= set(RECURRENT_ACTIVATIONS)
    x = torch.linspace(-4, 4, 17, dtype=torch.float64)
    assert torch.equal(get_activation("hard_sigmoid_keras2")(x), hard_sigmoid(x, "keras2"))
    assert torch.equal(get_activation("sigmoid")(x), torch.sigmoid(x))
    with pytest.raises(ValueError, match=r"'hard_sigmoid'.*hard_sigmoid_keras2"):
        get_activation("hard_sigmoid")
    with pytest.raises(ValueError, match="keras4"):
        hard_sigmoid(x, "keras4")


@pytest.mark.parametrize("name", [n for n, a in ACTIVATIONS.items() if a.fused is not None])
def test_fused_forms_compute_the_activation(name):
    """Each row's fused form, tail(scale * x + offset), in place and not, is its function."""
    spec = ACTIVATIONS[name]
    form = spec.fused
    x = torch.linspace(-8, 8, 161, dtype=torch.float64)
    z = x * form.scale + form.offset
    tol = _tol(torch.float64)
    _assert_close(form.tail(z), spec.fn(x), tol, f"{name} tail")
    _assert_close(form.tail_(z.clone()), spec.fn(x), tol, f"{name} tail_")
    assert spec.recurrent


def test_activation_slot_keeps_name_and_function_together():
    """Assigning an activation name also swaps the function the forward calls."""
    lstm = LSTM(IN, HID, gate_activation="hard_sigmoid_keras2")
    assert set(activation_slots(lstm)) == {"gate_activation", "activation"}
    lstm.gate_activation = "sigmoid"
    assert lstm._gate_fn is torch.sigmoid
    with pytest.raises(ValueError, match="softmax"):
        lstm.activation = "softmax"  # a Keras activation, but not a recurrent one
    dense = Dense(IN, HID, activation="softmax")
    dense.activation = "relu"
    x = torch.randn(3, IN)
    assert torch.equal(dense(x), torch.relu(nn.functional.linear(x, dense.weight, dense.bias)))


@pytest.mark.parametrize(
    ("make", "names"),
    [
        (lambda: LSTM(IN, HID, 2, bidirectional=True),
         [f"{k}_l{layer}{s}" for layer in (0, 1) for s in ("", "_reverse")
          for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]),
        (lambda: GRU(IN, HID, bidirectional=True),
         [f"{k}_l0{s}" for s in ("", "_reverse") for k in ("weight_ih", "weight_hh", "bias")]),
        (lambda: SimpleRNN(IN, HID, bidirectional=True),
         [f"{k}_l0{s}" for s in ("", "_reverse")
          for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]),
    ],
)  # fmt: skip
def test_recurrent_parameter_names_and_order(make, names):
    """One base, torch's parameter names and state_dict order for all three layers."""
    layer = make()
    assert isinstance(layer, KerasRNNBase)
    assert list(layer.state_dict()) == names


def test_gru_shapes_and_batch_first_only():
    assert GRU(IN, HID, reset_after=True).bias_l0.shape == (2, 3 * HID)
    assert GRU(IN, HID, reset_after=False).bias_l0.shape == (3 * HID,)
    with pytest.raises(ValueError, match="batch-first"):
        GRU(IN, HID, batch_first=False)
    with pytest.raises(ValueError, match="batch-first"):
        SimpleRNN(IN, HID, batch_first=False)


# --- masking ----------------------------------------------------------------------------------


def _positions(lengths: list[int], padding: str) -> list[np.ndarray]:
    """Real positions per row: a contiguous run at the end (pre) or start (post), or holes."""
    if padding == "pre":
        return [np.arange(T - n, T) for n in lengths]
    if padding == "post":
        return [np.arange(n) for n in lengths]
    rng = np.random.default_rng(len(lengths))
    return [np.sort(rng.choice(T, size=n, replace=False)) for n in lengths]


def _padded(rows: list[torch.Tensor], positions: list[np.ndarray]):
    """Scatter each row's real tokens to its positions; padding gets junk, never zeros."""
    factory = {"dtype": rows[0].dtype, "device": rows[0].device}
    x = torch.randn(len(rows), T, rows[0].shape[-1], **factory) * 100
    mask = torch.zeros(len(rows), T, dtype=torch.bool, device=rows[0].device)
    for b, (row, pos) in enumerate(zip(rows, positions, strict=True)):
        x[b, pos] = row
        mask[b, pos] = True
    return x, mask


def _oracle(gate: str, num_layers: int, dtype: torch.dtype, device="cpu", impl="reference"):
    """(masked module, per-row reference): nn.LSTM for sigmoid gates, else our unmasked
    reference LSTM (which the nn.LSTM oracle above pins down apart from the gate function)."""
    torch.manual_seed(0)
    kwargs = {"batch_first": True, "bidirectional": True, "dtype": dtype}
    ours = LSTM(IN, HID, num_layers, gate_activation=gate, impl=impl, **kwargs)
    if gate == "sigmoid":
        ref = nn.LSTM(IN, HID, num_layers, **kwargs)
        ref.load_state_dict(ours.state_dict())
    else:
        ref = LSTM(IN, HID, num_layers, gate_activation=gate, impl="reference", **kwargs)
        ref.load_state_dict(ours.state_dict())
    return ours.to(device), ref.to(device)


@pytest.mark.parametrize("padding", ["pre", "post", "holes"])
@pytest.mark.parametrize("gate", ["sigmoid", "hard_sigmoid_keras2"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("with_hx", [False, True])
def test_masked_rows_equal_running_each_row_alone(padding, gate, num_layers, with_hx, device, impl):
    dtype = torch.float64
    tol = _tol(dtype, device)
    ours, ref = _oracle(gate, num_layers, dtype, device, impl)
    rows = [torch.randn(n, IN, dtype=dtype, device=device) for n in LENGTHS]
    positions = _positions(LENGTHS, padding)
    x, mask = _padded(rows, positions)
    hx = None
    if with_hx:
        shape = (2 * num_layers, len(rows), HID)
        hx = tuple(torch.randn(shape, dtype=dtype, device=device) for _ in range(2))

    with torch.no_grad():
        out, (h_n, c_n) = ours(x, hx, mask=mask)
        for b, (row, pos) in enumerate(zip(rows, positions, strict=True)):
            # contiguous: cuDNN's nn.LSTM refuses a strided hx
            row_hx = None if hx is None else tuple(t[:, b : b + 1].contiguous() for t in hx)
            out_b, (h_b, c_b) = ref(row[None], row_hx)
            # Both directions at the real positions: the forward one saw only the real tokens
            # before, the reverse one only those after (it starts at the last real token).
            _assert_close(out[b, pos], out_b[0], tol, f"row {b} outputs")
            _assert_close(h_n[:, b], h_b[:, 0], tol, f"row {b} h_n")
            _assert_close(c_n[:, b], c_b[:, 0], tol, f"row {b} c_n")
            # Bidirectional: zeros at masked steps, in both directions.
            assert torch.all(out[b, ~mask[b]] == 0)


@pytest.mark.parametrize("num_layers", [1, 2])
def test_pre_and_post_padding_agree(num_layers, impl):
    dtype = torch.float64
    ours, _ = _oracle("hard_sigmoid_keras2", num_layers, dtype, impl=impl)
    rows = [torch.randn(n, IN, dtype=dtype) for n in LENGTHS]
    results = {}
    with torch.no_grad():
        for padding in ("pre", "post"):
            positions = _positions(LENGTHS, padding)
            x, mask = _padded(rows, positions)
            out, (h_n, c_n) = ours(x, mask=mask)
            tokens = [out[b, pos] for b, pos in enumerate(positions)]
            results[padding] = (tokens, h_n, c_n)
    for a, b in zip(results["pre"][0], results["post"][0], strict=True):
        _assert_close(a, b, _tol(dtype), "per-token outputs")
    _assert_close(results["pre"][1], results["post"][1], _tol(dtype), "h_n")
    _assert_close(results["pre"][2], results["post"][2], _tol(dtype), "c_n")


@pytest.mark.parametrize("padding", ["pre", "post", "holes"])
def test_unidirectional_masked_steps_repeat_previous_output(padding, impl):
    """A plain Keras LSTM (zero_output_for_mask=False) emits its last real output at masked
    steps, zeros before the first real step; zero_output_for_mask=True emits zeros."""
    dtype = torch.float64
    torch.manual_seed(0)
    carry = LSTM(IN, HID, batch_first=True, dtype=dtype, gate_activation="hard_sigmoid_keras2",
                 impl=impl)  # fmt: skip
    zeros = LSTM(IN, HID, batch_first=True, dtype=dtype, gate_activation="hard_sigmoid_keras2",
                 zero_output_for_mask=True, impl=impl)  # fmt: skip
    zeros.load_state_dict(carry.state_dict())
    assert carry.zero_output_for_mask is False and zeros.zero_output_for_mask is True
    rows = [torch.randn(n, IN, dtype=dtype) for n in LENGTHS]
    positions = _positions(LENGTHS, padding)
    x, mask = _padded(rows, positions)
    with torch.no_grad():
        out_carry, (h_carry, _) = carry(x, mask=mask)
        out_zeros, (h_zeros, _) = zeros(x, mask=mask)
        for b, row in enumerate(rows):
            out_b, _ = carry(row[None])
            expected = torch.zeros(T, HID, dtype=dtype)
            last = None
            for t in range(T):
                if mask[b, t]:
                    last = int(mask[b, : t + 1].sum()) - 1
                if last is not None:
                    expected[t] = out_b[0, last]
            _assert_close(out_carry[b], expected, _tol(dtype), f"row {b} carried outputs")
            assert torch.all(out_zeros[b, ~mask[b]] == 0)
            _assert_close(out_zeros[b, mask[b]], out_b[0], _tol(dtype), f"row {b} outputs")
    _assert_close(h_carry, h_zeros, EXACT, "h_n does not depend on the output mode")


@pytest.mark.parametrize("enforce_sorted", [False, True])
def test_packed_sequence_equals_masked_post_padded(enforce_sorted, device, impl):
    dtype = torch.float64
    tol = _tol(dtype, device)
    ours, ref = _oracle("sigmoid", 2, dtype, device, impl)
    lengths = sorted(LENGTHS, reverse=True) if enforce_sorted else LENGTHS
    rows = [torch.randn(n, IN, dtype=dtype, device=device) for n in lengths]
    x, mask = _padded(rows, _positions(lengths, "post"))
    packed = pack_padded_sequence(x, torch.tensor(lengths), True, enforce_sorted)
    with torch.no_grad():
        out_masked, (h_masked, c_masked) = ours(x, mask=mask)
        packed_out, (h_packed, c_packed) = ours(packed)
        ref_out, (h_ref, c_ref) = ref(packed)
    assert torch.equal(packed_out.batch_sizes, packed.batch_sizes)
    _assert_close(packed_out.data, ref_out.data, tol, "packed vs nn.LSTM packed")
    _assert_close(h_packed, h_ref, tol, "h_n vs nn.LSTM packed")
    _assert_close(c_packed, c_ref, tol, "c_n vs nn.LSTM packed")
    unpacked, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=T)
    _assert_close(unpacked, out_masked, tol, "packed vs masked outputs")
    _assert_close(h_packed, h_masked, tol, "packed vs masked h_n")
    _assert_close(c_packed, c_masked, tol, "packed vs masked c_n")


def test_masked_lstm_gradients_ignore_padding(impl):
    """Autograd through the masked path: junk at padded steps gets no gradient."""
    ours, _ = _oracle("hard_sigmoid_keras2", 2, torch.float64, impl=impl)
    rows = [torch.randn(n, IN, dtype=torch.float64) for n in LENGTHS]
    x, mask = _padded(rows, _positions(LENGTHS, "holes"))
    x.requires_grad_()
    out, (h_n, c_n) = ours(x, mask=mask)
    (out.square().sum() + h_n.sum() + c_n.sum()).backward()
    assert torch.all(x.grad[~mask] == 0)
    assert torch.all(x.grad[mask].abs().sum(-1) > 0)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in ours.parameters())


# --- attention --------------------------------------------------------------------------------


def _attention_numpy(x: np.ndarray, w: np.ndarray, mask: np.ndarray | None):
    """deepmoji/attlayer.py, line by line."""
    logits = (x @ w).reshape(x.shape[0], x.shape[1])
    ai = np.exp(logits - logits.max(axis=-1, keepdims=True))
    if mask is not None:
        ai = ai * mask.astype(x.dtype)
    att = ai / (ai.sum(axis=1, keepdims=True) + 1e-7)  # K.epsilon()
    return (x * att[..., None]).sum(axis=1), att


@pytest.mark.parametrize("use_mask", [False, True])
def test_attention_equals_formula(use_mask, device):
    rng = np.random.default_rng(0)
    batch, steps, d = 4, 6, 5
    x = rng.normal(size=(batch, steps, d))
    mask = np.ones((batch, steps), dtype=bool)
    mask[0, :5] = False  # a single real step (pre-padded)
    mask[1, 1:] = False  # a single real step (post-padded)
    mask[2, [1, 3]] = False
    # A masked step with by far the largest logit: DeepMoji's max still includes it, which
    # shrinks the real steps' exp values and makes the epsilon matter (torchMoji differs here).
    layer = AttentionWeightedAverage(d, dtype=torch.float64)
    w = layer.weight.detach().numpy()
    x[1, 3] = 5.0 * w[:, 0] / np.sum(w**2)  # logit 5 above the rest
    m = mask if use_mask else None
    expected_out, expected_att = _attention_numpy(x, w, m)
    tol = _tol(torch.float64, device)
    mask_t = None if m is None else torch.from_numpy(m).to(device)
    out, att = layer.to(device)(torch.from_numpy(x).to(device), mask_t, return_attention=True)
    out, att = out.detach().cpu().numpy(), att.detach().cpu().numpy()
    np.testing.assert_allclose(out, expected_out, rtol=tol.rtol, atol=tol.atol)
    np.testing.assert_allclose(att, expected_att, rtol=tol.rtol, atol=tol.atol)
    if use_mask:
        assert np.all(att[~mask] == 0)
        single = att[[0, 1]][mask[[0, 1]]]
        assert np.all(single < 1.0) and np.allclose(single, 1.0, atol=1e-3)


def test_attention_return_flag_and_layout():
    layer = AttentionWeightedAverage(3)
    assert layer.weight.shape == (3, 1)  # Keras' W layout
    x = torch.randn(2, 4, 3)
    assert isinstance(layer(x), torch.Tensor)
    assert len(layer(x, return_attention=True)) == 2
    flagged = AttentionWeightedAverage(3, return_attention=True)
    assert len(flagged(x)) == 2
    assert isinstance(flagged(x, return_attention=False), torch.Tensor)


# --- DeepMoji ---------------------------------------------------------------------------------


def _small_deepmoji(num_classes: int, **overrides) -> DeepMoji:
    torch.manual_seed(0)
    config = DeepMojiConfig(vocab_size=50, embedding_dim=8, hidden_size=6, num_classes=num_classes)
    for key, value in overrides.items():
        setattr(config, key, value)
    return DeepMoji(config).eval()


def _ids(padding: str) -> torch.Tensor:
    torch.manual_seed(2)
    lengths = [1, 9, 4]
    ids = torch.zeros(len(lengths), 9, dtype=torch.long)
    for b, n in enumerate(lengths):
        tokens = torch.randint(1, 50, (n,))
        if padding == "pre":
            ids[b, 9 - n :] = tokens
        else:
            ids[b, :n] = tokens
    return ids


def test_deepmoji_softmax_output():
    model = _small_deepmoji(num_classes=5)
    assert model.bi_lstm_0.gate_activation == "hard_sigmoid_keras2"
    assert model.embedding.padding_idx is None
    with torch.no_grad():
        probs = model(_ids("post"))
    assert probs.shape == (3, 5)
    torch.testing.assert_close(probs.sum(-1), torch.ones(3))


def test_deepmoji_binary_output():
    model = _small_deepmoji(num_classes=2)
    assert model.softmax.out_features == 1
    with torch.no_grad():
        probs = model(_ids("post"))
    assert probs.shape == (3, 1)
    assert torch.all((probs >= 0) & (probs <= 1))


@pytest.mark.parametrize("padding", ["pre", "post"])
def test_deepmoji_attention_weights(padding):
    model = _small_deepmoji(num_classes=5)
    ids = _ids(padding)
    with torch.no_grad():
        probs, att = model(ids, return_attention=True)
    assert att.shape == ids.shape
    assert torch.all(att[ids == 0] == 0)
    torch.testing.assert_close(att.sum(-1), torch.ones(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(probs, model(ids))


def test_deepmoji_pre_and_post_padding_agree(device):
    model = _small_deepmoji(num_classes=5).double().to(device)
    with torch.no_grad():
        pre, post = model(_ids("pre").to(device)), model(_ids("post").to(device))
    _assert_close(pre, post, _tol(torch.float64, device), "pre- vs post-padded probabilities")


def test_deepmoji_parameter_names():
    """The conversion table addresses these names; they are DeepMoji's layer names."""
    names = {n.split(".")[0] for n, _ in _small_deepmoji(num_classes=5).named_parameters()}
    assert names == {"embedding", "bi_lstm_0", "bi_lstm_1", "attlayer", "softmax"}
    model = _small_deepmoji(num_classes=5)
    assert model.attlayer.weight.shape == (4 * 6 + 8, 1)
    assert model.bi_lstm_1.input_size == 2 * 6


def test_deepmoji_embed_dropout_drops_whole_channels():
    model = _small_deepmoji(num_classes=5, embed_dropout=0.5)
    x = torch.ones(4, 9, 8)
    model.train()
    dropped = model.embed_dropout(x)
    zero_channels = (dropped == 0).all(dim=1)  # (B, C): a channel is zero at every step or none
    assert zero_channels.any()
    assert torch.equal((dropped == 0).any(dim=1), zero_channels)
    model.eval()
    assert torch.equal(model.embed_dropout(x), x)


def test_deepmoji_feature_order():
    """The attention pools [bi_lstm_1, bi_lstm_0, tanh(embedding)], in DeepMoji's order: the
    attention weight converts without permutation only if this order is kept."""
    model = _small_deepmoji(num_classes=5)
    ids = _ids("pre")
    seen = {}

    def keep(name):
        def hook(module, args, output):
            seen[name] = (args, output)

        return hook

    for name in ("bi_lstm_0", "bi_lstm_1", "attlayer"):
        getattr(model, name).register_forward_hook(keep(name))
    with torch.no_grad():
        model(ids)
    feats = seen["attlayer"][0][0]
    expected = torch.cat(
        [seen["bi_lstm_1"][1][0], seen["bi_lstm_0"][1][0], torch.tanh(model.embedding(ids))], -1
    )
    assert torch.equal(feats, expected)
    assert torch.equal(seen["attlayer"][0][1], ids != 0)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_lstm_dropout_between_layers_like_torch(bidirectional, impl):
    """Training mode: dropout between layers only, the same draws as nn.LSTM's (with and
    without autograd recording, so both of "fast"'s loops are covered)."""
    ref, ours = _pair(3, bidirectional, True, torch.float64, impl=impl)
    ref.dropout = ours.dropout = 0.5
    x = torch.randn(3, T, IN, dtype=torch.float64)
    results = []
    for module in (ref, ours):
        module.train()
        torch.manual_seed(3)
        results.append(module(x))
    _assert_close(results[1][0], results[0][0], _tol(torch.float64), "train-mode output")
    torch.manual_seed(3)
    with torch.no_grad():
        no_grad = ours(x)
    _assert_close(no_grad[0], results[0][0], _tol(torch.float64), "train-mode no-grad output")
    ours.eval()
    ours_eval = ours(x)[0]
    ours.dropout = 0.0
    assert torch.equal(ours_eval, ours(x)[0])  # eval mode: no dropout
