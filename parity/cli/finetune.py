"""`parity finetune`: load a converted model, encode a JSONL task, fine-tune, score, write outputs.

Any converted model that takes token ids works: a registered pair or a generic conversion, from a
Keras file in any format parity.load_keras reads (with --config for a weights-only file) or a
.safetensors written by parity.save. Writes model.safetensors (one per class for multi-label
data), metrics.json and curve.png into --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from parity.api import ParityWarning, load_model, save
from parity.arch import arch_names, arch_of
from parity.cli.options import EXIT_FAILURE, PROG, add_hard_sigmoid_option
from parity.conventions import (
    DEEPMOJI_FINETUNE_EMBED_DROPOUT,
    DEEPMOJI_FINETUNE_FINAL_DROPOUT,
    MAX_INPUT_LENGTH,
)
from parity.errors import error_line
from parity.files import write_atomic_text
from parity.inference import DEFAULT_TEXT_LENGTH, text_length
from parity.text import extend_vocabulary, load_vocabulary, save_vocabulary
from parity.text.vocab import VOCABULARY_FILE
from parity.train.checkpoint import Checkpointer, CheckpointMismatch
from parity.train.data import SPLITS, TaskData, binary_view, encode_dataset, read_jsonl
from parity.train.distributed import Context, process_group
from parity.train.embedding import extend_embedding
from parity.train.loop import (
    History,
    NotFineTunable,
    check_finetunable,
    finetune,
    predict,
    token_embedding,
)
from parity.train.metrics import METRICS, metric_for, score
from parity.train.plots import plot_history
from parity.train.stages import DEFAULT_BATCH_SIZE, DEFAULT_EPOCHS, DEFAULT_PATIENCE, METHODS

#: The run's checkpoint in --out (multi-label runs: checkpoint-class<c>.pt per class).
CHECKPOINT_FILE = "checkpoint.pt"


def _note(message: str) -> None:
    print(f"{PROG}: note: {message}", file=sys.stderr)


def _fail(message: str) -> int:
    print(f"{PROG}: error: {error_line(message)}", file=sys.stderr)
    return EXIT_FAILURE


def _vocabulary_path(args: argparse.Namespace) -> Path:
    if args.vocab is not None:
        return args.vocab
    beside = Path(args.model).parent / VOCABULARY_FILE
    if not beside.is_file():
        raise FileNotFoundError(f"no {VOCABULARY_FILE} beside {args.model}; pass --vocab")
    return beside


def _maxlen(model: nn.Module, args: argparse.Namespace) -> int:
    """The model's own input length when it fixes one (a different --maxlen is noted and
    ignored), else --maxlen, else parity.inference's default."""
    fixed = arch_of(model).input_length(model)
    if fixed is not None and args.maxlen not in (None, fixed):
        _note(f"{args.model} takes {fixed} tokens per text; --maxlen {args.maxlen} ignored")
    return text_length(model, args.maxlen)


