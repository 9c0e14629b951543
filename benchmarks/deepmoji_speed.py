"""DeepMoji speed and memory, side by side in one process: the port, Keras 3, torch's fused LSTM.

Times, interleaved round by round on the same weights and the same inputs:

  port       parity's DeepMoji (hard_sigmoid_keras2 gates, Keras masking), LSTM impl="fast"
  reference  the same model with LSTM impl="reference" (the readable per-step loop)
  keras      Keras 3's DeepMoji (reference_keras.deepmoji, TensorFlow backend): inference is
             ``model.predict_on_batch`` (Keras' compiled tf.function predict step); the training
             step is a tf.function computing the loss's gradients with tf.GradientTape
  fused      the port with both BiLSTMs replaced by torch.nn.LSTM (sigmoid gates: oneDNN's fused
             RNN on CPU, cuDNN on CUDA): what the hardware does with this arithmetic
  naive      the port with a torchMoji-style loop: per direction, per step, both projections
  port_graph CUDA only: the port captured in a CUDA graph (torch.cuda.CUDAGraph for inference,
             torch.cuda.make_graphed_callables for training), so its per-step launches are
             replayed without Python; what a user gets who graphs a fixed-shape model (its
             memory is the graph's pool, taken at capture: its peak column reads 0)
  exported   the port through torch.export (parity.export.export_program, batch and length
             dynamic), run as ``ExportedProgram.module()``: what a user serving the exported
             program gets
  compiled   ``parity.compile_model(port)`` (torch.compile, Inductor, batch and length
             unbacked: one graph for every case, batch 1 included), compiled before timing
  onnxruntime  the port exported to ONNX (parity.export, the LSTMs as ONNX LSTM nodes with
             HardSigmoid gates), run by onnxruntime's CPU provider with torch's thread count;
             inference only, CPU only, skipped when onnx/onnxruntime are not installed

Each row also gives the floor: the BiLSTMs' matrix-product work (``lstm_flops``) at this
device's measured float32 GEMM rate (``gemm_flops_per_s``). Where a contender runs near its
floor, no implementation of the same arithmetic can be much faster.

The JSON records the machine, the load average before and after (other processes on the CPUs
distort the figures, torch's OpenMP loops more than TensorFlow's), and how far the port's outputs
are from each other's on one batch.

Scopes: ``model`` (full DeepMoji 50000/256/2x512/64 on token ids) and ``lstm`` (bi_lstm_0 alone,
256 -> 2x512, on float inputs). Inputs have no padding, so the fused and naive LSTMs (which take
no mask) compute what the port computes; the port still runs its mask path (all steps real).
A training step is forward + backward of sum(probabilities * fixed random weights), gradients
of every parameter (optimizer update not included, on either side).

    python benchmarks/deepmoji_speed.py --out out/speed                # all cases: long
    python benchmarks/deepmoji_speed.py --out out/speed --quick        # B 1, 32 at T 30
    python benchmarks/deepmoji_speed.py --threads 1 --cases 32x30 256x30 --modes inference

On a machine shared with other work, ``--threads 1`` gives steadier ratios: with two OpenMP
threads per library and other processes on the cores, barrier waits dominate small operations.

Writes OUT/deepmoji_speed.json and OUT/deepmoji_speed.png and prints a table. Ratios are
throughput ratios (port sequences/s over the other's), from medians of interleaved rounds: on a
shared machine absolute times drift, so the ratios of one run are the figures to quote.
Peak memory is measured in an untimed call of its own (the sampling would slow the timed ones):
on CPU the growth of the process' resident set during the call above its size just before
(after malloc_trim), sampled every millisecond; on CUDA, max_memory_allocated above the memory
allocated before the call. Keras is skipped when not installed (e.g. GPU machines).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from parity.arch.deepmoji import DeepMoji, DeepMojiConfig
from parity.ports import LSTM
from parity.ports.activations import get_activation

sys.path.insert(0, str(Path(__file__).resolve().parent))
from background import background_load

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

FULL = DeepMojiConfig()  # 50000 / 256 / 2x512 / 64, hard_sigmoid_keras2 gates
BATCHES, LENGTHS = (1, 32, 256), (30, 128)
QUICK_CASES = [(1, 30), (32, 30)]
MODES = ("inference", "training")
IMPLS = (
    "port",
    "port_graph",
    "exported",
    "compiled",
    "onnxruntime",
    "reference",
    "keras",
    "fused",
    "naive",
)
#: Contenders built on first use per scope and device (tracing and compiling take a while).
SERVED = ("exported", "compiled", "onnxruntime")
#: Pause before each timed call: TensorFlow's and torch's worker threads spin for a while after
#: a call; on a 2-core machine, one library's spinning threads stall the other's next call.
SETTLE_S = 0.1


# --- the torch contenders ---------------------------------------------------------------------


class FusedBiLSTM(nn.Module):
    """torch.nn.LSTM (sigmoid gates) with the port's weights; ignores the mask (no padding)."""

    def __init__(self, port: LSTM) -> None:
        super().__init__()
        self.lstm = nn.LSTM(
            port.input_size, port.hidden_size, batch_first=True, bidirectional=True
        ).to(next(port.parameters()).device)
        self.lstm.load_state_dict(port.state_dict())

    def forward(self, x: Tensor, hx: object = None, *, mask: Tensor | None = None) -> object:
        return self.lstm(x)


