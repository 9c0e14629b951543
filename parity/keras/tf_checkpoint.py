"""TensorFlow checkpoints and SavedModel directories as KerasFiles, read without TensorFlow.

What is read (the bytes by parity.keras.tensor_bundle):

- TF2 object-based checkpoints: tf.keras ``model.save_weights("x")`` (TF format) and any
  ``tf.train.Checkpoint`` of a Keras model. The tensor ``_CHECKPOINTABLE_OBJECT_GRAPH`` (a
  TrackableObjectGraph) is walked from the root: the model's ``layer-N`` children are its layers
  in ``model.layers`` order (what a legacy HDF5 file's ``layer_names`` lists); a layer's
  variables are found by walking its children in tracking order (``kernel``, ``bias``, nested
  ``cell``, ``forward_layer``/``backward_layer``, ``layer`` ...), each object once, and named by
  the variable's full name plus ":0", exactly as tf.keras names HDF5 weights. Trainable weights
  come first (Keras' ``layer.weights`` order); a checkpoint does not record trainability, so the
  non-trainable ones are recognised by name (NON_TRAINABLE_WEIGHTS).
- SavedModel directories written by tf-keras (``model.save("dir", save_format="tf")``): the
  model config is the root node's in ``keras_metadata.pb`` (a SavedMetadata proto whose nodes
  carry JSON metadata), the weights are ``variables/variables``; each layer's ``variables``
  list there gives Keras' own weight order.
- TF1 name-keyed checkpoints (``tf.compat.v1.train.Saver``; keys like
  ``bi_lstm_0/forward_lstm/kernel``, no object graph): tensors are grouped into layers by their
  first name component; within a layer, weights are put in Keras' creation order as known from
  their names (TF1_WEIGHT_ORDER: forward before backward, kernel, recurrent_kernel, bias, ...),
  since the table itself is sorted alphabetically. Optimizer slots and counters
  (TF1_TRAINING_STATE) are recognised and left out.

Weights-only checkpoints take their architecture from a companion config (``config=``), or are
matched to a registered pair by their layer names. Optimizer state is left out (listed in
``left_out``), or read with ``training_state=True`` (tf-keras optimizers' ``_variables`` list).

Refused by name: sliced (partitioned) variables, dtypes that are not Keras weight types, a
directory holding several checkpoints with no ``checkpoint`` file naming one, SavedModels
without variables, and every malformed or hostile structure (tensor_bundle's checks). The object
graph and keras_metadata.pb are decoded within a field budget (MAX_TF_GRAPH_FIELDS), and the
walks over the graph share one step budget, so objects shared by many layers cannot multiply
the work.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parity.conventions import (
    MAX_GROUP_DEPTH,
    MAX_JSON_BYTES,
    MAX_TF_GRAPH_FIELDS,
    MAX_TF_INDEX_BYTES,
    MAX_TF_OBJECT_FIELDS,
    MAX_TF_OBJECTS,
    MAX_TF_WEIGHTS,
)
from parity.errors import ConversionError
from parity.keras.limits import load_json
from parity.keras.model_file import KerasFile, KerasLayer, KerasWeight
from parity.keras.tensor_bundle import (
    INDEX_SUFFIX,
    FieldBudget,
    TensorBundle,
    WireError,
    field_bytes,
    field_int,
    field_messages,
    field_text,
    inside,
    is_table,
    open_bundle,
    parse_message,
    read_capped,
)

#: Formats, as KerasFile.format and `parity inspect` report them.
FORMAT_TF_CHECKPOINT = "tf-checkpoint"  # TF2 object-based (tf.keras save_weights, TF format)
FORMAT_TF1_CHECKPOINT = "tf1-checkpoint"  # name-keyed (tf.compat.v1.train.Saver)
FORMAT_SAVED_MODEL = "tf-saved-model"  # tf-keras model.save(dir, save_format="tf")

#: The object graph's tensor, and the attribute holding a variable's value.
OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
VARIABLE_VALUE = "VARIABLE_VALUE"
#: SavedModel directory layout.
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
KERAS_METADATA = "keras_metadata.pb"
SAVED_MODEL_VARIABLES = ("variables", "variables")
#: The text file naming a directory's latest checkpoint (CheckpointState proto, text format).
CHECKPOINT_STATE = "checkpoint"
CHECKPOINT_STATE_KEY = re.compile(r'^model_checkpoint_path:\s*"([^"\\]*)"\s*$', re.MULTILINE)
#: Data shards, named PREFIX.data-0000K-of-0000N.
SHARD_NAME = re.compile(r"^(?P<prefix>.+)\.data-\d{5}-of-\d{5}$")
#: A Keras model's layers in its object graph (model.layers order), and their aliases.
LAYER_CHILD = re.compile(r"^layer-(\d+)$")
LAYER_ALIAS = re.compile(r"^layer_with_weights-\d+$")
#: Root children that are not layers: training state (left out, named in KerasFile.left_out).
TRAINING_STATE_CHILDREN = ("optimizer", "save_counter")
#: Children never walked for a layer's weights: SavedModel's extra views of the same objects
#: (lists, the keras_api with metrics), the self-reference TF adds to the root, RNG state.
SKIPPED_CHILDREN = frozenset(
    {
        "keras_api",
        "variables",
        "trainable_variables",
        "non_trainable_variables",
        "regularization_losses",
        "root",
        "_random_generator",
        *TRAINING_STATE_CHILDREN,
    }
)
#: Weights Keras creates non-trainable (so saves after the trainable ones in layer.weights).
NON_TRAINABLE_WEIGHTS = ("moving_mean", "moving_variance")
#: SavedMetadata identifiers of a Keras model node (the root of a tf-keras SavedModel).
KERAS_MODEL_IDENTIFIERS = ("_tf_keras_network", "_tf_keras_model", "_tf_keras_sequential")
ROOT_NODE_PATH = "root"
#: How tf-keras' SavedModel metadata JSON spells a tuple (kernel_size, strides, shapes).
TUPLE_CLASS = "__tuple__"
#: Protobuf field numbers read: TrackableObjectGraph.nodes, TrackableObject.children and
#: .attributes; SavedMetadata.nodes, SavedObject.node_path, .identifier and .metadata.
GRAPH_NODES = 1
OBJECT_FIELDS = frozenset({1, 2})
METADATA_NODES = 1
SAVED_OBJECT_FIELDS = frozenset({3, 4, 5})
#: TF1 checkpoints: weight names in Keras' creation order (by name component; unknown names sort
#: after these, alphabetically) and the names of optimizer state.
TF1_WEIGHT_ORDER = (
    "forward",
    "backward",
    "cell",
    "embeddings",
    "depthwise_kernel",
    "pointwise_kernel",
    "kernel",
    "recurrent_kernel",
    "bias",
    "gamma",
    "beta",
    "moving_mean",
    "moving_variance",
)
TF1_TRAINING_STATE = re.compile(
    r"(^|/)(global_step|beta1_power|beta2_power|iterations|training|save_counter)(/|$)"
    r"|/(Adam|Adam_1|Momentum|RMSProp|RMSProp_1|Adagrad|Adadelta|Adadelta_1|Ftrl|Ftrl_1"
    r"|ExponentialMovingAverage)$"
    r"|^(Adam|SGD|RMSprop|Adagrad|Adadelta|Adamax|Nadam|Ftrl|optimizer)/"
)


@dataclass(frozen=True)
class TFSource:
    """Where a TF checkpoint is: its bundle prefix, the directory nothing may be read outside
    of, and the SavedModel directory when it is one."""

    prefix: Path
    root: Path
    saved_model: Path | None = None


# --- detection --------------------------------------------------------------------------------


def _present(path: Path) -> bool:
    """Whether a file of any kind is at ``path``: a FIFO or device under a checkpoint's name is
    found here and refused by name when opened (tensor_bundle.open_inside), not skipped."""
    return path.exists() and not path.is_dir()


def _saved_model_dir(path: Path) -> bool:
    return any((path / name).is_file() for name in (*SAVED_MODEL_FILES, KERAS_METADATA))


def _directory_prefix(path: Path) -> Path | None:
    """The one checkpoint in a directory (or the one its ``checkpoint`` file names)."""
    indexes = sorted(p for p in path.iterdir() if p.name.endswith(INDEX_SUFFIX) and _present(p))
    if not indexes:
        return None
    if len(indexes) == 1:
        return indexes[0].with_name(indexes[0].name[: -len(INDEX_SUFFIX)])
    state = path / CHECKPOINT_STATE
    if state.is_file() and inside(path, state):
        text = read_capped(path, state, "checkpoint state file", MAX_JSON_BYTES).decode(
            "utf8", "replace"
        )
        match = CHECKPOINT_STATE_KEY.search(text)
        name = match.group(1) if match else ""
        if name and "/" not in name and name not in (".", "..") and "\0" not in name:
            if (path / f"{name}{INDEX_SUFFIX}").is_file():
                return path / name
    raise ConversionError(
        f"{path}: holds {len(indexes)} checkpoints ({', '.join(p.name for p in indexes[:5])}) "
        f"and no {CHECKPOINT_STATE} file naming one of them; pass the one to read (PREFIX or "
        "PREFIX.index)"
    )


def locate(path: Path) -> TFSource | None:
    """A TF checkpoint or SavedModel at ``path`` (a SavedModel directory, a checkpoint's
    directory, its prefix, its .index or a data shard), from the layout and the index's magic
    number; None when ``path`` is none of these."""
    if path.is_dir():
        if _saved_model_dir(path):
            return TFSource(path.joinpath(*SAVED_MODEL_VARIABLES), path, path)
        prefix = _directory_prefix(path)
        return TFSource(prefix, path) if prefix is not None else None
    if path.is_file():
        shard = SHARD_NAME.match(path.name)
        if shard and path.with_name(shard["prefix"] + INDEX_SUFFIX).is_file():
            path = path.with_name(shard["prefix"] + INDEX_SUFFIX)
        if not is_table(path):
            return None
        if not path.name.endswith(INDEX_SUFFIX) or path.name == INDEX_SUFFIX:
            raise ConversionError(
                f"{path}: a TensorFlow checkpoint index must be named PREFIX{INDEX_SUFFIX} "
                "(its data shards are PREFIX.data-*); rename it or pass the prefix"
            )
        return TFSource(path.with_name(path.name[: -len(INDEX_SUFFIX)]), path.parent)
    if path.name.endswith(INDEX_SUFFIX) and path.name != INDEX_SUFFIX and _present(path):
        # a FIFO or device under an index's name: refused by name when the bundle opens it
        return TFSource(path.with_name(path.name[: -len(INDEX_SUFFIX)]), path.parent)
    if not path.exists() and _present(Path(f"{path}{INDEX_SUFFIX}")):
        return TFSource(path, path.parent)
    return None


# --- object graph -----------------------------------------------------------------------------


@dataclass
class _Work:
    """What the walks over one object graph may still cost: steps (each child looked at) and
    weights yielded. Layers may share objects, so per-walk bounds alone would multiply."""

    where: Path | str
    steps: int = MAX_TF_GRAPH_FIELDS
    weights: int = MAX_TF_WEIGHTS

    def step(self, count: int) -> None:
        if count > self.steps:
            raise ConversionError(
                f"{self.where}: walking the object graph takes more than "
                f"{MAX_TF_GRAPH_FIELDS:,} steps (objects shared by too many layers)"
            )
        self.steps -= count

    def weight(self, count: int) -> None:
        if count > self.weights:
            raise ConversionError(
                f"{self.where}: the object graph names more than {MAX_TF_WEIGHTS:,} weights"
            )
        self.weights -= count


@dataclass(frozen=True)
class _Object:
    """One TrackableObject: its children (local name, node id) and its variable value key."""

    children: tuple[tuple[str, int], ...]
    #: (full name, checkpoint key) of the VARIABLE_VALUE attribute, for variables.
    variable: tuple[str, str] | None


def _object_graph(bundle: TensorBundle) -> list[_Object]:
    """TrackableObjectGraph: nodes = 1; TrackableObject: children = 1 (ObjectReference: node_id
    = 1, local_name = 2), attributes = 2 (SerializedTensor: name = 1, full_name = 2,
    checkpoint_key = 3)."""
    where = f"{bundle.index_path}: object graph"
    items = bundle.read_strings(OBJECT_GRAPH_KEY)
    if len(items) != 1:
        raise ConversionError(f"{where} holds {len(items)} items, not one")
    budget = FieldBudget(MAX_TF_GRAPH_FIELDS, "the object graph")
    try:
        top = parse_message(items[0], MAX_TF_OBJECTS, budget, keep={GRAPH_NODES})
        nodes = field_messages(top, GRAPH_NODES)
        if not nodes:
            raise ConversionError(f"{where} has no objects")
        graph = []
        for number, node in enumerate(nodes):
            fields = parse_message(node, MAX_TF_OBJECT_FIELDS, budget, keep=OBJECT_FIELDS)
            children = []
            for child in field_messages(fields, 1):
                ref = parse_message(child, budget=budget)
                node_id, name = field_int(ref, 1), field_text(ref, 2)
                if node_id >= len(nodes):
                    raise ConversionError(
                        f"{where}: object {number} has child {name!r} -> {node_id}, past the "
                        f"{len(nodes)} objects"
                    )
                children.append((name, node_id))
            variable = None
            for attribute in field_messages(fields, 2):
                tensor = parse_message(attribute, budget=budget)
                if field_text(tensor, 1) == VARIABLE_VALUE:
                    variable = (field_text(tensor, 2), field_text(tensor, 3))
            graph.append(_Object(tuple(children), variable))
    except WireError as exc:
        raise ConversionError(f"{where} is malformed ({exc})") from exc
    return graph


def _walk_variables(
    graph: list[_Object], start: int, skip_start: frozenset[str], work: _Work
) -> list[int]:
    """Variable nodes below ``start`` in tracking order (depth first), each once, bounded: every
    child looked at is a step of ``work``, counted before the walk goes on."""
    found: list[int] = []
    seen = {start}
    work.step(len(graph[start].children))
    stack = [
        (node_id, 1) for name, node_id in reversed(graph[start].children) if name not in skip_start
    ]
    while stack:
        node_id, depth = stack.pop()
        if node_id in seen:
            continue
        seen.add(node_id)
        if depth > MAX_GROUP_DEPTH:
            raise ConversionError(
                f"{work.where}: object graph nested deeper than {MAX_GROUP_DEPTH} levels"
            )
        node = graph[node_id]
        if node.variable is not None:
            found.append(node_id)
        elif node.children:
            work.step(len(node.children))
            stack.extend(
                (child, depth + 1)
                for name, child in reversed(node.children)
                if child not in seen and name not in SKIPPED_CHILDREN
            )
    return found


def _listed_variables(graph: list[_Object], node: int, work: _Work) -> list[int] | None:
    """A SavedModel layer's own ``variables`` list (Keras' layer.weights order), if present."""
    work.step(len(graph[node].children))
    lists = [child for name, child in graph[node].children if name == "variables"]
    if not lists:
        return None
    entries = graph[lists[0]].children
    work.step(len(entries))
    if [name for name, _ in entries] != [str(i) for i in range(len(entries))]:
        return None
    if not all(graph[child].variable is not None for _, child in entries):
        return None
    return [child for _, child in entries]


def _layer_variables(
    graph: list[_Object], node: int, names: dict[int, str], work: _Work
) -> list[int]:
    """A layer's variables in Keras' layer.weights order."""
    listed = _listed_variables(graph, node, work)
    if listed is not None:
        return listed
    found = _walk_variables(graph, node, SKIPPED_CHILDREN, work)

    def non_trainable(var: int) -> bool:
        return names[var].rsplit("/", 1)[-1] in NON_TRAINABLE_WEIGHTS

    return [v for v in found if not non_trainable(v)] + [v for v in found if non_trainable(v)]


def _attribute_names(graph: list[_Object]) -> dict[int, str]:
    """Each variable's full name (or, when the file records none, its attribute name)."""
    names: dict[int, str] = {}
    for obj in graph:
        for name, child in obj.children:
            variable = graph[child].variable
            if variable is not None and child not in names:
                names[child] = variable[0] or name
    for number, obj in enumerate(graph):
        if obj.variable is not None and number not in names:
            names[number] = obj.variable[0] or str(number)
    return names


