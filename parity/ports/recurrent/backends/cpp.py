"""The LSTM's loops in C++ (csrc/lstm_cpu.cpp), for CPU float32: inference, and training
(``run_layer_autograd``: a forward that keeps the gates, a backward in C++).

Why: the Python fast loop (``backends.python.run_layer``) dispatches about eight ATen ops per
time step and direction; at small batches that dispatch, and at mid-size batches its separate
elementwise passes, cost more than the arithmetic. The C++ op runs one layer's whole time loop:
per step and direction one GEMM (the same oneDNN-packed or dense weights the Python loop uses)
and one fused, vectorized pass (gate tails, cell, hidden state, Keras masking, output). With two
directions and at most two threads, the directions run on one thread each, at every batch size:
each direction's whole time loop is one task, so the threads meet once per layer, never per
step, and each thread stays on the CPU it started the layer on (``pin_threads``). On two cores
that beats running them one after the other with two-threaded GEMMs. On a machine that other
processes share, the OS would otherwise often move both threads onto one CPU and leave the
other to the busy process, halving the layer's speed; pinned, the loop keeps its share of the
CPUs (benchmarks/deepmoji_speed.py ``--background-load`` measures it). A loop that split each
step's units among the threads was faster on an idle Xeon at batch 1, but its two barriers per
step stalled whenever one thread was descheduled, and it lost at every batch size on an AMD
EPYC; it also rounded differently.

The extension is built when the package is set up (``make setup`` runs ``python -m
parity.ports.recurrent.backends.build``): the library goes beside this module (``_ext/``), named by
a key of the source, the flags, torch's and Python's versions and the CPU capability, and the first
forward only loads it: no compiler, no lock. Where it is missing (a plain ``pip install``), the
first use builds it with ``torch.utils.cpp_extension`` into torch's extensions directory under the
same key (so virtualenvs and torch versions never share or rebuild each other's). A build lock left
by a killed build is waited on for ``LOCK_WAIT_SECONDS`` at most; then, as when the extension cannot
be built or loaded, or with ``PARITY_NO_EXT=1``, ``available()`` is False and the Python loop runs;
a failure warns once with its reason."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import torch
from torch import Tensor

from parity.ports.activations import ACTIVATIONS
from parity.ports.recurrent.backends.prepare import Packed, Weights, onednn_usable, pack

#: Set to "1" to never build or use the extension (the Python loop runs instead).
DISABLE_ENV = "PARITY_NO_EXT"
SOURCE = Path(__file__).with_name("csrc") / "lstm_cpu.cpp"

#: torch CPU capability -> compiler flags that let ATen's Vectorized<float> use those registers
#: (its tanh and exp then call the SLEEF routines libtorch_cpu exports, as torch's kernels do).
_ARCH_FLAGS: dict[str, list[str]] = {
    "AVX512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma"],
    "AVX2": ["-mavx2", "-mfma"],
}

#: Input rows projected at once, per direction: the projection is computed a chunk of steps at a
#: time, just before those steps, while it is still in cache (faster than one projection of the
#: whole sequence at mid and large batches, the same at batch 1).
CHUNK_ROWS = 512

#: Where ``make setup`` puts the built library (beside the package: one per environment).
PREBUILT_DIR = Path(__file__).with_name("_ext")
#: How long a first-use build waits on another build's lock before giving up for the Python
#: loop (torch's own wait has no end: a build killed halfway leaves its lock behind).
LOCK_WAIT_SECONDS = 60.0
LOCK_POLL_SECONDS = 0.5
#: The file torch.utils.cpp_extension locks a build directory with.
LOCK_NAME = "lock"

_lock = threading.Lock()
_available: bool | None = None  # None: not tried yet


def _capability() -> str:
    capability = torch.backends.cpu.get_cpu_capability()
    return capability if capability in _ARCH_FLAGS else "DEFAULT"


def _flags(capability: str) -> list[str]:
    flags = ["-O3", "-fopenmp", *_ARCH_FLAGS.get(capability, [])]
    return [*flags, f"-DCPU_CAPABILITY={capability}", f"-DCPU_CAPABILITY_{capability}"]


def library_name() -> str:
    """The library's name: the capability and a key of everything the binary depends on, so
    another torch, Python, source or CPU never loads, or rebuilds over, this one."""
    capability = _capability()
    key = hashlib.sha256()
    for part in (
        SOURCE.read_bytes(),
        " ".join(_flags(capability)).encode(),
        torch.__version__.encode(),
        sys.version.encode(),
    ):
        key.update(part)
    return f"parity_lstm_{capability.lower()}_{key.hexdigest()[:16]}"


def prebuilt_path() -> Path:
    return PREBUILT_DIR / f"{library_name()}.so"


def _compile(build_directory: Path) -> Path:
    """Compile (or find already compiled there) and load the library; returns its path."""
    from torch.utils import cpp_extension  # imported here: it is slow to import

    build_directory.mkdir(parents=True, exist_ok=True)
    return Path(
        cpp_extension.load(
            name=library_name(),
            sources=[str(SOURCE)],
            extra_cflags=_flags(_capability()),
            # at::parallel_for's OpenMP region; resolves to torch's libgomp
            extra_ldflags=["-fopenmp"],
            build_directory=str(build_directory),
            is_python_module=False,
            verbose=False,
        )
    )


def _jit_directory() -> Path:
    from torch.utils import cpp_extension

    return Path(cpp_extension._get_build_directory(library_name(), verbose=False))


def _wait_for_lock(directory: Path) -> None:
    """Wait (bounded) while another build holds ``directory``'s lock; RuntimeError naming it
    when it outlives LOCK_WAIT_SECONDS (a build killed halfway leaves it forever)."""
    lock = directory / LOCK_NAME
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while lock.exists():
        if time.monotonic() >= deadline:
            raise RuntimeError(
                f"another build has held {lock} for over {LOCK_WAIT_SECONDS:.0f} s (a build "
                "killed halfway leaves it: remove it, or run python -m "
                "parity.ports.recurrent.backends.build)"
            )
        time.sleep(LOCK_POLL_SECONDS)


def _build() -> None:
    """Load the library built at setup, else build it now (bounded wait on a lock); raises
    on any failure."""
    prebuilt = prebuilt_path()
    if prebuilt.is_file():
        torch.ops.load_library(str(prebuilt))
    else:
        directory = _jit_directory()
        _wait_for_lock(directory)
        _compile(directory)
    torch.ops.parity_lstm.run_layer  # noqa: B018  (raises if the library did not register)
    # On real tensors even when first asked under torch.export's fake tensors.
    with torch.utils._python_dispatch._disable_current_modes():
        _smoke()


def build_prebuilt() -> Path:
    """Build the library into PREBUILT_DIR (``make setup`` runs this): compiled in a scratch
    directory, then moved into place atomically, so a killed build leaves nothing half-made."""
    target = prebuilt_path()
    if target.is_file():
        return target
    PREBUILT_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=PREBUILT_DIR, prefix=".build-") as scratch:
        built = _compile(Path(scratch))
        staged = Path(scratch) / f".{target.name}.tmp"
        shutil.copyfile(built, staged)
        os.replace(staged, target)
    return target


def _smoke() -> None:
    """One tiny layer through the op, with the weights prepare.pack makes (oneDNN-packed
    where it packs): a torch whose private oneDNN op changed its signature fails here, and the
    Python loop takes over, instead of failing in the user's forward."""
    g = torch.Generator().manual_seed(0)
    hidden, n_in = 4, 3
    shapes = ((16, n_in), (16, hidden), (16,), (16,))  # w_ih, w_hh, b_ih, b_hh
    weights = [tuple(torch.randn(*shape, generator=g) for shape in shapes)]
    with torch.inference_mode():
        prep = pack(weights, "hard_sigmoid_keras2", hidden)
        x = torch.randn(2, 1, n_in, generator=g)
        state = torch.zeros(1, 1, hidden)
        out = run_layer(
            prep, x, state, state, None, gate="hard_sigmoid_keras2", activation="tanh",
            zero_output_for_mask=True,
        )[0]  # fmt: skip
    if out.shape != (2, 1, hidden) or not torch.isfinite(out).all():
        raise RuntimeError(f"the C++ loop's smoke test gave {out}")