def run(args: argparse.Namespace) -> int:
    """`parity finetune`: load, encode, fine-tune, score, save model, report and plot."""
    if args.threads:
        torch.set_num_threads(args.threads)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ParityWarning)
        model = load_model(
            args.model, arch=args.arch, hard_sigmoid=args.hard_sigmoid, config=args.config
        )
    for warning in caught:
        _note(str(warning.message))
    vocab_path = _vocabulary_path(args)
    try:
        vocab = load_vocabulary(vocab_path)
    except json.JSONDecodeError as exc:
        return _fail(f"{vocab_path}: not JSON ({exc.msg})")
    except (ValueError, TypeError) as exc:  # not a word -> id object; the message names the file
        return _fail(str(exc))
    maxlen = _maxlen(model, args)
    if not 1 <= maxlen <= MAX_INPUT_LENGTH:
        return _fail(f"--maxlen {maxlen}: must be 1 to {MAX_INPUT_LENGTH:,} tokens")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        return _fail(f"{out}: --out must be a directory, and is a file")
    try:
        check_finetunable(model, maxlen)
        vocab_size = token_embedding(model).num_embeddings
    except NotFineTunable as exc:
        return _fail(f"{args.model}: cannot fine-tune: {exc}")
    try:
        splits = read_jsonl(args.data)
    except ValueError as exc:  # a malformed data file: the message names file and line
        return _fail(str(exc))
    added: list[str] = []
    if args.extend_vocab:  # DeepMoji's extend_with: new training words, new embedding rows
        try:
            vocab, added = extend_vocabulary(vocab, splits["train"][0], args.extend_vocab)
            extend_embedding(model, len(added), generator=torch.Generator().manual_seed(args.seed))
        except ValueError as exc:
            return _fail(f"{args.model}: cannot extend the vocabulary: {exc}")
        vocab_size = token_embedding(model).num_embeddings
    try:
        data = encode_dataset(splits, vocab, maxlen, vocab_size=vocab_size)
    except ValueError as exc:  # degenerate labels (a class no record has)
        return _fail(f"{args.data}: {exc}")
    metric = args.metric or metric_for(args.data, data.task)
    if args.balanced is not None and (
        data.task == "multiclass" or args.balanced % 2 or args.balanced < 2
    ):
        return _fail(
            f"--balanced {args.balanced}: needs an even N >= 2 and a binary or multi-label task"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return _fail(f"{out}: cannot make the output directory ({exc.strerror})")
    dropout = {} if args.dropout else {"embed_dropout": 0.0, "final_dropout": 0.0}
    options: dict[str, Any] = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "patience": args.patience,
        "seed": args.seed,
        "sparse_embeddings": args.sparse_embeddings,
        "balanced": args.balanced,
        **dropout,
    }
    progress = False if args.quiet else None  # None: a bar on a terminal only
    start = time.perf_counter()
    try:
        with process_group(args.device) as ctx:
            if added and ctx.is_main:  # one writer, as for every output file
                save_vocabulary(vocab, out / VOCABULARY_FILE)
                _note(
                    f"{len(added)} training words added: {out / VOCABULARY_FILE} goes with "
                    "the model"
                )
            trained = _train(model, data, args, options, progress, out, ctx)
            if ctx.is_main:
                _write_outputs(model, data, args, metric, maxlen, options, out, trained, start)
            ctx.barrier()  # the others leave once rank 0's files are complete
    except CheckpointMismatch as exc:
        return _fail(str(exc))
    return 0


def _train(
    model: nn.Module,
    data: TaskData,
    args: argparse.Namespace,
    options: dict[str, Any],
    progress: bool | None,
    out: Path,
    ctx: Context,
) -> dict[str, tuple[nn.Module, History]]:
    """Fine-tune one model (one per class for multi-label data) on this process' share,
    checkpointing into ``out`` (rank 0 writes); name -> (tuned model, history)."""
    views = (
        {f"class{c}": binary_view(data, c) for c in range(data.num_classes)}
        if data.task == "multilabel"  # DeepMoji's class-average fine-tuning
        else {"": data}
    )
    trained = {}
    for name, view in views.items():
        checkpointer = Checkpointer(
            out / (f"checkpoint-{name}.pt" if name else CHECKPOINT_FILE),
            {"model": str(args.model), "data": str(args.data), "run": name},
            every=args.checkpoint_every,
            context=ctx,
        )
        trained[name] = finetune(
            model,
            view,
            args.method,
            progress=progress,
            context=ctx,
            checkpointer=checkpointer,
            resume=args.resume,
            **options,
        )
    return trained