class NaiveBiLSTM(nn.Module):
    """A torchMoji-style loop: each direction on its own, both projections inside the loop."""

    def __init__(self, port: LSTM) -> None:
        super().__init__()
        self.port = port  # holds the parameters
        self.gate = get_activation(port.gate_activation)

    def forward(self, x: Tensor, hx: object = None, *, mask: Tensor | None = None) -> object:
        outputs = []
        p, steps = self.port, x.shape[1]
        for suffix in ("", "_reverse"):
            w_ih, w_hh = getattr(p, f"weight_ih_l0{suffix}"), getattr(p, f"weight_hh_l0{suffix}")
            b = getattr(p, f"bias_ih_l0{suffix}") + getattr(p, f"bias_hh_l0{suffix}")
            h = c = x.new_zeros(x.shape[0], p.hidden_size)
            out: list[Tensor] = [x] * steps
            for t in range(steps) if not suffix else reversed(range(steps)):
                z = nn.functional.linear(x[:, t], w_ih, b) + nn.functional.linear(h, w_hh)
                i, f, g, o = z.chunk(4, dim=1)
                c = self.gate(f) * c + self.gate(i) * torch.tanh(g)
                h = self.gate(o) * torch.tanh(c)
                out[t] = h
            outputs.append(torch.stack(out, dim=1))
        return torch.cat(outputs, dim=-1), None


def _with_lstms(model: nn.Module, wrap: Callable[[LSTM], nn.Module], names: list[str]) -> nn.Module:
    twin = copy.deepcopy(model)
    for name in names:
        setattr(twin, name, wrap(getattr(twin, name)))
    return twin


class BiLSTMOnly(nn.Module):
    """Scope "lstm": bi_lstm_0 alone, (B, T, 256) -> (B, T, 1024)."""

    def __init__(self, lstm: nn.Module) -> None:
        super().__init__()
        self.bi_lstm_0 = lstm

    def forward(self, x: Tensor) -> Tensor:
        mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        return self.bi_lstm_0(x, mask=mask)[0]


def _set_impl(model: nn.Module, impl: str) -> nn.Module:
    for m in model.modules():
        if isinstance(m, LSTM):
            m.impl = impl
    return model


def _example(scope: str, device: str) -> Tensor:
    """What the served forms are traced with: both kinds of padding, so no mask is special."""
    x = _inputs(scope, 4, 12, device)
    if scope == "model":
        x[0, :5] = 0  # pre-padded
        x[1, 8:] = 0  # post-padded
    return x


class Served:
    """The port as served: exported program, compiled module, ONNX session; built lazily (each
    takes tens of seconds), once per scope and device, and reused by every case."""

    def __init__(self, port: nn.Module, scope: str, device: str, tmp: Path) -> None:
        self.port, self.scope, self.device, self.tmp = port, scope, device, tmp
        self._built: dict[str, object] = {}

    def get(self, name: str) -> object | None:
        """The contender, or None (with the reason printed) where it does not apply."""
        if name not in self._built:
            try:
                self._built[name] = getattr(self, f"_build_{name}")()
            except Exception as exc:  # a benchmark column, not a product path
                print(f"{name} skipped: {type(exc).__name__}: {str(exc).splitlines()[0]}")
                self._built[name] = None
        return self._built[name]

    def _build_exported(self) -> nn.Module:
        from parity.export import export_program

        return export_program(self.port, (_example(self.scope, self.device),)).module()

    def _build_compiled(self) -> nn.Module:
        import parity

        return parity.compile_model(self.port)

    def _build_onnxruntime(self) -> object:
        if self.device != "cpu":
            raise RuntimeError("CPU only here")
        import onnxruntime

        from parity.export import export

        path = self.tmp / f"deepmoji_{self.scope}.onnx"
        export(self.port, path, format="onnx", example_inputs=(_example(self.scope, "cpu"),))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x})[0]