def loaded() -> bool:
    """Whether the extension is already built and loaded (never builds: safe to ask while
    torch.compile or torch.export trace, where a build cannot run)."""
    return _available is True


def available() -> bool:
    """Whether the C++ loop can run; builds and loads it on the first call."""
    global _available
    if _available is None:
        with _lock:
            if _available is None:
                _available = _try_build()
    return _available


def _try_build() -> bool:
    if os.environ.get(DISABLE_ENV) == "1":
        return False
    try:
        _build()
    except Exception as e:  # no compiler, no ninja, a compile or load error: all fall back
        reason = str(e).strip().splitlines()
        detail = f"{type(e).__name__}: {reason[0] if reason else ''}"
        warnings.warn(
            f"parity: the C++ LSTM loop is unavailable ({detail}); using the Python loop "
            f"(slower on CPU). Set {DISABLE_ENV}=1 to skip the build.",
            RuntimeWarning,
            stacklevel=3,
        )
        return False
    return True


def pin_threads(pin: bool) -> bool:
    """Whether each direction's thread stays on its CPU while it runs a layer (the default,
    True); returns the previous setting. Only threads move: the numbers are the same either
    way. For tests and benchmarks, which compare the two."""
    if not available():
        raise RuntimeError("the C++ LSTM loop is not available")
    return bool(torch.ops.parity_lstm.set_pin_policy(int(pin)))


