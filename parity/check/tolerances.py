"""The one tolerance table, keyed by dtype, device and quantity (output, gradient).

A comparison passes when |ours - keras| <= atol + rtol * |keras| everywhere (numpy.allclose).
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


#: (dtype, device type, quantity) -> tolerance. Quantities: "output" (model outputs and
#: attention weights), "gradient" (loss w.r.t. every weight and named activations).
TOLERANCES: dict[tuple[torch.dtype, str, str], Tolerance] = {
    (torch.float64, "cpu", "output"): Tolerance(1e-12, 1e-10),
    (torch.float64, "cpu", "gradient"): Tolerance(1e-12, 1e-10),
    (torch.float32, "cpu", "output"): Tolerance(1e-6, 1e-5),
    (torch.float32, "cpu", "gradient"): Tolerance(1e-5, 1e-5),
    (torch.float64, "cuda", "output"): Tolerance(1e-12, 1e-10),
    (torch.float64, "cuda", "gradient"): Tolerance(1e-12, 1e-10),
    (torch.float32, "cuda", "output"): Tolerance(1e-6, 1e-5),
    (torch.float32, "cuda", "gradient"): Tolerance(1e-5, 1e-5),
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
