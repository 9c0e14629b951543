"""Checkpoints that let a fine-tuning run resume where it stopped, and atomic output files.

A checkpoint holds everything the rest of the run depends on: the model's weights, the Keras-
semantics optimizer's state (moments, iteration counter, hyper-parameters), the stage and the
position in it (epoch, batches done: the sampler position, since the batch order is a function
of (seed, stage, epoch)), the stage's early-stopping state and best weights, the curves so far
and every rank's random-number state. Resuming replays nothing: the run continues with the next
batch and ends where an uninterrupted run ends.

Rank 0 writes (torch.save to a temporary file in the same directory, then os.replace: the file
is either the previous checkpoint or the complete new one). The file holds only tensors and
plain values and is read back with ``torch.load(weights_only=True)``: nothing is unpickled.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from parity.files import write_atomic
from parity.train.distributed import Context

#: Checkpoint layout version; a file of another version is refused.
VERSION = 1
#: Test hook: every process of a run SIGKILLs itself after this many optimizer steps (counted
#: across stages), as a crash or a preempted node would end it.
KILL_AFTER_ENV = "PARITY_TEST_KILL_AFTER_STEP"


class CheckpointMismatch(ValueError):
    """The checkpoint was written by a run with other settings: resuming it would mix runs."""


def rng_state(device: torch.device) -> dict[str, Tensor]:
    """This process' torch random state (CPU, and the CUDA device's when training there)."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


class Checkpointer:
    """A run's checkpoint file: the training loop saves at the end of every epoch and stage,
    and ``after_step`` every ``every`` optimizer steps (0: none mid-epoch); ``stop_after`` (a
    test hook) raises Interrupted after that many steps, as if the process had died there.

    ``run`` identifies the run's settings; resuming a checkpoint written with other settings is
    refused (CheckpointMismatch). Every rank calls ``load``, ``save`` and ``after_step`` at the
    same points (they broadcast the file and gather the ranks' random states); rank 0 writes.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        run: dict[str, Any],
        *,
        every: int = 0,
        context: Context | None = None,
        stop_after: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.run = run
        self.every = every
        self.context = context or Context()
        self.stop_after = stop_after
        kill = os.environ.get(KILL_AFTER_ENV)
        self.kill_after = int(kill) if kill else None

    def load(self) -> dict[str, Any] | None:
        """The checkpoint to resume from, or None when there is none. Rank 0 reads it (the
        only rank sure to see the file when nodes do not share a disk) and hands it to the
        others, with its verdict: every rank resumes, or every rank raises."""
        answer: tuple[str, Any] = ("none", None)
        if self.context.is_main:
            try:
                answer = ("state", self._read())
            except CheckpointMismatch as exc:
                answer = ("mismatch", str(exc))
        kind, value = self.context.broadcast_object(answer)
        if kind == "mismatch":
            raise CheckpointMismatch(value)
        return value

    def _read(self) -> dict[str, Any] | None:
        if not self.path.is_file():
            return None
        # CPU first: random states must be CPU tensors; weights move on loading into the model
        state = torch.load(self.path, map_location="cpu", weights_only=True)
        if state.get("version") != VERSION:
            raise CheckpointMismatch(f"{self.path}: checkpoint version {state.get('version')}")
        differ = sorted(
            k for k in set(self.run) | set(state["run"]) if self.run.get(k) != state["run"].get(k)
        )
        if differ:
            raise CheckpointMismatch(
                f"{self.path} was written by a run with other settings ({', '.join(differ)}); "
                "remove it or start without --resume"
            )
        return state

    def save(self, state: dict[str, Any]) -> None:
        """Write ``state`` (plus the run's settings and every rank's random state), rank 0 only."""
        rngs = self.context.gather_objects(rng_state(self.context.device))
        if not self.context.is_main:
            return
        full = {"version": VERSION, "run": self.run, "rng": rngs, **state}
        write_atomic(self.path, lambda f: torch.save(full, f), "checkpoint")

    def after_step(self, global_step: int, save: Callable[[], None]) -> None:
        """After an optimizer step: ``save()`` (a checkpoint) when one is due, then the test
        hooks."""
        if self.every and global_step % self.every == 0:
            save()
        if self.kill_after is not None and global_step >= self.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
        if self.stop_after is not None and global_step >= self.stop_after:
            raise Interrupted(global_step)


class Interrupted(RuntimeError):
    """Raised by Checkpointer's ``stop_after`` hook: the run stopped after that step."""

    def __init__(self, step: int) -> None:
        super().__init__(f"stopped after step {step}")
        self.step = step
