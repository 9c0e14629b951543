"""The command line, one package: `parity convert | inspect` here, the other subcommands in
their modules (check and golden, finetune, deepmoji, export), each adding its own parser.

Failures print one line naming the problem (file, layer, weight, shapes) and exit non-zero,
without a traceback and without leaving an output file behind.
"""

from __future__ import annotations

import argparse
import builtins
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import NoReturn

from safetensors import SafetensorError

from parity import threads
from parity.api import ParityWarning, first_line, load_keras, malformed_file, save
from parity.apps.deepmoji import cli as deepmoji
from parity.arch import GENERIC, arch_names
from parity.arch.generic import CONVERTERS, unsupported_layers
from parity.arch.match import graph_of, match
from parity.cli import check, export, finetune, port
from parity.cli.options import EXIT_FAILURE, PROG, add_hard_sigmoid_option
from parity.errors import ConversionError, printable
from parity.keras.graph import KerasGraph, normalise_layer
from parity.keras.read import KerasFile, read_keras_file
from parity.plugins import load_plugins
from parity.ports.lambda_layer import lambda_summary, model_code_problem
from parity.train.distributed import exit_process

#: Exit status when parity itself failed (a bug, not a bad file): one line, no traceback.
EXIT_INTERNAL = 2
#: Set to 1 to get the traceback of an internal error instead of the one-line report.
DEBUG_ENV = "PARITY_DEBUG"
#: Argument names that hold a subcommand's input file, for the internal-error line.
INPUT_ARGS = ("src", "model")
#: Optional dependencies a subcommand may need -> the pyproject extra that installs them.
EXTRA_OF_MODULE = {
    "keras": "keras",
    "tensorflow": "keras",
    "tf_keras": "keras",
    "tqdm": "finetune",
    "matplotlib": "finetune",
    "onnx": "export",
    "onnxruntime": "export",
    "onnxscript": "export",
}


