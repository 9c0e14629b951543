"""Data-parallel fine-tuning: ``torchrun --nproc_per_node N -m parity finetune ...``.

The run is defined by the *global* batch: ``--batch-size`` is the batch one optimizer step sees
whatever the number of processes, and each global batch (the same order on every rank,
parity.train.stages.epoch_order) is split into contiguous shards, one per rank (sizes differ by
at most one). So the same command follows the same trajectory on 1 or N processes, up to
float32 summation order, and DeepMoji's learning rates keep their meaning. Why not per-rank
batch x world size: then changing N would change the batch, the step count and the result.

How the pieces keep Keras' meaning:

- Loss: each rank sums its examples' losses and divides by the global batch size; gradients
  are all-reduced with a SUM hook (not DDP's average), so the sum is the gradient of the global
  batch's mean loss exactly, for uneven shards and for a rank whose shard is empty (it runs one
  example with weight 0, as DDP needs every rank in every step).
- Clipping (clipnorm, global_clipnorm) runs in the optimizer on the all-reduced gradients, so
  its norms are those of the global batch; every rank then takes the same step.
- Embeddings trained with per-occurrence gradients (parity.optim.track_embeddings): each rank's
  occurrences are gathered in rank order, which is the single-process order (shards are
  contiguous), so norms and Adam's squared occurrences are those of the global batch.
- Validation loss: every rank scores its shard of the split; the sum is all-reduced and the
  value rank 0 holds is broadcast, so early stopping decides the same on every rank.
- Dropout: each rank draws from its own stream (seeded from the run's seed and the rank);
  masks differ from a single-process run's, so runs with dropout agree in distribution only.
- BatchNormalization normalises with per-rank batch statistics, as Keras' MirroredStrategy
  does (``synchronized=False``); DDP broadcasts rank 0's moving statistics every step.

Backend from the device: gloo on CPU, nccl on CUDA (each process on ``cuda:LOCAL_RANK``).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NoReturn

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from parity import optim

#: Device type -> process-group backend.
BACKENDS: dict[str, str] = {"cpu": "gloo", "cuda": "nccl"}
#: Environment variables torchrun sets for every process.
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
#: Multiplier separating the per-rank dropout streams (a prime, far above any rank).
RANK_SEED_STRIDE = 1_000_003

#: Whether this process has left a torchrun process group (process_group sets it): it then ends
#: through exit_process without Python's finalization.
_left_group = False


@dataclass(frozen=True)
class Context:
    """Where this process stands in the run: rank, world size, device. The default is a
    single process on CPU, for which every collective below is a no-op."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, models, metrics and plots; the others only train."""
        return self.rank == 0

    def shard(self, idx: np.ndarray) -> np.ndarray:
        """This rank's contiguous part of a global batch (sizes differ by at most one)."""
        if not self.distributed:
            return idx
        return np.array_split(idx, self.world_size)[self.rank]

    def sum(self, values: Tensor) -> Tensor:
        """All-reduce SUM of a tensor (a copy on this rank's device), then rank 0's result
        broadcast, so every rank holds bit-identical numbers to decide on."""
        out = values.detach().to(self.device).clone()
        if self.distributed:
            dist.all_reduce(out, op=dist.ReduceOp.SUM)
            dist.broadcast(out, src=0)
        return out

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def seed_dropout(self, seed: int) -> None:
        """Per-rank dropout streams (after the shared, seeded head initialisation); a single
        process keeps the stream it has, so its runs are unchanged."""
        if self.distributed:
            torch.manual_seed(seed * RANK_SEED_STRIDE + self.rank + 1)

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` under DistributedDataParallel (gradients SUMMED across ranks) for the
        parameters that train now; a single process gets ``model`` itself. Build one per stage:
        DDP fixes the set of trainable parameters when it is constructed."""
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        ddp = DistributedDataParallel(model, device_ids=ids)
        ddp.register_comm_hook(None, _sum_gradients)
        return ddp

    def gather_occurrences(self, weights: Iterable[Tensor]) -> None:
        """Replace each embedding weight's recorded per-occurrence gradients with every rank's,
        in rank order (= the single-process order), so the optimizer sees the global batch."""
        if not self.distributed:
            return
        for w in weights:
            ids, rows = _local_occurrences(w)
            all_ids = self._gather_rows(ids.reshape(-1, 1)).reshape(-1)
            all_rows = self._gather_rows(rows)
            setattr(w, optim._SLICES, [(all_ids, all_rows)])

    def _gather_rows(self, rows: Tensor) -> Tensor:
        """Concatenate each rank's (n_r, ...) tensor in rank order (n_r may differ)."""
        n = torch.tensor([rows.shape[0]], device=self.device)
        counts = [torch.zeros_like(n) for _ in range(self.world_size)]
        dist.all_gather(counts, n)
        sizes = [int(c.item()) for c in counts]
        padded = torch.zeros((max(sizes), *rows.shape[1:]), dtype=rows.dtype, device=self.device)
        padded[: rows.shape[0]] = rows
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
        return torch.cat([p[:s] for p, s in zip(parts, sizes, strict=True)])


def _sum_gradients(state, bucket):  # type: ignore[no-untyped-def]
    """DDP communication hook (bucket: dist.GradBucket -> Future[Tensor]): all-reduce SUM
    (DDP's default divides by the world size; the per-rank losses are already scaled by the
    global batch size). Unannotated on purpose: DDP compares the annotations with its own
    classes, and postponed (string) annotations fail that check."""
    work = dist.all_reduce(bucket.buffer(), async_op=True)
    return work.get_future().then(lambda fut: fut.value()[0])


def _local_occurrences(weight: Tensor) -> tuple[Tensor, Tensor]:
    """This rank's recorded (ids (N,), rows (N, D)) for an embedding weight; empty if none."""
    slices = getattr(weight, optim._SLICES, None) or []
    width = weight.shape[1] if weight.dim() > 1 else 1
    if not slices:
        ids = torch.zeros(0, dtype=torch.long, device=weight.device)
        return ids, torch.zeros((0, width), dtype=weight.dtype, device=weight.device)
    ids = torch.cat([i.reshape(-1) for i, _ in slices]).to(torch.long)
    rows = torch.cat([r.reshape(len(i.reshape(-1)), -1) for i, r in slices]).to(weight.dtype)
    return ids, rows


def drop_occurrences(weights: Iterable[Tensor]) -> None:
    """Forget recorded occurrences (a rank that ran a weight-0 placeholder example)."""
    for w in weights:
        if hasattr(w, optim._SLICES):
            delattr(w, optim._SLICES)


def context_from_env(device: str | torch.device = "cpu") -> Context:
    """The Context torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK), joining its process
    group (gloo on CPU, nccl on CUDA); a plain process (WORLD_SIZE unset or 1) is single."""
    device = torch.device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Context(device=device)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if device.type not in BACKENDS:
        raise ValueError(f"no distributed backend for device {device.type!r}")
    if not dist.is_initialized():
        dist.init_process_group(BACKENDS[device.type])
    return Context(rank=rank, world_size=world, local_rank=local, device=device)


@contextmanager
def process_group(device: str | torch.device = "cpu") -> Iterator[Context]:
    """Join torchrun's process group for the body, then leave it (a no-op for one process).
    A script of your own ends with ``exit_process(code)``, as `parity finetune` does."""
    global _left_group
    ctx = context_from_env(device)
    try:
        yield ctx
    finally:
        if ctx.distributed and dist.is_initialized():
            dist.destroy_process_group()
            _left_group = True


def exit_process(code: int) -> NoReturn:
    """End the process with ``code``; after a process group, without Python's finalization.

    Why: destroy_process_group does not stop gloo's worker threads once torch._dynamo has been
    imported (DDP imports it; something in it keeps the group alive). A worker still releasing
    the tensors of the last collectives when the interpreter finalizes needs the GIL; CPython
    then ends that thread by unwinding it through a noexcept frame, and the process dies of
    std::terminate (SIGABRT) after a finished run, which torchrun reports as a failed run.
    Output is flushed first; every file a run writes is complete before this."""
    if not _left_group:
        sys.exit(code)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more to write
            pass
    os._exit(code)
