"""Which architecture converts a file: one plan, decided once.

A file with a model config whose layers are all supported converts through the generic path,
unless a registered pair is exactly that model (its keras_structure) and accepts the file. A
file without a config (weights only), or with layers the generic path does not know (DeepMoji's
attention), is matched to the one registered pair whose weighted layers it has. The plan that
wins is the one the conversion follows: nothing is read, matched or converted twice.
"""

from __future__ import annotations

from parity.arch import GENERIC, PAIRS, get_arch
from parity.arch.base import Plan
from parity.arch.generic import unsupported_layers
from parity.errors import ConversionError
from parity.keras.graph import KerasGraph, parse_graph
from parity.keras.read import KerasFile


def graph_of(kfile: KerasFile) -> tuple[KerasGraph | None, str | None]:
    """(the file's parsed model config or None, why it could not be parsed)."""
    if not kfile.model_config:
        return None, None
    try:
        return parse_graph(kfile.model_config), None
    except ConversionError as exc:
        return None, str(exc)


def plan_conversion(
    kfile: KerasFile, arch: str | None = None, hard_sigmoid: str | None = None
) -> Plan:
    """The plan for converting ``kfile``: as ``arch`` when given, else as match() decides."""
    graph, problem = graph_of(kfile)
    if arch is not None:
        chosen = get_arch(arch)
        if graph is None and problem is not None and chosen is GENERIC:
            raise ConversionError(f"{kfile.path}: unusable model config: {problem}")
        plan = chosen.plan(kfile, graph, hard_sigmoid)
    else:
        plan = match(kfile, graph, hard_sigmoid, problem=problem)
    plan.graph = graph
    return plan


def match(
    kfile: KerasFile,
    graph: KerasGraph | None,
    hard_sigmoid: str | None = None,
    *,
    problem: str | None = None,
) -> Plan:
    """arch=None: the plan of the architecture that fits the file (see module docstring).
    ``problem``: why the file's model config could not be parsed, when it has one."""
    unsupported = unsupported_layers(graph) if graph is not None else []
    if graph is not None and not unsupported:
        for pair in PAIRS.values():
            if pair.keras_structure is None:
                continue
            try:
                return pair.plan(kfile, graph, hard_sigmoid)
            except ConversionError:
                continue
        return GENERIC.plan(kfile, graph, hard_sigmoid)
    plans, why = [], []
    for pair in PAIRS.values():
        try:
            plans.append(pair.plan(kfile, graph, hard_sigmoid))
        except ConversionError as exc:
            why.append(str(exc))
    if len(plans) == 1:
        return plans[0]
    found = ", ".join(layer.name for layer in kfile.weighted_layers) or "none"
    which = "none" if not plans else " and ".join(p.arch.name for p in plans)
    message = (
        f"{kfile.path}: cannot tell the architecture (layers with weights: {found}; "
        f"registered architectures matching: {which}); pass arch= one of {', '.join(PAIRS)}"
    )
    if unsupported:
        message += (
            f"; the generic path cannot convert it either: unsupported layer(s) "
            f"{', '.join(unsupported)}"
        )
    elif problem is not None:
        message += f"; the generic path cannot rebuild it from its model config: {problem}"
    elif graph is None:
        message += (
            f"; the file has no model config ({kfile.format} stores weights only), so the "
            "generic path cannot rebuild it: pass arch=, or convert the full-model file"
        )
    raise ConversionError(message)
