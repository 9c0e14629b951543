"""Mapping: resolve a file's layers for a model, then apply its mapping table strictly.

Every Keras weight is used exactly once, every torch parameter filled exactly once, every shape
checked, NaN/Inf refused; all problems are collected and raised together in one ConversionError.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from parity.convert.transforms import CONSTANT_FILLS, TRANSFORMS
from parity.errors import ConversionError
from parity.keras.read import KerasFile, KerasLayer, snake_case

#: A mapping row: (Keras weight "layer/weight" or None for a constant, torch parameter, transform
#: name or constant-fill name).
Row = tuple[str | None, str, str]


def _outer_class(spec_class: str) -> str:
    """ "Bidirectional(LSTM)" -> "Bidirectional": the class the file's config records."""
    return spec_class.split("(", 1)[0]


def resolve_layers(kfile: KerasFile, spec: Sequence[tuple[str, str]]) -> dict[str, KerasLayer]:
    """Match the file's weighted layers to a model's expected (role, class) layers.

    By name when the file uses the model's own layer names (DeepMoji's files, our references);
    else by class and order (a user's model with auto names like dense_7, or Keras 3 weight
    groups named after classes); else, when the file cannot tell classes, by position.
    """
    found = kfile.weighted_layers
    names = {layer.name: layer for layer in found}
    expected = ", ".join(f"{role} ({cls})" for role, cls in spec)
    present = ", ".join(
        f"{layer.name} ({layer.class_name or layer.class_key or '?'})" for layer in found
    )
    if len(found) != len(spec):
        raise ConversionError(
            f"{kfile.path}: the file has {len(found)} layers with weights [{present}]; "
            f"this architecture expects {len(spec)} [{expected}]"
        )
    if all(role in names for role, _ in spec):
        return {role: names[role] for role, _ in spec}
    if all(layer.class_key is not None for layer in found):
        by_class: dict[str, list[KerasLayer]] = {}
        for layer in found:
            by_class.setdefault(layer.class_key, []).append(layer)
        resolved = {}
        for role, cls in spec:
            candidates = by_class.get(snake_case(_outer_class(cls)), [])
            if not candidates:
                raise ConversionError(
                    f"{kfile.path}: no {_outer_class(cls)} layer for {role!r}; "
                    f"the file has [{present}], this architecture expects [{expected}]"
                )
            resolved[role] = candidates.pop(0)
        return resolved
    return {role: layer for (role, _), layer in zip(spec, found, strict=True)}


def collect_weights(
    kfile: KerasFile,
    layers: dict[str, KerasLayer],
    spec: Sequence[tuple[str, str]],
    layer_weights: dict[str, tuple[str, ...]],
) -> dict[str, np.ndarray]:
    """Keras weights named "role/weight" for resolved layers, checked and in saved order.

    ``layer_weights``: Keras class (as in ``spec``) -> the weights it saves, in saved order."""
    weights: dict[str, np.ndarray] = {}
    problems = []
    for role, layer in layers.items():
        cls = dict(spec)[role]
        names = layer_weights[cls]
        if len(layer.weights) != len(names):
            stored = [w.name for w in layer.weights]
            problems.append(
                f"layer {layer.name!r} ({cls}): expected {len(names)} weights "
                f"{list(names)}, found {len(stored)} {stored}"
            )
            continue
        for name, weight in zip(names, layer.weights, strict=True):
            weights[f"{role}/{name}"] = weight.array
            problem = weight_problem(weight.array)
            if problem:
                problems.append(f"layer {layer.name!r}: weight {weight.name!r} {problem}")
    if problems:
        raise ConversionError(f"{kfile.path}: " + "; ".join(problems))
    return weights


def weight_problem(array: np.ndarray) -> str | None:
    """What makes a stored weight unusable, if anything: NaN/Inf values, or a dimension of size
    zero (an Embedding of width 0 or a Dense of no units is no trained model; sizes derived
    from it would divide by zero)."""
    if 0 in array.shape:
        return f"has a zero-size dimension {tuple(array.shape)}"
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = int(np.size(array) - np.isfinite(array).sum())
        return f"has {bad} NaN/Inf values"
    return None