# --- Keras -------------------------------------------------------------------------------------


def _keras_available() -> bool:
    try:
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
    except ImportError:
        return False
    return True


def build_models(scope: str, device: str, tmp: Path) -> tuple[dict[str, nn.Module], object]:
    """(torch models by name, Keras model or None), all with the same weights.

    With Keras installed, the Keras model is built, saved as a .keras file and converted with
    parity.load_keras: the port is what a user gets from a full-size Keras file.
    """
    keras_model = None
    if _keras_available():
        import keras

        import parity
        from reference_keras import deepmoji as keras_deepmoji

        keras.utils.set_random_seed(0)
        full = keras_deepmoji.build(
            FULL.vocab_size, FULL.embedding_dim, FULL.hidden_size, FULL.num_classes
        )
        path = tmp / "deepmoji_full.keras"
        full.save(path)
        port = parity.load_keras(path, arch="deepmoji", hard_sigmoid="keras2")
        keras_model = full
        if scope == "lstm":
            inputs = keras.Input((None, FULL.embedding_dim))
            layer = full.get_layer("bi_lstm_0")
            keras_model = keras.Model(inputs, layer(inputs))
    else:
        torch.manual_seed(0)
        port = DeepMoji(FULL)
    port = port.eval().to(device)
    lstms = ["bi_lstm_0", "bi_lstm_1"]
    if scope == "lstm":
        port, lstms = BiLSTMOnly(port.bi_lstm_0), ["bi_lstm_0"]
    models = {
        "port": _set_impl(port, "fast"),
        "reference": _set_impl(copy.deepcopy(port), "reference"),
        "fused": _with_lstms(port, FusedBiLSTM, lstms),
        "naive": _with_lstms(port, NaiveBiLSTM, lstms),
    }
    return models, keras_model


# --- measuring ---------------------------------------------------------------------------------


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


