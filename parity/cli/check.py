"""`parity check` and `parity golden`: prove a conversion from the command line.

`check` converts SRC, runs Keras (live, or from a golden file) and the converted model on the
same inputs, prints the layer-by-layer table and exits 0 only when every row passes. `golden`
saves the Keras side so `check --golden` runs where TensorFlow is absent (a CUDA machine, a
torch-only environment). Keras is imported only when a live path runs (parity.check.keras_side).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from parity.api import ParityWarning, convert_keras, malformed_file
from parity.arch import PAIRS, arch_names
from parity.check.harness import golden_meta, load_golden
from parity.check.keras_side import import_keras, keras_reference, write_golden
from parity.check.run import DTYPES, check, check_inputs, subject_for
from parity.cli.options import EXIT_FAILURE, PROG, add_hard_sigmoid_option
from parity.errors import ConversionError, error_line
from parity.files import write_atomic, write_atomic_text

DEVICES = ("cpu", "cuda")
NO_KERAS = (
    "a live check needs Keras and TensorFlow (pip install 'keras-parity[keras]'); where they "
    "cannot be installed, pass --golden FILE written by `parity golden SRC FILE` elsewhere"
)


def _convert(args: argparse.Namespace) -> tuple[Any, Any, list[str]]:
    """(model, the file as read, notes): the file is read once, for both."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ParityWarning)
        done = convert_keras(
            args.src, arch=args.arch, hard_sigmoid=args.hard_sigmoid, dtype=DTYPES[args.dtype]
        )
    notes = [str(w.message) for w in caught if issubclass(w.category, ParityWarning)]
    return done.model, done.kfile, notes


def _keras_side(args: argparse.Namespace, model: Any, kfile: Any, keras_args: dict) -> dict:
    """Run the file's Keras model live; a clear error when the keras extra is missing."""
    ids = check_inputs(model, kfile, args.inputs)
    try:
        import_keras()
    except ImportError as exc:
        raise ConversionError(f"{NO_KERAS} ({exc})") from None
    subject_pair = keras_args.pop("pair", None)
    return keras_reference(args.src, subject_pair, ids, dtype=args.dtype, **keras_args)


def _golden_for(args: argparse.Namespace, subject: Any) -> tuple[dict, list[str]]:
    """A golden file's Keras side, checked against what is being checked."""
    if args.inputs:
        raise ConversionError("--inputs with --golden: the golden file fixes the inputs")
    golden = load_golden(args.golden)
    if "meta" not in golden or "ids" not in golden:
        raise ConversionError(f"{args.golden}: not a parity golden file (no meta or ids)")
    meta = golden_meta(golden)
    notes = []
    made_for = meta.get("pair")
    if made_for != subject.pair and (made_for in PAIRS or subject.pair in PAIRS):
        raise ConversionError(
            f"{args.golden}: made for {made_for or 'a generic model'}, but {args.src} "
            f"converts as {subject.pair or 'a generic model'}"
        )
    made_in = meta.get("dtype", meta.get("floatx"))
    if made_in and made_in != args.dtype:
        raise ConversionError(
            f"{args.golden}: Keras ran in {made_in}; check with --dtype {made_in}"
        )
    sha = meta.get("source_sha256")
    if sha:
        from hashlib import sha256

        if sha256(Path(args.src).read_bytes()).hexdigest() != sha:
            notes.append(f"{args.golden} was made from another file than {args.src}")
    return golden, notes


def _header(args: argparse.Namespace, model: Any, golden: dict) -> str:
    meta = golden_meta(golden)
    count = sum(p.numel() for p in model.parameters())
    side = f"golden file {args.golden}" if args.golden else "live"
    versions = (
        f"Keras {meta.get('keras_version', '?')}, TensorFlow {meta.get('tensorflow_version', '?')}"
    )
    ids = np.asarray(golden["ids"])
    fed = "texts" if ids.dtype.kind in "US" else "ids"
    return (
        f"parity check {args.src}: {type(model).__name__} ({count:,} parameters) vs Keras "
        f"({side}; {versions}), {fed} {tuple(ids.shape)}, {args.device}, {args.dtype}"
    )


def _check(args: argparse.Namespace) -> int:
    try:
        model, kfile, notes = _convert(args)
        with malformed_file(args.src):
            subject, keras_args = subject_for(model, kfile)
        if args.golden:
            golden, more = _golden_for(args, subject)
            notes += more
        else:
            golden = _keras_side(args, model, kfile, {"pair": subject.pair, **keras_args})
        report = check(subject, golden, device=args.device, dtype=DTYPES[args.dtype], notes=notes)
    except (ValueError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        print(f"{PROG}: error: {error_line(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    print(_header(args, model, golden))
    print(report.table())
    if args.json_out:
        text = json.dumps(report.as_dict(), indent=2) + "\n"
        try:
            write_atomic_text(args.json_out, text, "report")
        except ConversionError as exc:
            print(f"{PROG}: error: {error_line(exc)}", file=sys.stderr)
            return EXIT_FAILURE
    return 0 if report.passed else EXIT_FAILURE


def _golden(args: argparse.Namespace) -> int:
    try:
        model, kfile, notes = _convert(args)
        with malformed_file(args.src):
            subject, keras_args = subject_for(model, kfile)
        golden = _keras_side(args, model, kfile, {"pair": subject.pair, **keras_args})
    except (ValueError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        print(f"{PROG}: error: {error_line(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    dst = Path(args.out)
    try:
        write_atomic(dst, lambda f: write_golden(f, golden), "golden file")
    except ConversionError as exc:
        print(f"{PROG}: error: {error_line(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    kinds = {"activation/": 0, "output/": 0, "grad/": 0}
    for key in golden:
        for prefix in kinds:
            kinds[prefix] += key.startswith(prefix)
    meta = golden_meta(golden)
    print(
        f"wrote {dst}: {kinds['activation/']} activations, {kinds['output/']} outputs, "
        f"{kinds['grad/']} gradients on ids {tuple(np.asarray(golden['ids']).shape)} "
        f"(Keras {meta['keras_version']}, TensorFlow {meta['tensorflow_version']}, {args.dtype})"
    )
    for note in notes:
        print(f"{PROG}: note: {note}", file=sys.stderr)
    return 0


def _common(parser: argparse.ArgumentParser) -> None:

    parser.add_argument("src", help="Keras file: .keras, .weights.h5 or legacy .h5")
    parser.add_argument("--arch", choices=arch_names(), help="architecture (default: detect)")
    add_hard_sigmoid_option(parser)
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="float32")


def add_check(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "check", help="prove a conversion: activations, outputs and gradients against Keras"
    )
    _common(parser)
    parser.add_argument("--device", choices=DEVICES, default="cpu", help="torch device")
    parser.add_argument("--inputs", help=".npy or .npz of int ids (batch, time); 0 = padding")
    parser.add_argument("--json", dest="json_out", metavar="OUT", help="write the report as JSON")
    parser.add_argument(
        "--golden", help="Keras side from this file (`parity golden`) instead of running Keras"
    )
    parser.set_defaults(run=_check)


def add_golden(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "golden", help="save Keras' side of a check, for `parity check --golden` without Keras"
    )
    _common(parser)
    parser.add_argument("out", help="output .npz")
    parser.add_argument("--inputs", help=".npy or .npz of int ids (batch, time); 0 = padding")
    parser.set_defaults(run=_golden)
