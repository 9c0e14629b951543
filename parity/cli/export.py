"""`parity export MODEL OUT --format exported-program|onnx` (parity.export does the work)."""

from __future__ import annotations

import argparse
from pathlib import Path

from parity.api import load, load_keras
from parity.arch import arch_names
from parity.cli.options import add_hard_sigmoid_option
from parity.export import FORMATS, export
from parity.files import check_target


def _run_cli(args: argparse.Namespace) -> int:
    src = Path(args.model)
    check_target(args.out, "export")  # before the minutes an export can take
    if src.suffix == ".safetensors":
        model = load(src)
    else:
        model = load_keras(src, arch=args.arch, hard_sigmoid=args.hard_sigmoid)
    result = export(model, args.out, format=args.format)
    print(result.describe())
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:
    """``parity export MODEL OUT --format exported-program|onnx``."""
    parser = commands.add_parser(
        "export", help="export a converted model as a torch ExportedProgram or ONNX"
    )
    parser.add_argument("model", help="a Keras file, or a .safetensors written by parity convert")
    parser.add_argument("out", help="output file (.pt2 for exported-program, .onnx)")
    parser.add_argument("--format", choices=tuple(FORMATS), default="exported-program")
    parser.add_argument("--arch", choices=arch_names(), help="as for parity convert")
    add_hard_sigmoid_option(parser)
    parser.set_defaults(run=_run_cli)