_LIBC = None
with contextlib.suppress(OSError):
    _LIBC = ctypes.CDLL("libc.so.6")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Peak growth during a call: CPU resident set (sampled), or CUDA max_memory_allocated."""

    def __init__(self, device: str) -> None:
        self.device, self.peak = device, 0

    def __enter__(self) -> PeakMemory:
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
            return self
        if _LIBC is not None:
            _LIBC.malloc_trim(0)  # give freed heap back, so growth is this call's
        self.base = self.peak_rss = _rss_bytes()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while not self.stop.wait(0.001):
            self.peak_rss = max(self.peak_rss, _rss_bytes())

    def __exit__(self, *exc: object) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.base
            return
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak_rss, _rss_bytes()) - self.base


@dataclass
class Case:
    scope: str
    mode: str
    batch: int
    steps: int
    times: dict[str, list[float]] = field(default_factory=dict)
    peak_bytes: dict[str, int] = field(default_factory=dict)

    def row(self) -> dict[str, object]:
        med = {k: statistics.median(v) for k, v in self.times.items()}
        row: dict[str, object] = {
            "scope": self.scope,
            "mode": self.mode,
            "batch": self.batch,
            "steps": self.steps,
            "rounds": len(next(iter(self.times.values()))),
            "ms": {k: 1e3 * v for k, v in med.items()},
            "seq_per_s": {k: self.batch / v for k, v in med.items()},
            "peak_mb": {k: v / 2**20 for k, v in self.peak_bytes.items()},
        }
        if "port" in med:  # port throughput over the other's (> 1: the port is faster)
            row["port_speedup"] = {k: v / med["port"] for k, v in med.items() if k != "port"}
        return row


def _step_fns(
    scope: str,
    mode: str,
    models: dict[str, nn.Module],
    keras_model: object,
    inputs: Tensor,
    device: str,
    served: Served | None = None,
) -> dict[str, tuple[Callable[[], None], Callable[[], object]]]:
    """name -> (untimed preparation, the timed call), for one case."""
    torch.manual_seed(1)
    out_shape = (inputs.shape[0], FULL.num_classes) if scope == "model" else None
    fns: dict[str, tuple[Callable[[], None], Callable[[], object]]] = {}
    nothing: Callable[[], None] = lambda: None  # noqa: E731
    for name, model in models.items():
        if mode == "inference":

            def infer(model: nn.Module = model) -> object:
                with torch.inference_mode():
                    out = model(inputs)
                _sync(device)
                return out

            fns[name] = (nothing, infer)
        else:
            cot = None

            def train(model: nn.Module = model) -> object:
                nonlocal cot
                out = model(inputs)
                if cot is None:
                    cot = torch.randn(out.shape, generator=torch.Generator().manual_seed(2))
                    cot = cot.to(out.device)
                (out * cot).sum().backward()
                _sync(device)
                return out

            def zero(model: nn.Module = model) -> None:
                model.zero_grad(set_to_none=True)

            fns[name] = (zero, train)
    if device == "cuda":
        graphed = _graphed(mode, models["port"], inputs)
        if graphed is not None:
            fns["port_graph"] = graphed
    if served is not None:
        fns.update(_served_fns(mode, served, inputs, device))
    if keras_model is not None and device == "cpu":
        import tensorflow as tf

        x_np = inputs.cpu().numpy().astype(np.int32 if scope == "model" else np.float32)
        if mode == "inference":
            fns["keras"] = (nothing, lambda: keras_model.predict_on_batch(x_np))
        else:
            variables = keras_model.trainable_variables
            out_shape = keras_model.output_shape
            shape = (inputs.shape[0], *out_shape[1:])
            shape = tuple(inputs.shape[i] if d is None else d for i, d in enumerate(shape))
            cot_tf = tf.constant(np.random.default_rng(2).normal(size=shape).astype(np.float32))

            @tf.function(reduce_retracing=True)
            def keras_train(x: object) -> object:
                with tf.GradientTape() as tape:
                    loss = tf.reduce_sum(keras_model(x, training=True) * cot_tf)
                return tape.gradient(loss, variables)

            def run_keras() -> object:
                grads = keras_train(x_np)
                return next(g.values if hasattr(g, "values") else g for g in grads).numpy()

            fns["keras"] = (nothing, run_keras)
    return {k: fns[k] for k in IMPLS if k in fns}


def _served_fns(
    mode: str, served: Served, inputs: Tensor, device: str
) -> dict[str, tuple[Callable[[], None], Callable[[], object]]]:
    """The served forms' calls: inference for all three, a training step for the exported
    program and the compiled module (their backward runs parity::keras_lstm_backward)."""
    fns: dict[str, tuple[Callable[[], None], Callable[[], object]]] = {}
    nothing: Callable[[], None] = lambda: None  # noqa: E731
    for name in SERVED:
        if mode == "training" and name == "onnxruntime":
            continue
        run = served.get(name)
        if run is None:
            continue
        if name == "onnxruntime":
            x_np = inputs.cpu().numpy()
            fns[name] = (nothing, lambda run=run, x_np=x_np: run(x_np))
        elif mode == "inference":

            def infer(run: Callable = run) -> object:
                with torch.inference_mode():
                    out = run(inputs)
                _sync(device)
                return out

            fns[name] = (nothing, infer)
        else:
            cot = torch.randn(
                served.port(inputs).shape, generator=torch.Generator().manual_seed(2)
            ).to(inputs.device)

            def train(run: Callable = run, cot: Tensor = cot) -> object:
                out = run(inputs)
                (out * cot).sum().backward()
                _sync(device)
                return out

            def zero(run: nn.Module = run) -> None:
                run.zero_grad(set_to_none=True)

            fns[name] = (zero, train)
    return fns


def _graphed(
    mode: str, model: nn.Module, inputs: Tensor
) -> tuple[Callable[[], None], Callable[[], object]] | None:
    """The port's call captured in a CUDA graph (None, with the reason printed, if it fails)."""
    try:
        if mode == "inference":
            graph = torch.cuda.CUDAGraph()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side), torch.inference_mode():
                for _ in range(2):  # warm-up: Triton compiles, caches fill
                    model(inputs)
            torch.cuda.current_stream().wait_stream(side)
            with torch.cuda.graph(graph), torch.inference_mode():
                static_out = model(inputs)

            def replay() -> object:
                graph.replay()
                torch.cuda.synchronize()
                return static_out

            return (lambda: None), replay
        twin = copy.deepcopy(model)  # eval, dropout off, as the eager port is timed
        graphed = torch.cuda.make_graphed_callables(twin, (inputs,))
        cot = torch.randn(graphed(inputs).shape, generator=torch.Generator().manual_seed(2)).to(
            inputs.device
        )

        def train() -> object:
            out = graphed(inputs)
            (out * cot).sum().backward()
            torch.cuda.synchronize()
            return out

        return (lambda: twin.zero_grad(set_to_none=False)), train
    except Exception as exc:  # a benchmark column, not a product path
        print(f"port_graph ({mode}) skipped: {type(exc).__name__}: {exc}")
        return None