def _model_node(graph: list[_Object], work: _Work) -> int:
    """The Keras model: the root, or (tf.train.Checkpoint(model=...)) the root's one child that
    has layers."""

    def has_layers(node: int) -> bool:
        work.step(len(graph[node].children))
        return any(LAYER_CHILD.match(name) for name, _ in graph[node].children)

    if has_layers(0):
        return 0
    holders = [child for name, child in graph[0].children if has_layers(child)]
    return holders[0] if len(holders) == 1 else 0


def _model_layers(graph: list[_Object], model: int, where: Path) -> list[tuple[str, int]]:
    """(child name, node) of the model's layers in model.layers order; for a model without
    layer-N children (a subclassed model), its tracked children in tracking order."""
    numbered = []
    for name, child in graph[model].children:
        match = LAYER_CHILD.match(name)
        if match:
            numbered.append((int(match.group(1)), name, child))
    if numbered:
        numbered.sort()
        if [n for n, _, _ in numbered] != list(range(len(numbered))):
            raise ConversionError(
                f"{where}: object graph: the model's layers are not numbered 0..{len(numbered) - 1}"
            )
        return [(name, child) for _, name, child in numbered]
    return [
        (name, child)
        for name, child in graph[model].children
        if name not in SKIPPED_CHILDREN and not LAYER_ALIAS.match(name)
    ]


