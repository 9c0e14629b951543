"""Tile sizes of the CUDA LSTM kernels (parity.ports.recurrent.backends.triton), timed on this GPU.

One DeepMoji BiLSTM layer (256 -> 2x512, hard_sigmoid_keras2, masks on), for each batch size
and each candidate (BLOCK_B, BLOCK_H, BLOCK_K, num_warps): inference and a training step
(forward + backward), median of CUDA-event timings, next to cuDNN's nn.LSTM (sigmoid gates) on
the same shapes. The defaults in backends.triton._blocks came from this table on an H100; rerun it
on another GPU before changing them.

    python benchmarks/lstm_cuda_blocks.py --out out/blocks.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from pathlib import Path

import torch
from torch import nn

from parity.ports import LSTM
from parity.ports.recurrent.backends import triton as lstm_triton

CANDIDATES = [  # (BLOCK_B, BLOCK_H, BLOCK_K, num_warps)
    (b, h, k, w)
    for b, h, k, w in itertools.product((16, 32, 64), (16, 32, 64), (32,), (2, 4, 8))
    if b * h <= 2048
]


def _time(fn, repeats: int) -> float:
    """Median ms of ``fn`` over ``repeats`` calls, after two warm-up calls."""
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32, 256])
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("out/lstm_cuda_blocks.json"))
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    port = LSTM(256, 512, bidirectional=True, gate_activation="hard_sigmoid_keras2").cuda()
    cudnn = nn.LSTM(256, 512, bidirectional=True).cuda()
    cudnn.load_state_dict(port.state_dict())
    default_blocks, rows = lstm_triton._blocks, []
    for batch in args.batches:
        x = torch.randn(batch, args.steps, 256, device="cuda").transpose(0, 1)
        mask = torch.ones(batch, args.steps, dtype=torch.bool, device="cuda")

        def infer(m=port, x=x, mask=mask):
            with torch.inference_mode():
                m(x, mask=mask)

        def train(m=port, x=x, mask=mask):
            m(x, mask=mask)[0].sum().backward()

        def cudnn_infer(x=x):
            with torch.inference_mode():
                cudnn(x)

        def cudnn_train(x=x):
            cudnn(x)[0].sum().backward()

        base = {"cudnn_infer_ms": _time(cudnn_infer, args.repeats)}
        base["cudnn_train_ms"] = _time(cudnn_train, args.repeats)
        base["default"] = list(default_blocks(batch, 512))
        print(batch, base, flush=True)
        for bb, bh, bk, warps in CANDIDATES:
            lstm_triton._blocks = lambda b, h, bb=bb, bh=bh: (bb, bh)
            lstm_triton.BLOCK_K, lstm_triton.NUM_WARPS = bk, warps
            try:
                row = {"batch": batch, "blocks": [bb, bh, bk, warps], **base}
                row["infer_ms"] = _time(infer, args.repeats)
                row["train_ms"] = _time(train, args.repeats)
            except Exception as exc:  # a config the compiler refuses
                print(bb, bh, bk, warps, "failed:", type(exc).__name__)
                continue
            rows.append(row)
        lstm_triton._blocks = default_blocks
        mine = [r for r in rows if r["batch"] == batch]
        for key in ("infer_ms", "train_ms"):
            best = min(mine, key=lambda r, key=key: r[key])
            print(f"B{batch} best {key}: {best['blocks']} {best[key]:.3f} ms", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