def measure(
    case: Case,
    fns: dict[str, tuple[Callable[[], None], Callable[[], object]]],
    device: str,
    repeats: int,
    budget_s: float,
    load: int = 0,
) -> None:
    """Warm up each, measure each one's peak memory in one more untimed call (the sampling
    thread would take CPU time from the timed call), then interleaved rounds, each starting one
    contender later than the one before, with ``load`` busy processes running. Rounds stop
    after ``repeats``, or after 3 once ``budget_s`` is spent."""
    for prep, fn in fns.values():
        prep()
        fn()
    for name, (prep, fn) in fns.items():
        prep()
        with PeakMemory(device) as mem:
            fn()
        case.peak_bytes[name] = mem.peak
    case.times = {name: [] for name in fns}
    names = list(fns)
    with background_load(load):
        _rounds(case, fns, names, repeats, budget_s)


def _rounds(
    case: Case,
    fns: dict[str, tuple[Callable[[], None], Callable[[], object]]],
    names: list[str],
    repeats: int,
    budget_s: float,
) -> None:
    start = time.perf_counter()
    for r in range(repeats):
        # Each round starts one contender later: none always follows the same one.
        for name in names[r % len(names) :] + names[: r % len(names)]:
            prep, fn = fns[name]
            prep()
            time.sleep(SETTLE_S)
            t0 = time.perf_counter()
            fn()
            case.times[name].append(time.perf_counter() - t0)
        if r >= 2 and time.perf_counter() - start > budget_s:
            break


# --- checks, report ----------------------------------------------------------------------------


def agreement(
    models: dict[str, nn.Module],
    keras_model: object,
    scope: str,
    served: Served | None = None,
) -> dict[str, float]:
    """Max abs differences on one batch: the port against Keras, the reference loop, the naive
    loop (same gates) and the served forms; fused has sigmoid gates, so it is compared with a
    sigmoid port."""
    device = next(models["port"].parameters()).device
    x = _inputs(scope, 8, 30, device)
    diffs = {}
    with torch.inference_mode():
        port = models["port"](x)
        for name in ("reference", "naive"):
            diffs[name] = (models[name](x) - port).abs().max().item()
        padded = _example(scope, device)  # the served forms must mask as the port does
        port_padded = models["port"](padded).cpu().numpy()
        for name in SERVED if served is not None else ():
            run = served.get(name)
            if run is not None:
                out = run(padded.cpu().numpy() if name == "onnxruntime" else padded)
                diffs[name] = float(np.abs(np.asarray(out) - port_padded).max())
        sigmoid_port = copy.deepcopy(models["port"])
        for m in sigmoid_port.modules():
            if isinstance(m, LSTM):
                m.gate_activation = "sigmoid"  # an ActivationSlot: swaps the function too
        diffs["fused_vs_sigmoid_port"] = (models["fused"](x) - sigmoid_port(x)).abs().max().item()
    if keras_model is not None:
        x_np = x.cpu().numpy().astype(np.int32 if scope == "model" else np.float32)
        keras_out = keras_model.predict_on_batch(x_np)
        diffs["keras"] = float(np.abs(keras_out - port.cpu().numpy()).max())
    return diffs


def _inputs(scope: str, batch: int, steps: int, device: str) -> Tensor:
    g = torch.Generator().manual_seed(batch * 1000 + steps)
    if scope == "model":  # real ids only: no padding
        return torch.randint(1, FULL.vocab_size, (batch, steps), generator=g).to(device)
    return torch.randn(batch, steps, FULL.embedding_dim, generator=g).tanh().to(device)


