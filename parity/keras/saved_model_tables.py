"""The lookup table of a tf_keras TextVectorization / StringLookup / IntegerLookup in a SavedModel,
read from saved_model.pb without TensorFlow.

A tf_keras SavedModel keeps such a layer's vocabulary neither in variables/ (only the empty
adapt-time counts table is there) nor in assets/, nor in keras_metadata.pb's config (it writes
``vocabulary: null`` even for a layer built with a vocabulary): the table is filled by its
``_initialize`` function from two captured constants, the keys and the indices. Found by
saving one; the path, all by field number (tensorflow/core/protobuf/*.proto):

  keras_metadata.pb  SavedMetadata.nodes(1) -> SavedObject node_id(2) node_path(3) metadata(5)
                     (the layer's JSON names it)
  saved_model.pb     SavedModel.meta_graphs(2) -> MetaGraphDef graph_def(2) object_graph_def(7)
                     SavedObjectGraph nodes(1), concrete_functions(2: map name -> function)
                     SavedObject children(1: node_id 1, local_name 2), function(6), constant(9)
                     layer [-> _lookup_layer] -> lookup_table -> _initialize -> SavedFunction
                     concrete_functions(1) -> SavedConcreteFunction bound_inputs(2) = [table,
                     keys constant, values constant] -> SavedConstant operation(1) -> GraphDef
                     node(1) NodeDef name(1) attr(5)["value"] -> AttrValue tensor(8) ->
                     TensorProto dtype(1) tensor_shape(2: dim(2) size(1)) tensor_content(4)
                     string_val(8) int64_val(10) int_val(7)

Bounded as every TF reader here: the file is read capped, every message decoded within a field
budget; anything not found where described is a ConversionError naming what was missing.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from parity.conventions import (
    MAX_ASSET_BYTES,
    MAX_JSON_BYTES,
    MAX_TF_GRAPH_FIELDS,
    MAX_TF_OBJECTS,
    MAX_VOCABULARY_TOKENS,
)
from parity.errors import ConversionError
from parity.keras.limits import load_json
from parity.keras.tensor_bundle import (
    FieldBudget,
    WireError,
    field_bytes,
    field_int,
    field_messages,
    field_text,
    parse_message,
    read_capped,
    read_varint,
    signed64,
)

SAVED_MODEL_PB = "saved_model.pb"
KERAS_METADATA_PB = "keras_metadata.pb"
#: saved_model.pb is mostly traced graphs; a real text model's is a few MB.
MAX_SAVED_MODEL_BYTES = 256 * 2**20
#: TensorFlow dtype enum values the tables use.
DT_INT32, DT_STRING, DT_INT64 = 3, 7, 9
#: The object-graph path from a lookup layer to its table's initializer.
LOOKUP_PATH = ("lookup_table", "_initialize")
TEXT_VECTORIZATION_PATH = ("_lookup_layer", *LOOKUP_PATH)


def _fields(data: bytes, budget: FieldBudget, keep: set[int] | None = None, max_fields: int = 0):
    return parse_message(data, max_fields or MAX_TF_OBJECTS, budget, keep)


def _layer_node(directory: Path, layer: str, budget: FieldBudget) -> int:
    """The object-graph node of the top-level Keras layer named ``layer``."""
    data = read_capped(directory, directory / KERAS_METADATA_PB, "Keras metadata", MAX_JSON_BYTES)
    found = []
    for node in field_messages(_fields(data, budget, {1}), 1):
        fields = _fields(node, budget, {2, 3, 5})
        path = field_text(fields, 3)
        if path.count(".") != 1:  # only the root model's own layers ("root.layer-1")
            continue
        metadata = load_json(field_bytes(fields, 5), f"{directory}: metadata of {path}")
        if isinstance(metadata, dict) and metadata.get("name") == layer:
            found.append(field_int(fields, 2))
    if len(found) != 1:
        raise ConversionError(
            f"{directory}: keras_metadata.pb lists {len(found)} top-level layers named {layer!r}"
        )
    return found[0]


def _tensor(data: bytes, budget: FieldBudget, where: str) -> list[Any]:
    """A TensorProto's values (1-D strings or integers)."""
    fields = _fields(data, budget, max_fields=MAX_VOCABULARY_TOKENS + 16)
    dtype = field_int(fields, 1)
    dims = [
        signed64(field_int(_fields(d, budget), 1))  # TensorShapeProto.dim(2).size(1)
        for d in field_messages(_fields(field_bytes(fields, 2), budget), 2)
    ]
    if len(dims) != 1 or not 0 < dims[0] <= MAX_VOCABULARY_TOKENS:
        raise ConversionError(f"{where}: the table constant has shape {dims}, not a vocabulary")
    (size,) = dims
    content = field_bytes(fields, 4)
    if dtype == DT_STRING:
        values: list[Any] = field_messages(fields, 8)
    elif dtype in (DT_INT64, DT_INT32):
        width, fmt = (8, "q") if dtype == DT_INT64 else (4, "i")
        if content:
            if len(content) != size * width:
                raise ConversionError(f"{where}: the table constant's content has a wrong size")
            values = list(struct.unpack(f"<{size}{fmt}", content))
        else:
            values = []
            for packed in fields.get(10 if dtype == DT_INT64 else 7, []):
                if isinstance(packed, int):
                    values.append(signed64(packed))
                else:  # packed varints
                    values += [signed64(v) for v in _varints(packed)]
    else:
        raise ConversionError(f"{where}: the table constant has dtype {dtype}, not a vocabulary")
    if len(values) != size:  # a one-value "splat" constant is not a vocabulary either
        raise ConversionError(
            f"{where}: the table constant holds {len(values)} values for shape [{size}]"
        )
    return values


