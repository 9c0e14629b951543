"""Which stored arrays belong to which layer of a parsed graph.

A top-level layer's weights are its own entry in the file. A layer inlined from a nested model
(parity.keras.graph.inline_nested) has no entry of its own: the file keeps every weight of a
nested model in the entry of the outermost one, and they are split here:

- Keras 3 files (.keras, .weights.h5) by group path: the layer with Keras 3 auto names
  ("sequential", "functional", "dense_1") owns "layers/functional/layers/dense_1/...".
- legacy HDF5 files by the layer's name inside the weight's name ("block/d1/kernel" from
  Keras 3, "d1/kernel:0" from tf.keras). Their order cannot be used: a nested model saves all
  its trainable weights first, then the others (a BatchNormalization's moving statistics come
  after every kernel of the model).

Each layer's own weights keep their saved order, which is what its converter expects.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from parity.keras.graph import KERAS3_LAYERS_GROUP, KerasGraph, Node
from parity.keras.read import FORMAT_KERAS_V3, FORMAT_KERAS_V3_WEIGHTS, KerasFile, KerasWeight

#: Formats whose nested-model weights are grouped by Keras 3 auto names.
GROUPED_FORMATS = (FORMAT_KERAS_V3, FORMAT_KERAS_V3_WEIGHTS)

Split = tuple[dict[str, list[KerasWeight]], list[str], list[str]]


def node_weights(
    kfile: KerasFile, graph: KerasGraph
) -> tuple[dict[str, list[KerasWeight]], list[str]]:
    """(graph node name -> its stored weights in saved order, problems). Stored weights of a
    nested model that no inlined layer claims are a problem, never dropped."""
    stored = {layer.name: layer.weights for layer in kfile.layers}
    found: dict[str, list[KerasWeight]] = {}
    nested: dict[str, list[Node]] = {}
    for node in graph.nodes:
        if node.scope and node.moduleless:  # an inlined input: no weights
            found[node.name] = []
        elif node.scope:
            nested.setdefault(node.scope[0], []).append(node)
        else:
            found[node.name] = list(stored.get(node.name, []))
    problems: list[str] = []
    split: Callable[[list[Node], Sequence[KerasWeight]], Split]
    split = _by_group if kfile.format in GROUPED_FORMATS else _by_layer_name
    for top, members in nested.items():
        parts, unclaimed, ambiguous = split(members, stored.get(top, []))
        found |= parts
        if ambiguous:
            problems.append(
                f"nested model {top!r} holds several layers named {ambiguous}; a legacy HDF5 "
                "file names weights by layer, so theirs cannot be told apart"
            )
        if unclaimed:
            problems.append(
                f"nested model {top!r}: stored weights {unclaimed} belong to none of its layers"
            )
    return found, problems


def _by_group(members: list[Node], weights: Sequence[KerasWeight]) -> Split:
    prefixes = {
        node.name: "".join(f"{KERAS3_LAYERS_GROUP}/{auto}/" for auto in node.storage[1:])
        for node in members
    }
    parts: dict[str, list[KerasWeight]] = {node.name: [] for node in members}
    unclaimed = []
    for weight in weights:
        owners = [name for name, prefix in prefixes.items() if weight.name.startswith(prefix)]
        if len(owners) == 1:
            parts[owners[0]].append(weight)
        else:
            unclaimed.append(weight.name)
    return parts, unclaimed, []


def _by_layer_name(members: list[Node], weights: Sequence[KerasWeight]) -> Split:
    by_local: dict[str, str] = {}
    twice = set()
    for node in members:
        if node.local_name in by_local:
            twice.add(node.local_name)
        by_local[node.local_name] = node.name
    ambiguous = set()
    parts: dict[str, list[KerasWeight]] = {node.name: [] for node in members}
    unclaimed = []
    for weight in weights:
        # The layer's own name comes first among the components naming layers: outer models'
        # names precede it, the weight's (or a wrapped cell's) follow.
        local = next((c for c in weight.name.split("/")[:-1] if c in by_local), None)
        if local is None:
            unclaimed.append(weight.name)
        elif local in twice:
            ambiguous.add(local)
        else:
            parts[by_local[local]].append(weight)
    return parts, unclaimed, sorted(ambiguous)