def parallel_directions(n_dir: int) -> bool:
    """Directions on one thread each when that uses every thread torch has (DeepMoji, 2 cores:
    faster at every batch size); with more threads, one after the other with parallel GEMMs."""
    return n_dir > 1 and torch.get_num_threads() <= n_dir


def applies(
    x: Tensor,
    h: Tensor,
    c: Tensor,
    gate: str,
    activation: str,
    *,
    training: bool = False,
    build: bool = True,
) -> bool:
    """CPU float32 with tails the C++ pass knows (the activation table's ``cpp``; the
    activation's input is not folded, so it must have no affine part), the extension loaded.
    ``training``: for ``run_layer_autograd``; otherwise for inference (no gradient recorded).
    ``build=False``: only if already loaded (``loaded``), for decisions taken while tracing."""
    return (
        x.device.type == "cpu"
        and x.dtype == h.dtype == c.dtype == torch.float32
        and ACTIVATIONS[gate].fused is not None
        and ACTIVATIONS[activation].fused is not None
        and not ACTIVATIONS[activation].fused.affine
        and (training or not (torch.is_grad_enabled() and any(t.requires_grad for t in (x, h, c))))
        and (available() if build else loaded())
    )


def run_layer(
    prep: Packed,
    x: Tensor,
    h: Tensor,
    c: Tensor,
    mask: Tensor | None,
    *,
    gate: str,
    activation: str,
    zero_output_for_mask: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """``backends.python.run_layer`` in C++: x (T, B, in), h and c (D, B, h), mask (T, B, 1)
    bool or None; returns output (T, B, D*h) and the final h, c (D, B, h)."""
    seq_len, batch, n_dir = x.shape[0], x.shape[1], h.shape[0]
    step_mask = None if mask is None else mask.reshape(seq_len, batch)
    parallel = parallel_directions(n_dir)
    return torch.ops.parity_lstm.run_layer(
        x.contiguous(),
        list(prep.w_ih),
        list(prep.w_hh),
        list(prep.bias),
        h,
        c,
        step_mask,
        int(ACTIVATIONS[gate].fused.cpp),
        int(ACTIVATIONS[activation].fused.cpp),
        zero_output_for_mask,
        parallel,
        CHUNK_ROWS,
    )


#: Training packs a layer's weights for oneDNN (every step: the optimizer changes them) when
#: the forward has at least this many input rows (T * B): below, the packing costs more than
#: oneDNN's faster GEMMs save. w_ih serves one GEMM per chunk of steps, w_hh one per step
#: (benchmarks/deepmoji_speed.py, training mode, measures both sides of the break-even).
PACK_IH_ROWS = 256
PACK_HH_ROWS = 24
#: The same for the backward's per-step product with w_hh.T, whose packing (a transposed
#: reorder) costs several times more.
PACK_HH_T_ROWS = 640


class _TrainLayer(torch.autograd.Function):
    """One layer through train_forward / train_backward, on the parameters as they are (no
    folding or other preparation: the optimizer changes them every step).

    forward(x, h0, c0, mask, options, *params): options (gate_tail, activation_tail,
    gate_scale, gate_offset, zero_output_for_mask, parallel, onednn), params per direction
    (w_ih, w_hh, b_ih, b_hh), biases None without bias."""

    @staticmethod
    def forward(
        x: Tensor, h0: Tensor, c0: Tensor, mask: Tensor | None, options: tuple, *params: Tensor
    ) -> tuple[Tensor, ...]:
        return train_forward(x, h0, c0, mask, options, params)

    @staticmethod
    def setup_context(ctx: torch.autograd.function.FunctionCtx, inputs: tuple, output: tuple):
        x, _, _, mask, options, *params = inputs
        kept = output[3:]
        ctx.mark_non_differentiable(*kept)
        # Not materialized: autograd would otherwise fill zeros the size of every kept tensor.
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, mask, *kept, *params)
        ctx.options = options

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad_out: Tensor, grad_h: Tensor,
        grad_c: Tensor, *unused: Tensor,
    ) -> tuple[Tensor | None, ...]:  # fmt: skip
        x, mask, *kept_params = ctx.saved_tensors
        kept, params = kept_params[:4], kept_params[4:]
        need_dx = ctx.needs_input_grad[0]
        dx, dh0, dc0, grads = backward(
            x, mask, kept, params, ctx.options, grad_out, grad_h, grad_c, need_dx
        )
        return (dx, dh0, dc0, None, None, *grads)


