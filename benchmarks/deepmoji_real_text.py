"""DeepMoji inference and training on real text, where most of a padded batch is padding: side
by side in one process, on the same weights and batches.

  masked      parity's DeepMoji, LSTM impl="masked" (every row through every step, masked)
  packed      the same model with LSTM impl="fast", the default: on CPU with the C++ extension
              the length-aware loop (backends.packed: each row runs its real steps only;
              Keras' answer, pre- or post-padded), in inference and training
  keras       Keras 3's DeepMoji (masked, every step): inference ``predict_on_batch``,
              training a tf.function GradientTape step
  compiled    ``parity.compile_model(packed)`` (torch.compile, one graph for every shape): the
              LSTMs run as parity's operators, length-aware inside, in inference and training
  torch_pack  the port with both BiLSTMs replaced by torch.nn.LSTM (sigmoid gates) on a
              PackedSequence: rows moved to post-padding, pack_padded_sequence, nn.LSTM,
              pad_packed_sequence, moved back; what torch's own length-aware path costs

A training step is forward + backward of sum(probabilities * fixed random weights), every
parameter's gradient, as in deepmoji_speed.py. Batches: SS-Youtube (all splits, file order)
tokenized with parity.text and DeepMoji's vocabulary, ``--maxlen`` 30, batches of ``--batch`` 32,
pre- and post-padded. Throughput in sequences/s over all batches, median of interleaved rounds;
the JSON also records the share of real tokens and the max difference of packed vs masked (and
vs Keras, inference).

    python benchmarks/deepmoji_real_text.py --out out/real_text [--threads 1] [--batches 16]
        [--modes inference training]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deepmoji_speed import SETTLE_S, _set_impl, _with_lstms, build_models, machine

import parity
from parity.ports import LSTM
from parity.text import encode, load_vocabulary

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "deepmoji_benchmarks"


class PackedTorchBiLSTM(nn.Module):
    """torch.nn.LSTM (sigmoid gates) with the port's weights, on a PackedSequence built from the
    mask: pre-padded rows are rolled to post-padding first (pack_padded_sequence assumes it)."""

    def __init__(self, port: LSTM) -> None:
        super().__init__()
        self.lstm = nn.LSTM(port.input_size, port.hidden_size, batch_first=True, bidirectional=True)
        self.lstm.load_state_dict(port.state_dict())

    def forward(self, x: Tensor, hx: object = None, *, mask: Tensor) -> tuple[Tensor, None]:
        steps = x.shape[1]
        lengths = mask.sum(1)
        start = mask.to(torch.uint8).argmax(1)
        t = torch.arange(steps)[None, :]
        src = (t + start[:, None]) % steps  # real steps first
        shifted = x.gather(1, src[..., None].expand_as(x))
        packed = pack_padded_sequence(
            shifted, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
        )
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=steps)
        back = (t - start[:, None]) % steps
        out = out.gather(1, back[..., None].expand_as(out))
        return out * mask[..., None], None


def batches(padding: str, maxlen: int, batch: int, count: int) -> list[np.ndarray]:
    records = [json.loads(line) for line in (DATA / "SS-Youtube.jsonl").open()]
    vocabulary = load_vocabulary(DATA / "vocabulary.json")
    ids = encode([r["text"] for r in records], vocabulary, maxlen, padding=padding)
    ids = ids[: batch * count]
    return [ids[i : i + batch].astype(np.int64) for i in range(0, len(ids), batch)]


Call = Callable[[np.ndarray], object]


def inference_calls(
    port: nn.Module, masked: nn.Module, compiled: nn.Module, torch_pack: nn.Module, keras_model
) -> dict:
    calls: dict[str, Call] = {
        "masked": lambda x: masked(torch.from_numpy(x)),
        "packed": lambda x: port(torch.from_numpy(x)),
        "compiled": lambda x: compiled(torch.from_numpy(x)),
    }
    if keras_model is not None:
        calls["keras"] = lambda x: keras_model.predict_on_batch(x.astype(np.int32))
    calls["torch_pack"] = lambda x: torch_pack(torch.from_numpy(x))
    return calls


def training_calls(
    port: nn.Module,
    masked: nn.Module,
    compiled: nn.Module,
    torch_pack: nn.Module,
    keras_model,
    batch: int,
) -> dict:
    """name -> one training step on a batch; the torch ones return every parameter's gradient
    (flattened, in parameter order) for the agreement check."""
    num_classes = port.config.num_classes
    cot = torch.randn(batch, num_classes, generator=torch.Generator().manual_seed(2))

    def torch_step(model: nn.Module) -> Call:
        def step(x: np.ndarray) -> Tensor:
            model.zero_grad(set_to_none=True)
            (model(torch.from_numpy(x)) * cot[: len(x)]).sum().backward()
            return torch.cat([p.grad.flatten() for p in model.parameters()])

        return step

    calls: dict[str, Call] = {
        "masked": torch_step(masked),
        "packed": torch_step(port),
        "compiled": torch_step(compiled),
    }
    if keras_model is not None:
        import tensorflow as tf

        variables = keras_model.trainable_variables
        cot_tf = tf.constant(cot.numpy())

        @tf.function(reduce_retracing=True)
        def keras_train(x: object) -> object:
            with tf.GradientTape() as tape:
                probs = keras_model(x, training=True)
                loss = tf.reduce_sum(probs * cot_tf[: tf.shape(probs)[0]])
            return tape.gradient(loss, variables)

        def run_keras(x: np.ndarray) -> object:
            grads = keras_train(x.astype(np.int32))
            return next(g.values if hasattr(g, "values") else g for g in grads).numpy()

        calls["keras"] = run_keras
    calls["torch_pack"] = torch_step(torch_pack)
    return calls


def measure(mode: str, calls: dict[str, Call], data: list[np.ndarray], repeats: int) -> dict:
    """One row: throughput of each call over all batches (interleaved rounds, each starting one
    call later than the one before), and how far packed is from the others (inference:
    outputs; training: every parameter's gradient, masked and compiled)."""
    grad_mode = torch.inference_mode() if mode == "inference" else contextlib.nullcontext()
    with grad_mode:
        if mode == "inference":
            outs = {k: np.concatenate([np.asarray(f(b)) for b in data]) for k, f in calls.items()}
            diffs = {
                f"packed_vs_{k}": float(np.abs(outs["packed"] - v).max())
                for k, v in outs.items()
                if k not in ("packed", "torch_pack")
            }
        else:
            grads = {k: [calls[k](b) for b in data] for k in ("packed", "masked", "compiled")}
            pairs = {k: zip(grads["packed"], grads[k], strict=True) for k in ("masked", "compiled")}
            diffs = {
                f"packed_vs_{k}_grad": max(float((a - b).abs().max()) for a, b in pair)
                for k, pair in pairs.items()
            }
            for f in calls.values():  # warm-up (Keras traces its step once)
                f(data[0])
        times: dict[str, list[float]] = {k: [] for k in calls}
        names = list(calls)
        for r in range(repeats):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                f = calls[name]
                time.sleep(SETTLE_S)
                t0 = time.perf_counter()
                for b in data:
                    f(b)
                times[name].append(time.perf_counter() - t0)
    n = sum(len(b) for b in data)
    seq_s = {k: n / statistics.median(v) for k, v in times.items()}
    return {
        "sequences": n,
        "seq_per_s": seq_s,
        "packed_speedup": {k: seq_s["packed"] / v for k, v in seq_s.items() if k != "packed"},
        "max_abs_diff": diffs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/real_text"))
    parser.add_argument("--maxlen", type=int, default=30)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument(
        "--modes", nargs="+", choices=("inference", "training"), default=["inference", "training"]
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    info = machine()
    info["loadavg_before"] = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        models, keras_model = build_models("model", "cpu", Path(tmp))
    port = models["port"]
    masked = _set_impl(copy.deepcopy(port), "masked")
    torch_pack = _with_lstms(port, PackedTorchBiLSTM, ["bi_lstm_0", "bi_lstm_1"])
    compiled = parity.compile_model(port)
    rows = []
    for mode in args.modes:
        if mode == "inference":
            calls = inference_calls(port, masked, compiled, torch_pack, keras_model)
        else:
            calls = training_calls(port, masked, compiled, torch_pack, keras_model, args.batch)
        for padding in ("pre", "post"):
            data = batches(padding, args.maxlen, args.batch, args.batches)
            row = {
                "mode": mode,
                "padding": padding,
                "maxlen": args.maxlen,
                "batch": args.batch,
                "real_token_share": float(np.mean([(b != 0).mean() for b in data])),
                **measure(mode, calls, data, args.repeats),
            }
            rows.append(row)
            print(json.dumps(row))
    info["loadavg_after"] = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"machine": info, "command": " ".join(sys.argv), "rows": rows}
    (args.out / "deepmoji_real_text.json").write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out / 'deepmoji_real_text.json'}")


if __name__ == "__main__":
    main()