def apply_mapping(
    module: nn.Module,
    mapping: Sequence[Row],
    weights: dict[str, np.ndarray],
    *,
    source: str = "",
    assign: bool = False,
) -> None:
    """Fill ``module``'s parameters from ``weights`` through ``mapping``, strictly.

    ``assign`` replaces the parameters by tensors sharing the converted arrays' memory instead
    of copying into them (for a module made by build_empty).

    Values are cast to each parameter's dtype; nothing is assigned unless every check passes.
    Buffers (e.g. BatchNormalization's moving statistics, Keras non-trainable weights) are filled
    like parameters.
    """
    params = dict(module.named_parameters())
    params.update(dict(module.named_buffers()))
    problems: list[str] = []
    values: dict[str, np.ndarray] = {}
    used: set[str] = set()
    for keras_name, torch_name, how in mapping:
        if torch_name in values:
            problems.append(f"parameter {torch_name} is filled twice")
            continue
        if torch_name not in params:
            problems.append(f"parameter {torch_name} does not exist in {type(module).__name__}")
            continue
        shape = tuple(params[torch_name].shape)
        if keras_name is None:
            value = CONSTANT_FILLS[how](shape)
        else:
            if keras_name in used:
                problems.append(f"weight {keras_name} is used twice")
                continue
            if keras_name not in weights:
                problems.append(f"weight {keras_name} is missing from the file")
                continue
            used.add(keras_name)
            value = TRANSFORMS[how].to_torch(weights[keras_name])
        if tuple(value.shape) != shape:
            found = tuple(weights[keras_name].shape) if keras_name else tuple(value.shape)
            problems.append(
                f"weight {keras_name} has shape {found}, {torch_name} needs {shape} ({how} of it)"
            )
            continue
        values[torch_name] = value
    problems += [
        f"weight {name} is not used by the mapping" for name in weights if name not in used
    ]
    problems += [f"parameter {name} is not filled" for name in params if name not in values]
    if problems:
        prefix = f"{source}: " if source else ""
        raise ConversionError(prefix + "; ".join(problems))
    tensors = {}
    for name, value in values.items():
        tensor = torch.from_numpy(np.asarray(value))  # shares the array's memory: no copy
        tensors[name] = (
            tensor if tensor.dtype == params[name].dtype else tensor.to(params[name].dtype)
        )
    if assign:
        # The converted arrays become the parameters and buffers themselves (no copy); the
        # module's own, never-initialised storage is dropped (see build_empty).
        module.load_state_dict(tensors, strict=True, assign=True)
        return
    with torch.no_grad():
        for name, tensor in tensors.items():
            params[name].copy_(tensor)


class _SkipInit(TorchFunctionMode):
    """Skips in-place random initialisation: pointless for parameters that conversion replaces,
    and it is most of a naive conversion's time (DeepMoji's 12.8M-row embedding normal_). The
    meta device would avoid the memory too, but initialising on it imports torch._dynamo (~3 s);
    torch.empty's untouched pages cost no RSS anyway."""

    SKIPPED = frozenset(
        {
            torch.Tensor.normal_,
            torch.Tensor.uniform_,
            torch.Tensor.zero_,
            torch.Tensor.fill_,
            # nn.init dispatches its functions themselves to torch-function modes
            nn.init.uniform_,
            nn.init.normal_,
            nn.init.trunc_normal_,
            nn.init.kaiming_uniform_,
            nn.init.kaiming_normal_,
            nn.init.xavier_uniform_,
            nn.init.xavier_normal_,
            nn.init.orthogonal_,
            nn.init.zeros_,
            nn.init.ones_,
            nn.init.constant_,
        }
    )

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.SKIPPED:  # the tensor: first positional, or nn.init's tensor=
            return args[0] if args else (kwargs or {})["tensor"]
        return func(*args, **(kwargs or {}))


def build_empty(build: Callable[[], nn.Module], dtype: torch.dtype) -> nn.Module:
    """``build()`` without random initialisation, in ``dtype``, for apply_mapping(assign=True)."""
    with _SkipInit():
        return build().to(dtype)
