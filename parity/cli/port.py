"""`parity port SRC OUT_DIR`: a standalone PyTorch package for a Keras file (parity.codegen)."""

from __future__ import annotations

import argparse

from parity.arch import arch_names
from parity.cli.options import add_hard_sigmoid_option
from parity.codegen import port


def _run_cli(args: argparse.Namespace) -> int:
    result = port(
        args.src,
        args.out_dir,
        arch=args.arch,
        hard_sigmoid=args.hard_sigmoid,
        config=args.config,
        name=args.name,
    )
    print(
        f"{result.out_dir}: {result.class_name} ({result.layers} Keras calls); "
        f"{', '.join(result.files)}; `pytest {result.out_dir}` proves it"
    )
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:
    """``parity port SRC OUT_DIR [--arch A] [--hard-sigmoid ...] [--config C] [--name N]``."""
    parser = commands.add_parser(
        "port", help="write a standalone PyTorch model.py, weights and parity test for a Keras file"
    )
    parser.add_argument("src", help="a Keras file, SavedModel or TF checkpoint")
    parser.add_argument("out_dir", help="a new (or empty) directory to write the package into")
    parser.add_argument("--arch", choices=arch_names(), help="default: generic (from the graph)")
    add_hard_sigmoid_option(parser)
    parser.add_argument("--config", help="the architecture of a weights-only file")
    parser.add_argument("--name", help="the module's class name (default: from the file name)")
    parser.set_defaults(run=_run_cli)