def train_forward(
    x: Tensor, h0: Tensor, c0: Tensor, mask: Tensor | None, options: tuple, params: list
) -> tuple[Tensor, ...]:
    """The C++ training forward: output, h_n, c_n, then the kept tensors (gates, tc, hprev,
    cprev). mask (T, B) bool or None; params per direction (w_ih, w_hh, b_ih, b_hh)."""
    gate_tail, act_tail, scale, offset, zero_output, parallel, onednn = options
    pack_ih, pack_hh = (PACK_IH_ROWS, PACK_HH_ROWS) if onednn else (0, 0)
    return torch.ops.parity_lstm.train_forward(
        x.contiguous(), list(params[0::4]), list(params[1::4]), list(params[2::4]),
        list(params[3::4]), h0, c0, mask, gate_tail, act_tail, scale, offset, zero_output,
        parallel, CHUNK_ROWS, pack_ih, pack_hh,
    )  # fmt: skip


def backward(
    x: Tensor,
    mask: Tensor | None,
    kept: list[Tensor],
    params: list[Tensor | None],
    options: tuple,
    grad_out: Tensor | None,
    grad_h: Tensor | None,
    grad_c: Tensor | None,
    need_dx: bool,
) -> tuple[Tensor | None, Tensor, Tensor, list[Tensor | None]]:
    """train_backward: gradients of x (None unless need_dx), h0, c0 and each parameter (None
    for an absent bias); output gradients that are None count as zeros."""
    gate_tail, act_tail, scale, _, zero_output, parallel, onednn = options
    n_dir, batch, hidden = kept[2].shape[0], x.shape[1], kept[2].shape[-1]
    if grad_out is None:
        grad_out = x.new_zeros(x.shape[0], batch, n_dir * hidden)
    grad_h, grad_c = (
        x.new_zeros(n_dir, batch, hidden) if g is None else g for g in (grad_h, grad_c)
    )
    dx, dh0, dc0, dw_ih, dw_hh, db = torch.ops.parity_lstm.train_backward(
        grad_out, grad_h, grad_c, x.contiguous(), list(params[0::4]), list(params[1::4]),
        mask, *kept, gate_tail, act_tail, scale, zero_output, parallel, need_dx,
        PACK_HH_T_ROWS if onednn else 0,
    )  # fmt: skip
    grads: list[Tensor | None] = []
    for d, bias in enumerate(params[2::4]):
        # b_ih and b_hh get the same gradient, as separate tensors (each becomes a .grad)
        biases = [None, None] if bias is None else [db[d], db[d].clone()]
        grads += [dw_ih[d], dw_hh[d], *biases]
    return (dx if need_dx else None), dh0, dc0, grads


