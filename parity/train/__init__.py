"""Fine-tuning converted models as Keras (and DeepMoji) would: ``parity finetune``.

data.py     JSONL benchmark files -> encoded splits (TaskData), binary views of multi-label data
stages.py   DeepMoji's methods as stage plans, batch order, early stopping (shared with the
            Keras reference, reference_keras/finetune.py)
loop.py     new head, dropout rates, freezing, Keras' loss from the head's logits, the stages
metrics.py  accuracy, validation-tuned F1, class-average F1, each benchmark's metric
plots.py    curve.png
distributed.py  data-parallel runs under torchrun (DDP; gloo on CPU, nccl on CUDA)
checkpoint.py   resumable runs: checkpoints (written atomically by parity.files)
resume.py   a Keras file's optimizer state as a parity.optim optimizer
embedding.py    growing the token embedding for words extend_vocabulary added
(`parity finetune` itself is parity.cli.finetune)
"""

from parity.train.checkpoint import Checkpointer, CheckpointMismatch, Interrupted
from parity.train.data import SPLITS, TaskData, binary_view, encode_dataset, read_jsonl
from parity.train.distributed import Context, exit_process, process_group
from parity.train.embedding import extend_embedding
from parity.train.loop import (
    LOGITS,
    LOSSES,
    History,
    LogitsTap,
    NotFineTunable,
    batch_loss,
    check_finetunable,
    evaluate_loss,
    finetune,
    freeze,
    head_module,
    predict,
    token_embedding,
    train_stage,
    with_dropout,
    with_new_head,
)
from parity.train.metrics import (
    DATASET_METRICS,
    accuracy,
    class_average_f1,
    f1_binary,
    metric_for,
    score,
    tuned_f1,
)
from parity.train.stages import (
    METHODS,
    EarlyStopping,
    Stage,
    balanced_order,
    batches,
    epoch_order,
    plan,
)

__all__ = [
    "DATASET_METRICS",
    "LOGITS",
    "LOSSES",
    "METHODS",
    "SPLITS",
    "CheckpointMismatch",
    "Checkpointer",
    "Context",
    "EarlyStopping",
    "History",
    "Interrupted",
    "LogitsTap",
    "NotFineTunable",
    "Stage",
    "TaskData",
    "accuracy",
    "balanced_order",
    "batch_loss",
    "batches",
    "binary_view",
    "check_finetunable",
    "class_average_f1",
    "encode_dataset",
    "epoch_order",
    "evaluate_loss",
    "exit_process",
    "extend_embedding",
    "f1_binary",
    "finetune",
    "freeze",
    "head_module",
    "metric_for",
    "plan",
    "predict",
    "process_group",
    "read_jsonl",
    "score",
    "token_embedding",
    "train_stage",
    "tuned_f1",
    "with_dropout",
    "with_new_head",
]