# --- configs ----------------------------------------------------------------------------------


def _config_layer_entries(model_config: Any) -> list[tuple[str | None, str | None, dict | None]]:
    """(name, class, config) of a model config's layers, in config order (any Keras version)."""
    if not isinstance(model_config, dict):
        return []
    config = model_config.get("config", model_config)
    layers = config if isinstance(config, list) else (config or {}).get("layers", [])
    entries = []
    for entry in layers if isinstance(layers, list) else []:
        if not isinstance(entry, dict):
            continue
        layer_config = entry.get("config") if isinstance(entry.get("config"), dict) else None
        name = entry.get("name") or (layer_config or {}).get("name")
        cls = entry.get("class_name")
        entries.append(
            (
                name if isinstance(name, str) else None,
                cls if isinstance(cls, str) else None,
                layer_config,
            )
        )
    return entries


def _layer_names(
    entries: list[tuple[str | None, str | None, dict | None]], count: int
) -> list[str | None]:
    """The config's names for the model's ``count`` layers: model.layers is the config's
    layers, except that a Sequential model's layers leave out its InputLayer."""
    if len(entries) == count:
        return [name for name, _, _ in entries]
    kept = [name for name, cls, _ in entries if cls != "InputLayer"]
    if len(kept) == count:
        return kept
    return [None] * count


