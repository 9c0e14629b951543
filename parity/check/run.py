"""A parity check end to end: what to run on the torch side, on which inputs, and the report.

`parity check` and the test suite both call ``check``; the Keras side comes either from a golden
file or live from parity.check.keras_side (which needs the keras extra).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from parity.arch import PairArch, arch_of
from parity.arch.generic.model import module_name
from parity.check.diagnose import diagnose
from parity.check.harness import (
    ACTIVATION_PREFIX,
    Comparison,
    Subject,
    compare_all,
    golden_meta,
    run_torch,
)
from parity.check.inputs import DEFAULT_SEQ_LEN, generate_ids, generate_texts, load_ids
from parity.check.points import point_names, points_from_meta, resolve_points
from parity.check.report import Report
from parity.errors import ConversionError
from parity.keras.graph import CUDNN_AS
from parity.keras.read import KerasFile
from parity.ports.text_preprocessing import TextVectorization

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}


def _wrapped_classes(config: Mapping[str, Any] | None) -> set[str]:
    """A wrapper's inner class (Bidirectional(LSTM) -> LSTM), from its config."""
    inner = (config or {}).get("layer")
    return {inner["class_name"]} if isinstance(inner, dict) and "class_name" in inner else set()


def _classes(kfile: KerasFile | None, specs: Iterable[str]) -> frozenset[str]:
    """Keras classes present: from the file's config and the pair's layer list. Empty (every
    alternative is tried) when the file names no classes: a weights-only file cannot tell
    which unweighted layers (Flatten, Masking) the model had."""
    if kfile is not None and not any(layer.class_name for layer in kfile.layers):
        return frozenset()
    found: set[str] = set()
    for layer in kfile.layers if kfile is not None else ():
        if layer.class_name:  # a cuDNN class is diagnosed as the layer it converts to
            found |= {layer.class_name, *_wrapped_classes(layer.config)}
            found.add(CUDNN_AS.get(layer.class_name, layer.class_name))
    for spec in specs:
        found |= {part.strip(")") for part in spec.split("(")}
    return frozenset(found)


def subject_for(model: nn.Module, kfile: KerasFile | None = None) -> tuple[Subject, dict]:
    """The torch side of a check and what the Keras side must record for it.

    Returns (subject, keras) where keras = {"layer_names": role -> the file's layer name,
    "weights": role -> Keras weight names in saved order, "activation_points": Keras layer name
    -> point name}: the arguments of parity.check.keras_side.keras_reference.
    """
    arch = arch_of(model)
    weights = arch.keras_weights(model)
    if isinstance(arch, PairArch):
        name, specs = arch.name, [cls for _, cls in arch.keras_layers]
        roles = {role: role for role in weights}
        if kfile is not None:
            roles = {role: layer.name for role, layer in arch.resolve(kfile).items()}
    else:  # built from the file's config: the submodules are named after the Keras layers
        name, specs = None, [layer["class_name"] for layer in model.config.layers]
        roles = {layer: layer for layer in weights}
    present = [layer.name for layer in kfile.layers] if kfile is not None else []
    names = point_names(model, present, roles)
    subject = Subject(
        model,
        arch.mapping(model),
        pair=name,
        points=resolve_points(name, names),
        classes=_classes(kfile, specs),
    )
    return subject, {"layer_names": roles, "weights": weights, "activation_points": names}


def vocab_size(model: nn.Module) -> int:
    """Rows of the model's token embedding (its architecture's), the ids a check may feed."""
    try:
        return arch_of(model).token_embedding(model).num_embeddings
    except ValueError as exc:
        raise ConversionError(f"parity check feeds token ids: {exc}") from exc


def text_preprocessor_of(model: nn.Module) -> TextVectorization | None:
    """The TextVectorization a generic model's single string input feeds, if that is what it
    takes (a check then feeds texts instead of ids)."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "inputs") or len(config.inputs) != 1:
        return None
    layers = {layer["name"]: layer for layer in config.layers}
    source = config.inputs[0][0]
    if layers.get(source, {}).get("config", {}).get("dtype") != "string":
        return None
    for layer in config.layers:
        reads = [ref[0] for call in layer["inbound"] for ref in call["args"]]
        module = dict(model.named_children()).get(module_name(layer["name"]))
        if source in reads and isinstance(module, TextVectorization):
            return module
    raise ConversionError(
        "parity check feeds token ids or texts to a TextVectorization; this model's string "
        "input goes elsewhere (StringLookup, Hashing): check it with your own code"
    )


def check_inputs(model: nn.Module, kfile: KerasFile | None, path: str | None = None) -> np.ndarray:
    """The user's ids (``path``), checked against the model, or generated ones that fit it
    (texts for a model whose input is a string fed to TextVectorization)."""
    text = text_preprocessor_of(model)
    if text is not None:
        if path is not None:
            raise ConversionError(
                "--inputs gives token ids, but this model takes texts (its input feeds "
                "TextVectorization); generated texts are used without --inputs"
            )
        length = text.output_sequence_length or DEFAULT_SEQ_LEN
        return generate_texts(text.table.vocabulary(), length)
    fixed = arch_of(model).input_length(model)
    if path is not None:
        return load_ids(path, vocab_size(model), fixed)
    return generate_ids(vocab_size(model), fixed or DEFAULT_SEQ_LEN)


def check(
    subject: Subject,
    golden: Mapping[str, np.ndarray],
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    explain: bool = True,
    notes: Sequence[str] = (),
) -> Report:
    """Compare the torch side with Keras' numbers (golden or live); diagnose a failure."""
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConversionError("--device cuda: torch sees no CUDA device here")
    if not subject.points:
        subject.points = points_from_meta(golden_meta(golden))
    ours = run_torch(subject, golden, device=device, dtype=dtype)
    rows = compare_all(ours, golden, device=device, dtype=dtype)
    optional = {f"{ACTIVATION_PREFIX}{name}" for name, point in subject.points if point.optional}

    def keep(row: Comparison) -> bool:
        return not (row.name in optional and row.problem.startswith("shape"))

    notes = list(notes)
    notes += [
        f"{row.name}: not compared ({row.problem}, layouts differ)" for row in rows if not keep(row)
    ]
    if not any(key.startswith(ACTIVATION_PREFIX) for key in golden):
        notes.append(
            "the Keras side has no layer activations (older golden file): outputs and "
            "gradients only"
        )
    rows = [row for row in rows if keep(row)]
    report = Report(rows, notes=notes, device=str(device), dtype=str(dtype).removeprefix("torch."))
    if not report.passed and explain:
        report.diagnosis = diagnose(subject, golden, rows, device=device, dtype=dtype, keep=keep)
    return report
