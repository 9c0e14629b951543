"""Data-parallel fine-tuning and resumable runs (parity.train.distributed, .checkpoint).

Proofs, on a tiny DeepMoji (the pair with an attention layer, two BiLSTMs and an embedding
trained with Keras 3's per-occurrence gradients), DeepMoji's chain-thaw (six stages, so every
stage boundary and DDP re-wrap is crossed) and DeepMoji's class-balanced sampling:

- ``torchrun --nproc_per_node 2 -m parity finetune`` (gloo, CPU) ends with the weights, batch
  losses, validation losses and early-stopping choices of one process on the same global
  batches, to the float32 "trained" tolerance. The run exercises uneven shards (global batch 5
  -> 3 + 2, validation 7 -> 4 + 3) and an empty shard (a balanced epoch of 6 examples is a
  batch of 5 and one of 1).
- The same command SIGKILLed after step k (every process, mid-epoch, in chain-thaw's second
  stage) and run again with --resume ends where the uninterrupted run ends.
- In one process, a run stopped after step k and resumed from its checkpoint is bit-identical
  to an uninterrupted one, with dropout on: the optimizer state, the sampler position, the
  stage, the early-stopping state and the random stream all come back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import parity
from parity import train as ft
from parity.arch import PAIRS
from parity.arch.deepmoji import DeepMojiConfig
from parity.check.tolerances import tolerance_for
from parity.cli import main
from parity.train.checkpoint import KILL_AFTER_ENV, Checkpointer, CheckpointMismatch, Interrupted
from parity.train.distributed import Context
from tests.conftest import REPO

WORDS = ["good", "bad", "love", "hate", "fun", "sad", "great", "awful", "ok", "meh"]
RECORDS = {"train": 11, "val": 7, "test": 6}
DATA_SEED = 0
MAXLEN = 8
#: The run every test makes: chain-thaw's six stages, two epochs each of 6 class-balanced
#: examples: batches of 5 and 1 (rank 1's shard of the second is empty).
RUN = {"method": "chain-thaw", "epochs": 2, "batch_size": 5, "patience": 1, "seed": 0}
RUN |= {"balanced": 6}
#: One learning rate for every stage, larger than DeepMoji's 1e-4: at 1e-4 a stage that trains
#: the attention alone moves the val loss by about 1e-7, so its two epochs tie within float32
#: rounding and either summation order (one process or two) may pick the other as the best.
#: At 1e-2 every stage's epochs differ by 5e-5 or more.
RUN |= {"lr": 0.01}
STEPS = 6 * 2 * 2
TRAINED = tolerance_for(torch.float32, "cpu", "trained")
OUTPUT = tolerance_for(torch.float32, "cpu", "output")
#: Seconds one torchrun may take on a loaded two-core machine.
TIMEOUT = 240


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny recurrent steps: one intra-op thread is much faster than two on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny Keras-initialized DeepMoji (parity.save), its vocabulary and a binary JSONL."""
    root = tmp_path_factory.mktemp("distributed")
    torch.manual_seed(0)
    config = DeepMojiConfig(vocab_size=40, embedding_dim=8, hidden_size=6, num_classes=2)
    model = PAIRS["deepmoji"].build(config)
    parity.keras_init_(model)
    parity.save(model, root / "tiny.safetensors")
    vocab = {"CUSTOM_MASK": 0, "CUSTOM_UNKNOWN": 1} | {w: i + 10 for i, w in enumerate(WORDS)}
    (root / "vocabulary.json").write_text(json.dumps(vocab), encoding="utf-8")
    rng = np.random.default_rng(DATA_SEED)
    lines = []
    for split, n in RECORDS.items():
        for _ in range(n):
            label = int(rng.integers(0, 2))
            text = " ".join(rng.choice(WORDS[label::2], int(rng.integers(2, 7))))
            lines.append(json.dumps({"text": text, "label": label, "split": split}) + "\n")
    (root / "task.jsonl").write_text("".join(lines), encoding="utf-8")
    return {"model": root / "tiny.safetensors", "vocab": root / "vocabulary.json"} | {
        "data": root / "task.jsonl",
        "root": root,
    }


def _data(task: dict[str, Path]) -> ft.TaskData:
    vocab = parity.text.load_vocabulary(task["vocab"])
    return ft.encode_dataset(ft.read_jsonl(task["data"]), vocab, MAXLEN, vocab_size=40)


