"""The one tolerance table, keyed by dtype, device and quantity (output, gradient).

A comparison passes when |ours - keras| <= atol + rtol * |keras| + scale_rtol * max|keras|
everywhere (numpy.allclose, plus a term for rounding that scales with the whole tensor).
Entries are the tightest bounds the pairs meet; a looser override must carry its reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float
    reason: str = ""
    #: Bound relative to the largest |keras| in the tensor (0: none).
    scale_rtol: float = 0.0


#: A weight's gradient entry is a sum over the batch and every position the weight touches
#: (a convolution kernel's: every output pixel), and a convolution's output a sum over its
#: window and channels; float32 rounding of such a sum grows with the largest terms, not with
#: the entry, so a small entry next to large ones can differ by more than rtol * itself.
#: Measured on Conv2DTranspose/Conv2D gradients: torch float32 vs float64 up to 5e-7 x
#: max|grad|, TensorFlow's float32 similar; on a SeparableConv2D output 1.7e-6 where the
#: tensor's largest value bounds it; both sides' float64 agree to 1e-12.
FLOAT32_SUMS = "float32 rounding of long gradient sums scales with the tensor's largest values"
FLOAT32_SUMS_SCALE = 1e-6

ADAPTIVE_STEPS = "Adam's normalised step amplifies float32 rounding of near-zero gradients"

#: (dtype, device type, quantity) -> tolerance. Quantities: "output" (model outputs and
#: attention weights), "gradient" (loss w.r.t. every weight and named activations).
TOLERANCES: dict[tuple[torch.dtype, str, str], Tolerance] = {
    (torch.float64, "cpu", "output"): Tolerance(1e-12, 1e-10),
    (torch.float64, "cpu", "gradient"): Tolerance(1e-12, 1e-10),
    (torch.float32, "cpu", "output"): Tolerance(1e-6, 1e-5, FLOAT32_SUMS, FLOAT32_SUMS_SCALE),
    (torch.float32, "cpu", "gradient"): Tolerance(1e-5, 1e-5, FLOAT32_SUMS, FLOAT32_SUMS_SCALE),
    (torch.float64, "cuda", "output"): Tolerance(1e-12, 1e-10),
    (torch.float64, "cuda", "gradient"): Tolerance(1e-12, 1e-10),
    (torch.float32, "cuda", "output"): Tolerance(1e-6, 1e-5, FLOAT32_SUMS, FLOAT32_SUMS_SCALE),
    (torch.float32, "cuda", "gradient"): Tolerance(1e-5, 1e-5, FLOAT32_SUMS, FLOAT32_SUMS_SCALE),
    # Weights after data-parallel fine-tuning vs one process on the same global batches
    # (tests/test_distributed.py): every step's gradient is summed over ranks in another order,
    # so each update moves by float32 rounding; measured 3e-8 after 72 Adam steps (tiny DeepMoji).
    (torch.float32, "cpu", "trained"): Tolerance(1e-6, 1e-5, "float32 summation order per step"),
    (torch.float32, "cuda", "trained"): Tolerance(1e-6, 1e-5, "float32 summation order per step"),
    (torch.float64, "cpu", "trained"): Tolerance(1e-12, 1e-10),
    (torch.float64, "cuda", "trained"): Tolerance(1e-12, 1e-10),
    # Weights after a few steps of an adaptive optimizer (Adam) in torch vs Keras: each step is
    # m / (sqrt(v) + epsilon), so the float32 rounding of a gradient entry near zero moves that
    # entry by a visible fraction of the learning rate; measured 4.1e-6 after 10 Adam steps at
    # learning rate 0.01 (tests/test_torch_training.py), SGD on the same models within "trained".
    (torch.float32, "cpu", "trained_adaptive"): Tolerance(1e-5, 1e-5, ADAPTIVE_STEPS),
    (torch.float32, "cuda", "trained_adaptive"): Tolerance(1e-5, 1e-5, ADAPTIVE_STEPS),
}


#: Report kind -> the quantity whose tolerance it uses. Intermediate activations are forward
#: values like the outputs (and are no larger in magnitude), so they get the output tolerance.
QUANTITY_OF_KIND: dict[str, str] = {
    "activation": "output",
    "output": "output",
    "gradient": "gradient",
}


def tolerance_for(dtype: torch.dtype, device: str | torch.device, quantity: str) -> Tolerance:
    key = (dtype, torch.device(device).type, quantity)
    if key not in TOLERANCES:
        raise KeyError(f"no tolerance for {key}; add one to parity.check.tolerances.TOLERANCES")
    return TOLERANCES[key]
