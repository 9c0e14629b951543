"""Bidirectional hard-sigmoid LSTM speed at DeepMoji's sizes, side by side in one process.

Times, interleaved on the same weights and inputs:
  port       parity.layers.LSTM (hard_sigmoid_keras2 gates, Keras mask)
  naive      a torchMoji-style per-step loop: per direction, per step, both projections
  nn.LSTM    torch's fused LSTM with sigmoid gates (what the hardware does with this arithmetic)

    python benchmarks/lstm_speed.py [--json out/lstm_speed.json] [--repeats 7]

Reports the median time per batch, sequences/s and the ratios to the port. Absolute times on a
shared machine drift; the ratios from one run are the figures to quote.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from parity.layers import LSTM
from parity.layers.activations import get_activation

INPUT, HIDDEN = 256, 512  # DeepMoji's bi_lstm_0
CASES = [(1, 30), (32, 30), (32, 128), (256, 30)]


def naive_bidirectional(lstm: LSTM, x: torch.Tensor) -> torch.Tensor:
    """One step at a time, each direction on its own, projections inside the loop."""
    gate = get_activation("hard_sigmoid_keras2")
    outputs = []
    for suffix in ("", "_reverse"):
        w_ih, w_hh = getattr(lstm, f"weight_ih_l0{suffix}"), getattr(lstm, f"weight_hh_l0{suffix}")
        b = getattr(lstm, f"bias_ih_l0{suffix}") + getattr(lstm, f"bias_hh_l0{suffix}")
        h = x.new_zeros(x.shape[0], HIDDEN)
        c = x.new_zeros(x.shape[0], HIDDEN)
        steps = range(x.shape[1]) if not suffix else reversed(range(x.shape[1]))
        out = [None] * x.shape[1]
        for t in steps:
            z = nn.functional.linear(x[:, t], w_ih, b) + nn.functional.linear(h, w_hh)
            i, f, g, o = z.chunk(4, dim=1)
            c = gate(f) * c + gate(i) * torch.tanh(g)
            h = gate(o) * torch.tanh(c)
            out[t] = h
        outputs.append(torch.stack(out, dim=1))
    return torch.cat(outputs, dim=-1)


def median_seconds(fn: Callable[[], object], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    port = LSTM(
        INPUT, HIDDEN, batch_first=True, bidirectional=True, gate_activation="hard_sigmoid_keras2"
    ).eval()
    fused = nn.LSTM(INPUT, HIDDEN, batch_first=True, bidirectional=True).eval()
    fused.load_state_dict(port.state_dict())
    with torch.inference_mode():  # the three compute the same thing (up to the gates)
        x = torch.randn(4, 9, INPUT)
        assert torch.allclose(port(x)[0], naive_bidirectional(port, x), atol=1e-5)
        sigmoid_port = LSTM(INPUT, HIDDEN, batch_first=True, bidirectional=True).eval()
        sigmoid_port.load_state_dict(port.state_dict())
        assert torch.allclose(sigmoid_port(x)[0], fused(x)[0], atol=1e-5)
    results = []
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads; median of {args.repeats}, interleaved"
    )
    print(
        f"{'batch':>5} {'T':>4} {'port ms':>9} {'naive ms':>9} {'nn.LSTM ms':>10} "
        f"{'port seq/s':>10} {'naive/port':>10} {'nn.LSTM/port':>12}"
    )
    with torch.inference_mode():
        for batch, steps in CASES:
            x = torch.randn(batch, steps, INPUT)
            mask = torch.ones(batch, steps, dtype=torch.bool)
            runs = {
                "port": lambda x=x, mask=mask: port(x, mask=mask),
                "naive": lambda x=x: naive_bidirectional(port, x),
                "nn.LSTM": lambda x=x: fused(x),
            }
            for fn in runs.values():
                fn()  # warm-up
            times: dict[str, list[float]] = {name: [] for name in runs}
            for _ in range(args.repeats):
                for name, fn in runs.items():
                    times[name] += median_seconds(fn, 1)
            med = {name: statistics.median(t) for name, t in times.items()}
            row = {
                "batch": batch,
                "steps": steps,
                **{f"{name}_ms": 1e3 * t for name, t in med.items()},
                "port_seq_per_s": batch / med["port"],
                "naive_over_port": med["naive"] / med["port"],
                "fused_over_port": med["nn.LSTM"] / med["port"],
            }
            results.append(row)
            print(
                f"{batch:>5} {steps:>4} {row['port_ms']:>9.1f} {row['naive_ms']:>9.1f} "
                f"{row['nn.LSTM_ms']:>10.1f} {row['port_seq_per_s']:>10.0f} "
                f"{row['naive_over_port']:>10.2f} {row['fused_over_port']:>12.2f}"
            )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"torch": torch.__version__, "rows": results}, indent=1))


if __name__ == "__main__":
    main()