def _check_name(name: str, where: Path) -> str:
    if not name or "/" in name or name in (".", "..") or "\0" in name:
        raise ConversionError(f"{where}: layer name {name!r} is not a plain name")
    return name


# --- reading ----------------------------------------------------------------------------------


def _read_weights(
    bundle: TensorBundle,
    graph: list[_Object],
    variables: list[int],
    names: dict[int, str],
    work: _Work,
) -> list[KerasWeight]:
    work.weight(len(variables))
    weights = []
    for var in variables:
        full_name, key = graph[var].variable or ("", "")
        if key not in bundle.entries:
            raise ConversionError(
                f"{bundle.index_path}: the object graph names tensor {key!r} "
                f"(variable {full_name!r}) but the index has no such entry"
            )
        if bundle.entries[key].is_string:
            raise ConversionError(f"{bundle.index_path}: variable {key!r} is a string tensor")
        weights.append(KerasWeight(f"{names[var]}:0", bundle.read_tensor(key)))
    return weights


def _read_object_based(
    bundle: TensorBundle,
    path: Path,
    model_config: dict | None,
    training_state: bool,
) -> tuple[list[KerasLayer], list[str], list[KerasWeight]]:
    graph = _object_graph(bundle)
    work = _Work(bundle.index_path)
    names = _attribute_names(graph)
    model = _model_node(graph, work)
    children = _model_layers(graph, model, bundle.index_path)
    entries = _config_layer_entries(model_config)
    config_names = _layer_names(entries, len(children))
    classes = {name: (cls, cfg) for name, cls, cfg in entries if name is not None}
    layers = []
    for (child_name, node), config_name in zip(children, config_names, strict=True):
        variables = _layer_variables(graph, node, names, work)
        name = config_name
        if name is None:
            prefixes = {names[v].split("/", 1)[0] for v in variables}
            name = prefixes.pop() if len(prefixes) == 1 else child_name
        name = _check_name(name, path)
        cls, cfg = classes.get(name, (None, None))
        weights = _read_weights(bundle, graph, variables, names, work)
        layers.append(KerasLayer(name, cls, cfg, weights))
    left_out = [
        name
        for name, child in graph[model].children
        if name in TRAINING_STATE_CHILDREN
        and (graph[child].variable or _walk_variables(graph, child, frozenset(), work))
    ]
    optimizer_weights: list[KerasWeight] = []
    if training_state:
        optimizer = dict(graph[model].children).get("optimizer")
        listed = dict(graph[optimizer].children).get("_variables") if optimizer else None
        if listed is not None:
            variables = [child for _, child in graph[listed].children]
            if all(graph[v].variable is not None for v in variables):
                optimizer_weights = _read_weights(bundle, graph, variables, names, work)
    return layers, left_out, optimizer_weights