def _finetune(task: dict[str, Path], **kwargs: object) -> tuple[torch.nn.Module, ft.History]:
    """The run `parity finetune --no-dropout` makes, in this process."""
    options = {"embed_dropout": 0.0, "final_dropout": 0.0, **RUN, **kwargs}
    model = parity.load(task["model"])
    return ft.finetune(model, _data(task), progress=False, **options)  # type: ignore[arg-type]


def _torchrun(task: dict[str, Path], out: Path, *extra: str, env: dict[str, str] | None = None):
    """`torchrun --standalone --nproc_per_node 2 -m parity finetune ...` (a free port each)."""
    args = [
        *("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"),
        *("-m", "parity", "finetune", str(task["model"]), "--data", str(task["data"])),
        *("--vocab", str(task["vocab"]), "--maxlen", str(MAXLEN), "--no-dropout", "--quiet"),
        *("--method", RUN["method"], "--epochs", str(RUN["epochs"])),
        *("--batch-size", str(RUN["batch_size"]), "--patience", str(RUN["patience"])),
        *("--lr", str(RUN["lr"])),
        *("--balanced", str(RUN["balanced"])),
        *("--out", str(out), "--threads", "1", *extra),
    ]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


@pytest.fixture(scope="module")
def two_processes(task: dict[str, Path]) -> Path:
    """The output directory of one uninterrupted 2-process run."""
    out = task["root"] / "two"
    proc = _torchrun(task, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _assert_same_weights(ours: dict, theirs: dict, tol: object) -> None:
    assert ours.keys() == theirs.keys()
    for name, value in ours.items():
        np.testing.assert_allclose(
            value.numpy(), theirs[name].numpy(), atol=tol.atol, rtol=tol.rtol, err_msg=name
        )


def _assert_same_curves(ours: list[dict], theirs: list[dict]) -> None:
    """Same stages, same epochs run and best epochs (the early-stopping choices), same losses."""
    assert [s["stage"] for s in ours] == [s["stage"] for s in theirs]
    for a, b in zip(ours, theirs, strict=True):
        assert (a["best_epoch"], len(a["val_loss"])) == (b["best_epoch"], len(b["val_loss"]))
        for key in ("batch_loss", "val_loss"):
            np.testing.assert_allclose(a[key], b[key], atol=OUTPUT.atol, rtol=OUTPUT.rtol)


def test_two_processes_train_like_one(task: dict[str, Path], two_processes: Path) -> None:
    """Same global batches and order: 2 gloo processes end where one process ends."""
    tuned, history = _finetune(task)
    distributed = parity.load(two_processes / "model.safetensors")
    _assert_same_weights(distributed.state_dict(), tuned.state_dict(), TRAINED)
    report = json.loads((two_processes / "metrics.json").read_text())
    _assert_same_curves(report["stages"]["model"], history.stages)
    assert sum(len(s["batch_loss"]) for s in history.stages) == STEPS
    names = {p.name for p in two_processes.iterdir()}
    assert names == {"model.safetensors", "metrics.json", "curve.png", "checkpoint.pt"}, names


def test_killed_run_resumes_to_the_same_end(task: dict[str, Path], two_processes: Path) -> None:
    """SIGKILL every process after step 6 (chain-thaw's embedding stage, epoch 1, batch 2;
    the last checkpoint is after step 5), then --resume: the uninterrupted run's end."""
    out = task["root"] / "killed"
    killed = _torchrun(task, out, "--checkpoint-every", "5", env={KILL_AFTER_ENV: "6"})
    assert killed.returncode != 0 and not (out / "model.safetensors").exists()
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert (state["stage"], state["global_step"]) == (1, 5)
    assert (state["in_stage"]["epoch"], state["in_stage"]["step"]) == (0, 1)
    resumed = _torchrun(task, out, "--checkpoint-every", "5", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    end = parity.load(out / "model.safetensors").state_dict()
    uninterrupted_end = parity.load(two_processes / "model.safetensors").state_dict()
    _assert_same_weights(end, uninterrupted_end, TRAINED)
    report = json.loads((out / "metrics.json").read_text())
    uninterrupted = json.loads((two_processes / "metrics.json").read_text())
    _assert_same_curves(report["stages"]["model"], uninterrupted["stages"]["model"])


def test_stopped_run_resumes_bit_identically_with_dropout(task: dict[str, Path]) -> None:
    """One process, dropout on: stop after step 12 (stage 3, epoch 2, batch 2; checkpoint after
    step 11), resume: bit-identical weights and curves, so optimizer state, sampler position,
    stage, early stopping and the dropout stream were all restored."""
    dropout = {"embed_dropout": 0.25, "final_dropout": 0.5}
    path = task["root"] / "one.pt"
    whole, whole_history = _finetune(task, **dropout)
    stopper = Checkpointer(path, {}, every=11, stop_after=12)
    with pytest.raises(Interrupted):
        _finetune(task, checkpointer=stopper, **dropout)
    state = torch.load(path, weights_only=True)
    assert (state["stage"], state["global_step"], state["in_stage"]["step"]) == (2, 11, 1)
    resumed, history = _finetune(task, checkpointer=Checkpointer(path, {}), resume=True, **dropout)
    for name, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name
    assert history.stages == whole_history.stages
    with pytest.raises(CheckpointMismatch, match="seed"):  # another run's checkpoint
        _finetune(task, checkpointer=Checkpointer(path, {}), resume=True, seed=1, **dropout)


def test_cli_refuses_to_resume_another_runs_checkpoint(
    task: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`parity finetune --resume` on a checkpoint written with other settings: one line, exit 1."""
    args = ["finetune", str(task["model"]), "--data", str(task["data"]), "--vocab"]
    args += [str(task["vocab"]), "--maxlen", str(MAXLEN), "--method", "last", "--epochs", "1"]
    args += ["--batch-size", "5", "--quiet", "--out", str(tmp_path)]
    assert main(args) == 0 and (tmp_path / "checkpoint.pt").is_file()
    capsys.readouterr()
    assert main([*args, "--seed", "1", "--resume"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "other settings (seed)" in err and "Traceback" not in err


#: A torchrun worker that joins and leaves the process group as `parity finetune` does, after
#: importing torch._dynamo (as DDP does: gloo's worker threads then outlive
#: destroy_process_group), and ends through exit_process with unflushed output.
EXITING_WORKER = """
import atexit, sys
import torch, torch._dynamo, torch.distributed as dist
from parity.train import exit_process, process_group
with process_group() as ctx:
    dist.all_reduce(torch.ones(3))
atexit.register(print, "finalized", flush=True)
sys.stdout.write(f"rank {ctx.rank} left ")
exit_process(0)
"""


def test_a_worker_leaves_without_finalizing_and_loses_no_output(tmp_path: Path) -> None:
    """After a process group, exit_process ends the process with its code, its output flushed,
    and without Python's finalization (where a gloo worker still releasing a tensor aborts the
    process: torchrun then reports a finished run as failed). A plain process exits normally."""
    script = tmp_path / "worker.py"
    script.write_text(EXITING_WORKER, encoding="utf-8")
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # output buffered
    env |= {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [*run, str(script)], env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rank 0 left" in proc.stdout and "rank 1 left" in proc.stdout, proc.stdout
    assert "finalized" not in proc.stdout
    # torchrun runs workers unbuffered (python -u); another launcher may not: still flushed
    flag = "import parity.train.distributed as d, sys; d._left_group = True"  # as process_group
    left = f"{flag}; sys.stdout.write('left'); d.exit_process(3)"
    proc = subprocess.run(
        [sys.executable, "-c", left], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    assert (proc.returncode, proc.stdout) == (3, "left"), proc.stderr
    plain = "import atexit; atexit.register(print, 'finalized'); import parity.cli as c; c.entry()"
    proc = subprocess.run(
        [sys.executable, "-c", plain, "--plugin", "no_such_module_xyz", "inspect", "x"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert (proc.returncode, proc.stdout) == (1, "finalized\n"), proc.stderr


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_shards_are_contiguous_parts_of_the_global_batch(world: int) -> None:
    """Rank order = batch order, sizes within one: gathered occurrences and summed losses see
    the examples in the single-process order."""
    for n in (1, 2, 5, 8):
        batch = np.arange(100, 100 + n)
        shards = [Context(rank=r, world_size=world).shard(batch) for r in range(world)]
        assert np.array_equal(np.concatenate(shards), batch)
        sizes = [len(s) for s in shards]
        assert max(sizes) - min(sizes) <= 1


def test_balanced_epochs_are_deepmoji_samples() -> None:
    """Half of each class, drawn with replacement, shuffled; the same draw for the same (seed,
    stage, epoch) on every process, another one for the next epoch."""
    targets = np.array([[0.0]] * 9 + [[1.0]] * 2)
    order = ft.balanced_order(0, 1, 0, targets, 6)
    assert len(order) == 6 and (targets[order, 0] == 1).sum() == 3
    assert np.array_equal(order, ft.balanced_order(0, 1, 0, targets, 6))
    assert not np.array_equal(order, ft.balanced_order(0, 1, 1, targets, 6))
    with pytest.raises(ValueError, match="binary"):
        ft.balanced_order(0, 0, 0, np.eye(3)[[0, 1, 2]], 6)