def _write_outputs(
    model: nn.Module,
    data: TaskData,
    args: argparse.Namespace,
    metric: str,
    maxlen: int,
    options: dict[str, Any],
    out: Path,
    trained: dict[str, tuple[nn.Module, History]],
    start: float,
) -> None:
    """Rank 0: the tuned model(s), metrics.json and curve.png, each written atomically."""
    histories: dict[str, History] = {}
    if data.task == "multilabel":
        columns = {}
        for c in range(data.num_classes):
            tuned, histories[f"class {c}"] = trained[f"class{c}"]
            save(tuned, out / f"model-class{c}.safetensors")
            columns[c] = {s: predict(tuned, data.ids[s])[:, 0] for s in ("val", "test")}
        probs = {s: np.stack([columns[c][s] for c in columns], 1) for s in ("val", "test")}
        saved = [f"model-class{c}.safetensors" for c in columns]
    else:
        tuned, histories["model"] = trained[""]
        save(tuned, out / "model.safetensors")
        probs = {s: predict(tuned, data.ids[s]) for s in ("val", "test")}
        saved = ["model.safetensors"]
    result = score(metric, probs, data.targets)
    report = {
        "model": str(args.model),
        "arch": arch_of(model).name,
        "data": str(args.data),
        "method": args.method,
        "task": data.task,
        "num_classes": data.num_classes,
        "records": {s: len(data.ids[s]) for s in SPLITS},
        "maxlen": maxlen,
        "options": options,
        "dropout": bool(args.dropout),
        **result,
        "seconds": round(time.perf_counter() - start, 1),
        "saved": saved,
        "stages": {name: h.stages for name, h in histories.items()},
    }
    text = json.dumps(report, indent=2) + "\n"
    write_atomic_text(out / "metrics.json", text, "metrics")
    plot_history(histories, out / "curve.png")
    print(f"{args.method} on {Path(args.data).stem}: test {metric} {result['test']:.4f} -> {out}")


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register `parity finetune` (parity.cli.COMMANDS)."""

    p = commands.add_parser(
        "finetune",
        help="fine-tune a converted model with DeepMoji's methods",
        description="Fine-tune any converted model that takes token ids (an Embedding input "
        "and a Dense head) with DeepMoji's methods, on a new Keras-initialized head.",
    )
    p.add_argument("model", help="Keras file (.keras, .h5, .weights.h5) or parity .safetensors")
    p.add_argument("--data", required=True, help="JSONL with text, label, split (train/val/test)")
    p.add_argument("--method", choices=METHODS, default="chain-thaw")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="per stage (max)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    p.add_argument("--lr", type=float, default=None, help="default: DeepMoji's for the method")
    p.add_argument("--patience", type=int, default=DEFAULT_PATIENCE, help="early stopping")
    p.add_argument(
        "--balanced",
        type=int,
        default=None,
        metavar="N",
        help="DeepMoji's class-balanced epochs: N examples (even), half of each class, drawn "
        "with replacement (binary tasks; multi-label: per class); default one pass over train",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--maxlen",
        type=int,
        default=None,
        help=f"tokens per text (default {DEFAULT_TEXT_LENGTH}); a model that fixes its input "
        "length (embedding_dense's Flatten, a config stating the input shape) uses its own",
    )
    p.add_argument(
        "--vocab",
        type=Path,
        default=None,
        help=f"JSON word -> id (default: {VOCABULARY_FILE} beside MODEL)",
    )
    p.add_argument(
        "--extend-vocab",
        type=int,
        default=0,
        metavar="N",
        help="add up to N new words of the training split to the vocabulary and embedding "
        "(DeepMoji used 10000 for new/full/chain-thaw); writes OUT/vocabulary.json",
    )
    p.add_argument("--metric", choices=METRICS, default=None)
    p.add_argument(
        "--no-dropout",
        dest="dropout",
        action="store_false",
        help=f"no fine-tuning dropout: DeepMoji models train with embed "
        f"{DEEPMOJI_FINETUNE_EMBED_DROPOUT} / final {DEEPMOJI_FINETUNE_FINAL_DROPOUT} "
        "otherwise; a model without those settings (a generic conversion) keeps the dropout "
        "rates its file has, with or without this flag",
    )
    p.add_argument(
        "--arch",
        choices=arch_names(),
        default=None,
        help="for Keras files: the architecture (default: decided from the file)",
    )
    p.add_argument(
        "--config",
        default=None,
        help="for a weights-only MODEL (.weights.h5, save_weights .h5): a .keras, full-model "
        ".h5 or model JSON file whose model config describes it",
    )
    add_hard_sigmoid_option(p)
    p.add_argument("--out", default="finetune-out", help="directory for model, metrics, plot")
    p.add_argument("--quiet", action="store_true", help="no progress bar (none off a terminal)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument(
        "--device",
        default="cpu",
        help="cpu or cuda; under torchrun each process takes cuda:LOCAL_RANK, and the "
        "process group uses gloo on CPU, nccl on CUDA",
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=0,
        metavar="STEPS",
        help=f"also write {CHECKPOINT_FILE} every STEPS optimizer steps (it is written at the "
        "end of every epoch and stage)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help=f"continue from OUT/{CHECKPOINT_FILE} when there is one (same settings), else "
        "start afresh",
    )
    p.add_argument(
        "--dense-embedding-gradients",
        dest="sparse_embeddings",
        action="store_false",
        help="train embeddings as tf.keras (Keras 2) does, not as Keras 3 on TensorFlow",
    )
    p.set_defaults(run=run)