def machine() -> dict[str, object]:
    info: dict[str, object] = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
    }
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
        info["cpu"] = fields.get("Model name", "").strip() or info["cpu"]
        info["cpus"] = fields.get("CPU(s)", "").strip()
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    if _keras_available():
        import keras
        import tensorflow as tf

        info["keras"], info["tensorflow"] = keras.__version__, tf.__version__
    return info


def print_table(rows: list[dict]) -> None:
    names = [n for n in IMPLS if any(n in r["seq_per_s"] for r in rows)]
    head = f"{'scope':<6}{'device':<7}{'mode':<10}{'B':>4}{'T':>5}" + "".join(
        f"{n + ' seq/s':>18}" for n in names
    )
    head += f"{'floor seq/s':>14}"
    head += "".join(f"{'vs ' + n:>15}" for n in names if n != "port")
    head += "".join(f"{n + ' MB':>15}" for n in names)
    print(head)
    for r in rows:
        line = f"{r['scope']:<6}{r['device']:<7}{r['mode']:<10}{r['batch']:>4}{r['steps']:>5}"
        line += "".join(f"{r['seq_per_s'].get(n, float('nan')):>18.1f}" for n in names)
        line += f"{r.get('floor_seq_per_s', float('nan')):>14.1f}"
        line += "".join(
            f"{r['port_speedup'].get(n, float('nan')):>14.2f}x" for n in names if n != "port"
        )
        line += "".join(f"{r['peak_mb'].get(n, float('nan')):>15.0f}" for n in names)
        print(line)


#: A training step's GEMM work over the forward's: each forward GEMM has two in the backward.
TRAIN_FLOP_FACTOR = 3


def lstm_flops(scope: str, mode: str, batch: int, steps: int) -> float:
    """Floating-point operations of the BiLSTMs' matrix products (input and recurrent), the
    bulk of DeepMoji's arithmetic: 2 per multiply-add, both directions, every token."""
    gates = 4 * FULL.hidden_size
    inputs = [FULL.embedding_dim] + ([2 * FULL.hidden_size] if scope == "model" else [])
    per_token = sum(2 * 2 * (n + FULL.hidden_size) * gates for n in inputs)
    return per_token * batch * steps * (TRAIN_FLOP_FACTOR if mode == "training" else 1)