def _tf1_order(name: str) -> tuple:
    """Sort key putting a TF1 layer's weights in Keras' creation order (TF1_WEIGHT_ORDER)."""
    key = []
    for part in name.split("/"):
        rank = next(
            (
                i
                for i, known in enumerate(TF1_WEIGHT_ORDER)
                if part == known or (known in ("forward", "backward") and part.startswith(known))
            ),
            len(TF1_WEIGHT_ORDER),
        )
        key.append((rank, part))
    return tuple(key)


def _read_name_keyed(
    bundle: TensorBundle, path: Path, model_config: dict | None
) -> tuple[list[KerasLayer], list[str]]:
    groups: dict[str, list[str]] = {}
    left_out: set[str] = set()
    for key, entry in bundle.entries.items():
        if TF1_TRAINING_STATE.search(key) or entry.is_string:
            left_out.add(key.split("/", 1)[0] if "/" in key else key)
            continue
        layer = key.split("/", 1)[0] if "/" in key else key
        groups.setdefault(_check_name(layer, path), []).append(key)
    entries = _config_layer_entries(model_config)
    order = {name: i for i, (name, _, _) in enumerate(entries) if name is not None}
    classes = {name: (cls, cfg) for name, cls, cfg in entries if name is not None}
    layers = []
    for layer in sorted(groups, key=lambda n: (order.get(n, len(order)), n)):
        keys = sorted(groups[layer], key=lambda k: _tf1_order(k.split("/", 1)[-1]))
        weights = [KerasWeight(f"{key}:0", bundle.read_tensor(key)) for key in keys]
        cls, cfg = classes.get(layer, (None, None))
        layers.append(KerasLayer(layer, cls, cfg, weights))
    return layers, sorted(left_out)