class _PackedTrainSteps(torch.autograd.Function):
    """The length-aware loop's steps through packed_train_forward / packed_train_backward.

    forward(h0, c0, sizes, options, n_dir, *x_proj, *w_hh): h0, c0 (D, B, h) in sorted row
    order; per direction x_proj (N, 4h) and w_hh (4h, h); options as train_options."""

    @staticmethod
    def forward(
        h0: Tensor, c0: Tensor, sizes: list[int], options: tuple, n_dir: int, *tensors: Tensor
    ) -> tuple[Tensor, ...]:
        gate_tail, act_tail, scale, offset, _, parallel, onednn = options
        return torch.ops.parity_lstm.packed_train_forward(
            list(tensors[:n_dir]), list(tensors[n_dir:]), h0, c0, sizes, gate_tail, act_tail,
            scale, offset, parallel, PACK_HH_ROWS if onednn else 0,
        )  # fmt: skip

    @staticmethod
    def setup_context(ctx: torch.autograd.function.FunctionCtx, inputs: tuple, output: tuple):
        _, _, sizes, options, n_dir, *tensors = inputs
        kept = output[3:]
        ctx.mark_non_differentiable(*kept)
        ctx.set_materialize_grads(False)  # as _TrainLayer: no zero-filled kept gradients
        ctx.save_for_backward(*kept, *tensors[n_dir:])
        ctx.sizes, ctx.options, ctx.state_shape = sizes, options, inputs[0].shape

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad_out: Tensor | None,
        grad_h: Tensor | None, grad_c: Tensor | None, *unused: Tensor,
    ) -> tuple[Tensor | None, ...]:  # fmt: skip
        gates, tc, hprev, cprev, *w_hh = ctx.saved_tensors
        gate_tail, act_tail, scale, _, _, parallel, onednn = ctx.options
        if grad_out is None:
            grad_out = torch.zeros_like(tc)
        grad_h, grad_c = (
            tc.new_zeros(ctx.state_shape) if g is None else g for g in (grad_h, grad_c)
        )
        dz, dh0, dc0, dw_hh = torch.ops.parity_lstm.packed_train_backward(
            grad_out, grad_h, grad_c, w_hh, gates, tc, hprev, cprev, ctx.sizes, gate_tail,
            act_tail, scale, parallel, PACK_HH_T_ROWS if onednn else 0,
        )  # fmt: skip
        return (dh0, dc0, None, None, None, *dz.unbind(0), *dw_hh)


def packed_train_steps(
    x_proj: list[Tensor],
    w_hh: list[Tensor],
    h0: Tensor,
    c0: Tensor,
    sizes: list[int],
    options: tuple,
) -> tuple[Tensor, Tensor, Tensor]:
    """The length-aware loop's steps for training (backends.packed.run_layer_autograd): per
    direction x_proj (N, 4h), the packed rows' input projections with the parameters as they
    are (rows i, f, g, o, b_ih + b_hh included), and w_hh (4h, h); h0, c0 (D, B, h) in sorted
    row order. Returns the packed outputs (D, N, h) and the final h, c (D, B, h), sorted;
    differentiable with respect to x_proj, w_hh, h0 and c0."""
    out, h_n, c_n, *_ = _PackedTrainSteps.apply(h0, c0, sizes, options, len(w_hh), *x_proj, *w_hh)
    return out, h_n, c_n


def train_options(
    gate: str, activation: str, zero_output_for_mask: bool, x: Tensor, n_dir: int
) -> tuple:
    """The options tuple train_forward and backward take."""
    fused = ACTIVATIONS[gate].fused
    return (
        int(fused.cpp),
        int(ACTIVATIONS[activation].fused.cpp),
        float(fused.scale),
        float(fused.offset),
        zero_output_for_mask,
        parallel_directions(n_dir),
        onednn_usable(x),
    )


def layer_gradients(
    weights: Weights,
    x: Tensor,
    h: Tensor,
    c: Tensor,
    mask: Tensor | None,
    grads: tuple[Tensor, Tensor, Tensor],
    *,
    gate: str,
    activation: str,
    zero_output_for_mask: bool,
) -> list[Tensor | None]:
    """One layer's vector-Jacobian product without autograd: the training forward recomputed,
    then the backward, for the output gradients ``grads`` (output, h_n, c_n). mask: (T, B) bool
    or None. Returns the gradients of x, h, c, then per direction w_ih, w_hh, b_ih, b_hh (None
    where a bias is None): what the registered operator's backward (recurrent.ops) needs."""
    params = [w for direction in weights for w in direction]
    options = train_options(gate, activation, zero_output_for_mask, x, h.shape[0])
    with torch.no_grad():
        kept = train_forward(x, h, c, mask, options, params)[3:]
        dx, dh, dc, param_grads = backward(x, mask, list(kept), params, options, *grads, True)
    return [dx, dh, dc, *param_grads]


def run_layer_autograd(
    weights: Weights,
    x: Tensor,
    h: Tensor,
    c: Tensor,
    mask: Tensor | None,
    *,
    gate: str,
    activation: str,
    zero_output_for_mask: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """``backends.python.run_layer_autograd`` with the loops in C++: the same arguments and
    results, differentiable with respect to x, h, c and the weights."""
    seq_len, batch = x.shape[0], x.shape[1]
    step_mask = None if mask is None else mask.reshape(seq_len, batch)
    options = train_options(gate, activation, zero_output_for_mask, x, h.shape[0])
    params = [w for direction in weights for w in direction]
    out, h_n, c_n, *_ = _TrainLayer.apply(x, h, c, step_mask, options, *params)
    return out, h_n, c_n