def _convert(args: argparse.Namespace) -> int:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ParityWarning)
        model = load_keras(
            args.src, arch=args.arch, hard_sigmoid=args.hard_sigmoid, config=args.config
        )
    for warning in caught:
        print(f"{PROG}: note: {warning.message}", file=sys.stderr)
    try:
        save(model, args.dst)
    except (OSError, SafetensorError) as exc:  # unwritable or missing directory, full disk
        print(f"{PROG}: error: cannot write {args.dst}: {first_line(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    count = sum(p.numel() for p in model.parameters())
    arch = type(model).__name__
    print(f"wrote {args.dst} ({arch}, {count:,} parameters, config {model.config})")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    with malformed_file(args.src):
        kfile = read_keras_file(args.src)
        graph, problem = graph_of(kfile)
        return _show(kfile, graph, problem)


def _show(kfile: KerasFile, graph: KerasGraph | None, problem: str | None) -> int:
    """Print what `parity inspect` reports about a read file; names from the file are
    printed with their control characters escaped (an ESC sequence must not drive the
    terminal)."""

    def print(line: str) -> None:
        builtins.print(printable(line))

    print(f"file:          {kfile.path}")
    print(f"format:        {kfile.format}")
    print(f"keras version: {kfile.keras_version or 'not recorded'}")
    print(f"backend:       {kfile.backend or 'not recorded'}")
    config_state = "yes" if graph is not None else f"unusable ({problem})" if problem else "no"
    print(f"model config:  {config_state}")
    unsupported = unsupported_layers(graph) if graph is not None else []
    print("layers:")
    inlined: dict[str, list[str]] = {}
    # each Lambda's translated expression, or why it is not translated (never executed)
    lambda_nodes = [n for n in graph.nodes if n.class_name == "Lambda"] if graph else []
    code_problem = model_code_problem(n.config for n in lambda_nodes)
    lambdas = {n.name: lambda_summary(n.config, code_problem) for n in lambda_nodes}
    for node in graph.nodes if graph is not None else []:
        if node.scope and not node.moduleless:
            inlined.setdefault(node.scope[0], []).append(node.name)
    for layer in kfile.layers:
        cls = layer.class_name or (f"~{layer.class_key}" if layer.class_key else "?")
        if layer.class_name is None or graph is None:
            support = ""
        elif layer.name in inlined:
            inside = [e for e in unsupported if e.startswith(f"{layer.name}/")]
            support = f"  [nested model: {len(inlined[layer.name])} layers inlined" + (
                f"; not supported: {', '.join(inside)}]" if inside else "]"
            )
        elif any(entry.startswith(f"{layer.name} (") for entry in unsupported):
            support = "  [not supported by the generic path]"
        elif normalise_layer(layer.class_name, {})[0] in CONVERTERS:
            support = "  [supported]"
        else:
            support = ""
        print(f"  {layer.name} ({cls}){support}")
        if lambdas.get(layer.name):
            print(f"      {lambdas[layer.name]}")
        for weight in layer.weights:
            print(f"      {weight.name}  {tuple(weight.array.shape)}  {weight.array.dtype}")
    if kfile.left_out:
        print(f"left out (training state): {', '.join(kfile.left_out)}")
    if unsupported:
        print(f"unsupported:   {', '.join(sorted(unsupported))}")
    try:
        arch = match(kfile, graph, problem=problem).arch
    except ConversionError as exc:
        print(f"converts as:   nothing without help ({exc})")
        return 0
    if arch is GENERIC:
        print(
            "converts as:   generic (rebuilt from the file's model config; "
            "`parity convert SRC DST`)"
        )
    else:
        print(f"converts as:   {arch.name} (`parity convert SRC DST --arch {arch.name}`)")
    return 0


def add_convert(commands: argparse._SubParsersAction) -> None:
    convert = commands.add_parser("convert", help="convert a Keras file to safetensors")
    convert.add_argument(
        "src",
        help="Keras file (.keras, .weights.h5, legacy .h5), TF SavedModel directory or TF "
        "checkpoint (PREFIX, PREFIX.index or its directory)",
    )
    convert.add_argument("dst", help="output .safetensors file (written atomically)")
    convert.add_argument(
        "--arch",
        choices=arch_names(),
        help="registered pair, 'generic' (from the file's model config) or a seed-zoo model "
        "(default: decided from the file)",
    )
    convert.add_argument(
        "--config",
        help="for a weights-only SRC (.weights.h5, save_weights .h5, TF checkpoint): a .keras, "
        "full-model .h5, model JSON file or tf-keras SavedModel whose model config describes it",
    )
    add_hard_sigmoid_option(convert)
    convert.set_defaults(run=_convert)


def add_inspect(commands: argparse._SubParsersAction) -> None:
    inspect = commands.add_parser("inspect", help="show a Keras file's layers and weights")
    inspect.add_argument("src", help="Keras file, TF SavedModel directory or TF checkpoint")
    inspect.set_defaults(run=_inspect)


#: Subcommands, in help order: name -> the function adding its parser to the subparsers. Each
#: sets ``run`` (args -> exit code) as its parser's default.
COMMANDS: dict[str, Callable[[argparse._SubParsersAction], None]] = {
    "convert": add_convert,
    "inspect": add_inspect,
    "check": check.add_check,
    "golden": check.add_golden,
    "finetune": finetune.add_parser,
    "deepmoji": deepmoji.add_parser,
    "export": export.add_parser,
    "port": port.add_parser,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Convert Keras models to PyTorch and prove they match."
    )
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first: it registers custom layers (parity.plugins.register_layer); "
        "repeatable",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS.values():
        add(commands)
    return parser


def entry() -> NoReturn:
    """The `parity` command (and `python -m parity`): main(), then the process ends with its
    code (parity.train.distributed.exit_process: a torchrun worker skips Python's finalization)."""
    exit_process(main())


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    threads.configure()  # no more threads than the CPUs (quota, affinity) this process has
    try:
        load_plugins(args.plugin)
    except ImportError as exc:
        print(f"{PROG}: error: {first_line(exc)}", file=sys.stderr)
        return 1
    try:
        return run(args)
    except (ConversionError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        print(f"{PROG}: error: {first_line(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top not in EXTRA_OF_MODULE:
            return _internal_error(args, exc)
        hint = f"pip install 'keras-parity[{EXTRA_OF_MODULE[top]}]'"
        print(f"{PROG}: error: {args.command} needs {top}, not installed ({hint})", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # the last resort: a user sees one line, never a traceback
        return _internal_error(args, exc)


def _internal_error(args: argparse.Namespace, exc: Exception) -> int:
    if os.environ.get(DEBUG_ENV) == "1":
        raise exc
    source = next((getattr(args, a) for a in INPUT_ARGS if getattr(args, a, None)), "?")
    print(
        f"{PROG}: internal error on {source}: {type(exc).__name__}: {first_line(exc)}",
        file=sys.stderr,
    )
    return EXIT_INTERNAL


if __name__ == "__main__":
    entry()