def _saved_model_metadata(directory: Path) -> dict[str, Any] | None:
    """The root node's metadata JSON in keras_metadata.pb (SavedMetadata: nodes = 1;
    SavedObject: node_path = 3, identifier = 4, metadata = 5), or None without the file."""
    path = directory / KERAS_METADATA
    if not path.exists():
        return None
    data = read_capped(directory, path, "Keras metadata", MAX_TF_INDEX_BYTES)
    budget = FieldBudget(MAX_TF_GRAPH_FIELDS, "the Keras metadata")
    try:
        top = parse_message(data, MAX_TF_OBJECTS, budget, keep={METADATA_NODES})
        for node in field_messages(top, METADATA_NODES):
            fields = parse_message(node, budget=budget, keep=SAVED_OBJECT_FIELDS)
            if field_text(fields, 3) != ROOT_NODE_PATH:
                continue
            identifier = field_text(fields, 4)
            if identifier not in KERAS_MODEL_IDENTIFIERS:
                raise ConversionError(
                    f"{path}: the root object is {identifier!r}, not a Keras model"
                )
            metadata = load_json(field_bytes(fields, 5), f"{path}: root metadata")
            if not isinstance(metadata, dict):
                raise ConversionError(f"{path}: the root's metadata is not a JSON object")
            return metadata
    except WireError as exc:
        raise ConversionError(f"{path}: malformed Keras metadata ({exc})") from exc
    raise ConversionError(f"{path}: no root node in the Keras metadata")