def _varints(data: bytes) -> list[int]:
    out, pos = [], 0
    while pos < len(data):
        value, pos = read_varint(data, pos, len(data))
        out.append(value)
    return out


def lookup_table(directory: Path, layer: str, cls: str) -> tuple[list[Any], list[int]]:
    """(keys, indices) of the lookup table of the top-level layer ``layer`` (class ``cls``) in a
    tf_keras SavedModel directory: bytes or int keys, int indices, as the table was built."""
    where = f"{directory}: layer {layer!r} ({cls})"
    budget = FieldBudget(MAX_TF_GRAPH_FIELDS, "saved_model.pb")
    try:
        node_id = _layer_node(directory, layer, budget)
        data = read_capped(
            directory, directory / SAVED_MODEL_PB, "SavedModel", MAX_SAVED_MODEL_BYTES
        )
        graphs = field_messages(_fields(data, budget, {2}), 2)
        if len(graphs) != 1:
            raise ConversionError(f"{directory}: saved_model.pb holds {len(graphs)} meta graphs")
        meta = _fields(graphs[0], budget, {2, 7})
        objects = _fields(field_bytes(meta, 7), budget, {1, 2})
        nodes = field_messages(objects, 1)
        functions = {}
        for entry in field_messages(objects, 2):
            pair = _fields(entry, budget)
            functions[field_text(pair, 1)] = field_bytes(pair, 2)
        path = TEXT_VECTORIZATION_PATH if cls == "TextVectorization" else LOOKUP_PATH
        current = node_id
        for name in path:
            if not 0 <= current < len(nodes):
                raise ConversionError(f"{where}: object {current} is not in the object graph")
            children = {}
            for child in field_messages(_fields(nodes[current], budget, {1}), 1):
                ref = _fields(child, budget)
                children[field_text(ref, 2)] = field_int(ref, 1)
            if name not in children:
                raise ConversionError(f"{where}: no {name!r} under object {current}")
            current = children[name]
        saved = _fields(nodes[current], budget, {6})
        concrete = field_messages(_fields(field_bytes(saved, 6), budget), 1)
        if len(concrete) != 1 or concrete[0].decode("utf8", "replace") not in functions:
            raise ConversionError(f"{where}: the table initializer is not one traced function")
        bound_fields = _fields(functions[concrete[0].decode()], budget, {2})
        bound: list[int] = []
        for value in bound_fields.get(2, []):
            bound += [value] if isinstance(value, int) else _varints(value)
        if len(bound) != 3:
            raise ConversionError(
                f"{where}: the table initializer captures {len(bound)} tensors, not a table, "
                "its keys and its values"
            )
        operations = []
        for index in bound[1:]:
            if not 0 <= index < len(nodes):
                raise ConversionError(f"{where}: captured object {index} is not in the graph")
            constant = field_bytes(_fields(nodes[index], budget, {9}), 9)
            if not constant:
                raise ConversionError(f"{where}: the table's keys/values are not constants")
            operations.append(field_text(_fields(constant, budget), 1))
        graph = _fields(field_bytes(meta, 2), budget, {1})
        tensors: dict[str, bytes] = {}
        for node in field_messages(graph, 1):
            fields = _fields(node, budget, {1, 5})
            name = field_text(fields, 1)
            if name in operations:
                for attr in field_messages(fields, 5):
                    pair = _fields(attr, budget)
                    if field_text(pair, 1) == "value":
                        tensors[name] = field_bytes(_fields(field_bytes(pair, 2), budget), 8)
        missing = [op for op in operations if op not in tensors]
        if missing:
            raise ConversionError(f"{where}: graph constants {missing} not found")
        keys = _tensor(tensors[operations[0]], budget, where)
        values = _tensor(tensors[operations[1]], budget, where)
    except WireError as exc:
        raise ConversionError(f"{where}: malformed saved_model.pb ({exc})") from exc
    if len(keys) != len(values):
        raise ConversionError(f"{where}: the table has {len(keys)} keys and {len(values)} values")
    if sum(len(k) for k in keys if isinstance(k, bytes)) > MAX_ASSET_BYTES:
        raise ConversionError(f"{where}: the vocabulary holds over {MAX_ASSET_BYTES:,} bytes")
    return keys, values