def gemm_flops_per_s(device: str) -> float:
    """This device's float32 matrix-product rate, measured: the best of several products shaped
    like the LSTM's (input projections, a batch-32 recurrent step) through torch.mm and, on CPU,
    oneDNN's packed-weight linear (what the port and torch's fused LSTM use, ~1.2x mm's rate
    here). With lstm_flops it gives the floor: no implementation of this arithmetic, Keras' or
    torch's, runs much faster."""
    best = 0.0
    for m, k, n in ((4096, 1024, 2048), (4096, 512, 2048), (32, 512, 2048)):
        a = torch.randn(m, k, device=device)
        w = torch.randn(n, k, device=device)
        calls: list[Callable[[], object]] = [lambda a=a, w=w: a @ w.t()]
        if device == "cpu" and hasattr(torch.ops.mkldnn, "_linear_pointwise"):
            with contextlib.suppress(RuntimeError):
                packed = torch.ops.mkldnn._reorder_linear_weight(w)
                calls.append(
                    lambda a=a, p=packed: torch.ops.mkldnn._linear_pointwise(
                        a, p, None, "none", [], ""
                    )
                )
        repeats = max(3, int(2e9 // (2 * m * k * n)))  # ~2 GFLOP per timing
        for call in calls:
            for _ in range(3):
                call()
                _sync(device)
                t0 = time.perf_counter()
                for _ in range(repeats):
                    call()
                _sync(device)
                best = max(best, repeats * 2 * m * k * n / (time.perf_counter() - t0))
    return best


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({(r["scope"], r["device"], r["mode"]) for r in rows})
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 4), squeeze=False)
    for ax, (scope, device, mode) in zip(axes[0], groups, strict=True):
        sub = [r for r in rows if (r["scope"], r["device"], r["mode"]) == (scope, device, mode)]
        names = [n for n in IMPLS if any(n in r["seq_per_s"] for r in sub)]
        width = 0.8 / len(names)
        for k, name in enumerate(names):
            values = [r["seq_per_s"].get(name, 0.0) for r in sub]
            x = np.arange(len(sub)) + k * width
            ax.bar(x, values, width, label=name, color=f"C{IMPLS.index(name)}")  # fixed colours
        ax.set_xticks(np.arange(len(sub)) + 0.4 - width / 2)
        ax.set_xticklabels([f"B{r['batch']} T{r['steps']}" for r in sub])
        ax.set_yscale("log")
        ax.set_ylabel("sequences / s")
        ax.set_title(f"DeepMoji {scope}, {device}, {mode}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/speed"))
    parser.add_argument("--quick", action="store_true", help="B 1 and 32, T 30 only")
    parser.add_argument(
        "--cases", nargs="+", default=None, help="BxT cases, e.g. 1x30 32x128 (default: all six)"
    )
    parser.add_argument("--scope", choices=("model", "lstm", "both"), default="model")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--repeats", type=int, default=7, help="rounds per case, at most")
    parser.add_argument("--budget", type=float, default=20.0, help="s per case after 3 rounds")
    parser.add_argument("--cpu-only", action="store_true", help="same as --devices cpu")
    parser.add_argument(
        "--devices",
        nargs="+",
        choices=("cpu", "cuda"),
        default=None,
        help="devices to time (default: cpu, and cuda when present)",
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="CPU threads for torch and TensorFlow (0: default)"
    )
    parser.add_argument(
        "--background-load",
        type=int,
        default=0,
        metavar="K",
        help="run K CPU-bound processes at normal priority during the timed rounds (a machine "
        "shared with other work)",
    )
    parser.add_argument(
        "--no-served",
        dest="served",
        action="store_false",
        help="skip the exported / compiled / onnxruntime columns (their tracing and compiling "
        "take minutes on a small CPU)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        if _keras_available():
            import tensorflow as tf

            tf.config.threading.set_intra_op_parallelism_threads(args.threads)
            tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and not args.cpu_only else [])
    if args.devices:
        devices = [d for d in args.devices if d == "cpu" or torch.cuda.is_available()]
    cases = QUICK_CASES if args.quick else [(b, t) for t in LENGTHS for b in BATCHES]
    if args.cases:
        cases = [tuple(int(n) for n in case.split("x")) for case in args.cases]
    scopes = ["model", "lstm"] if args.scope == "both" else [args.scope]
    info = machine()
    info["loadavg_before"] = os.getloadavg()
    info["background_load"] = args.background_load
    print(json.dumps(info))
    rows, checks = [], {}
    rates = {device: gemm_flops_per_s(device) for device in devices}
    info["gemm_gflops"] = {device: rate / 1e9 for device, rate in rates.items()}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for scope in scopes:
            for device in devices:
                models, keras_model = build_models(scope, device, Path(tmp))
                served = Served(models["port"], scope, device, Path(tmp)) if args.served else None
                checks[f"{scope}/{device}"] = agreement(models, keras_model, scope, served)
                print(f"{scope}/{device} max abs diff vs port:", checks[f"{scope}/{device}"])
                for mode in args.modes:
                    for batch, steps in cases:
                        case = Case(scope, mode, batch, steps)
                        inputs = _inputs(scope, batch, steps, device)
                        fns = _step_fns(scope, mode, models, keras_model, inputs, device, served)
                        measure(case, fns, device, args.repeats, args.budget, args.background_load)
                        floor_s = lstm_flops(scope, mode, batch, steps) / rates[device]
                        rows.append(
                            {
                                **case.row(),
                                "device": device,
                                "background_load": args.background_load,
                                "floor_ms": 1e3 * floor_s,
                                "floor_seq_per_s": batch / floor_s,
                            }
                        )
                        print_table(rows[-1:])
    info["loadavg_after"] = os.getloadavg()
    print(f"\n{len(rows)} cases in {time.perf_counter() - started:.0f} s\n")
    busy = max(info["loadavg_before"][0], info["loadavg_after"][0])
    if not args.background_load and busy > (os.cpu_count() or 1):
        print("warning: other processes kept the CPUs busy (load average above the core count);")
        print("torch's OpenMP threads suffer more from that than TensorFlow's: rerun when idle")
    print_table(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"machine": info, "command": " ".join(sys.argv), "agreement": checks}
    result["rows"] = rows
    (args.out / "deepmoji_speed.json").write_text(json.dumps(result, indent=1))
    plot(rows, args.out / "deepmoji_speed.png")
    print(f"wrote {args.out / 'deepmoji_speed.json'} and {args.out / 'deepmoji_speed.png'}")


if __name__ == "__main__":
    main()