def _untuple(value: Any) -> Any:
    """tf-keras' SavedModel JSON writes tuples as {"class_name": "__tuple__", "items": [...]};
    model.to_json() and HDF5 configs write lists. Replaced in place, without recursion."""
    stack = [value]
    while stack:
        item = stack.pop()
        pairs = (
            item.items()
            if isinstance(item, dict)
            else enumerate(item)
            if isinstance(item, list)
            else ()
        )
        for key, child in list(pairs):
            if (
                isinstance(child, dict)
                and child.get("class_name") == TUPLE_CLASS
                and isinstance(child.get("items"), list)
            ):
                child = child["items"]
                item[key] = child
            stack.append(child)
    return value


def _metadata_model_config(metadata: dict[str, Any]) -> dict[str, Any] | None:
    """The model config as a legacy HDF5 file's model_config holds it: {class_name, config}."""
    config = metadata.get("model_config")
    if not (isinstance(config, dict) and "class_name" in config):
        config = None
        if isinstance(metadata.get("class_name"), str) and isinstance(metadata.get("config"), dict):
            config = {"class_name": metadata["class_name"], "config": metadata["config"]}
    return None if config is None else _untuple(config)


def saved_model_config(directory: Path) -> dict[str, Any] | None:
    """A tf-keras SavedModel's model config (for ``config=``), or None when it records none."""
    metadata = _saved_model_metadata(directory)
    return None if metadata is None else _metadata_model_config(metadata)


def read_tf(
    source: TFSource,
    path: Path,
    model_config: dict[str, Any] | None = None,
    training_state: bool = False,
) -> KerasFile:
    """Read a located checkpoint or SavedModel into a KerasFile (see the module docstring).

    A SavedModel's own config wins over ``model_config``, as a full-model file's does."""
    version = backend = optimizer_config = None
    fmt = FORMAT_TF_CHECKPOINT
    if source.saved_model is not None:
        fmt = FORMAT_SAVED_MODEL
        if not Path(f"{source.prefix}{INDEX_SUFFIX}").exists():
            raise ConversionError(
                f"{path}: SavedModel without variables/variables{INDEX_SUFFIX} (no weights)"
            )
        metadata = _saved_model_metadata(source.saved_model)
        if metadata is not None:
            model_config = _metadata_model_config(metadata) or model_config
            version = metadata.get("keras_version")
            backend = metadata.get("backend")
            training = metadata.get("training_config")
            if isinstance(training, dict) and isinstance(training.get("optimizer_config"), dict):
                optimizer_config = training["optimizer_config"]
    bundle = open_bundle(source.prefix, source.root)
    optimizer_weights: list[KerasWeight] = []
    if OBJECT_GRAPH_KEY in bundle.entries:
        layers, left_out, optimizer_weights = _read_object_based(
            bundle, path, model_config, training_state
        )
    else:
        if fmt == FORMAT_SAVED_MODEL:
            raise ConversionError(f"{path}: SavedModel variables without an object graph")
        fmt = FORMAT_TF1_CHECKPOINT
        layers, left_out = _read_name_keyed(bundle, path, model_config)
    kfile = KerasFile(
        path=path,
        format=fmt,
        keras_version=version if isinstance(version, str) else None,
        backend=backend if isinstance(backend, str) else None,
        model_config=model_config if isinstance(model_config, dict) else None,
        layers=layers,
        left_out=left_out,
        saved_model=source.saved_model if fmt == FORMAT_SAVED_MODEL else None,
    )
    if training_state:
        kfile.optimizer_weights = optimizer_weights
        kfile.optimizer_config = optimizer_config
    return kfile
