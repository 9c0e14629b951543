"""Which architecture converts a file: one plan, decided once.

A file with a model config whose layers are all supported converts through the generic path,
unless a registered pair is exactly that model (its keras_structure), or the file holds the
pair's own class (its own_class), and the pair accepts the file. A
file without a config (weights only), or with layers the generic path does not know (DeepMoji's
attention), is matched to the one registered pair whose weighted layers it has. The plan that
wins is the one the conversion follows: nothing is read, matched or converted twice.
"""

from __future__ import annotations

from parity.arch import GENERIC, PAIRS, get_arch
from parity.arch.base import Plan
from parity.arch.generic import unsupported_layers
from parity.arch.generic.model import unsupported_message
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
        classes = set(graph.layer_classes())
        for pair in PAIRS.values():
            if pair.keras_structure is None and pair.own_class not in classes:
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
    # The reason leads; the registered architectures are named only where they could help.
    if len(plans) > 1:
        which = " and ".join(p.arch.name for p in plans)
        raise ConversionError(
            f"{kfile.path}: the weights fit several architectures ({which}); pass arch= one of them"
        )
    if unsupported:
        raise ConversionError(
            unsupported_message(kfile, unsupported) + "; no registered architecture matches it"
        )
    if problem is not None:
        raise ConversionError(
            f"{kfile.path}: the model config cannot be rebuilt: {problem}; no registered "
            f"architecture ({', '.join(PAIRS)}) matches its weights either"
        )
    found = ", ".join(layer.name for layer in kfile.weighted_layers) or "none"
    raise ConversionError(
        f"{kfile.path}: no model config ({kfile.format} stores weights only: layers with "
        f"weights {found}) and they match no registered architecture ({', '.join(PAIRS)}); "
        "give the model's architecture with config= (--config): the full-model file (.keras, "
        "or .h5 from model.save), Keras' model.to_json() output, or a .keras archive's "
        "config.json"
    )
